"""The fast paths (issue 16): what is kept per person is never stale, the upcoming work is one
page of SQL, and the write path at the driver refuses a stale write as the Core path did."""
from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from hexie.models import Case, OrgUnit, RoleAssignment, Task, User
from hexie.workflows.errors import Conflict
from hexie.workflows.queries import _kept
from hexie.workflows.service import _CASE_FOR_UPDATE, case_tasks, records, save_case, save_task

from .engine_helpers import make_env
from .test_engine import APPLICATION, _count_queries, _start
from .test_work_queues import to_follow_up


@pytest.fixture
def env(session_factory):
    return make_env(session_factory)


def _expected(env, actor) -> dict[str, int]:
    return {view: env.queries.tasks(actor, view, per_page=200).total
            for view in ("mine", "available", "overdue", "escalated")}


def test_the_counts_follow_her_roles_as_they_are_now(env):
    for _ in range(3):
        _start(env)                                        # three surveys offered to the town's cadres
    cadre = env.actor("cadre2")
    counts = env.queries.task_counts(cadre)
    assert counts["available"] == 3 and counts == _expected(env, cadre)
    assert env.queries.task_counts(cadre) == counts        # the kept statement, same answer
    with env.engine.transaction() as s:                    # she moves to another town
        elsewhere = s.scalar(select(OrgUnit.id).where(OrgUnit.code != "t01", OrgUnit.level == "town"))
        if elsewhere is None:
            elsewhere = s.scalar(select(OrgUnit.id).where(OrgUnit.level == "county"))
        user_id = s.scalar(select(User.id).where(User.username == "cadre2"))
        s.execute(update(RoleAssignment).where(RoleAssignment.user_id == user_id).values(org_unit_id=elsewhere))
    moved = env.actor("cadre2")
    assert moved.assignments != cadre.assignments
    assert env.queries.task_counts(moved) == _expected(env, moved)
    assert env.queries.tasks(moved, "available").total == env.queries.task_counts(moved)["available"]


def test_new_definitions_start_the_kept_statements_afresh(env):
    _start(env)
    cadre = env.actor("cadre2")
    counts = env.queries.task_counts(cadre)
    key = ("counts", ("mine", "available", "overdue", "escalated"), cadre.user_id, cadre.assignments, False)
    assert _kept(env.engine, key) is not None
    env.engine.registry = dataclasses.replace(env.engine.registry)   # what a publish does: a new registry
    assert _kept(env.engine, key) is None
    assert env.queries.task_counts(cadre) == counts


def test_the_clock_is_read_when_the_counts_run_not_when_they_were_built(env):
    case_id = _start(env)
    cadre = env.actor("cadre2")
    with env.engine.transaction() as s:
        s.execute(update(Task).where(Task.case_id == case_id, Task.status == "offered")
                  .values(due_at=env.clock() + timedelta(days=2)))
    assert env.queries.task_counts(cadre)["overdue"] == 0
    env.clock.advance(days=3)
    assert env.queries.task_counts(cadre)["overdue"] == 1 == env.queries.tasks(cadre, "overdue").total


def test_a_kept_task_list_reads_the_clock_the_page_and_her_roles_as_they_are_now(env):
    """The task list's statement is kept per person, filters and order: the clock (overdue_only),
    the page and its size are read at each call, and a change of her roles is another statement."""
    ids = [_start(env) for _ in range(3)]
    cadre = env.actor("cadre2")
    with env.engine.transaction() as s:
        s.execute(update(Task).where(Task.case_id.in_(ids), Task.status == "offered")
                  .values(due_at=env.clock() + timedelta(days=2)))
    assert env.queries.tasks(cadre, "available", overdue_only=True).total == 0
    assert env.queries.tasks(cadre, "available", overdue_only=True).total == 0     # kept, same answer
    env.clock.advance(days=3)
    assert env.queries.tasks(cadre, "available", overdue_only=True).total == 3
    first, second = (env.queries.tasks(cadre, "available", sort="created", page=n, per_page=2) for n in (1, 2))
    assert [t["case_id"] for t in first.items + second.items] == ids
    assert (len(first.items), len(second.items), first.total) == (2, 1, 3)
    with env.engine.transaction() as s:                    # she leaves her post: nothing is offered to her
        user_id = s.scalar(select(User.id).where(User.username == "cadre2"))
        s.execute(RoleAssignment.__table__.delete().where(RoleAssignment.user_id == user_id))
    assert env.queries.tasks(env.actor("cadre2"), "available").total == 0


def test_another_workers_write_shows_in_her_counts_at_once(env, db_url):
    """Two processes' engines on one database (two gunicorn workers): what the reader keeps for
    her (her statement, its prepared plan on PostgreSQL) never keeps an answer. Run past
    psycopg's prepare threshold and PostgreSQL's five custom plans, each count still follows
    every write of the other engine at once."""
    from hexie.models import make_engine, make_session_factory
    other_db = make_engine(db_url)
    try:
        other = make_env(make_session_factory(other_db))   # the org is loaded already: the same rows
        cadre = env.actor("cadre2")
        for round_ in range(4):
            case_id = _start(other)                        # a survey offered to the town's cadres
            for _ in range(6):
                assert env.queries.task_counts(cadre) == _expected(env, cadre)
            with env.engine.read_session() as s:
                task_id = s.scalar(select(Task.id).where(Task.case_id == case_id, Task.status == "offered"))
            other.service.claim(other.actor("cadre2"), task_id)
            counts = env.queries.task_counts(cadre)
            assert counts == _expected(env, cadre) and counts["mine"] == round_ + 1
    finally:
        other_db.dispose()


def test_upcoming_is_one_page_of_sql_whatever_the_number_of_timers(env):
    cadre2 = env.actor("cadre2")
    first = to_follow_up(env)
    one = _count_queries(env, lambda: env.queries.upcoming(cadre2, 200))
    more = [to_follow_up(env) for _ in range(3)]
    assert _count_queries(env, lambda: env.queries.upcoming(cadre2, 200)) == one <= 3
    page = env.queries.upcoming(cadre2, 200, per_page=2, page=2)
    assert page.total == 4 and [r["case_id"] for r in page.items] == more[1:]
    assert [r["case_id"] for r in env.queries.upcoming(cadre2, 200).items] == [first, *more]
    assert env.queries.upcoming(cadre2, 200, per_page=2, page=5).total == 4     # past the end
    assert env.queries.upcoming(env.actor("cadre"), 200).total == 0


def test_a_stale_write_at_the_driver_is_the_conflict_it_always_was(env):
    case_id = _start(env)
    with env.engine.session_factory() as s:
        before = s.get(Case, case_id)
        state, lock = before.state, before.lock_version
    with pytest.raises(Conflict) as info:
        with env.engine.transaction() as s:
            (case,) = records(s, _CASE_FOR_UPDATE, {"case_id": case_id})
            case.state, case.lock_version = "nowhere", case.lock_version + 7      # as if read long ago
            save_case(s, case)
    assert info.value.en == "the case was changed by someone else meanwhile"
    with pytest.raises(Conflict) as info:
        with env.engine.transaction() as s:
            (case,) = records(s, _CASE_FOR_UPDATE, {"case_id": case_id})
            (task,) = [t for t in case_tasks(s, case_id) if t.status == "offered"]
            task.lock_version += 3
            task.status = "completed"
            save_task(s, task)                        # refused: the task's message, not the case's
            case.state = "nowhere"
            save_case(s, case)
    assert info.value.en == "the task was changed by someone else meanwhile"
    with env.engine.session_factory() as s:               # nothing of either was written
        after = s.get(Case, case_id)
        assert (after.state, after.lock_version) == (state, lock)
        assert s.scalar(select(Task.status).where(Task.case_id == case_id, Task.state == state)) == "offered"
    assert env.service.fire(env.actor("cadre2"), case_id, "withdraw", comment="撤回")["outcome"] == "moved"


def test_the_literals_sent_at_the_driver_are_psycopgs_own(pg_url):
    """PostgreSQL: the driver-level path writes a statement's parameters as the very literals
    psycopg's ``ClientCursor.mogrify`` writes (quotes, backslashes, percent signs, Chinese, None,
    dates, numbers), and the server reads each back as it was."""
    from datetime import datetime, timezone
    from decimal import Decimal
    from psycopg import ClientCursor
    from psycopg.adapt import Transformer
    from hexie.models import fast, make_engine
    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            values = {"text": "o'neil \\ 100% 王芳 %(x)s;--", "none": None, "yes": True, "small": 7, "big": -2 ** 40,
                      "float": 1.25, "decimal": Decimal("1200.50"), "naive": datetime(2026, 3, 2, 20, 15),
                      "aware": datetime(2026, 3, 2, 20, 15, tzinfo=timezone.utc), "empty": "", "space": "\n\t"}
            sql = "SELECT " + ", ".join(f"%({name})s" for name in values) + ", '100%%' AS pct"
            rendered = fast._render(fast._template(sql), values, Transformer(raw).as_literal)
            assert rendered.decode() == ClientCursor(raw).mogrify(sql, values)
            assert list(raw.execute(rendered).fetchone()) == [*values.values(), "100%"]
    finally:
        engine.dispose()


def test_prepared_statements_at_the_driver_survive_psycopgs_deallocate_all(pg_url):
    """PostgreSQL: the driver-level statements are prepared once per connection (when it is idle)
    and then run as ``EXECUTE``; a rollback keeps them, unless psycopg has prepared statements
    of its own: its ``DEALLOCATE ALL`` at the rollback takes ours along, and they are prepared
    again instead of failing; a statement the server will not prepare goes as text, in the same
    transaction, without harming it."""
    from sqlalchemy import literal_column, text
    from hexie.models import fast, make_engine
    engine = make_engine(pg_url)
    probe = fast.Statement(select(OrgUnit.id).where(OrgUnit.code == "nowhere"))
    unpreparable = fast.Statement(select(literal_column("1")).where(text(":x IS NULL")))
    sent: list[str] = []
    fast.listeners.append(lambda sql, params: sent.append(sql))
    try:
        with engine.connect() as conn:
            raw = conn.connection.dbapi_connection
            names = lambda: {r[0] for r in raw.execute("SELECT name FROM pg_prepared_statements").fetchall()}  # noqa: E731
            label = probe.form(conn.dialect, None).prepare[0].decode()
            for _ in range(2):                              # text the first time, prepared when next idle
                with conn.begin():
                    assert fast.rows(conn, probe) == []
            assert label in names()
            conn.rollback()                                 # nothing of psycopg's own prepared: kept
            assert label in names()
            for _ in range(6):                              # psycopg prepares a statement of its own ...
                conn.execute(select(OrgUnit.id).where(OrgUnit.code == "x")).all()
            conn.rollback()                                 # ... and its rollback deallocates everything
            assert label not in names()
            for _ in range(2):
                with conn.begin():
                    assert fast.rows(conn, probe) == []     # not "prepared statement does not exist"
            assert label in names()
            with conn.begin():
                assert fast.run(conn, unpreparable, {"x": None}).scalar() == 1
            with conn.begin():                              # refused by the server once: text from then on
                assert fast.run(conn, unpreparable, {"x": "a"}).rows == []
                assert fast.rows(conn, probe) == []         # the transaction was not harmed
            assert unpreparable.form(conn.dialect, None).preparable is False
    finally:
        fast.listeners.pop()
        engine.dispose()


def test_sqlite_datetime_parameters_are_the_text_sqlalchemy_writes():
    """The write path formats SQLite's DateTime parameters itself (fast._sqlite_datetime): the
    very text SQLAlchemy's processor gives, for naive and aware datetimes, whole seconds, early
    years, and a date (which keeps SQLAlchemy's processor); anything else is refused alike."""
    from datetime import date, datetime, timedelta, timezone

    import pytest
    from sqlalchemy import DateTime
    from sqlalchemy.dialects import sqlite

    from hexie.models.fast import _sqlite_datetime
    dialect = sqlite.dialect()
    theirs = DateTime().dialect_impl(dialect).bind_processor(dialect)
    ours = _sqlite_datetime(DateTime(), dialect, theirs)
    assert ours is not theirs
    for value in (datetime(2026, 12, 1, 19, 50, 1, 123456), datetime(2026, 1, 1), datetime(5, 3, 4, 1, 2, 3, 7),
                  datetime(2026, 12, 1, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=8))), date(2026, 5, 6)):
        assert ours(value) == theirs(value)
    with pytest.raises(TypeError):
        ours("2026-01-01")
    # a storage format of its own keeps SQLAlchemy's processor
    custom = sqlite.DATETIME(truncate_microseconds=True)
    kept = custom.bind_processor(dialect)
    assert _sqlite_datetime(custom, dialect, kept) is kept


def test_a_locked_case_is_written_back_with_what_changed_and_loses_nothing(env):
    """save_case writes only the columns that differ from the locked read (data always); a
    record read any other way is written whole; either way the row ends as the record says."""
    from hexie.models import fast
    case_id = _start(env)
    sent: list[str] = []
    listener = lambda sql, params: sent.append(sql)  # noqa: E731
    fast.listeners.append(listener)
    try:
        with env.engine.transaction() as s:
            case = env.service._case_for_update(s, env.actor("cadre2"), case_id)
            owner, lock = case.owner_id, case.lock_version
            case.state = "survey_checked"
            save_case(s, case)
            case.data["added"] = "在原处改动"            # changed in place, after it was written once
            case.subject = "新的标题"
            save_case(s, case)
        with env.engine.transaction() as s:
            (whole,) = records(s, _CASE_FOR_UPDATE, {"case_id": case_id})
            whole.closed_at = None
            save_case(s, whole)
    finally:
        fast.listeners.remove(listener)
    updates = [q for q in sent if "UPDATE hexie_cases" in q]
    assert len(updates) == 3
    assert "subject" not in updates[0] and "owner_id" not in updates[0] and "data" in updates[0]
    assert "subject" in updates[1] and "state" not in updates[1].split("WHERE")[0].replace("audit_", "")
    assert "subject" in updates[2] and "owner_id" in updates[2] and "suspended_at" in updates[2]
    with env.engine.session_factory() as s:
        row = s.get(Case, case_id)
        assert (row.state, row.subject, row.owner_id, row.lock_version) == ("survey_checked", "新的标题", owner, lock + 3)
        assert row.data["added"] == "在原处改动"
