"""The working day through the API (interfaces.md, "Work queues and the case"): owner, suspend and
resume, notes, consults, PUT /me/away; both databases."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, select

from hexie.models import AuditEvent, User

from .api_support import api_env, error_of


def test_the_case_names_its_owner_and_is_handed_over(engine):
    api = api_env(engine)
    case_id = api.start_aid()
    body = api.as_("vrep1").get(f"/cases/{case_id}").get_json()
    assert body["owner"] == "vrep1" and body["suspended"] is None and body["timers"] == []
    refused = api.as_("cadre1").post(f"/cases/{case_id}/owner", json={"to": "cadre1"})
    assert refused.status_code == 403
    unknown = api.as_("vrep1").post(f"/cases/{case_id}/owner", json={"to": "nobody"})
    assert unknown.status_code == 422 and "to" in error_of(unknown)["details"]
    moved = api.as_("chair1").post(f"/cases/{case_id}/owner", json={"to": "cadre1", "comment": "交镇里跟进"})
    assert moved.status_code == 200 and moved.get_json()["owner"] == "cadre1"
    history = api.as_("chair1").get(f"/cases/{case_id}/history").get_json()
    assert history[-1]["kind"] == "owner_changed" and history[-1]["changes"] == {"owner": ["vrep1", "cadre1"]}


def test_a_returned_application_goes_back_to_the_rep_who_filed_it(engine):
    api = api_env(engine)
    case_id = api.start_aid()
    api.service.fire(api.actor("vrep1"), case_id, "submit")
    api.service.fire(api.actor("cadre1"), case_id, "return", comment="请补充身份证")
    rows = api.as_("vrep1").get("/tasks?view=mine").get_json()
    assert [(r["case_id"], r["state"]) for r in rows] == [(case_id, "application")]


def test_suspend_and_resume_a_case(engine):
    api = api_env(engine)
    case_id = api.start_aid()
    api.service.fire(api.actor("vrep1"), case_id, "submit")
    no_reason = api.as_("vrep1").post(f"/cases/{case_id}/suspend", json={"comment": ""})
    assert no_reason.status_code == 422
    missing = api.as_("vrep1").post(f"/cases/{case_id}/suspend", json={})   # interfaces.md: comment missing is a 422
    assert missing.status_code == 422 and "comment" in error_of(missing)["details"]
    held = api.as_("vrep1").post(f"/cases/{case_id}/suspend", json={"comment": "申请人住院", "until": None})
    assert held.status_code == 200
    body = held.get_json()
    assert body["suspended"]["comment"] == "申请人住院" and body["suspended"]["by"] == "vrep1"
    assert body["actions"] == [] and body["tasks"][0]["suspended"] is True
    again = api.as_("vrep1").post(f"/cases/{case_id}/suspend", json={"comment": "又住院"})
    assert again.status_code == 409
    fired = api.as_("cadre1").post(f"/cases/{case_id}/actions/surveyed", json={"data": {}})
    assert fired.status_code == 409
    due = api.as_("cadre1").get(f"/cases/{case_id}").get_json()["tasks"][0]["due_at"]
    api.clock.advance(days=4)
    resumed = api.as_("manager").post(f"/cases/{case_id}/resume", json={"comment": "出院"})
    assert resumed.status_code == 200 and resumed.get_json()["suspended"] is None
    later = resumed.get_json()["tasks"][0]["due_at"]
    assert later > due
    assert api.as_("vrep1").post(f"/cases/{case_id}/resume", json={}).status_code == 409
    bad_day = api.as_("vrep1").post(f"/cases/{case_id}/suspend", json={"comment": "x", "until": "tomorrow"})
    assert bad_day.status_code == 422 and "until" in error_of(bad_day)["details"]
    dated = api.as_("vrep1").post(f"/cases/{case_id}/suspend", json={"comment": "x", "until": "2099-01-31"})
    assert dated.get_json()["suspended"]["until"].startswith("2099-01-3")


def test_suspend_and_resume_a_task(engine):
    api = api_env(engine)
    case_id = api.start_aid()
    task_id = api.open_task(case_id)
    assert api.as_("cadre1").post(f"/tasks/{task_id}/suspend", json={"comment": "x"}).status_code == 403
    held = api.as_("vrep1").post(f"/tasks/{task_id}/suspend", json={"comment": "等村委盖章"})
    assert held.status_code == 200 and held.get_json()["suspended"] is True
    no_reason = api.as_("vrep1").post(f"/tasks/{task_id}/suspend", json={})   # "comment missing": 422
    assert no_reason.status_code == 422 and "comment" in error_of(no_reason)["details"]
    resumed = api.as_("vrep1").post(f"/tasks/{task_id}/resume", json={})
    assert resumed.status_code == 200 and resumed.get_json()["suspended"] is False


def test_notes_and_mentions(engine):
    api = api_env(engine)
    case_id = api.start_aid()
    made = api.as_("vrep1").post(f"/cases/{case_id}/notes", json={"text": "已电话联系 @cadre1", "mentions": ["chair1"]})
    assert made.status_code == 201
    event = made.get_json()
    assert event["kind"] == "note" and event["changes"]["mentions"][1] == ["chair1", "cadre1"]
    hidden = api.as_("vrep1").post(f"/cases/{case_id}/notes", json={"text": "看看", "mentions": ["vrep2"]})
    assert hidden.status_code == 422 and "mentions" in error_of(hidden)["details"]
    assert api.as_("vrep2").post(f"/cases/{case_id}/notes", json={"text": "x"}).status_code == 404
    told = api.as_("cadre1").get("/me/notifications").get_json()
    assert any(n["kind"] == "mention" and n["case_id"] == case_id for n in told)


def test_a_consult_is_asked_and_answered(engine):
    api = api_env(engine)
    case_id = api.start_aid()
    task_id = api.open_task(case_id)
    for question in ({}, {"comment": ""}):   # no question: 422 on comment, nothing written
        refused = api.as_("vrep1").post(f"/tasks/{task_id}/consult", json={"to": "chair1", **question})
        assert refused.status_code == 422 and "comment" in error_of(refused)["details"]
    asked = api.as_("vrep1").post(f"/tasks/{task_id}/consult", json={"to": "chair1", "comment": "收入怎么算？"})
    assert asked.status_code == 201
    consult = asked.get_json()
    assert consult["kind"] == "consult" and consult["assignee"] == "chair1" and consult["consult_of"] == task_id
    mine = api.as_("chair1").get("/tasks?view=mine").get_json()
    assert [r["id"] for r in mine] == [consult["id"]]
    assert api.as_("chair1").post(f"/tasks/{consult['id']}/done", json={}).status_code == 422
    answered = api.as_("chair1").post(f"/tasks/{consult['id']}/done", json={"comment": "按家庭人均"})
    assert answered.status_code == 200 and answered.get_json()["status"] == "completed"
    history = api.as_("vrep1").get(f"/cases/{case_id}/history").get_json()
    assert [e["kind"] for e in history][-2:] == ["consulted", "consult_answered"]
    assert api.as_("vrep1").get(f"/cases/{case_id}").get_json()["tasks"][0]["assignee"] == "vrep1"


def test_put_me_away_and_a_manager_marks_someone_away(engine):
    api = api_env(engine)
    case_id = api.start_aid()                   # its application is allocated to vrep1, the filer
    task_id = api.open_task(case_id)
    until = (api.engine.today() + timedelta(days=5)).isoformat()
    past = api.as_("vrep1").call("PUT", "/me/away", json={"until": "2000-01-01", "delegate": "cadre1"})
    assert past.status_code == 422
    away = api.as_("vrep1").call("PUT", "/me/away", json={"until": until, "delegate": "chair1"})
    assert away.status_code == 200
    body = away.get_json()
    assert body["away_until"] == until and body["delegate"] == "chair1"
    assert body["kept"] == [task_id]            # the town chair holds no village rep's role
    back = api.as_("vrep1").call("PUT", "/me/away", json={"until": None})
    assert back.status_code == 200 and back.get_json()["away_until"] is None
    outsider = api.as_("chair2").call("PUT", "/users/vrep1/away", json={"until": until, "delegate": "chair1"})
    assert outsider.status_code == 404
    managed = api.as_("chair1").call("PUT", "/users/vrep1/away", json={"until": until, "delegate": "cadre1"})
    assert managed.status_code == 200
    with api.engine.session_factory() as s:
        person = s.scalars(select(User).where(User.username == "vrep1")).one()
        deputy = s.scalars(select(User).where(User.username == "cadre1")).one()
        assert person.delegate_to_id == deputy.id



def test_someone_who_manages_nothing_may_not_mark_others_away_403_and_nothing_changes(engine):
    """interfaces.md: PUT /users/{username}/away is for managers and admins; like the people API,
    anyone else gets a 403 (not a 404), the same whether the person exists or not."""
    api = api_env(engine)
    until = (api.engine.today() + timedelta(days=5)).isoformat()
    with api.engine.session_factory() as s:
        events = s.scalar(select(func.count(AuditEvent.id)))
    refused = api.as_("cadre1").call("PUT", "/users/vrep1/away", json={"until": until, "delegate": "cadre1"})
    assert refused.status_code == 403
    error = refused.get_json()["error"]
    assert error["code"] == "forbidden" and error["message"].index("负责人") < error["message"].index("managers")
    ghost = api.as_("cadre1").call("PUT", "/users/nobody-here/away", json={"until": until, "delegate": "cadre1"})
    assert ghost.status_code == 403 and ghost.get_json() == refused.get_json()
    with api.engine.session_factory() as s:
        person = s.scalars(select(User).where(User.username == "vrep1")).one()
        assert person.away_until is None and person.delegate_to_id is None
        assert s.scalar(select(func.count(AuditEvent.id))) == events
    herself = api.as_("cadre1").call("PUT", "/users/cadre1/away", json={"until": until, "delegate": "cadre1b"})
    assert herself.status_code == 200 and herself.get_json()["delegate"] == "cadre1b"

def test_every_list_of_the_additions_is_paged_like_get_cases(engine):
    """interfaces.md, "Additions": "Every list is paged like GET /cases" — page and per_page in the
    query, X-Total-Count, X-Page, X-Per-Page and X-Pages in the answer."""
    api = api_env(engine)
    me = api.as_("cadre1")
    for name in ("1 逾期", "2 本周", "3 全部"):
        assert me.post("/me/views", json={"name": name, "query": "view=mine"}).status_code == 201
    second = me.get("/me/views?page=2&per_page=2")
    assert second.status_code == 200 and [v["name"] for v in second.get_json()] == ["3 全部"]
    assert (second.headers["X-Total-Count"], second.headers["X-Page"], second.headers["X-Per-Page"],
            second.headers["X-Pages"]) == ("3", "2", "2", "2")
    dv = api.start_dv()                          # her consent to every agency is recorded
    consents = api.as_("ccadre").get(f"/cases/{dv}/consents?per_page=1")
    assert consents.status_code == 200 and len(consents.get_json()) == 1
    assert int(consents.headers["X-Total-Count"]) > 1
    for path in ("/external-tasks/incidents?page=1", "/webhooks?page=1", "/me/notifications?page=1",
                 "/users?page=1", "/org-units?page=1"):
        answer = api.as_("admin").get(path)
        assert answer.status_code == 200 and "X-Total-Count" in answer.headers, path
    bad = me.get("/me/views?page=0")
    assert bad.status_code == 400 and "page" in error_of(bad)["details"]


def test_the_list_of_processes_and_a_case_history_are_paged_like_get_cases_too(engine):
    """interfaces.md: "Every list is paged like GET /cases" holds for the first lists of the
    contract as well: GET /processes (by key) and GET /cases/{id}/history (oldest first)."""
    api = api_env(engine)
    me = api.as_("vrep1")
    every = me.get("/processes")
    assert every.status_code == 200 and every.headers["X-Total-Count"] == str(len(every.get_json()))
    assert (every.headers["X-Page"], every.headers["X-Per-Page"], every.headers["X-Pages"]) == ("1", "50", "1")
    keys = [p["process"] for p in every.get_json()]
    second = me.get("/processes?page=2&per_page=2")
    assert second.status_code == 200 and [p["process"] for p in second.get_json()] == keys[2:4]
    assert (second.headers["X-Total-Count"], second.headers["X-Page"], second.headers["X-Per-Page"]) == (
        str(len(keys)), "2", "2")
    case_id = api.start_aid()
    assert me.post(f"/cases/{case_id}/notes", json={"text": "材料已收"}).status_code == 201
    history = me.get(f"/cases/{case_id}/history")
    kinds = [e["kind"] for e in history.get_json()]
    assert history.status_code == 200 and kinds[0] == "started" and kinds[-1] == "note"
    assert history.headers["X-Total-Count"] == str(len(kinds)) and history.headers["X-Pages"] == "1"
    last = me.get(f"/cases/{case_id}/history?per_page=1&page={len(kinds)}")
    assert [e["kind"] for e in last.get_json()] == ["note"] and last.headers["X-Pages"] == str(len(kinds))
    for path in ("/processes?page=0", f"/cases/{case_id}/history?per_page=201"):
        bad = me.get(path)
        assert bad.status_code == 400 and error_of(bad)["details"], path
    hidden = api.as_("vrep2").get(f"/cases/{case_id}/history?page=1")
    missing = api.as_("vrep2").get("/cases/999999/history?page=1")
    assert hidden.status_code == missing.status_code == 404 and hidden.get_json() == missing.get_json()


def test_every_details_message_says_what_is_wrong_in_chinese_first_then_english(engine):
    """interfaces.md: ``details`` names each field and what is wrong with it; the house rule: every
    message zh_CN first, English second (these were bare English words, or English first)."""
    import re
    api = api_env(engine)
    case_id = api.start_aid()
    task_id = api.open_task(case_id)
    future = (api.engine.today() + timedelta(days=5)).isoformat()
    refusals = [
        api.as_("vrep1").get("/cases?state=nope"),
        api.as_("vrep1").get("/cases?org_unit=nope"),
        api.as_("vrep1").get("/tasks?process=nope"),
        api.as_("manager").get("/ledger?fund=nope"),
        api.as_("vrep1").call("PUT", "/me/away", json={"until": future, "delegate": "ghost"}),
        api.as_("vrep1").call("PUT", "/me/away", json={"until": "2000-01-01", "delegate": "chair1"}),
        api.as_("vrep1").post(f"/cases/{case_id}/owner", json={"to": "vrep1"}),
        api.as_("vrep1").post(f"/tasks/{task_id}/consult", json={"to": "vrep1", "comment": "?"}),
        api.as_("admin").post("/users", json={"username": "vrep1", "name": "again"}),
        api.as_("admin").call("PATCH", "/users/admin", json={"active": False}),
        api.as_("admin").post("/external-tasks/fetch-and-lock", json={"worker_id": "w", "topics": []}),
        api.as_("manager").post(f"/tasks/{task_id}/reassign", json={"to": "ghost"}),
        api.as_("manager").post(f"/tasks/{task_id}/reassign", json={"to": "manager2"}),
        api.as_("vrep1").post("/cases", json={"process": "poor_mother_aid", "org_unit": "nope", "data": {}}),
    ]
    for answer in refusals:
        details = error_of(answer)["details"]
        assert answer.status_code in (400, 409, 422) and details, answer.get_json()
        for field, text in details.items():
            zh, _, en = text.partition(" / ")
            assert re.search(r"[\u4e00-\u9fff]", zh) and en and not re.search(r"[\u4e00-\u9fff]", en), \
                (answer.request.path, field, text)
