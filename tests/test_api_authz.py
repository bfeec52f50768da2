"""Who may do what through the API: every role against every endpoint, on a case inside
and outside her area, confidential (dv_complaint) or not.

The expectations are written out by hand from definitions.md ("Access") and the
definitions, not computed: the API must add no rule of its own and drop none.
Outsiders get 404 (never 403) on cases they may not see, confidential or not.
"""
from __future__ import annotations

from typing import Any

import pytest

from .api_support import AID_APPLICATION, DV_INTAKE, USERS, ApiEnv, api_env

# Cases of the set-up:
#   A  poor_mother_aid at t01v01 (town t01), started by vrep1, application (allocated to vrep1)
#   B  poor_mother_aid at t02v01 (town t02), started by vrep2
#   C  dv_complaint (confidential) at t01, started by ccadre, intake (allocated to ccadre)
#   S  poor_mother_aid at t01v01, submitted: home_survey, its task offered to town cadres of t01
SEES_A = {"vrep1", "cadre1", "cadre1b", "chair1", "manager", "manager2", "finance", "admin"}
SEES_B = {"vrep2", "cadre2", "chair2", "manager", "manager2", "finance", "admin"}
SEES_C = {"ccadre", "manager", "manager2"}      # not even admin, nor police of that town

#: user -> {check: expected status}; checks not listed for a user get the default below.
EXPECT: dict[str, dict[str, int]] = {
    "vrep1":    {"start_aid": 201, "submit_A": 200, "reassign_S": 403, "claim_S": 403},
    "vrep2":    {},
    "cadre1":   {"submit_A": 403, "claim_S": 200, "reassign_S": 403},
    "cadre1b":  {"submit_A": 403, "claim_S": 200, "reassign_S": 403},
    "cadre2":   {},
    "chair1":   {"start_aid": 201, "submit_A": 200, "claim_S": 403, "reassign_S": 200},  # submit: village_rep, town_chair
    "chair2":   {},
    "ccadre":   {"start_dv": 201, "act_C": 200, "claim_C": 200},
    "manager":  {"start_dv": 201, "submit_A": 403, "claim_S": 403, "reassign_S": 200, "act_C": 403,
                 "claim_C": 409},
    "manager2": {"start_dv": 201, "submit_A": 403, "claim_S": 403, "reassign_S": 200, "act_C": 403,
                 "claim_C": 409},
    "finance":  {"submit_A": 403, "claim_S": 403, "reassign_S": 403},
    "police1":  {"start_dv": 201},
    "police2":  {},
    "legal":    {},
    "court":    {},
    "admin":    {"submit_A": 403, "claim_S": 403, "reassign_S": 200, "webhooks": 200},
}
DEFAULTS = {"start_aid": 403, "start_dv": 403, "submit_A": 404, "claim_S": 404, "reassign_S": 404,
            "act_C": 404, "claim_C": 404, "webhooks": 403, "processes": 200}


def test_every_user_of_the_org_is_in_the_matrix() -> None:
    assert set(EXPECT) == set(USERS)


@pytest.fixture
def world(engine) -> tuple[ApiEnv, dict[str, int]]:
    env = api_env(engine)
    ids = {"A": env.start_aid("vrep1", "t01v01"), "B": env.start_aid("vrep2", "t02v01"), "C": env.start_dv()}
    ids["S"] = env.start_aid("vrep1", "t01v01")
    env.service.fire(env.actor("vrep1"), ids["S"], "submit")
    ids["S_task"] = env.open_task(ids["S"])
    ids["C_task"] = env.open_task(ids["C"])
    return env, ids


@pytest.mark.parametrize("user", sorted(USERS))
def test_authorization_matrix(world: tuple[ApiEnv, dict[str, int]], user: str) -> None:
    env, ids = world
    api = env.as_(user)
    want = {**DEFAULTS, **EXPECT[user]}
    got: dict[str, Any] = {}

    # reading: one case, its history, the case list
    for name, seers in (("A", SEES_A), ("B", SEES_B), ("C", SEES_C)):
        expected = 200 if user in seers else 404
        want[f"get_{name}"] = want[f"history_{name}"] = expected
        got[f"get_{name}"] = api.get(f"/cases/{ids[name]}").status_code
        got[f"history_{name}"] = api.get(f"/cases/{ids[name]}/history").status_code
    listed = {c["id"] for c in api.get("/cases?per_page=200").get_json()}
    want["listed"] = sorted(n for n, seers in (("A", SEES_A), ("B", SEES_B), ("C", SEES_C)) if user in seers)
    got["listed"] = sorted(n for n in ("A", "B", "C") if ids[n] in listed)
    # the inbox: S's survey task is offered to the town cadres of t01 only
    available = {t["case_id"] for t in api.get("/tasks?view=available").get_json()}
    want["offered_S"] = user in ("cadre1", "cadre1b")
    got["offered_S"] = ids["S"] in available
    got["processes"] = api.get("/processes").status_code

    # doing: start, act, claim, reassign, administer
    got["start_aid"] = api.post("/cases", {"process": "poor_mother_aid", "org_unit": "t01v01",
                                           "data": AID_APPLICATION}).status_code
    got["start_dv"] = api.post("/cases", {"process": "dv_complaint", "org_unit": "t01",
                                          "data": DV_INTAKE}).status_code
    got["claim_S"] = api.post(f"/tasks/{ids['S_task']}/claim").status_code
    got["reassign_S"] = api.post(f"/tasks/{ids['S_task']}/reassign", {"to": "cadre1b"}).status_code
    got["claim_C"] = api.post(f"/tasks/{ids['C_task']}/claim").status_code
    got["submit_A"] = api.post(f"/cases/{ids['A']}/actions/submit", {}).status_code
    got["act_C"] = api.post(f"/cases/{ids['C']}/actions/handle_directly", {"comment": "妇联直接调处"}).status_code
    got["webhooks"] = api.get("/webhooks").status_code

    mismatches = {k: (want[k], got[k]) for k in got if want[k] != got[k]}
    assert not mismatches, f"{user}: check -> (expected, got): {mismatches}"


def test_refusals_in_the_matrix_wrote_nothing(world: tuple[ApiEnv, dict[str, int]]) -> None:
    """Every refused call of a whole matrix row leaves the cases exactly as they were."""
    env, ids = world
    before = {n: env.snapshot(ids[n]) for n in ("A", "B", "C", "S")}
    for user in ("finance", "police1", "police2", "cadre2", "legal", "court"):
        api = env.as_(user)
        api.post(f"/cases/{ids['A']}/actions/submit", {})
        api.post(f"/cases/{ids['C']}/actions/handle_directly", {"comment": "x"})
        api.post(f"/cases/{ids['B']}/actions/withdraw", {"comment": "x"})
        api.post(f"/tasks/{ids['S_task']}/claim")
        api.post(f"/tasks/{ids['C_task']}/claim")
        api.post(f"/tasks/{ids['S_task']}/reassign", {"to": "cadre1"})
    assert {n: env.snapshot(ids[n]) for n in ("A", "B", "C", "S")} == before
