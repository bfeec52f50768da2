"""The working day (issue 12): case owner and hand-over, who gets a task (assign user/owner/policy,
requires), hold and resume with the clocks standing still, notes with mentions, consults, away."""
from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select, update

from hexie.models import AuditEvent, Case, Notification, Task, Timer, User
from hexie.workflows.errors import Conflict, Forbidden, Invalid, NotFound

from .engine_helpers import env_with, make_env

WORKDAY = """
process: wd
title: {zh: 工作日, en: Working day}
org_level: town
fields:
  applicant_name: {type: text, required: true}
  worker: {type: user, label: {zh: 承办人, en: Caseworker}}
states:
  - name: application
    task: {role: village_rep, assign: {owner: true}, due: 3d, form: [applicant_name]}
  - name: survey
    task: {role: town_cadre, assign: {user: worker}, due: 7d, escalate: {after: 2d, to: town_chair}}
  - name: pool
    task: {role: town_cadre, assign: {policy: round_robin}}
  - name: queue
    task: {role: town_cadre, assign: {policy: shortest_queue}}
  - name: signing
    task: {role: town_cadre, requires: [sign_language]}
  - name: waiting
    timers: [{after: 10d, trigger: wake}]
  - name: closed
    final: true
transitions:
  - {trigger: submit, source: application, dest: survey, form: [worker]}
  - {trigger: return, source: survey, dest: application, comment: required}
  - {trigger: surveyed, source: survey, dest: pool}
  - {trigger: next, source: pool, dest: queue}
  - {trigger: next, source: queue, dest: signing}
  - {trigger: next, source: signing, dest: waiting}
  - {trigger: wake, source: waiting, dest: closed, roles: [system]}
  - {trigger: close, source: '*', dest: closed, roles: [town_chair]}
"""


@pytest.fixture
def env(session_factory, tmp_path):
    return env_with(session_factory, tmp_path / "defs", wd=WORKDAY)


def uid(env, username):
    return env.actor(username).user_id


def open_task(env, case_id, kind="work"):
    with env.engine.session_factory() as s:
        return s.scalars(select(Task).where(Task.case_id == case_id, Task.kind == kind,
                                            Task.status.in_(("offered", "allocated"))).order_by(Task.id)).first()


def start(env, worker="cadre2", who="rep"):
    rep = env.actor(who)
    case_id = env.service.start_case(rep, "wd", "t01v01", {"applicant_name": "李秀英"})
    env.service.fire(rep, case_id, "submit", {"worker": worker} if worker else {})
    return case_id


def to_state(env, target):
    case_id = start(env)
    env.service.fire(env.actor("cadre2"), case_id, "surveyed")
    while True:
        with env.engine.session_factory() as s:
            state = s.get(Case, case_id).state
        if state == target:
            return case_id
        holder = open_task(env, case_id)
        with env.engine.session_factory() as s:
            username = s.get(User, holder.assignee_id).username if holder.assignee_id else "cadre2"
        if holder.requires:
            with env.engine.transaction() as s:
                s.execute(update(User).where(User.username == username).values(capabilities=["sign_language"]))
        env.service.fire(env.actor(username), case_id, "next")


# ----------------------------------------------------------------------- owner

def test_the_starter_owns_the_case_and_a_return_goes_back_to_her(env):
    rep = env.actor("rep")
    case_id = env.service.start_case(rep, "wd", "t01v01", {"applicant_name": "李秀英"})
    assert env.queries.case(rep, case_id)["owner"] == "rep"
    assert open_task(env, case_id).assignee_id == uid(env, "rep")
    env.service.fire(rep, case_id, "submit", {"worker": "cadre2"})
    survey = open_task(env, case_id)
    assert (survey.status, survey.assignee_id, survey.flagged) == ("allocated", uid(env, "cadre2"), False)
    env.service.fire(env.actor("cadre2"), case_id, "return", comment="缺身份证复印件")
    back = open_task(env, case_id)
    assert (back.state, back.status, back.assignee_id) == ("application", "allocated", uid(env, "rep"))


def test_a_user_field_names_the_worker_else_the_role_is_offered_and_flagged(env):
    empty = start(env, worker=None)
    assert (open_task(env, empty).status, open_task(env, empty).flagged) == ("offered", False)
    wrong = start(env, worker="rep2")            # a village rep of another town: may not take it
    assert (open_task(env, wrong).status, open_task(env, wrong).flagged) == ("offered", True)
    row = next(r for r in env.queries.tasks(env.actor("cadre"), "available").items if r["case_id"] == wrong)
    assert row["flagged"] is True


def test_the_owner_or_a_manager_hands_a_case_over_with_her_open_tasks(env):
    rep = env.actor("rep")
    case_id = env.service.start_case(rep, "wd", "t01v01", {"applicant_name": "李秀英"})
    before = env.snapshot()
    with pytest.raises(Forbidden):
        env.service.hand_over_case(env.actor("cadre2"), case_id, "cadre")      # neither owner nor manager
    with pytest.raises(Invalid) as err:
        env.service.hand_over_case(rep, case_id, "fin")                        # no role of the process there
    assert "to" in err.value.details
    with pytest.raises(NotFound):
        env.service.hand_over_case(env.actor("rep2"), case_id, "cadre")        # may not see it
    assert env.snapshot() == before
    result = env.service.hand_over_case(rep, case_id, "cadre", "她负责东村")
    assert result["owner"] == "cadre" and result["moved"] == [open_task(env, case_id).id]
    assert open_task(env, case_id).assignee_id == uid(env, "cadre")
    with env.engine.session_factory() as s:
        event = s.scalars(select(AuditEvent).where(AuditEvent.case_id == case_id)
                          .order_by(AuditEvent.seq.desc())).first()
    assert (event.kind, event.changes, event.comment) == ("owner_changed", {"owner": ["rep", "cadre"]}, "她负责东村")
    env.service.hand_over_case(env.actor("chair"), case_id, "rep")          # the town chair manages t01
    assert env.queries.case(rep, case_id)["owner"] == "rep"


# -------------------------------------------------------------------- policies

def test_round_robin_takes_turns_and_shortest_queue_the_least_loaded(env):
    first, second, third = (to_state(env, "pool") for _ in range(3))
    holders = [open_task(env, c).assignee_id for c in (first, second, third)]
    cadre, cadre2 = uid(env, "cadre"), uid(env, "cadre2")
    assert holders[0] != holders[1] and holders[2] == holders[0] and set(holders) == {cadre, cadre2}
    # cadre2's turn done: she holds nothing now, cadre two (the shortest queue is cadre2's)
    env.service.fire(env.actor("cadre2" if holders[1] == cadre2 else "cadre"), second, "next")
    queued = open_task(env, second)
    assert queued.state == "queue" and queued.assignee_id == holders[1]


def test_requires_offers_the_task_only_to_holders_with_the_capability(env):
    with env.engine.transaction() as s:
        s.execute(update(User).where(User.username == "cadre2").values(capabilities=["sign_language"]))
    case_id = to_state(env, "signing")
    task = open_task(env, case_id)
    assert task.requires == "sign_language" and task.status == "offered"
    assert case_id in [r["case_id"] for r in env.queries.tasks(env.actor("cadre2"), "available").items]
    assert case_id not in [r["case_id"] for r in env.queries.tasks(env.actor("cadre"), "available").items]
    with pytest.raises(Forbidden):
        env.service.claim(env.actor("cadre"), task.id)
    env.service.claim(env.actor("cadre2"), task.id)


# ----------------------------------------------------------------- hold, resume

def test_a_held_case_refuses_actions_and_its_clocks_stand_still(env):
    case_id = start(env)
    cadre2, rep = env.actor("cadre2"), env.actor("rep")
    survey = open_task(env, case_id)
    with pytest.raises(Invalid):
        env.service.suspend_case(rep, case_id, "  ")                           # a reason is required
    with pytest.raises(Forbidden):
        env.service.suspend_case(env.actor("cadre"), case_id, "住院")          # neither owner nor manager
    env.service.suspend_case(rep, case_id, "申请人住院")
    view = env.queries.case(rep, case_id)
    assert view["suspended"]["comment"] == "申请人住院" and view["suspended"]["by"] == "rep"
    with pytest.raises(Conflict):
        env.service.fire(cadre2, case_id, "surveyed")
    assert env.queries.case(cadre2, case_id)["actions"] == []
    env.clock.advance(days=20)                                                  # past due and escalation
    assert env.service.escalate_overdue() == 0
    assert env.queries.case(cadre2, case_id)["tasks"][0]["overdue"] is False
    assert case_id not in [r["case_id"] for r in env.queries.tasks(cadre2, "overdue").items]
    env.service.resume_case(rep, case_id, "出院了")
    moved = open_task(env, case_id)
    assert moved.due_at - survey.due_at == timedelta(days=20)
    assert moved.escalate_at - survey.escalate_at == timedelta(days=20)
    assert env.queries.case(rep, case_id)["suspended"] is None
    env.service.fire(cadre2, case_id, "surveyed")


def test_timers_do_not_fire_while_held_and_move_on_by_the_time_held(env):
    case_id = to_state(env, "waiting")
    with env.engine.session_factory() as s:
        due = s.scalar(select(Timer.due_at).where(Timer.case_id == case_id, Timer.status == "pending"))
    env.service.suspend_case(env.actor("chair"), case_id, "家中有事")           # a manager of the area
    env.clock.advance(days=15)
    assert env.service.run_due_timers() == 0
    env.service.resume_case(env.actor("chair"), case_id)
    assert env.queries.case(env.actor("chair"), case_id)["timers"][0]["due_at"] == due + timedelta(days=15)
    env.clock.advance(days=9)
    assert env.service.run_due_timers() == 0
    env.clock.advance(days=2)
    assert env.service.run_due_timers() == 1


def test_a_hold_until_a_day_ends_by_itself(env):
    case_id = start(env)
    env.service.suspend_case(env.actor("rep"), case_id, "外出", until=env.clock() + timedelta(days=3))
    env.clock.advance(days=2)
    assert env.service.resume_due_holds() == 0
    env.clock.advance(days=2)
    assert env.service.resume_due_holds() == 1
    assert env.queries.case(env.actor("rep"), case_id)["suspended"] is None


def test_a_held_task_keeps_its_due_date_still(env):
    case_id = start(env)
    task = open_task(env, case_id)
    with pytest.raises(Forbidden):
        env.service.suspend_task(env.actor("cadre"), task.id, "等材料")
    env.service.suspend_task(env.actor("cadre2"), task.id, "等材料")
    row = next(r for r in env.queries.tasks(env.actor("cadre2"), "mine").items if r["id"] == task.id)
    assert row["suspended"] is True
    env.clock.advance(days=10)
    assert env.service.escalate_overdue() == 0
    env.service.resume_task(env.actor("cadre2"), task.id)
    assert open_task(env, case_id).due_at - task.due_at == timedelta(days=10)


# ------------------------------------------------------------ notes, consults

def test_a_note_mentions_only_people_who_may_see_the_case(env):
    case_id = start(env)
    rep = env.actor("rep")
    before = env.snapshot()
    with pytest.raises(Invalid) as err:
        env.service.add_note(rep, case_id, "请 @rep2 看看")                    # another town's rep
    assert "rep2" in err.value.details["mentions"]
    assert env.snapshot() == before
    event = env.service.add_note(rep, case_id, "请 @cadre2 先核实收入 @nobody", mentions=["chair"])
    assert event["kind"] == "note" and event["changes"] == {"mentions": [None, ["chair", "cadre2"]]}
    with env.engine.session_factory() as s:
        told = s.execute(select(User.username, Notification.kind).join(User, User.id == Notification.user_id)
                         .where(Notification.case_id == case_id, Notification.kind == "mention")).all()
        state = s.get(Case, case_id).state
    assert sorted(told) == [("cadre2", "mention"), ("chair", "mention")]
    assert state == "survey"
    assert [e["kind"] for e in env.queries.history(rep, case_id)][-1] == "note"


def test_a_consult_is_her_work_item_and_she_reads_a_confidential_case_only_until_she_answers(session_factory):
    env = make_env(session_factory)
    ccadre, legal = env.actor("ccadre"), env.actor("legal")
    case_id = env.service.start_case(ccadre, "complaint", "t01v01", {"victim_name": "某女士"})
    intake = open_task(env, case_id)
    with pytest.raises(NotFound):
        env.queries.case(legal, case_id)
    with pytest.raises(NotFound):
        env.service.consult(env.actor("police"), intake.id, "legal", "?")      # she may not see the case
    consult_id = env.service.consult(ccadre, intake.id, "legal", "能否申请人身安全保护令？")
    mine = env.queries.tasks(legal, "mine").items
    assert [(r["id"], r["kind"]) for r in mine] == [(consult_id, "consult")]
    assert env.queries.case(legal, case_id)["id"] == case_id                  # may read it while asked
    with pytest.raises(Invalid):
        env.service.done(legal, consult_id)                                    # an answer is required
    env.service.done(legal, consult_id, comment="可以，建议尽快申请")
    with pytest.raises(NotFound):
        env.queries.case(legal, case_id)
    kinds = [(e["kind"], e["comment"]) for e in env.queries.history(ccadre, case_id)]
    assert ("consulted", "能否申请人身安全保护令？") in kinds and ("consult_answered", "可以，建议尽快申请") in kinds
    assert open_task(env, case_id).assignee_id == ccadre.user_id                # the task stayed with its holder
    with env.engine.session_factory() as s:
        kinds = set(s.scalars(select(Notification.kind).where(Notification.case_id == case_id)))
    assert "consult" in kinds
    env.service.fire(ccadre, case_id, "refer")                                 # the consult did not block it


# ----------------------------------------------------------------------- away

def test_away_hands_her_open_tasks_to_the_delegate(env):
    case_id = env.service.start_case(env.actor("rep"), "wd", "t01v01", {"applicant_name": "李秀英"})
    today = date(2026, 3, 2)
    with pytest.raises(Invalid):
        env.service.set_away(env.actor("rep"), "rep", today, "nobody", ends_at=env.clock() + timedelta(days=1))
    with pytest.raises(Forbidden):     # she manages no area: as the people API, a 403 whoever is named
        env.service.set_away(env.actor("cadre2"), "rep", today, "cadre", ends_at=env.clock() + timedelta(days=1))
    result = env.service.set_away(env.actor("rep"), "rep", today + timedelta(days=3), "cadre",
                                  ends_at=env.clock() + timedelta(days=4))
    assert result["moved"] == [open_task(env, case_id).id] and result["delegate"] == "cadre"
    assert open_task(env, case_id).assignee_id == uid(env, "cadre")
    back = env.service.set_away(env.actor("chair"), "rep", None, None)         # her town's chair
    assert back["away_until"] is None


# ------------------------------------------------------------------ hexie check

ROUTING_TYPOS = """\
process: typos
title: Typos
fields:
  caseworker: {type: user, role: town_cadr}
  name: {type: text, role: town_cadre}
states:
  - name: a
    task:
      role: village_rep
      assign: {user: casewroker}
      requires: [sign_langauge]
  - name: b
    task:
      role: town_cadre
      assign: {policy: round_robbin}
  - name: c
    task:
      role: town_cadre
      assign: {user: name, owner: true}
  - {name: d, final: true}
transitions:
  - {trigger: go, source: a, dest: b}
  - {trigger: go, source: b, dest: c}
  - {trigger: go, source: c, dest: d}
"""


def test_check_names_each_routing_mistake_at_its_line_with_a_suggestion(tmp_path):
    import io

    from pathlib import Path

    from hexie.workflows.check import check_paths

    roles = (Path(__file__).parent / "fixtures" / "engine" / "roles.yaml").read_text(encoding="utf-8")
    (tmp_path / "roles.yaml").write_text(roles + "capabilities: [sign_language, lawyer]\n", encoding="utf-8")
    (tmp_path / "typos.yaml").write_text(ROUTING_TYPOS, encoding="utf-8")
    out, err = io.StringIO(), io.StringIO()
    assert check_paths([str(tmp_path)], out=out, err=err) == 1
    lines = [line.split(str(tmp_path) + "/", 1)[-1] for line in out.getvalue().splitlines()]
    text = "\n".join(lines)
    assert "typos.yaml:4:34: error: fields.caseworker.role" in text and "'town_cadre'" in text
    assert "typos.yaml:5:" in text and "only a user field takes role" in text
    assert "typos.yaml:10:22: error: states[0].task.assign.user" in text and "did you mean 'caseworker'" in text
    assert "typos.yaml:11:18: error: states[0].task.requires[0]" in text and "did you mean 'sign_language'" in text
    assert "typos.yaml:15:24: error: states[1].task.assign.policy" in text and "did you mean 'round_robin'" in text
    assert "states[2].task.assign.owner" in text and "one way of choosing" in text
    assert "field 'name' is not of type user" in text
