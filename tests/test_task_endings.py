"""A task's status says how it ended (issue 12): completed by its holder, cancelled, or skipped."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from hexie.models import Task

from .engine_helpers import make_env
from .test_engine import APPLICATION


@pytest.fixture
def env(session_factory):
    return make_env(session_factory)


def ended(env, case_id: int) -> dict[str, tuple[str, str | None]]:
    """task name -> (status, username of whoever completed it), for the closed tasks."""
    with env.engine.session_factory() as s:
        rows = s.execute(select(Task.name, Task.status, Task.completed_by_id).where(
            Task.case_id == case_id, Task.status.in_(("completed", "cancelled", "skipped")))).all()
    people = {env.actor(u).user_id: u for u in ("rep", "cadre", "cadre2", "ccadre", "police", "legal", "mgr1")}
    return {name: (status, people.get(who)) for name, status, who in rows}


def test_the_step_done_by_its_holder_is_completed_by_her(env):
    rep = env.actor("rep")
    case_id = env.service.start_case(rep, "aid", "t01v01", APPLICATION)
    env.service.fire(rep, case_id, "submit")
    assert ended(env, case_id)["application"] == ("completed", "rep")


def test_a_step_cut_short_by_someone_elses_transition_is_cancelled(env):
    from .test_engine import _to_approval

    case_id = _to_approval(env)
    env.service.fire(env.actor("mgr1"), case_id, "approve")
    env.service.fire(env.actor("mgr2"), case_id, "approve")
    env.service.fire(env.actor("fin"), case_id, "disburse", {"approved_amount": "800"})
    env.service.fire(env.actor("chair"), case_id, "close")     # the town chair closes: not the cadre's visit
    assert ended(env, case_id)["follow_up"] == ("cancelled", None)
    assert ended(env, case_id)["survey"] == ("completed", "cadre2")


def test_an_optional_parallel_task_left_undone_is_skipped_and_an_interrupt_cancels(env):
    ccadre = env.actor("ccadre")
    case_id = env.service.start_case(ccadre, "complaint", "t01v01", {"victim_name": "某女士"})
    env.service.fire(ccadre, case_id, "refer")
    with env.engine.session_factory() as s:
        tasks = {t.name: t.id for t in s.scalars(select(Task).where(Task.case_id == case_id,
                                                                    Task.status == "offered"))}
    env.service.done(env.actor("police"), tasks["police"])
    env.service.done(env.actor("legal"), tasks["legal"])
    env.service.fire(ccadre, case_id, "referred")
    assert {n: v for n, v in ended(env, case_id).items() if n in ("police", "legal", "court")} == {
        "police": ("completed", "police"), "legal": ("completed", "legal"), "court": ("skipped", None)}

    other = env.service.start_case(ccadre, "complaint", "t01v01", {"victim_name": "某女士"})
    env.service.fire(ccadre, other, "refer")
    env.service.fire(env.actor("mgr1"), other, "emergency", comment="紧急情况")
    assert {n: v for n, v in ended(env, other).items() if n in ("police", "legal", "court")} == {
        "police": ("cancelled", None), "legal": ("cancelled", None), "court": ("cancelled", None)}


def test_migration_0011_puts_old_endings_right(empty_db_url):
    """Rows written before 0011: a held task "completed" by someone else, or by nobody, was cancelled."""
    from alembic import command
    from sqlalchemy import text

    from hexie.models import alembic_config, make_engine, upgrade

    engine = make_engine(empty_db_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0006")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO hexie_process_versions (id, key, version, source_text, content_hash, "
                              "created_at) VALUES (1, 'p', 1, 'x', 'h', CURRENT_TIMESTAMP)"))
            conn.execute(text("INSERT INTO hexie_org_units (id, code, name, level, path) VALUES (1, 'c', 'C', 'county', '/c/')"))
            for uid in (1, 2):
                conn.execute(text("INSERT INTO hexie_users (id, username, name, password_hash, created_at) "
                                  "VALUES (:i, :u, :u, 'x', CURRENT_TIMESTAMP)"), {"i": uid, "u": f"u{uid}"})
            conn.execute(text("INSERT INTO hexie_cases (id, process_version_id, process_key, state, data, org_unit_id, "
                              "org_path, created_at, updated_at, subject, confidential, lock_version, audit_head) "
                              "VALUES (7, 1, 'p', 's', '{}', 1, '/c/', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, '', "
                              "false, 1, 'h3')"))
            rows = [(1, "completed", 1, 1),      # done by its holder: stays
                    (2, "completed", 1, 2),      # held by u1, "completed" by u2 who moved the case on
                    (3, "completed", None, None),  # ended by the system
                    (4, "completed", None, 2),   # offered, fired by one who may take it: stays
                    (5, "cancelled", None, None)]
            for tid, status, assignee, done_by in rows:
                conn.execute(text("INSERT INTO hexie_tasks (id, case_id, process_key, state, name, role, org_unit_id, "
                                  "org_path, status, created_at, assignee_id, completed_by_id) VALUES (:id, 7, 'p', "
                                  "'s', 't', 'r', 1, '/c/', :st, CURRENT_TIMESTAMP, :a, :d)"),
                             {"id": tid, "st": status, "a": assignee, "d": done_by})
        upgrade(engine)
        with engine.connect() as conn:
            after = conn.execute(text("SELECT id, status, completed_by_id FROM hexie_tasks ORDER BY id")).all()
        assert [tuple(r) for r in after] == [(1, "completed", 1), (2, "cancelled", None), (3, "cancelled", None),
                                            (4, "completed", 2), (5, "cancelled", None)]
    finally:
        engine.dispose()
