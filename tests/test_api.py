"""The JSON API (interfaces.md, "HTTP API"): every endpoint with its success and error
statuses, refused actions writing nothing, the OpenAPI document (and a client that
knows only it), and outbound webhooks against a real local HTTP server.

Runs on SQLite and PostgreSQL (the ``engine`` fixture of conftest.py).
"""
from __future__ import annotations

import http.server
import json
import threading
import time
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from hexie.models import WebhookDelivery
from hexie.workflows.protection import case_code
from hexie.workflows.tokens import make_token
from hexie.workflows.webhooks import (
    RetryPolicy, WebhookDispatcher, deliver_pending, ensure_dispatcher, verify_signature,
)

from .api_support import (
    AID_APPLICATION, AID_DISBURSE, AID_SURVEY, PASSWORD, SECRET, ApiEnv, Clock, api_env, build_engine, error_of,
    make_app,
)


@pytest.fixture
def env(engine) -> ApiEnv:
    return api_env(engine)


# ----------------------------------------------------------------- sign-in
def test_token_is_issued_for_the_right_password_and_works(env: ApiEnv) -> None:
    client = env.as_(None)
    r = client.post("/token", {"username": "vrep1", "password": PASSWORD})
    assert r.status_code == 200
    token = r.get_json()["token"]
    r = client.get("/processes", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200


@pytest.mark.parametrize("body", [
    {"username": "vrep1", "password": "wrong-password"},
    {"username": "nobody", "password": PASSWORD},
])
def test_token_refused_with_401(env: ApiEnv, body: dict) -> None:
    r = env.as_(None).post("/token", body)
    assert r.status_code == 401
    assert error_of(r)["code"] == "unauthorized"


def test_repeated_wrong_passwords_are_throttled(env: ApiEnv) -> None:
    client = env.as_(None)
    for _ in range(5):
        assert client.post("/token", {"username": "vrep1", "password": "guess"}).status_code == 401
    r = client.post("/token", {"username": "vrep1", "password": PASSWORD})
    assert r.status_code == 429 and error_of(r)["code"] == "too_many_attempts" and r.headers["Retry-After"]
    assert client.post("/token", {"username": "vrep2", "password": PASSWORD}).status_code == 200


@pytest.mark.parametrize("body, field", [
    ({"username": "vrep1"}, "password"),
    ({"username": 5, "password": PASSWORD}, "username"),
    ({"username": "vrep1", "password": PASSWORD, "remember": True}, "remember"),
])
def test_token_malformed_body_is_400_naming_the_field(env: ApiEnv, body: dict, field: str) -> None:
    r = env.as_(None).post("/token", body)
    assert r.status_code == 400
    assert field in error_of(r)["details"]


@pytest.mark.parametrize("raw", [b"{bad json", b"[1, 2]", b'"text"', b'{"username": NaN}'])
def test_malformed_json_is_400(env: ApiEnv, raw: bytes) -> None:
    r = env.as_(None).call("POST", "/token", data=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400
    assert error_of(r)["code"] == "bad_request"


@pytest.mark.parametrize("header", [None, "Bearer", "Bearer not-a-token", "Basic dnJlcDE6eA==",
                                    f"Bearer {make_token('another-secret', 'vrep1')}",
                                    f"Bearer {make_token(SECRET, 'ghost')}"])
def test_missing_or_bad_token_is_401(env: ApiEnv, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    for method, path in (("GET", "/processes"), ("GET", "/cases"), ("POST", "/cases"), ("GET", "/tasks"),
                         ("GET", "/cases/1"), ("POST", "/tasks/1/claim"), ("GET", "/webhooks")):
        r = env.as_(None).call(method, path, headers=headers)
        assert r.status_code == 401, (method, path)
        assert error_of(r)["code"] == "unauthorized"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")


def test_deactivated_user_token_is_401(env: ApiEnv) -> None:
    from hexie.models import User
    with env.engine.session_factory() as s:
        s.scalars(select(User).where(User.username == "vrep1")).one().active = False
        s.commit()
    assert env.as_("vrep1").get("/processes").status_code == 401


# --------------------------------------------------------------- processes
def test_processes_list_every_process_with_version_and_title(env: ApiEnv) -> None:
    r = env.as_("vrep1").get("/processes")
    assert r.status_code == 200
    items = {p["process"]: p for p in r.get_json()}
    assert set(items) == {"poor_mother_aid", "dv_complaint", "microloan", "spring_bud", "elder_support",
                          "mentor_pairing", "spring_bud_renewal"}   # the two called by others (issue 15)
    assert items["poor_mother_aid"]["version"] == 1
    assert items["poor_mother_aid"]["title"] == "救助贫困母亲"
    english = env.as_("vrep1").get("/processes", headers={"Accept-Language": "en"}).get_json()
    assert {p["process"]: p["title"] for p in english}["poor_mother_aid"] == "Aid to poor mothers"


def test_process_definition_has_states_transitions_and_labelled_fields(env: ApiEnv) -> None:
    r = env.as_("vrep1").get("/processes/poor_mother_aid")
    assert r.status_code == 200
    body = r.get_json()
    assert body["process"] == "poor_mother_aid" and body["initial_state"] == "application"
    states = {s["name"]: s for s in body["states"]}
    assert states["application"]["initial"] and states["closed"]["final"]
    assert states["home_survey"]["tasks"][0]["due"] == "P7D"
    assert states["home_survey"]["tasks"][0]["escalate"] == {"after": "P3D", "to": "town_chair"}
    approve = next(t for t in body["transitions"] if t["trigger"] == "approve")
    assert approve["quorum"] == 2 and approve["sources"] == ["approval"] and "4000" in approve["when"]
    field = body["fields"]["id_number"]
    assert field["label"] == "身份证号码" and field["label_i18n"]["en"] == "ID card number"
    assert field["sensitive"] and field["type"] == "text"
    assert body["fields"]["approved_amount"]["max"] == "2000.00" or body["fields"]["approved_amount"]["max"] == "2000"
    assert {c["key"] for c in body["fields"]["aid_programme"]["choices"]} == {"consolation", "project"}


def test_unknown_process_is_404_and_query_params_are_refused(env: ApiEnv) -> None:
    api = env.as_("vrep1")
    assert error_of(api.get("/processes/no_such"))["code"] == "not_found"
    assert api.get("/processes/no_such").status_code == 404
    r = api.get("/processes?foo=1")
    assert r.status_code == 400 and "foo" in error_of(r)["details"]


# ------------------------------------------------------------------- cases
def test_start_case_answers_201_with_the_case(env: ApiEnv) -> None:
    r = env.as_("vrep1").post("/cases", {"process": "poor_mother_aid", "org_unit": "t01v01",
                                         "data": AID_APPLICATION, "comment": "上门受理"})
    assert r.status_code == 201
    case = r.get_json()
    assert r.headers["Location"].endswith(f"/api/v1/cases/{case['id']}")
    assert case["process"] == "poor_mother_aid" and case["state"] == "application"
    assert case["org_unit"] == "t01v01" and case["version"] == 1
    assert case["data"]["applicant_name"] == "王秀英" and case["data"]["declared_annual_income"] == "6000.00"
    assert set(case["actions"]) == {"submit", "withdraw"}
    assert case["tasks"][0]["assignee"] == "vrep1"
    assert isinstance(case["lock_version"], int)
    assert case["created_at"].endswith("+00:00")


@pytest.mark.parametrize("body, field", [
    ({"org_unit": "t01v01"}, "process"),
    ({"process": "poor_mother_aid"}, "org_unit"),
    ({"process": "poor_mother_aid", "org_unit": "t01v01", "data": [1]}, "data"),
    ({"process": "poor_mother_aid", "org_unit": 7}, "org_unit"),
    ({"process": "poor_mother_aid", "org_unit": "t01v01", "colour": "red"}, "colour"),
    ({"process": "poor_mother_aid", "org_unit": "t01v01", "comment": 3}, "comment"),
])
def test_start_case_malformed_is_400(env: ApiEnv, body: dict, field: str) -> None:
    r = env.as_("vrep1").post("/cases", body)
    assert r.status_code == 400
    assert field in error_of(r)["details"]


def test_start_case_refusals(env: ApiEnv) -> None:
    api = env.as_("vrep1")
    base = {"process": "poor_mother_aid", "org_unit": "t01v01"}
    assert api.post("/cases", {**base, "process": "nope", "data": AID_APPLICATION}).status_code == 404
    assert api.post("/cases", {**base, "org_unit": "t02v01", "data": AID_APPLICATION}).status_code == 403
    r = api.post("/cases", {**base, "data": {**AID_APPLICATION, "id_number": "123", "household_size": None}})
    assert r.status_code == 422
    assert {"id_number", "household_size"} <= set(error_of(r)["details"])
    r = api.post("/cases", {**base, "org_unit": "nowhere", "data": AID_APPLICATION})
    assert r.status_code == 422 and "org_unit" in error_of(r)["details"]
    r = api.post("/cases", {**base, "data": {**AID_APPLICATION, "not_a_field": 1}})
    assert r.status_code == 422 and "not_a_field" in error_of(r)["details"]
    r = api.post("/cases", {**base, "data": {**AID_APPLICATION, "applicant_name": "a\x00b"}})
    assert r.status_code == 400


def test_list_cases_filters_and_pages(env: ApiEnv) -> None:
    first = env.start_aid()
    second = env.start_aid("chair1", "t01v02")
    env.start_aid("vrep2", "t02v01")
    env.service.fire(env.actor("vrep1"), first, "submit")
    api = env.as_("chair1")
    r = api.get("/cases")
    assert r.status_code == 200
    assert [c["id"] for c in r.get_json()] == [second, first]  # newest first, only her town
    assert r.headers["X-Total-Count"] == "2"
    assert [c["id"] for c in api.get("/cases?state=home_survey").get_json()] == [first]
    assert [c["id"] for c in api.get("/cases?org_unit=t01v02").get_json()] == [second]
    assert api.get("/cases?process=microloan").get_json() == []
    r = api.get("/cases?per_page=1&page=2")
    assert [c["id"] for c in r.get_json()] == [first] and r.headers["X-Pages"] == "2"
    assert len(env.as_("manager").get("/cases").get_json()) == 3


@pytest.mark.parametrize("query, field", [
    ("page=0", "page"), ("page=x", "page"), ("per_page=500", "per_page"), ("colour=red", "colour"),
    ("process=no_such", "process"), ("state=no_such", "state"), ("org_unit=nowhere", "org_unit"),
    ("page=1&page=2", "page"), ("process=poor_mother_aid&state=intake", "state"),
])
def test_list_cases_bad_query_is_400(env: ApiEnv, query: str, field: str) -> None:
    r = env.as_("manager").get(f"/cases?{query}")
    assert r.status_code == 400
    assert field in error_of(r)["details"]


def test_get_case_masks_sensitive_fields_for_onlookers(env: ApiEnv) -> None:
    case_id = env.start_aid()
    mine = env.as_("vrep1").get(f"/cases/{case_id}").get_json()
    assert mine["data"]["id_number"] == "110101199003071234" and not mine["masked"]
    onlooker = env.as_("finance").get(f"/cases/{case_id}")
    assert onlooker.status_code == 200
    assert onlooker.get_json()["data"]["id_number"] == "***" and onlooker.get_json()["masked"]
    assert onlooker.get_json()["actions"] == []


@pytest.mark.parametrize("path", ["/cases/999", "/cases/abc", "/cases/-1", "/cases/0",
                                  "/cases/99999999999999999999999", "/cases/999/history",
                                  "/cases/" + "9" * 5000, "/cases/%00", "/cases/１２"])
def test_unknown_case_is_404(env: ApiEnv, path: str) -> None:
    r = env.as_("manager").get(path)
    assert r.status_code == 404 and error_of(r)["code"] == "not_found"


def test_case_outside_the_area_is_404(env: ApiEnv) -> None:
    case_id = env.start_aid()
    for path in (f"/cases/{case_id}", f"/cases/{case_id}/history"):
        assert env.as_("vrep2").get(path).status_code == 404
    r = env.as_("vrep2").post(f"/cases/{case_id}/actions/submit", {})
    assert r.status_code == 404


# ------------------------------------------------------------------ actions
def test_action_moves_the_case_and_answers_with_it(env: ApiEnv) -> None:
    case_id = env.start_aid()
    lock = env.as_("vrep1").get(f"/cases/{case_id}").get_json()["lock_version"]
    r = env.as_("vrep1").post(f"/cases/{case_id}/actions/submit", {"comment": "材料齐全", "lock_version": lock})
    assert r.status_code == 200
    body = r.get_json()
    assert body["id"] == case_id and body["state"] == "home_survey"
    assert body["outcome"] == {"outcome": "moved", "state": "home_survey"}
    assert body["lock_version"] > lock


def test_quorum_vote_answers_200_with_the_unmoved_case(env: ApiEnv) -> None:
    case_id = env.start_aid()
    env.to_approval(case_id)
    r = env.as_("manager").post(f"/cases/{case_id}/actions/approve", {"comment": "同意"})
    assert r.status_code == 200
    body = r.get_json()
    assert body["state"] == "approval"
    assert body["outcome"]["outcome"] == "voted" and body["outcome"]["votes"] == 1
    assert body["outcome"]["quorum"] == 2
    again = env.as_("manager").post(f"/cases/{case_id}/actions/approve", {})
    assert again.status_code == 409
    r = env.as_("manager2").post(f"/cases/{case_id}/actions/approve", {})
    assert r.status_code == 200 and r.get_json()["state"] == "disbursement"


def test_action_refusals_have_their_status_and_write_nothing(env: ApiEnv) -> None:
    case_id = env.start_aid()
    env.to_approval(case_id, verified_annual_income="40000.00")  # 10,000 a head: above the line
    lock = env.as_("manager").get(f"/cases/{case_id}").get_json()["lock_version"]
    before = env.snapshot(case_id)
    refusals = [
        ("manager", "approve", {}, 422, "when"),                       # guard fails
        ("manager", "reject", {}, 422, "comment"),                     # comment required
        ("manager", "reject", {"comment": "x", "lock_version": lock - 1}, 409, "lock_version"),
        ("manager", "submit", {}, 409, None),                           # not from this state
        ("manager", "no_such_action", {}, 404, None),
        ("cadre1", "reject", {"comment": "x"}, 403, None),              # sees it, may not do this
        ("vrep2", "reject", {"comment": "x"}, 404, None),               # may not see it
        ("manager", "reject", {"comment": "x", "data": {"fund": "x"}}, 422, "fund"),
    ]
    for user, trigger, body, status, field in refusals:
        r = env.as_(user).post(f"/cases/{case_id}/actions/{trigger}", body)
        assert r.status_code == status, (user, trigger, r.get_json())
        if field:
            assert field in error_of(r)["details"], (trigger, r.get_json())
        assert env.snapshot(case_id) == before, (user, trigger)


@pytest.mark.parametrize("body, field", [
    ({"comment": 5}, "comment"), ({"lock_version": "3"}, "lock_version"), ({"lock_version": True}, "lock_version"),
    ({"lock_version": 1.5}, "lock_version"), ({"data": [1]}, "data"), ({"data": "x"}, "data"),
    ({"colour": "red"}, "colour"),
])
def test_action_malformed_body_is_400_and_writes_nothing(env: ApiEnv, body: dict, field: str) -> None:
    case_id = env.start_aid()
    before = env.snapshot(case_id)
    r = env.as_("vrep1").post(f"/cases/{case_id}/actions/submit", body)
    assert r.status_code == 400 and field in error_of(r)["details"]
    assert env.snapshot(case_id) == before


def test_action_without_body_is_fine(env: ApiEnv) -> None:
    case_id = env.start_aid()
    r = env.as_("vrep1").call("POST", f"/cases/{case_id}/actions/submit")
    assert r.status_code == 200 and r.get_json()["state"] == "home_survey"


def test_history_is_oldest_first(env: ApiEnv) -> None:
    case_id = env.start_aid()
    env.as_("vrep1").post(f"/cases/{case_id}/actions/submit", {"comment": "齐了"})
    r = env.as_("vrep1").get(f"/cases/{case_id}/history")
    assert r.status_code == 200
    events = r.get_json()
    assert [e["kind"] for e in events][:2] == ["started", "fired"]
    fired = events[1]
    assert fired == {**fired, "actor": "vrep1", "trigger": "submit", "from_state": "application",
                     "to_state": "home_survey", "comment": "齐了"}
    assert set(events[0]) == {"at", "actor", "kind", "trigger", "from_state", "to_state", "comment", "changes"}
    masked = env.as_("finance").get(f"/cases/{case_id}/history").get_json()
    assert masked[0]["changes"]["id_number"] == ["***", "***"]


# -------------------------------------------------------------------- tasks
def test_task_views(env: ApiEnv) -> None:
    case_id = env.start_aid()
    env.service.fire(env.actor("vrep1"), case_id, "submit")
    survey = env.open_task(case_id)
    cadre = env.as_("cadre1")
    assert [t["id"] for t in cadre.get("/tasks?view=available").get_json()] == [survey]
    assert cadre.get("/tasks").get_json() == []  # view=mine by default
    assert [t["id"] for t in env.as_("vrep1").get("/tasks?view=mine").get_json()] == []
    row = cadre.get("/tasks?view=available&process=poor_mother_aid").get_json()[0]
    assert row["case_id"] == case_id and row["role"] == "town_cadre" and row["status"] == "offered"
    assert row["due_at"] == "2026-03-09T09:00:00+00:00" and row["overdue"] is False
    assert cadre.get("/tasks?view=available&process=microloan").get_json() == []
    assert env.as_("cadre2").get("/tasks?view=available").get_json() == []
    env.clock.advance(days=8)
    assert [t["id"] for t in cadre.get("/tasks?view=overdue").get_json()] == [survey]
    assert env.as_("chair1").get("/tasks?view=escalated").get_json() == []
    env.clock.advance(days=3)
    env.service.escalate_overdue()
    escalated = env.as_("chair1").get("/tasks?view=escalated").get_json()
    assert [t["id"] for t in escalated] == [survey] and escalated[0]["escalated"] is True


@pytest.mark.parametrize("query, field", [("view=all", "view"), ("colour=red", "colour"),
                                          ("process=nope", "process"), ("per_page=0", "per_page")])
def test_task_list_bad_query_is_400(env: ApiEnv, query: str, field: str) -> None:
    r = env.as_("cadre1").get(f"/tasks?{query}")
    assert r.status_code == 400 and field in error_of(r)["details"]


def test_claim_and_release(env: ApiEnv) -> None:
    case_id = env.start_aid()
    env.service.fire(env.actor("vrep1"), case_id, "submit")
    task = env.open_task(case_id)
    r = env.as_("cadre1").post(f"/tasks/{task}/claim")
    assert r.status_code == 200
    assert r.get_json()["status"] == "allocated" and r.get_json()["assignee"] == "cadre1"
    assert [t["id"] for t in env.as_("cadre1").get("/tasks?view=mine").get_json()] == [task]
    assert env.as_("cadre1b").post(f"/tasks/{task}/claim").status_code == 409
    assert env.as_("cadre1b").post(f"/tasks/{task}/release").status_code == 403
    assert env.as_("cadre1").post(f"/tasks/{task}/claim", {"x": 1}).status_code == 400
    r = env.as_("cadre1").post(f"/tasks/{task}/release")
    assert r.status_code == 200 and r.get_json()["status"] == "offered" and r.get_json()["assignee"] is None
    # she may see the case (town chair) but the task is not offered to her role
    assert env.as_("chair1").post(f"/tasks/{task}/claim").status_code == 403
    assert env.as_("cadre2").post(f"/tasks/{task}/claim").status_code == 404
    assert env.as_("cadre1").post("/tasks/99999/claim").status_code == 404
    assert env.as_("cadre1").post("/tasks/x/claim").status_code == 404


def test_claim_of_a_closed_task_is_409(env: ApiEnv) -> None:
    case_id = env.start_aid()
    task = env.open_task(case_id)
    env.service.fire(env.actor("vrep1"), case_id, "submit")
    assert env.as_("vrep1").post(f"/tasks/{task}/release").status_code == 409


def test_delegate_and_reassign(env: ApiEnv) -> None:
    case_id = env.start_aid()
    env.service.fire(env.actor("vrep1"), case_id, "submit")
    task = env.open_task(case_id)
    env.as_("cadre1").post(f"/tasks/{task}/claim")
    assert env.as_("cadre1b").post(f"/tasks/{task}/delegate", {"to": "cadre1b"}).status_code == 403
    r = env.as_("cadre1").post(f"/tasks/{task}/delegate", {"to": "nobody"})
    assert r.status_code == 422 and "to" in error_of(r)["details"]
    r = env.as_("cadre1").post(f"/tasks/{task}/delegate", {"to": "cadre2"})  # other town: may not take it
    assert r.status_code == 422 and "to" in error_of(r)["details"]
    assert env.as_("cadre1").post(f"/tasks/{task}/delegate", {}).status_code == 400
    assert env.as_("cadre1").post(f"/tasks/{task}/delegate", {"to": 5}).status_code == 400
    r = env.as_("cadre1").post(f"/tasks/{task}/delegate", {"to": "cadre1b"})
    assert r.status_code == 200 and r.get_json()["assignee"] == "cadre1b"
    assert env.as_("cadre1").post(f"/tasks/{task}/reassign", {"to": "cadre1"}).status_code == 403
    r = env.as_("chair1").post(f"/tasks/{task}/reassign", {"to": "cadre1"})
    assert r.status_code == 200 and r.get_json()["assignee"] == "cadre1"
    assert env.as_("chair2").post(f"/tasks/{task}/reassign", {"to": "cadre1b"}).status_code == 404
    assert env.as_("manager").post(f"/tasks/{task}/reassign", {"to": "cadre1b"}).get_json()["assignee"] == "cadre1b"


def test_parallel_tasks_done(env: ApiEnv) -> None:
    case_id = env.start_dv()
    env.service.fire(env.actor("ccadre"), case_id, "refer")
    tasks = {t["name"]: t for t in env.as_("manager").get(f"/cases/{case_id}").get_json()["tasks"]}
    police, legal = tasks["police"]["id"], tasks["legal_aid"]["id"]
    r = env.as_("police1").post(f"/tasks/{police}/done", {"data": {"police_action": ["x"]}})
    assert r.status_code == 422 and "police_action" in error_of(r)["details"]
    r = env.as_("police1").post(f"/tasks/{police}/done", {"data": {}})
    assert r.status_code == 422 and "police_action" in error_of(r)["details"]
    assert env.as_("police1").post(f"/tasks/{police}/done", {"data": "x"}).status_code == 400
    assert env.as_("legal").post(f"/tasks/{police}/done", {"data": {"police_action": "x"}}).status_code in (403, 404)
    r = env.as_("police1").post(f"/tasks/{police}/done", {"data": {"police_action": "已出警，出具告诫书"}})
    assert r.status_code == 200 and r.get_json()["status"] == "completed"
    assert r.get_json()["subject"] == case_code(case_id)  # confidential: the case code, never a name
    assert env.as_("police1").post(f"/tasks/{police}/done", {"data": {}}).status_code == 409
    r = env.as_("ccadre").post(f"/cases/{case_id}/actions/referral_done", {})
    assert r.status_code == 422  # legal aid still open
    assert env.as_("legal").post(f"/tasks/{legal}/done", {"data": {"legal_aid_notes": "已提供咨询"}}).status_code == 200
    r = env.as_("ccadre").post(f"/cases/{case_id}/actions/referral_done", {})
    assert r.status_code == 200 and r.get_json()["state"] == "adjudication"


def test_done_on_a_single_task_is_422(env: ApiEnv) -> None:
    case_id = env.start_aid()
    r = env.as_("vrep1").post(f"/tasks/{env.open_task(case_id)}/done", {})
    assert r.status_code == 422


# ----------------------------------------------------------- routes, methods
@pytest.mark.parametrize("method, path, status", [
    ("GET", "/nothing/here", 404), ("POST", "/cases/1/frobnicate", 404), ("GET", "/", 404),
    ("DELETE", "/cases", 405), ("PUT", "/cases/1", 405), ("GET", "/token", 405), ("PATCH", "/tasks/1/claim", 405),
    ("GET", "/cases/1/actions/submit", 405), ("POST", "/openapi.json", 405),
])
def test_unknown_routes_and_methods_answer_with_the_error_body(env: ApiEnv, method: str, path: str,
                                                                status: int) -> None:
    r = env.as_("vrep1").call(method, path)
    assert r.status_code == status
    assert error_of(r)["code"] == {404: "not_found", 405: "method_not_allowed"}[status]
    if status == 405:
        assert r.headers["Allow"]


# ------------------------------------------------------------------ OpenAPI
def test_openapi_document_describes_every_route(env: ApiEnv) -> None:
    r = env.as_(None).get("/openapi.json")
    assert r.status_code == 200
    doc = r.get_json()
    assert doc["openapi"] == "3.0.3"
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "description": doc["components"]["securitySchemes"]["bearer"]["description"]}
    assert "Error" in doc["components"]["schemas"]
    rules = {(rule.rule.removeprefix("/api/v1"), method) for rule in env.app.url_map.iter_rules()
             if rule.endpoint.startswith("api.") and rule.endpoint != "api.unknown_route"
             for method in rule.methods - {"HEAD", "OPTIONS"}}
    import re
    documented = {(re.sub(r"\{(\w+)\}", r"<\1>", path), method.upper())
                  for path, ops in doc["paths"].items() for method in ops}
    assert rules == documented
    expected = {("/token", "POST"), ("/processes", "GET"), ("/processes/<process>", "GET"), ("/cases", "POST"),
                ("/cases", "GET"), ("/cases/<case_id>", "GET"), ("/cases/<case_id>/actions/<trigger>", "POST"),
                ("/cases/<case_id>/history", "GET"), ("/tasks", "GET"), ("/tasks/<task_id>/claim", "POST"),
                ("/tasks/<task_id>/release", "POST"), ("/tasks/<task_id>/done", "POST"),
                ("/tasks/<task_id>/delegate", "POST"), ("/tasks/<task_id>/reassign", "POST"),
                ("/webhooks", "GET"), ("/webhooks", "POST"), ("/webhooks/<webhook_id>", "DELETE")}
    assert expected <= documented
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op["operationId"] and op["responses"], (path, method)
            if op.get("security") != []:
                assert "401" in op["responses"], (path, method)
            for name in re.findall(r"\{(\w+)\}", path):
                assert any(p["name"] == name and p["in"] == "path" for p in op["parameters"])
                assert "404" in op["responses"]
    fire = doc["paths"]["/cases/{case_id}/actions/{trigger}"]["post"]
    assert {"200", "400", "401", "403", "404", "409", "422"} <= set(fire["responses"])
    assert fire["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Action"}
    action = doc["components"]["schemas"]["Action"]
    assert set(action["properties"]) == {"data", "comment", "lock_version"}
    assert doc["components"]["schemas"]["Case"]["properties"]["created_at"]["format"] == "date-time"
    assert {p["name"] for p in doc["paths"]["/cases"]["get"]["parameters"]} >= {"process", "state", "org_unit",
                                                                                 "page"}


class OpenApiClient:
    """A client that knows nothing of Hexie but its OpenAPI document (and a password)."""

    def __init__(self, client: Any, doc_url: str) -> None:
        self.client = client
        self.doc = client.get(doc_url).get_json()
        self.base = self.doc["servers"][0]["url"]
        self.ops = {op["operationId"]: (path, method.upper(), op)
                    for path, methods in self.doc["paths"].items() for method, op in methods.items()}
        self.token: str | None = None

    def call(self, operation_id: str, body: Any = None, query: dict | None = None, **params: Any) -> Any:
        path, method, op = self.ops[operation_id]
        for p in op["parameters"]:
            if p["in"] == "path":
                path = path.replace("{" + p["name"] + "}", str(params[p["name"]]))
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        r = self.client.open(self.base + path, method=method, json=body, query_string=query, headers=headers)
        assert str(r.status_code) in op["responses"], (operation_id, r.status_code)
        assert 200 <= r.status_code < 300, (operation_id, r.get_json())
        return r.get_json()

    def sign_in(self, username: str) -> None:
        self.token = None
        self.token = self.call("create_token", {"username": username, "password": PASSWORD})["token"]


def test_a_client_holding_only_the_openapi_document_runs_a_case_to_its_end(env: ApiEnv) -> None:
    api = OpenApiClient(env.app.test_client(), "/api/v1/openapi.json")
    api.sign_in("vrep1")
    definition = api.call("get_process", process="poor_mother_aid")
    first_form = {f["field"] for f in next(s for s in definition["states"] if s["initial"])["tasks"][0]["form"]}
    case = api.call("start_case", {"process": "poor_mother_aid", "org_unit": "t01v01",
                                   "data": {k: v for k, v in AID_APPLICATION.items() if k in first_form}})
    case_id = case["id"]

    def act(username: str, trigger: str, data: dict | None = None, comment: str | None = None) -> dict:
        api.sign_in(username)
        current = api.call("get_case", case_id=case_id)
        assert trigger in current["actions"], (username, trigger, current["actions"])
        return api.call("fire_action", {"data": data or {}, "comment": comment,
                                        "lock_version": current["lock_version"]}, case_id=case_id, trigger=trigger)

    act("vrep1", "submit")
    api.sign_in("cadre1")
    offered = api.call("list_tasks", query={"view": "available", "process": "poor_mother_aid"})
    api.call("claim_task", task_id=offered[0]["id"])
    act("cadre1", "surveyed", AID_SURVEY)
    assert act("manager", "approve", comment="同意")["outcome"]["outcome"] == "voted"
    assert act("manager2", "approve", comment="同意")["state"] == "disbursement"
    closed = act("finance", "disburse", AID_DISBURSE)
    assert closed["state"] == "closed" and closed["closed_at"] and closed["actions"] == []
    history = api.call("case_history", case_id=case_id)
    assert [e["trigger"] for e in history if e["kind"] == "fired"] == ["submit", "surveyed", "approve", "disburse"]


# ----------------------------------------------------------------- webhooks
def test_webhook_management_is_for_admins(env: ApiEnv) -> None:
    admin = env.as_("admin")
    assert admin.get("/webhooks").get_json() == []
    r = admin.post("/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["case_closed"]})
    assert r.status_code == 201
    sub = r.get_json()
    assert sub["events"] == ["case_closed"] and sub["active"] and len(sub["secret"]) >= 32
    listed = admin.get("/webhooks").get_json()
    assert [s["id"] for s in listed] == [sub["id"]] and "secret" not in listed[0]
    for user in ("manager", "vrep1", "finance"):
        assert env.as_(user).get("/webhooks").status_code == 403
        assert env.as_(user).post("/webhooks", {"url": "http://example.org/x"}).status_code == 403
        assert env.as_(user).delete(f"/webhooks/{sub['id']}").status_code == 403
    for body, field in (({"url": "ftp://x/y"}, "url"), ({"url": "not a url"}, "url"), ({}, "url"),
                        ({"url": "http://x.org/", "events": ["nope"]}, "events"),
                        ({"url": "http://x.org/", "events": []}, "events"),
                        ({"url": "http://x.org/", "secret": "short"}, "secret")):
        r = admin.post("/webhooks", body)
        assert r.status_code == 400 and field in error_of(r)["details"], body
    assert admin.delete(f"/webhooks/{sub['id']}").status_code == 204
    assert admin.delete(f"/webhooks/{sub['id']}").status_code == 404
    assert admin.get("/webhooks").get_json() == []


class Receiver:
    """A real HTTP server on 127.0.0.1 (random port) recording what it is sent."""

    def __init__(self, fail_first: int = 0) -> None:
        self.received: list[tuple[dict, bytes]] = []
        self.fail_first = fail_first
        self.calls = 0
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.calls += 1
                if receiver.calls <= receiver.fail_first:
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.received.append((dict(self.headers), body))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[dict, bytes]]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.received

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def _wait_status(env: ApiEnv, status: str, timeout: float = 10.0) -> list[WebhookDelivery]:
    deadline = time.monotonic() + timeout
    while True:
        with env.engine.session_factory() as s:
            rows = list(s.scalars(select(WebhookDelivery).order_by(WebhookDelivery.id)))
        if (rows and all(r.status == status for r in rows)) or time.monotonic() > deadline:
            return rows
        time.sleep(0.02)


def test_webhook_delivered_after_commit_with_a_valid_signature(env: ApiEnv, receiver: Receiver) -> None:
    dispatcher = WebhookDispatcher(env.engine)
    try:
        sub = env.as_("admin").post("/webhooks", {"url": receiver.url,
                                                  "events": ["case_started", "state_changed"]}).get_json()
        case_id = env.start_aid()
        r = env.as_("vrep1").post(f"/cases/{case_id}/actions/submit", {})
        assert r.status_code == 200
        received = receiver.wait_for(2)
        assert len(received) == 2
        events = {}
        for headers, body in received:
            assert verify_signature(sub["secret"], body, headers["X-Hexie-Signature"])
            assert headers["X-Hexie-Signature"].startswith("sha256=")
            payload = json.loads(body)
            assert payload["event"] == headers["X-Hexie-Event"]
            events[payload["event"]] = payload
        assert events["case_started"]["case_id"] == case_id and events["case_started"]["process"] == "poor_mother_aid"
        assert events["state_changed"] | {"from_state": "application", "to_state": "home_survey",
                                          "trigger": "submit"} == events["state_changed"]
        rows = _wait_status(env, "delivered")
        assert [r.status for r in rows] == ["delivered", "delivered"] and all(r.attempts == 1 for r in rows)
        # task_created was not subscribed: no delivery row for it
        assert {r.event for r in rows} == {"case_started", "state_changed"}
    finally:
        dispatcher.close()


def test_mounting_the_api_starts_webhook_delivery(engine, receiver: Receiver) -> None:
    hexie_engine = build_engine(engine)
    app = make_app(hexie_engine, HEXIE_WEBHOOKS=True)  # as create_app / Hexie(app) do by default
    state = app.extensions["hexie"]
    env = ApiEnv(hexie_engine, app, state["service"], state["queries"], Clock(None))
    try:
        env.as_("admin").post("/webhooks", {"url": receiver.url, "events": ["case_started"]})
        env.start_aid()
        assert len(receiver.wait_for(1)) == 1
    finally:
        ensure_dispatcher(hexie_engine).close()


def test_refused_action_sends_nothing(env: ApiEnv, receiver: Receiver) -> None:
    case_id = env.start_aid()
    dispatcher = WebhookDispatcher(env.engine)
    try:
        env.as_("admin").post("/webhooks", {"url": receiver.url})
        assert env.as_("cadre1").post(f"/cases/{case_id}/actions/submit", {}).status_code == 403
        assert env.as_("vrep1").post(f"/cases/{case_id}/actions/withdraw", {}).status_code == 422
        time.sleep(0.3)
        assert receiver.received == []
        with env.engine.session_factory() as s:
            assert s.scalars(select(WebhookDelivery)).all() == []
    finally:
        dispatcher.close()


def test_failing_endpoint_is_retried_with_backoff(env: ApiEnv) -> None:
    receiver = Receiver(fail_first=2)
    policy = RetryPolicy(base_delay=60, max_attempts=5, timeout=5)
    dispatcher = WebhookDispatcher(env.engine, policy)
    try:
        env.as_("admin").post("/webhooks", {"url": receiver.url, "events": ["case_started"]})
        env.start_aid()
        rows = _wait_status(env, "pending")
        deadline = time.monotonic() + 10
        while rows[0].attempts < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
            rows = _wait_status(env, "pending")
        row = rows[0]
        assert row.attempts == 1 and row.last_error == "HTTP 503"
        assert row.next_attempt_at - env.clock() == pytest.approx(timedelta(seconds=60), abs=timedelta(seconds=1))
        assert deliver_pending(env.engine, policy) == 0  # not due yet
        env.clock.advance(seconds=61)
        assert deliver_pending(env.engine, policy) == 0  # second try: 503 again, next in 120 s
        with env.engine.session_factory() as s:
            row = s.get(WebhookDelivery, row.id)
        assert row.attempts == 2 and row.status == "pending"
        assert row.next_attempt_at - env.clock() == pytest.approx(timedelta(seconds=120), abs=timedelta(seconds=1))
        env.clock.advance(seconds=121)
        assert deliver_pending(env.engine, policy) == 1
        with env.engine.session_factory() as s:
            row = s.get(WebhookDelivery, row.id)
        assert row.status == "delivered" and row.attempts == 3 and row.delivered_at is not None
        assert len(receiver.received) == 1 and receiver.calls == 3
    finally:
        dispatcher.close()
        receiver.close()


def test_unreachable_endpoint_is_retried_by_the_pool_then_marked_failed(env: ApiEnv) -> None:
    receiver = Receiver()
    url = receiver.url
    receiver.close()  # nothing listens there any more: connection refused
    env.clock.now = None  # real time: the dispatcher's own retries wait real seconds
    dispatcher = WebhookDispatcher(env.engine, RetryPolicy(base_delay=0.05, max_attempts=3, timeout=2))
    try:
        env.as_("admin").post("/webhooks", {"url": url, "events": ["case_started"]})
        env.start_aid()
        rows = _wait_status(env, "failed")
        assert len(rows) == 1
        assert rows[0].status == "failed" and rows[0].attempts == 3 and "Connection" in rows[0].last_error
    finally:
        dispatcher.close()
