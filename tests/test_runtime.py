"""Work decided at run time (definitions.md additions): for-each tasks with their join policy,
sub-processes (``call:``), automatic transitions, interleaved tasks and implicit termination.

Each construct is run on both databases, with its refusals; the control-flow patterns table
(docs/patterns.md) names these tests.
"""
from __future__ import annotations

import pytest
from sqlalchemy import select

from hexie.models import AuditEvent, Case, Task, Timer
from hexie.workflows.errors import Conflict, Forbidden, Invalid, NotFound
from hexie.workflows.service import AUTO_CHAIN_LIMIT

from .engine_helpers import env_with

REFERRAL = """
process: referral
title: {zh: 转介, en: Referral}
org_level: town
fields:
  who: {type: text, required: true}
  agencies:
    type: multichoice
    choices: {police: {zh: 派出所, en: Police}, legal: {zh: 法律援助, en: Legal aid}, court: {zh: 法院, en: Court}}
  police_notes: {type: textarea}
  notes: {type: textarea}
states:
  - name: intake
    task: {role: town_cadre, form: [who, agencies]}
  - name: referred
    tasks:
      for_each: agencies
      role_of: {police: police_liaison, legal: legal_aid, court: court_liaison}
      task: {form: [notes], due: 3d}
      each:
        police: {form: [police_notes], label: {zh: 派出所处置, en: Police action}}
      complete: COMPLETE
  - name: decided
    task: {role: county_manager}
  - name: closed
    final: true
transitions:
  - {trigger: refer, source: intake, dest: referred}
  - {trigger: referral_done, source: referred, dest: decided, roles: [town_cadre], auto: AUTO}
  - {trigger: close, source: decided, dest: closed}
"""


def referral(complete: str = "all", auto: str = "false") -> str:
    return REFERRAL.replace("COMPLETE", complete).replace("AUTO", auto)


def _tasks(env, case_id, state=None):
    with env.engine.session_factory() as s:
        q = select(Task).where(Task.case_id == case_id).order_by(Task.id)
        if state:
            q = q.where(Task.state == state)
        return [(t.name, t.role, t.status) for t in s.scalars(q)]


def _case(env, case_id):
    with env.engine.session_factory() as s:
        c = s.get(Case, case_id)
        return c.state, c.closed_at, dict(c.data), c.parent_case_id


def _task_id(env, case_id, name, status="offered"):
    with env.engine.session_factory() as s:
        return s.scalar(select(Task.id).where(Task.case_id == case_id, Task.name == name,
                                              Task.status == status).order_by(Task.id.desc()))


def _start_referral(env, agencies):
    cadre = env.actor("cadre")
    case_id = env.service.start_case(cadre, "referral", "t01", {"who": "某某"})
    env.service.fire(cadre, case_id, "refer", {"agencies": agencies})
    return case_id


# ---------------------------------------------------------------------- for_each

def test_for_each_opens_one_task_per_value_to_its_role(session_factory, tmp_path):
    """WCP14 (multiple instances with a priori run-time knowledge) and WCP3 (synchronisation):
    one task per agency chosen, each to the role role_of maps it to; the join waits for all."""
    env = env_with(session_factory, tmp_path / "d", referral=referral())
    case_id = _start_referral(env, ["police", "court"])
    assert _tasks(env, case_id, "referred") == [("police", "police_liaison", "offered"),
                                                ("court", "court_liaison", "offered")]
    spec = env.engine.current("referral")[0]
    assert spec.state("referred").task("police").label.en == "Police action"
    assert spec.state("referred").task("court").label.en == "Court"      # the choice's label
    assert [f.name for f in spec.state("referred").task("police").form] == ["police_notes"]
    cadre = env.actor("cadre")
    env.service.done(env.actor("police"), _task_id(env, case_id, "police"), {"police_notes": "已出警"})
    with pytest.raises(Invalid) as err:      # the join: court is still open
        env.service.fire(cadre, case_id, "referral_done")
    assert err.value.details == {"tasks": ["court"]}
    env.service.done(env.actor("court"), _task_id(env, case_id, "court"), {"notes": "已立案"})
    assert env.service.fire(cadre, case_id, "referral_done")["state"] == "decided"


def test_for_each_task_refuses_other_roles(session_factory, tmp_path):
    env = env_with(session_factory, tmp_path / "d", referral=referral())
    case_id = _start_referral(env, ["police", "legal"])
    before = env.snapshot()
    with pytest.raises((Forbidden, NotFound)):   # legal aid may not do the police's task
        env.service.done(env.actor("legal"), _task_id(env, case_id, "police"), {"police_notes": "x"})
    assert env.snapshot() == before


def test_for_each_with_nothing_chosen_opens_no_task(session_factory, tmp_path):
    env = env_with(session_factory, tmp_path / "d", referral=referral())
    case_id = _start_referral(env, [])
    assert _tasks(env, case_id, "referred") == []
    assert env.service.fire(env.actor("cadre"), case_id, "referral_done")["state"] == "decided"


def test_for_each_complete_any_cancels_the_rest(session_factory, tmp_path):
    """WCP15-like join of the first instance (complete: any): the others are cancelled."""
    env = env_with(session_factory, tmp_path / "d", referral=referral("any"))
    case_id = _start_referral(env, ["police", "legal", "court"])
    env.service.done(env.actor("legal"), _task_id(env, case_id, "legal"), {"notes": "咨询"})
    assert _tasks(env, case_id, "referred") == [("police", "police_liaison", "cancelled"),
                                                ("legal", "legal_aid", "completed"),
                                                ("court", "court_liaison", "cancelled")]
    with env.engine.session_factory() as s:
        done = s.scalars(select(AuditEvent).where(AuditEvent.case_id == case_id,
                                                  AuditEvent.kind == "task_done")).one()
        assert done.changes["cancelled"] == [None, ["police", "court"]]
    with pytest.raises(Conflict):   # a cancelled instance is closed
        env.service.done(env.actor("police"), _task_id(env, case_id, "police", "cancelled"), {})
    assert env.service.fire(env.actor("cadre"), case_id, "referral_done")["state"] == "decided"


def test_for_each_complete_n_waits_for_n(session_factory, tmp_path):
    """WCP34-like partial join (complete: 2 of 3): the second done cancels the third."""
    env = env_with(session_factory, tmp_path / "d", referral=referral("2"))
    case_id = _start_referral(env, ["police", "legal", "court"])
    env.service.done(env.actor("court"), _task_id(env, case_id, "court"), {})
    assert [t[2] for t in _tasks(env, case_id, "referred")] == ["offered", "offered", "completed"]
    env.service.done(env.actor("police"), _task_id(env, case_id, "police"), {})
    assert [t[2] for t in _tasks(env, case_id, "referred")] == ["completed", "cancelled", "completed"]


def test_for_each_again_on_return_opens_the_new_choice(session_factory, tmp_path):
    """Re-entering the state opens the instances of the values chosen now (and counts only them)."""
    text = referral("any").replace(
        "  - {trigger: close, source: decided, dest: closed}",
        "  - {trigger: close, source: decided, dest: closed}\n"
        "  - {trigger: again, source: decided, dest: referred, form: [agencies]}")
    env = env_with(session_factory, tmp_path / "d", referral=text)
    case_id = _start_referral(env, ["police", "legal"])
    env.service.done(env.actor("police"), _task_id(env, case_id, "police"), {})
    env.service.fire(env.actor("cadre"), case_id, "referral_done")
    env.clock.advance(hours=1)
    env.service.fire(env.actor("mgr1"), case_id, "again", {"agencies": ["court"]})
    assert _tasks(env, case_id, "referred")[-1] == ("court", "court_liaison", "offered")
    assert len([t for t in _tasks(env, case_id, "referred") if t[2] == "offered"]) == 1


# ---------------------------------------------------------------------- auto

def test_auto_transition_fires_once_the_tasks_are_done(session_factory, tmp_path):
    """WCP3 synchronisation without a hand: the last done moves the case, as system."""
    env = env_with(session_factory, tmp_path / "d", referral=referral("all", "true"))
    case_id = _start_referral(env, ["police", "legal"])
    env.service.done(env.actor("police"), _task_id(env, case_id, "police"), {})
    assert _case(env, case_id)[0] == "referred"
    env.service.done(env.actor("legal"), _task_id(env, case_id, "legal"), {})
    assert _case(env, case_id)[0] == "decided"
    with env.engine.session_factory() as s:
        fired = s.scalars(select(AuditEvent).where(AuditEvent.case_id == case_id,
                                                   AuditEvent.trigger == "referral_done")).one()
        assert fired.actor_id is None and fired.actor == "system"


def test_auto_transition_with_nothing_chosen_moves_at_once(session_factory, tmp_path):
    env = env_with(session_factory, tmp_path / "d", referral=referral("all", "true"))
    case_id = _start_referral(env, [])
    assert _case(env, case_id)[0] == "decided"


ROUTER = """
process: router
title: {zh: 分流, en: Router}
org_level: town
fields:
  amount: {type: integer}
  path: {type: textarea}
states:
  - name: apply
    task: {role: town_cadre, form: [amount]}
  - name: route
  - name: small
    task: {role: town_cadre}
  - name: big
    task: {role: county_manager}
  - name: done
    final: true
transitions:
  - {trigger: submit, source: apply, dest: route}
  - {trigger: to_big, source: route, dest: big, when: "amount > 1000", auto: true}
  - {trigger: to_small, source: route, dest: small, auto: true}
  - {trigger: finish, source: [small, big], dest: done}
"""


def test_auto_exclusive_choice_by_guard(session_factory, tmp_path):
    """WCP4 exclusive choice decided by the engine: the first automatic transition whose guard holds."""
    env = env_with(session_factory, tmp_path / "d", router=ROUTER)
    cadre = env.actor("cadre")
    big = env.service.start_case(cadre, "router", "t01", {"amount": 5000})
    small = env.service.start_case(cadre, "router", "t01", {"amount": 5})
    assert env.service.fire(cadre, big, "submit")["state"] == "big"
    assert env.service.fire(cadre, small, "submit")["state"] == "small"


LOOP = """
process: loop
title: {zh: 循环, en: Loop}
org_level: town
fields:
  n: {type: integer}
states:
  - name: start
    task: {role: town_cadre}
  - name: a
  - name: b
  - name: done
    final: true
transitions:
  - {trigger: go, source: start, dest: a}
  - {trigger: ab, source: a, dest: b, auto: true}
  - {trigger: ba, source: b, dest: a, auto: true}
  - {trigger: stop, source: [a, b], dest: done, roles: [town_chair]}
"""


def test_auto_loop_is_bounded_per_call(session_factory, tmp_path):
    """A loop of automatic transitions stops after AUTO_CHAIN_LIMIT firings; the case waits."""
    env = env_with(session_factory, tmp_path / "d", loop=LOOP)
    cadre = env.actor("cadre")
    case_id = env.service.start_case(cadre, "loop", "t01", {})
    env.service.fire(cadre, case_id, "go")
    with env.engine.session_factory() as s:
        autos = s.scalars(select(AuditEvent).where(AuditEvent.case_id == case_id,
                                                   AuditEvent.trigger.in_(["ab", "ba"]))).all()
    assert len(autos) == AUTO_CHAIN_LIMIT
    assert env.service.fire(env.actor("chair"), case_id, "stop")["state"] == "done"


# ---------------------------------------------------------------------- interleaved

INTERLEAVED = """
process: checks
title: {zh: 核查, en: Checks}
org_level: town
fields:
  a_notes: {type: textarea}
states:
  - name: checking
    order: any_one_at_a_time
    tasks:
      - {name: home_visit, role: town_cadre}
      - {name: school_visit, role: town_cadre}
      - {name: records, role: town_chair}
  - name: done
    final: true
transitions:
  - {trigger: finish, source: checking, dest: done, auto: true}
"""


def test_interleaved_tasks_any_order_one_at_a_time(session_factory, tmp_path):
    """WCP17 interleaved parallel routing: any order, never two in hand at once."""
    env = env_with(session_factory, tmp_path / "d", checks=INTERLEAVED)
    cadre, cadre2, chair = env.actor("cadre"), env.actor("cadre2"), env.actor("chair")
    case_id = env.service.start_case(chair, "checks", "t01", {})
    assert [t[2] for t in _tasks(env, case_id)] == ["offered"] * 3    # none handed out at once
    env.service.claim(cadre, _task_id(env, case_id, "school_visit"))
    before = env.snapshot()
    with pytest.raises(Conflict) as err:
        env.service.claim(cadre2, _task_id(env, case_id, "home_visit"))
    assert "one at a time" in err.value.en
    with pytest.raises(Conflict):
        env.service.done(chair, _task_id(env, case_id, "records"), {})
    assert env.snapshot() == before
    env.service.done(cadre, _task_id(env, case_id, "school_visit", "allocated"), {})
    env.service.done(chair, _task_id(env, case_id, "records"), {})
    env.service.done(cadre2, _task_id(env, case_id, "home_visit"), {})
    assert _case(env, case_id)[0] == "done"


# ---------------------------------------------------------------------- end_when_idle

IDLE = """
process: idle
title: {zh: 无事结案, en: Ends when idle}
org_level: town
fields:
  x: {type: text}
states:
  - name: work
    end_when_idle: true
    tasks:
      - {name: one, role: town_cadre}
      - {name: two, role: town_chair}
  - name: never
    final: true
transitions:
  - {trigger: abandon, source: work, dest: never, roles: [town_chair], interrupt: true}
"""


def test_end_when_idle_closes_the_case_once_no_work_is_left(session_factory, tmp_path):
    """WCP11 implicit termination: the case ends where it is when nothing is left to do."""
    env = env_with(session_factory, tmp_path / "d", idle=IDLE)
    chair, cadre = env.actor("chair"), env.actor("cadre")
    case_id = env.service.start_case(chair, "idle", "t01", {})
    env.service.done(cadre, _task_id(env, case_id, "one"), {})
    assert _case(env, case_id)[1] is None
    env.service.done(chair, _task_id(env, case_id, "two", "allocated") or _task_id(env, case_id, "two"), {})
    state, closed_at, _, _ = _case(env, case_id)
    assert state == "work" and closed_at is not None
    with pytest.raises(Conflict):   # nothing more happens on an ended case
        env.service.fire(chair, case_id, "abandon")


# ---------------------------------------------------------------------- call

PARENT = """
process: parent_proc
title: {zh: 主流程, en: Parent}
org_level: town
fields:
  applicant: {type: text, required: true}
  mentor: {type: text}
  verdict: {type: text}
states:
  - name: apply
    task: {role: town_cadre, form: [applicant]}
  - name: pairing
    call:
      process: child_proc
      data: {person: applicant}
      result: {mentor: mentor_name}
      on_end: {paired: paired, failed: failed}
    timers:
      - {after: 30d, trigger: too_late}
  - name: next_step
    task: {role: county_manager}
  - name: rejected
    final: true
  - name: closed
    final: true
transitions:
  - {trigger: submit, source: apply, dest: pairing}
  - {trigger: paired, source: pairing, dest: next_step, roles: [system]}
  - {trigger: failed, source: pairing, dest: rejected, roles: [system]}
  - {trigger: too_late, source: pairing, dest: rejected, roles: [system]}
  - {trigger: withdraw, source: pairing, dest: rejected, roles: [town_chair], comment: required}
  - {trigger: close, source: next_step, dest: closed}
"""

CHILD = """
process: child_proc
title: {zh: 子流程, en: Child}
org_level: town
starters: [system]
fields:
  person: {type: text}
  mentor_name: {type: text}
states:
  - name: match
    task: {role: town_chair, form: [mentor_name]}
  - name: paired
    final: true
  - name: failed
    final: true
transitions:
  - {trigger: pair, source: match, dest: paired}
  - {trigger: give_up, source: match, dest: failed, comment: required}
"""


def _start_parent(env):
    cadre = env.actor("cadre")
    case_id = env.service.start_case(cadre, "parent_proc", "t01", {"applicant": "李四"})
    env.service.fire(cadre, case_id, "submit")
    with env.engine.session_factory() as s:
        child_id = s.scalar(select(Case.id).where(Case.parent_case_id == case_id))
    return case_id, child_id


def test_call_starts_a_child_and_its_end_moves_the_parent(session_factory, tmp_path):
    """A sub-process with data in and out: the child's end copies the result and fires on_end."""
    env = env_with(session_factory, tmp_path / "d", parent_proc=PARENT, child_proc=CHILD)
    case_id, child_id = _start_parent(env)
    state, _, data, parent = _case(env, child_id)
    assert (state, data["person"], parent) == ("match", "李四", case_id)
    assert _case(env, case_id)[0] == "pairing"
    with pytest.raises(Forbidden):   # the parent waits: no person fires its system triggers
        env.service.fire(env.actor("cadre"), case_id, "paired")
    env.service.fire(env.actor("chair"), child_id, "pair", {"mentor_name": "王大姐"})
    state, _, data, _ = _case(env, case_id)
    assert state == "next_step" and data["mentor"] == "王大姐"
    with env.engine.session_factory() as s:
        kinds = [e.kind for e in s.scalars(select(AuditEvent).where(AuditEvent.case_id == case_id)
                                           .order_by(AuditEvent.seq))]
    assert kinds[-3:] == ["called", "child_ended", "fired"][-3:] or "child_ended" in kinds


def test_call_other_end_state_fires_its_own_trigger(session_factory, tmp_path):
    env = env_with(session_factory, tmp_path / "d", parent_proc=PARENT, child_proc=CHILD)
    case_id, child_id = _start_parent(env)
    env.service.fire(env.actor("chair"), child_id, "give_up", comment="没有合适的导师")
    assert _case(env, case_id)[0] == "rejected"


def test_call_parent_leaving_cancels_the_child(session_factory, tmp_path):
    """Withdrawing the parent (WCP19/20 cancel) closes the child and cancels its open task."""
    env = env_with(session_factory, tmp_path / "d", parent_proc=PARENT, child_proc=CHILD)
    case_id, child_id = _start_parent(env)
    env.service.fire(env.actor("chair"), case_id, "withdraw", comment="申请人放弃")
    state, closed_at, _, _ = _case(env, child_id)
    assert state == "match" and closed_at is not None
    assert _tasks(env, child_id) == [("match", "town_chair", "cancelled")]
    with pytest.raises(Conflict):
        env.service.fire(env.actor("chair"), child_id, "pair", {"mentor_name": "x"})


def test_call_parent_timer_cuts_the_child_short(session_factory, tmp_path):
    """The parent's timers keep running while it waits; when one fires, the child is cancelled."""
    env = env_with(session_factory, tmp_path / "d", parent_proc=PARENT, child_proc=CHILD)
    case_id, child_id = _start_parent(env)
    env.clock.advance(days=31)
    assert env.service.run_due_timers() == 1
    assert _case(env, case_id)[0] == "rejected"
    assert _case(env, child_id)[1] is not None


def test_child_is_visible_to_whoever_sees_the_parent(session_factory, tmp_path):
    env = env_with(session_factory, tmp_path / "d", parent_proc=PARENT, child_proc=CHILD)
    case_id, child_id = _start_parent(env)
    cadre = env.actor("cadre")          # the parent's worker: no role in the child process
    view = env.queries.case(cadre, child_id)
    assert [p["id"] for p in view["parent"]] == [case_id]
    assert [c["id"] for c in env.queries.case(cadre, case_id)["children"]] == [child_id]
    with pytest.raises(NotFound):       # another town's cadre sees neither
        env.queries.case(env.actor("cadre_t02"), child_id)


def test_call_on_end_and_timer_triggers_need_no_roles_system(session_factory, tmp_path):
    """definitions.md: the mapped trigger "fires on the parent as system", and a timer fires its
    trigger as system: with the default roles (a calling state has no task) the engine may."""
    text = PARENT.replace("dest: next_step, roles: [system]}", "dest: next_step}") \
                 .replace("dest: rejected, roles: [system]}\n  - {trigger: too_late",
                          "dest: rejected}\n  - {trigger: too_late") \
                 .replace("{trigger: too_late, source: pairing, dest: rejected, roles: [system]}",
                          "{trigger: too_late, source: pairing, dest: rejected}")
    assert "roles: [system]" not in text
    env = env_with(session_factory, tmp_path / "d", parent_proc=text, child_proc=CHILD)
    case_id, child_id = _start_parent(env)
    with pytest.raises(Forbidden):   # still no person fires them
        env.service.fire(env.actor("cadre"), case_id, "paired")
    env.service.fire(env.actor("chair"), child_id, "pair", {"mentor_name": "王大姐"})
    assert _case(env, case_id)[0] == "next_step"
    late, _ = _start_parent(env)
    env.clock.advance(days=31)
    assert env.service.run_due_timers() == 1 and _case(env, late)[0] == "rejected"


def test_call_refused_on_end_trigger_leaves_the_parent_waiting(session_factory, tmp_path):
    """An on_end trigger that is refused (here its guard) leaves the parent in its calling state."""
    text = PARENT.replace("  - {trigger: paired, source: pairing, dest: next_step, roles: [system]}",
                          "  - {trigger: paired, source: pairing, dest: next_step, roles: [system], "
                          "when: \"mentor != 'nobody'\"}")
    env = env_with(session_factory, tmp_path / "d", parent_proc=text, child_proc=CHILD)
    case_id, child_id = _start_parent(env)
    env.service.fire(env.actor("chair"), child_id, "pair", {"mentor_name": "nobody"})
    state, _, data, _ = _case(env, case_id)
    assert state == "pairing" and data["mentor"] == "nobody"
    assert _case(env, child_id)[0] == "paired"


# ---------------------------------------------------------------------- the plain patterns, named

def test_simple_merge_two_paths_reach_one_state(session_factory, tmp_path):
    """WCP5 simple merge: the small and the big path both lead to the same next state."""
    env = env_with(session_factory, tmp_path / "d", router=ROUTER)
    cadre, mgr = env.actor("cadre"), env.actor("mgr1")
    big = env.service.start_case(cadre, "router", "t01", {"amount": 5000})
    small = env.service.start_case(cadre, "router", "t01", {"amount": 5})
    env.service.fire(cadre, big, "submit")
    env.service.fire(cadre, small, "submit")
    assert env.service.fire(mgr, big, "finish")["state"] == "done"
    assert env.service.fire(cadre, small, "finish")["state"] == "done"


def test_milestone_an_action_is_possible_only_while_the_case_is_in_its_state(session_factory, tmp_path):
    """WCP18 milestone: the parent's withdraw is enabled only while it waits for its child."""
    env = env_with(session_factory, tmp_path / "d", parent_proc=PARENT, child_proc=CHILD)
    chair = env.actor("chair")
    cadre = env.actor("cadre")
    case_id = env.service.start_case(cadre, "parent_proc", "t01", {"applicant": "李四"})
    before = env.snapshot()
    with pytest.raises(Conflict):   # not yet at the milestone
        env.service.fire(chair, case_id, "withdraw", comment="太早")
    assert env.snapshot() == before
    env.service.fire(cadre, case_id, "submit")
    assert env.service.fire(chair, case_id, "withdraw", comment="放弃")["state"] == "rejected"
