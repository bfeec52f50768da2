"""Security finding 2: confidential cases must not leak their existence.

One 404 body for "hidden" and "missing" everywhere (the case, every task verb, the
attachment page; no case id in it), 404 (never 409/403/422) for a colleague who may not
see the case, and inbox views that list only what the reader may see
(protection.md, "Need to know"). Finding 6.4 too: sensitive fields masked for everyone
not working the case now, other holders of the role included once a colleague claimed it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlalchemy import select

from hexie.models import Attachment, Task
from hexie.workflows.errors import NotFound
from hexie.workflows.org import load_org

from .api_support import DV_INTAKE, PASSWORD, ApiEnv, api_env, consent_to_all, error_of

MISSING = 999_999


def _add_user(engine, username: str, *roles: str) -> None:
    with engine.transaction() as s:
        load_org(s, {"users": [{"username": username, "name": username, "password": PASSWORD,
                                "roles": list(roles)}]})


def _tasks_of(engine, case_id: int) -> dict[str, int]:
    with engine.session_factory() as s:
        return dict(s.execute(select(Task.name, Task.id).where(Task.case_id == case_id,
                                                               Task.status.in_(("offered", "allocated")))).all())


@pytest.fixture
def world(engine) -> tuple[ApiEnv, int, dict[str, int]]:
    """A complaint at t01 in referral; police1 took the police task; police1b holds the same role."""
    env = api_env(engine)
    _add_user(env.engine, "police1b", "police_liaison@t01")
    case_id = env.start_dv()
    env.service.fire(env.actor("ccadre"), case_id, "refer")
    tasks = _tasks_of(env.engine, case_id)
    return env, case_id, tasks


def _no_digits(body) -> None:
    text = json.dumps(body, ensure_ascii=False)
    assert not re.search(r"\d", text), f"a 404 body names an id: {text}"


def test_before_a_colleague_claims_it_the_offered_task_shows_the_case_masked(world):
    env, case_id, tasks = world
    r = env.as_("police1b").get(f"/cases/{case_id}")
    assert r.status_code == 200
    assert r.get_json()["masked"] and r.get_json()["data"]["victim_name"] == "***"
    assert case_id in {t["case_id"] for t in env.as_("police1b").get("/tasks?view=available").get_json()}
    assert case_id in {c["id"] for c in env.as_("police1b").get("/cases").get_json()}


def test_task_verbs_answer_the_same_404_for_hidden_and_missing(world):
    env, case_id, tasks = world
    police = tasks["police"]
    assert env.as_("police1").post(f"/tasks/{police}/claim").status_code == 200
    before = env.snapshot(case_id)
    colleague = env.as_("police1b")
    for verb, body in (("claim", None), ("release", None), ("done", {"data": {"police_action": "x"}}),
                       ("delegate", {"to": "police1b"}), ("reassign", {"to": "police1b"})):
        hidden = colleague.post(f"/tasks/{police}/{verb}", body)
        missing = colleague.post(f"/tasks/{MISSING}/{verb}", body)
        assert hidden.status_code == missing.status_code == 404, (verb, hidden.get_json())
        assert hidden.get_json() == missing.get_json(), verb
        _no_digits(error_of(hidden))
    for method, path, body in (("GET", "", None), ("GET", "/history", None),
                               ("POST", "/actions/emergency", {"data": {"emergency_reason": "x"}})):
        hidden = colleague.call(method, f"/cases/{case_id}{path}", body)
        missing = colleague.call(method, f"/cases/{MISSING}{path}", body)
        assert hidden.status_code == missing.status_code == 404, (path, hidden.get_json())
        assert hidden.get_json() == missing.get_json(), path
        _no_digits(error_of(hidden))
    # the same body as for a task or a case that never existed, for a stranger too
    stranger = env.as_("cadre2").post(f"/tasks/{tasks['legal_aid']}/claim")
    assert stranger.get_json() == colleague.post(f"/tasks/{MISSING}/claim").get_json()
    assert env.snapshot(case_id) == before


def test_a_colleague_no_longer_sees_the_case_once_the_task_is_taken(world):
    env, case_id, tasks = world
    env.service.claim(env.actor("police1"), tasks["police"])
    colleague = env.as_("police1b")
    assert colleague.get(f"/cases/{case_id}").status_code == 404
    assert case_id not in {c["id"] for c in colleague.get("/cases").get_json()}
    for view in ("available", "mine", "overdue", "escalated"):
        assert case_id not in {t["case_id"] for t in colleague.get(f"/tasks?view={view}").get_json()}, view


def test_the_escalated_view_lists_only_what_the_reader_may_see(world):
    env, case_id, tasks = world
    env.service.claim(env.actor("police1"), tasks["police"])
    env.clock.advance(days=5)                 # due 3d, escalated 1d after that
    assert env.service.escalate_overdue() >= 1
    assert case_id not in {t["case_id"] for t in env.as_("police1b").get("/tasks?view=escalated").get_json()}
    assert env.as_("police1b").get(f"/cases/{case_id}").status_code == 404
    # the one it is escalated to sees it, and so does the holder
    escalated = {t["case_id"] for t in env.as_("manager").get("/tasks?view=escalated").get_json()}
    assert case_id in escalated and env.as_("manager").get(f"/cases/{case_id}").status_code == 200
    assert case_id in {t["case_id"] for t in env.as_("police1").get("/tasks?view=escalated").get_json()}
    # and the counts in the navigation agree with the lists
    counts = env.queries.task_counts(env.actor("police1b"))
    assert counts["escalated"] == env.queries.tasks(env.actor("police1b"), "escalated").total


def test_path_ids_out_of_range_answer_the_same_404(world):
    env, case_id, tasks = world
    api = env.as_("police1b")
    missing = api.post(f"/tasks/{MISSING}/claim").get_json()
    for bad in ("0", "abc", "99999999999999999999"):
        assert api.post(f"/tasks/{bad}/claim").get_json() == missing


# ------------------------------------------------------------------ sensitive fields

def test_sensitive_fields_are_masked_for_other_holders_once_a_colleague_claimed(world):
    env, case_id, tasks = world
    env.service.claim(env.actor("legal"), tasks["legal_aid"])
    # the police task is still offered: police1 may read the case, masked (not working it yet)
    r = env.as_("police1").get(f"/cases/{case_id}").get_json()
    assert r["masked"] and r["data"]["victim_name"] == "***"
    assert env.as_("legal").get(f"/cases/{case_id}").get_json()["data"]["victim_name"] == DV_INTAKE["victim_name"]
    # overseers until they act on it
    assert env.as_("manager").get(f"/cases/{case_id}").get_json()["data"]["victim_name"] == "***"


def test_non_confidential_role_holders_see_masked_data_once_a_colleague_claimed(engine):
    env = api_env(engine)
    case_id = env.start_aid()
    env.service.fire(env.actor("vrep1"), case_id, "submit")     # home survey offered to t01's cadres
    assert not env.as_("cadre1b").get(f"/cases/{case_id}").get_json()["masked"]   # offered to her: works it
    env.service.claim(env.actor("cadre1"), env.open_task(case_id))
    r = env.as_("cadre1b").get(f"/cases/{case_id}").get_json()
    assert r["masked"] and r["data"]["id_number"] == "***"
    history = env.as_("cadre1b").get(f"/cases/{case_id}/history").get_json()
    assert history[0]["changes"]["id_number"] == ["***", "***"]
    assert env.as_("cadre1").get(f"/cases/{case_id}").get_json()["data"]["id_number"] != "***"


def test_engine_not_found_has_one_message(world):
    env, case_id, tasks = world
    env.service.claim(env.actor("police1"), tasks["police"])
    police1b = env.actor("police1b")
    errors = []
    for call in (lambda: env.service.claim(police1b, tasks["police"]),
                 lambda: env.service.claim(police1b, MISSING),
                 lambda: env.queries.case(police1b, case_id),
                 lambda: env.queries.case(police1b, MISSING),
                 lambda: env.queries.history(police1b, case_id)):
        with pytest.raises(NotFound) as info:
            call()
        errors.append((info.value.zh, info.value.en, info.value.details))
    assert len(set(map(repr, errors))) == 1, errors


# ------------------------------------------------------------------ web pages

@pytest.fixture
def web(session_factory, tmp_path: Path):
    from .web_helpers import make_web_env
    env = make_web_env(session_factory, tmp_path)
    with env.engine.transaction() as s:
        load_org(s, {"users": [{"username": "pl1b", "name": "郑二警官", "password": "s3cret-pass-1",
                                "roles": ["police_liaison@t01"]}]})
    return env


def _web_complaint(env) -> tuple[int, dict[str, int]]:
    from .test_web import COMPLAINT
    case_id = env.service.start_case(env.actor("cc1"), "dv_complaint", "t01", dict(COMPLAINT))
    consent_to_all(env.engine, env.actor("cc1"), case_id)
    env.service.fire(env.actor("cc1"), case_id, "refer")
    return case_id, _tasks_of(env.engine, case_id)


def _page(response) -> str:
    """The page without its CSRF token (signed with the time: two pages a second apart differ)."""
    return re.sub(r'name="csrf_token" value="[^"]*"', 'name="csrf_token"', response.get_data(as_text=True))


def _h1(response) -> str:
    return re.search(r"<h1>(.*?)</h1>", response.get_data(as_text=True), re.S).group(1).strip()


def test_web_pages_answer_the_same_404_for_hidden_and_missing(web, tmp_path: Path):
    case_id, tasks = _web_complaint(web)
    web.service.claim(web.actor("pl1"), tasks["police"])
    attachment = _attach(web, case_id)
    client = web.client("pl1b")
    client.get("/")   # the welcome message is shown once
    pairs = [(f"/cases/{case_id}", f"/cases/{MISSING}"),
             (f"/attachments/{attachment}", f"/attachments/{MISSING}")]
    for hidden_path, missing_path in pairs:
        hidden, missing = client.get(hidden_path), client.get(missing_path)
        assert hidden.status_code == missing.status_code == 404, hidden_path
        assert _page(hidden) == _page(missing), hidden_path
    for verb in ("claim", "release"):
        hidden = client.post(f"/tasks/{tasks['police']}/{verb}")
        missing = client.post(f"/tasks/{MISSING}/{verb}")
        assert hidden.status_code == missing.status_code == 404, verb
        assert _page(hidden) == _page(missing), verb
    hidden = client.post(f"/tasks/{tasks['police']}/done", data={"case_id": str(case_id)})
    missing = client.post(f"/tasks/{MISSING}/done", data={"case_id": str(MISSING)})
    assert hidden.status_code == missing.status_code == 404
    assert _page(hidden) == _page(missing)
    assert not re.search(r"\d", _h1(hidden))


def test_the_error_page_speaks_one_language(web):
    case_id, _ = _web_complaint(web)
    client = web.client("vr1")
    zh = client.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "not found" not in zh.lower() and "No such" not in zh
    client.post("/lang/en")
    en = client.get(f"/cases/{case_id}").get_data(as_text=True)
    assert "Not found" in _h1_text(en) and not re.search(r"[\u4e00-\u9fff]", _h1_text(en) + _muted(en))


def _h1_text(page: str) -> str:
    return re.search(r"<h1>(.*?)</h1>", page, re.S).group(1)


def _muted(page: str) -> str:
    found = re.search(r'<div class="card error-page">(.*?)</div>', page, re.S)
    return found.group(1) if found else ""


def _attach(env, case_id: int) -> int:
    """An attachment row of the case (the file itself does not matter for a 404)."""
    with env.engine.transaction() as s:
        row = Attachment(case_id=case_id, field="evidence_files", filename="x.pdf", content_type="application/pdf",
                         size=4, storage_key=f"k{case_id}.pdf", uploaded_by_id=env.actor("cc1").user_id,
                         created_at=env.clock())
        s.add(row)
        s.flush()
        return row.id
