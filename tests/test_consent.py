"""Survivors' data protection (protection.md): consent per agency with the overseer's override,
referrals accepted or declined, and the access log, on SQLite and PostgreSQL.

The domestic-violence complaint (definitions/dv_complaint.yaml) refers a case to the police,
legal aid and the court, each only with her consent to that agency, each accepted or declined.
Every refusal is checked to have written nothing.
"""
from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from hexie.models import AccessLogEntry, AuditEvent, Consent, Notification, Task
from hexie.workflows.consent import Protection, case_owner

from .api_support import ApiEnv, api_env, error_of

MISSING = 999_999
REFER = {"abuser_relation": "spouse", "violence_kinds": ["physical"], "risk_level": "high",
         "consent_to_share": True, "intake_assessment": "需转介",
         "referred_to": ["police", "legal_aid", "court"]}   # the agencies chosen; each still waits for her consent


@pytest.fixture
def env(engine) -> ApiEnv:
    return api_env(engine)


def _refer(env: ApiEnv, consent: tuple[str, ...] = ()) -> int:
    """A complaint (started by ccadre) with her consent to ``consent``, referred."""
    case_id = env.start_dv(consent=False)
    for agency in consent:
        assert env.as_("ccadre").post(f"/cases/{case_id}/consents", {"agency": agency}).status_code == 201
    env.service.fire(env.actor("ccadre"), case_id, "refer", REFER)
    return case_id


def _tasks(env: ApiEnv, case_id: int) -> dict[str, Task]:
    with env.engine.session_factory() as s:
        rows = s.scalars(select(Task).where(Task.case_id == case_id).order_by(Task.id)).all()
        return {t.name: t for t in rows}


def _written(env: ApiEnv, case_id: int) -> tuple:
    """Everything a refused call must leave as it was (the case, its tasks, consents, events, log)."""
    with env.engine.session_factory() as s:
        tasks = s.execute(select(Task.id, Task.status, Task.assignee_id, Task.accepted_at, Task.note)
                          .where(Task.case_id == case_id).order_by(Task.id)).all()
        counts = [s.scalar(select(func.count()).select_from(table).where(table.case_id == case_id))
                  for table in (Consent, AuditEvent, Notification)]
    return env.snapshot(case_id), tuple(map(tuple, tasks)), tuple(counts)


# ------------------------------------------------------------------------- consent

def test_referrals_wait_for_her_consent_and_open_when_it_is_recorded(env):
    case_id = _refer(env, consent=("legal_aid",))
    tasks = _tasks(env, case_id)
    assert {n: t.status for n, t in tasks.items() if n != "intake"} == {
        "police": "waiting", "legal_aid": "offered", "court": "waiting"}
    assert tasks["police"].due_at is None                 # a waiting task is nobody's work yet
    police = env.as_("police1")
    assert case_id not in {t["case_id"] for t in police.get("/tasks?view=available").get_json()}
    assert police.get(f"/cases/{case_id}").status_code == 404      # nothing offered to her: no case
    view = env.as_("ccadre").get(f"/cases/{case_id}").get_json()
    assert {r["name"]: r["status"] for r in view["referrals"]} == {
        "police": "waiting", "legal_aid": "offered", "court": "waiting"}
    assert {r["name"]: r["agency"] for r in view["referrals"]}["police"] == "police"

    env.clock.advance(hours=2)
    r = env.as_("ccadre").post(f"/cases/{case_id}/consents", {"agency": "police", "note": "当面确认"})
    assert r.status_code == 201
    body = r.get_json()
    assert body["agency"] == "police" and body["scope"] == "services" and body["given"] is True
    assert body["recorded_by"] == "ccadre" and not body["override"]
    police_task = _tasks(env, case_id)["police"]
    assert police_task.status == "offered" and police_task.due_at == env.clock() + timedelta(days=3)
    assert case_id in {t["case_id"] for t in police.get("/tasks?view=available").get_json()}
    assert police.get(f"/cases/{case_id}").get_json()["masked"] is True
    consents = env.as_("ccadre").get(f"/cases/{case_id}/consents").get_json()
    assert [(c["agency"], c["given"]) for c in consents] == [("legal_aid", True), ("police", True)]
    kinds = [e["kind"] for e in env.as_("ccadre").get(f"/cases/{case_id}/history").get_json()]
    assert kinds.count("consent_given") == 2


def test_consent_for_statistics_does_not_open_a_referral(env):
    case_id = _refer(env)
    r = env.as_("ccadre").post(f"/cases/{case_id}/consents", {"agency": "police", "scope": "statistics"})
    assert r.status_code == 201
    assert _tasks(env, case_id)["police"].status == "waiting"


def test_refused_consents_write_nothing(env):
    case_id = _refer(env)
    before = _written(env, case_id)
    ccadre = env.as_("ccadre")
    r = ccadre.post(f"/cases/{case_id}/consents", {"agency": "polise"})
    assert r.status_code == 422 and "did you mean 'police'" in error_of(r)["details"]["agency"]
    r = ccadre.post(f"/cases/{case_id}/consents", {"agency": "police", "scope": "everything"})
    assert r.status_code == 422 and "scope" in error_of(r)["details"]
    assert ccadre.post(f"/cases/{case_id}/consents", {"scope": "services"}).status_code == 400
    assert ccadre.post(f"/cases/{case_id}/consents", {"agency": "police", "given": "yes"}).status_code == 400
    # a colleague who does not work the case, another town's police: the 404 of a missing case
    for outsider in ("police2", "cadre1", "legal"):
        hidden = env.as_(outsider).post(f"/cases/{case_id}/consents", {"agency": "police"})
        missing = env.as_(outsider).post(f"/cases/{MISSING}/consents", {"agency": "police"})
        assert hidden.status_code == missing.status_code == 404 and hidden.get_json() == missing.get_json()
    assert env.as_("police2").get(f"/cases/{case_id}/consents").status_code == 404
    # an override: only an overseer, only with a reason
    r = ccadre.post(f"/cases/{case_id}/consents/override", {"agency": "police", "reason": "紧迫危险"})
    assert r.status_code == 403
    r = env.as_("manager").post(f"/cases/{case_id}/consents/override", {"agency": "police", "reason": "  \u200b "})
    assert r.status_code == 422 and "reason" in error_of(r)["details"]
    assert _written(env, case_id) == before


def test_a_task_offered_to_her_is_not_enough_to_record_consent(env):
    case_id = _refer(env, consent=("police",))
    before = _written(env, case_id)
    r = env.as_("police1").post(f"/cases/{case_id}/consents", {"agency": "court"})
    assert r.status_code == 403                 # she sees the case (masked) but does not work it yet
    assert _written(env, case_id) == before
    # once she has accepted her referral she works the case, but the consent is not the agency's to record
    police_task = _tasks(env, case_id)["police"].id
    assert env.as_("police1").post(f"/tasks/{police_task}/accept").status_code == 200
    before = _written(env, case_id)
    assert env.as_("police1").post(f"/cases/{case_id}/consents", {"agency": "court"}).status_code == 403
    assert env.as_("police1").post(f"/cases/{case_id}/consents/withdraw", {"agency": "police"}).status_code == 403
    assert _written(env, case_id) == before
    assert env.as_("police1").get(f"/cases/{case_id}").get_json()["data"]["victim_name"] != "***"


def test_withdrawing_consent_cancels_the_agencys_open_referral(env):
    case_id = _refer(env, consent=("police", "legal_aid"))
    tasks = _tasks(env, case_id)
    assert env.as_("police1").post(f"/tasks/{tasks['police'].id}/accept").status_code == 200
    r = env.as_("ccadre").post(f"/cases/{case_id}/consents/withdraw", {"agency": "police", "note": "她改变主意"})
    assert r.status_code == 201 and r.get_json()["given"] is False
    tasks = _tasks(env, case_id)
    assert tasks["police"].status == "cancelled" and tasks["legal_aid"].status == "offered"
    # the same through POST /consents with given: false, for legal aid
    r = env.as_("ccadre").post(f"/cases/{case_id}/consents", {"agency": "legal_aid", "given": False})
    assert r.status_code == 201
    assert _tasks(env, case_id)["legal_aid"].status == "cancelled"
    view = env.as_("ccadre").get(f"/cases/{case_id}").get_json()
    assert view["tasks"] == []
    assert {r["name"]: r["status"] for r in view["referrals"]} == {
        "police": "cancelled", "legal_aid": "cancelled", "court": "waiting"}
    # nothing left open: the cadre moves on (a waiting referral ends with its state)
    assert env.as_("ccadre").post(f"/cases/{case_id}/actions/referral_done", {}).status_code == 200
    assert _tasks(env, case_id)["court"].status == "cancelled"


def test_an_overseer_opens_a_referral_without_consent_for_a_written_reason(env):
    case_id = _refer(env)
    r = env.as_("manager").post(f"/cases/{case_id}/consents/override",
                                {"agency": "police", "reason": "施暴人持刀威胁，紧迫危险"})
    assert r.status_code == 201 and r.get_json()["override"] is True
    task = _tasks(env, case_id)["police"]
    assert task.status == "offered" and task.note == "施暴人持刀威胁，紧迫危险"
    history = env.as_("manager").get(f"/cases/{case_id}/history").get_json()
    (event,) = [e for e in history if e["kind"] == "consent_overridden"]
    assert event["actor"] == "manager" and event["comment"] == "施暴人持刀威胁，紧迫危险"
    view = env.as_("ccadre").get(f"/cases/{case_id}").get_json()
    assert [c["override"] for c in view["consents"]] == [True]
    assert {r["name"]: r["note"] for r in view["referrals"]}["police"] == "施暴人持刀威胁，紧迫危险"


def test_the_definition_check_names_an_unknown_agency():
    from hexie.workflows.loader import load_process_text
    text = (DEFINITION_DIR / "dv_complaint.yaml").read_text(encoding="utf-8")
    from hexie.workflows.loader import load_roles
    roles, _ = load_roles(DEFINITION_DIR / "roles.yaml")
    spec, problems = load_process_text(text.replace("consent: {agency: court}", "consent: {agency: cuort}"),
                                       "dv_complaint.yaml", roles)
    (problem,) = [p for p in problems if "cuort" in str(p)]
    assert "did you mean 'court'" in str(problem) and problem.line > 0 and problem.column > 0
    spec, problems = load_process_text(text, "dv_complaint.yaml", roles)
    assert not [p for p in problems if p.severity == "error"]
    police = spec.state("referral").task("police")
    assert police.consent == "police" and police.acceptance


# ---------------------------------------------------------------------- acceptance

def test_a_referral_is_accepted_by_whoever_takes_it_first(env):
    case_id = _refer(env, consent=("police", "legal_aid"))
    tasks = _tasks(env, case_id)
    view = env.as_("police1").get(f"/cases/{case_id}").get_json()
    (row,) = [t for t in view["tasks"] if t["name"] == "police"]
    assert row["acceptance"] is True and row["accepted"] is False
    r = env.as_("police1").post(f"/tasks/{tasks['police'].id}/accept")
    assert r.status_code == 200 and r.get_json()["assignee"] == "police1" and r.get_json()["status"] == "allocated"
    before = _written(env, case_id)
    assert env.as_("police1").post(f"/tasks/{tasks['police'].id}/accept").status_code == 409
    assert env.as_("police1").post(f"/tasks/{tasks['police'].id}/decline", {"comment": "x"}).status_code == 409
    assert _written(env, case_id) == before
    task = _tasks(env, case_id)["police"]
    assert task.accepted_by_id == env.actor("police1").user_id and task.accepted_at is not None
    # claiming a referral is taking it first too: it accepts
    assert env.as_("legal").post(f"/tasks/{tasks['legal_aid'].id}/claim").status_code == 200
    assert _tasks(env, case_id)["legal_aid"].accepted_at is not None
    kinds = [e["kind"] for e in env.as_("ccadre").get(f"/cases/{case_id}/history").get_json()]
    assert kinds.count("referral_accepted") == 2 and "claimed" not in kinds


def test_a_declined_referral_needs_a_reason_and_returns_to_the_case_owner(env):
    case_id = _refer(env, consent=("police", "legal_aid"))
    tasks = _tasks(env, case_id)
    legal = env.as_("legal")
    before = _written(env, case_id)
    r = legal.post(f"/tasks/{tasks['legal_aid'].id}/decline", {"comment": "   "})
    assert r.status_code == 422 and "comment" in error_of(r)["details"]
    no_reason = legal.post(f"/tasks/{tasks['legal_aid'].id}/decline", {})   # "comment missing": 422
    assert no_reason.status_code == 422 and "comment" in error_of(no_reason)["details"]
    # not hers to decline: another town's police gets the 404 of a missing task
    hidden = env.as_("police2").post(f"/tasks/{tasks['police'].id}/decline", {"comment": "不归我们管"})
    missing = env.as_("police2").post(f"/tasks/{MISSING}/decline", {"comment": "不归我们管"})
    assert hidden.status_code == missing.status_code == 404 and hidden.get_json() == missing.get_json()
    r = env.as_("ccadre").post(f"/tasks/{tasks['intake'].id}/decline", {"comment": "x"})
    assert r.status_code in (404, 409)              # the intake is closed, and never a referral
    assert _written(env, case_id) == before

    r = legal.post(f"/tasks/{tasks['legal_aid'].id}/decline", {"comment": "当事人已委托私人律师"})
    assert r.status_code == 200 and r.get_json()["status"] == "declined"
    task = _tasks(env, case_id)["legal_aid"]
    assert task.status == "declined" and task.note == "当事人已委托私人律师" and task.accepted_at is None
    with env.engine.session_factory() as s:
        (told,) = s.scalars(select(Notification).where(Notification.case_id == case_id,
                                                       Notification.kind == "referral_declined")).all()
        from hexie.models import Case
        assert told.user_id == case_owner(s.get(Case, case_id)) == env.actor("ccadre").user_id
    view = env.as_("ccadre").get(f"/cases/{case_id}").get_json()
    (declined,) = [r for r in view["referrals"] if r["name"] == "legal_aid"]
    assert declined["status"] == "declined" and declined["note"] == "当事人已委托私人律师"
    assert declined["completed_by"] == "legal"
    # the agency that declined keeps no sight of the survivor's case
    hidden, missing = legal.get(f"/cases/{case_id}"), legal.get(f"/cases/{MISSING}")
    assert hidden.status_code == missing.status_code == 404 and hidden.get_json() == missing.get_json()
    assert case_id not in {c["id"] for c in legal.get("/cases").get_json()}
    # the rest of the referral goes on; the declined one no longer holds it up
    env.as_("police1").post(f"/tasks/{tasks['police'].id}/accept")
    assert env.as_("police1").post(f"/tasks/{tasks['police'].id}/done",
                                   {"data": {"police_action": "出警并告诫"}}).status_code == 200
    assert env.as_("ccadre").post(f"/cases/{case_id}/actions/referral_done", {}).get_json()["state"] == "adjudication"


def test_accepting_what_is_not_a_referral_is_refused(env):
    case_id = env.start_aid()
    (task_id,) = [t.id for t in _tasks(env, case_id).values()]
    before = _written(env, case_id)
    r = env.as_("vrep1").post(f"/tasks/{task_id}/accept")
    assert r.status_code == 422
    assert _written(env, case_id) == before


# ---------------------------------------------------------------------- access log

def _log(env: ApiEnv, case_id: int) -> list[tuple[str, str, str | None]]:
    with env.engine.session_factory() as s:
        return [tuple(r) for r in s.execute(select(AccessLogEntry.username, AccessLogEntry.what,
                                                   AccessLogEntry.remote_addr)
                                            .where(AccessLogEntry.case_id == case_id)
                                            .order_by(AccessLogEntry.id)).all()]


def test_every_read_of_a_confidential_case_is_logged_and_the_log_is_for_those_working_it(env):
    case_id = _refer(env, consent=("police",))
    assert _log(env, case_id) == []
    ccadre = env.as_("ccadre")
    assert ccadre.get(f"/cases/{case_id}", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200
    assert ccadre.get(f"/cases/{case_id}/history").status_code == 200
    assert _log(env, case_id) == [("ccadre", "case", "10.1.2.3"), ("ccadre", "history", "127.0.0.1")]
    r = ccadre.get(f"/cases/{case_id}/access-log")
    assert r.status_code == 200 and r.headers["X-Total-Count"] == "3"
    rows = r.get_json()
    assert [(e["username"], e["what"]) for e in rows] == [
        ("ccadre", "access_log"), ("ccadre", "history"), ("ccadre", "case")]   # newest first, itself included
    assert rows[2]["remote_addr"] == "10.1.2.3"
    # the overseer reads it (and is logged); the police desk once she works the case
    assert env.as_("manager").get(f"/cases/{case_id}/access-log").status_code == 200
    police_task = _tasks(env, case_id)["police"].id
    police = env.as_("police1")
    assert police.get(f"/cases/{case_id}").status_code == 200          # offered to her: she sees it, masked
    count = len(_log(env, case_id))
    hidden = police.get(f"/cases/{case_id}/access-log")
    missing = police.get(f"/cases/{MISSING}/access-log")
    assert hidden.status_code == missing.status_code == 404 and hidden.get_json() == missing.get_json()
    for outsider in ("police2", "cadre1", "legal", "vrep1"):
        hidden = env.as_(outsider).get(f"/cases/{case_id}/access-log")
        assert hidden.status_code == 404 and hidden.get_json() == missing.get_json()
        assert env.as_(outsider).get(f"/cases/{case_id}").status_code == 404
    assert len(_log(env, case_id)) == count            # refused reads are not reads: nothing logged
    police.post(f"/tasks/{police_task}/accept")
    assert police.get(f"/cases/{case_id}/access-log").status_code == 200
    assert [w for _, w, _ in _log(env, case_id)].count("access_log") == 3


def test_reads_of_an_ordinary_case_are_not_logged(env):
    case_id = env.start_aid()
    assert env.as_("vrep1").get(f"/cases/{case_id}").status_code == 200
    assert env.as_("vrep1").get(f"/cases/{case_id}/history").status_code == 200
    assert _log(env, case_id) == []


def test_the_access_log_write_is_one_insert(env, monkeypatch):
    """The read's one extra statement: an INSERT into the access log (and nothing else written)."""
    from sqlalchemy import event
    case_id = _refer(env, consent=("police",))
    statements: list[str] = []
    db = env.engine.session_factory.kw["bind"]

    def seen(conn, cursor, statement, *args):
        statements.append(" ".join(statement.split()[:3]).upper())

    event.listen(db, "before_cursor_execute", seen)
    try:
        env.as_("ccadre").get(f"/cases/{case_id}")
    finally:
        event.remove(db, "before_cursor_execute", seen)
    logged = [s for s in statements if "HEXIE_ACCESS_LOG" in s]
    assert logged == ["INSERT INTO HEXIE_ACCESS_LOG"]
    assert not [s for s in statements if s.startswith(("UPDATE HEXIE_CASES", "UPDATE HEXIE_TASKS", "DELETE"))]


# ------------------------------------------------------------------------- the page

def test_the_case_page_shows_consent_referrals_and_the_access_log(session_factory, tmp_path):
    from .test_web import new_complaint, page_text
    from .web_helpers import make_web_env
    web = make_web_env(session_factory, tmp_path)
    case_id = new_complaint(web, consent=False)
    cadre = web.client("cc1")
    r = cadre.post(f"/cases/{case_id}/consents", data={"agency": "police", "scope": "services", "given": "1"})
    assert r.status_code == 302
    web.service.fire(web.actor("cc1"), case_id, "refer", REFER)
    page = page_text(cadre.get(f"/cases/{case_id}"))
    assert "当事人同意（按机构）" in page and "等待当事人同意" in page and "查阅记录" in page
    assert f"/cases/{case_id}/consents" in page
    # the police desk: accept or decline, no claim button
    police_id = next(t.id for t in _tasks_of(web, case_id) if t.name == "police")
    police = web.client("pl1")
    page = page_text(police.get(f"/cases/{case_id}"))
    assert f"/tasks/{police_id}/accept" in page and f"/tasks/{police_id}/decline" in page
    assert f"/tasks/{police_id}/claim" not in page and "查阅记录" not in page   # not working it yet
    before = _tasks_of(web, case_id)
    r = police.post(f"/tasks/{police_id}/decline", data={"comment": ""}, follow_redirects=True)
    assert "拒绝转介须说明理由" in page_text(r)
    assert [(t.id, t.status) for t in _tasks_of(web, case_id)] == [(t.id, t.status) for t in before]
    assert police.post(f"/tasks/{police_id}/accept").status_code == 302
    page = page_text(police.get(f"/cases/{case_id}"))
    assert "接受" in page and "查阅记录" in page
    with web.engine.session_factory() as s:
        reads = s.scalars(select(AccessLogEntry.what).where(AccessLogEntry.case_id == case_id)).all()
    assert reads == ["page"] * 3          # the cadre once, the police desk twice
    # the overseer's override form is hers alone
    assert "紧急情况下未经同意转介" in page_text(web.client("cm1").get(f"/cases/{case_id}"))
    assert "紧急情况下未经同意转介" not in page_text(cadre.get(f"/cases/{case_id}"))


def _tasks_of(web, case_id: int) -> list[Task]:
    with web.engine.session_factory() as s:
        return s.scalars(select(Task).where(Task.case_id == case_id).order_by(Task.id)).all()


from .api_support import DEFINITIONS as DEFINITION_DIR  # noqa: E402


# ------------------------------------------------- consent in a definition of one's own

OWN_REFERRAL = """
process: own_referral
title: {zh: 转介, en: Referral}
confidential: true
fields:
  who: {type: text, sensitive: true}
states:
  - name: intake
    task: {role: county_cadre, form: [who]}
  - name: visit
    task: {role: county_cadre, assign: {owner: true}, consent: {agency: shelter}}
  - {name: done, final: true}
transitions:
  - {trigger: refer, source: intake, dest: visit}
  - {trigger: finish, source: visit, dest: done}
"""


def test_a_consent_agency_needs_no_declaration_and_the_opened_task_goes_where_assign_says(session_factory, tmp_path):
    """definitions.md: ``consent: {agency: AGENCY}`` on a task, no top-level ``agencies`` needed;
    once her consent opens the task it is allocated as any new task (here to the owner)."""
    from .engine_helpers import env_with
    env = env_with(session_factory, tmp_path / "d", own_referral=OWN_REFERRAL)
    assert [k for k, _ in env.engine.processes["own_referral"].agencies] == ["shelter"]
    cadre = env.actor("ccadre")
    case_id = env.service.start_case(cadre, "own_referral", "t01", {"who": "某女士"})
    env.service.fire(cadre, case_id, "refer")
    with env.engine.session_factory() as s:
        (task,) = s.scalars(select(Task).where(Task.case_id == case_id, Task.state == "visit"))
        assert task.status == "waiting" and task.assignee_id is None
    Protection(env.engine).record_consent(cadre, case_id, "shelter")
    with env.engine.session_factory() as s:
        (task,) = s.scalars(select(Task).where(Task.case_id == case_id, Task.state == "visit"))
        assert task.status == "allocated" and task.assignee_id == cadre.user_id


SINGLE_REFERRAL = """
process: single_referral
title: {zh: 单一转介, en: One referral}
confidential: true
fields:
  who: {type: text, sensitive: true}
states:
  - name: intake
    task: {role: county_cadre, form: [who]}
  - name: police
    task: {role: police_liaison, acceptance: true}
  - {name: done, final: true}
transitions:
  - {trigger: refer, source: intake, dest: police}
  - {trigger: handled, source: police, dest: done}
  - {trigger: refer_again, source: police, dest: intake, roles: [county_cadre]}
"""


def test_acceptance_on_a_single_task_is_accepted_or_declined_back_to_the_owner(session_factory, tmp_path):
    """definitions.md: ``acceptance: true`` is a key of a task (a single one too): whoever takes it
    first accepts or declines it; declining needs a reason and tells the case owner."""
    from hexie.models import Case, Notification
    from hexie.workflows.errors import Invalid
    from .engine_helpers import env_with
    env = env_with(session_factory, tmp_path / "d", single_referral=SINGLE_REFERRAL)
    cadre, police = env.actor("ccadre"), env.actor("police")
    protection = Protection(env.engine)

    def referral(case_id):
        with env.engine.session_factory() as s:
            return s.scalars(select(Task).where(Task.case_id == case_id, Task.state == "police")).one()

    first = env.service.start_case(cadre, "single_referral", "t01", {"who": "某女士"})
    env.service.fire(cadre, first, "refer")
    protection.accept(police, referral(first).id)
    task = referral(first)
    assert task.status == "allocated" and task.assignee_id == police.user_id and task.accepted_at is not None
    env.service.fire(police, first, "handled")

    second = env.service.start_case(cadre, "single_referral", "t01", {"who": "某女士"})
    env.service.fire(cadre, second, "refer")
    with pytest.raises(Invalid):
        protection.decline(police, referral(second).id, "  ")
    protection.decline(police, referral(second).id, "不在本所辖区")
    task = referral(second)
    assert task.status == "declined" and task.note == "不在本所辖区"
    with env.engine.session_factory() as s:
        (told,) = s.scalars(select(Notification).where(Notification.case_id == second,
                                                       Notification.kind == "referral_declined")).all()
        assert told.user_id == case_owner(s.get(Case, second)) == cadre.user_id
    env.service.fire(cadre, second, "refer_again")     # the owner takes the work back
    assert env.queries.case(cadre, second)["state"] == "intake"
