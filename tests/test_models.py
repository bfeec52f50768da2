"""The persistence layer: migrations, engine settings, optimistic locking, constraints."""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from decimal import Decimal

import pytest
from hexie.models.db import owns
from hexie.models.naming import VERSION_TABLE
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import delete, event, func, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm.exc import StaleDataError

from hexie.models import (
    Base, Case, OrgUnit, ProcessVersion, RoleAssignment, Task, User, alembic_config,
    current_revision, database_url, make_engine, upgrade,
)
from hexie.models.db import normalize_url

ROOT = Path(__file__).resolve().parent.parent


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def schema_differences(engine) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True, "version_table": VERSION_TABLE,
                        "include_name": lambda name, type_, _parents: type_ != "table" or owns(name)})
        return compare_metadata(context, Base.metadata)


def new_case(session, *, state: str = "application", unit_code: str = "county") -> Case:
    unit = session.scalar(select(OrgUnit).where(OrgUnit.code == unit_code))
    if unit is None:
        unit = OrgUnit(code=unit_code, name="某县", level="county", path=f"/{unit_code}/")
    version = session.scalar(select(ProcessVersion).where(ProcessVersion.key == "aid"))
    if version is None:
        version = ProcessVersion(key="aid", version=1, source_text="process: aid", content_hash="0" * 64)
    case = Case(process_version=version, process_key="aid", state=state, data={},
                org_unit=unit, org_path=unit.path, subject="李芳")
    session.add(case)
    session.flush()
    return case


# --- migrations ------------------------------------------------------------------------

def test_upgrade_creates_the_schema_of_the_models(empty_db_url):
    engine = make_engine(empty_db_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert set(inspect(engine).get_table_names()) >= set(Base.metadata.tables)
        assert schema_differences(engine) == []
    finally:
        engine.dispose()


def test_second_upgrade_is_a_no_op(empty_db_url):
    upgrade(empty_db_url)
    engine = make_engine(empty_db_url)
    statements: list[str] = []
    event.listen(engine, "before_cursor_execute",
                 lambda conn, cursor, statement, *args: statements.append(statement))
    try:
        upgrade(engine)
        changes = [s for s in statements
                   if s.lstrip().split()[0].upper() in {"CREATE", "ALTER", "DROP", "INSERT", "UPDATE", "DELETE"}]
        assert changes == []
        assert current_revision(engine) == head_revision()
        assert schema_differences(engine) == []
    finally:
        engine.dispose()


def test_concurrent_upgrades_of_an_empty_database_all_succeed(empty_db_url):
    errors: list[BaseException] = []

    def run() -> None:
        try:
            upgrade(empty_db_url)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    engine = make_engine(empty_db_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_upgrades_from_separate_processes_queue_on_a_new_sqlite_file(tmp_path):
    # gunicorn workers starting together on a database that does not exist yet.
    url = f"sqlite:///{tmp_path / 'new.db'}"
    code = "import sys; from hexie.models.db import upgrade; upgrade(sys.argv[1])"
    procs = [subprocess.Popen([sys.executable, "-c", code, url], cwd=ROOT,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outcomes = [(p.wait(timeout=120), p.stderr.read()) for p in procs]
    assert outcomes == [(0, "")] * 3
    engine = make_engine(url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_upgrade_creates_a_missing_sqlite_file(tmp_path):
    path = tmp_path / "new" / "hexie.db"
    path.parent.mkdir()
    upgrade(f"sqlite:///{path}")
    assert path.exists()
    engine = make_engine(f"sqlite:///{path}")
    try:
        assert schema_differences(engine) == []
    finally:
        engine.dispose()


def test_downgrade_to_base_and_back(empty_db_url):
    from alembic import command

    upgrade(empty_db_url)
    engine = make_engine(empty_db_url)
    try:
        with engine.begin() as conn:
            command.downgrade(alembic_config(conn), "base")
        assert set(inspect(engine).get_table_names()) <= {"hexie_alembic_version", "sqlite_sequence"}
        upgrade(engine)
        assert schema_differences(engine) == []
    finally:
        engine.dispose()


# --- engine and configuration ------------------------------------------------------------

def test_sqlite_connection_settings(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 15000
            # Case-sensitive LIKE, as on PostgreSQL: 'T01' is not under 't01'.
            assert conn.exec_driver_sql("SELECT '/T01/' LIKE '/t01/%'").scalar() == 0
        assert engine.pool._pre_ping is True
    finally:
        engine.dispose()


def test_sqlite_engine_is_usable_from_another_thread(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    results: list[int] = []
    try:
        with engine.connect() as conn:
            thread = threading.Thread(target=lambda: results.append(conn.exec_driver_sql("SELECT 1").scalar()))
            thread.start()
            thread.join()
        assert results == [1]
    finally:
        engine.dispose()


def test_database_url_default_and_environment(monkeypatch):
    monkeypatch.delenv("HEXIE_DATABASE_URL", raising=False)
    assert database_url() == "sqlite:///hexie.db"
    monkeypatch.setenv("HEXIE_DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert database_url() == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize("raw", ["postgresql://u@h/db", "postgres://u@h/db", "postgresql+psycopg://u@h/db"])
def test_postgres_urls_use_psycopg3(raw):
    assert normalize_url(raw).drivername == "postgresql+psycopg"


def test_session_objects_stay_readable_after_commit(session_factory):
    with session_factory() as session:
        case = new_case(session)
        session.commit()
    assert case.state == "application"  # no reload needed: expire_on_commit=False


# --- optimistic locking ------------------------------------------------------------------

def test_stale_case_update_raises(session_factory):
    with session_factory() as session:
        case_id = new_case(session).id
        session.commit()

    first, second = session_factory(), session_factory()
    try:
        mine = first.get(Case, case_id)
        theirs = second.get(Case, case_id)
        assert mine.lock_version == theirs.lock_version == 1
        mine.state = "survey"
        first.commit()
        assert mine.lock_version == 2
        theirs.state = "rejected"
        with pytest.raises(StaleDataError):
            second.commit()
    finally:
        first.close()
        second.close()
    with session_factory() as session:
        assert session.get(Case, case_id).state == "survey"


def test_stale_task_update_raises(session_factory):
    with session_factory() as session:
        case = new_case(session)
        task = Task(case=case, process_key="aid", state="application", name="application",
                    role="village_rep", org_unit=case.org_unit, org_path=case.org_path)
        session.add(task)
        session.commit()
        task_id = task.id

    first, second = session_factory(), session_factory()
    try:
        first.get(Task, task_id).status = "allocated"
        stale = second.get(Task, task_id)
        first.commit()
        stale.status = "cancelled"
        with pytest.raises(StaleDataError):
            second.commit()
    finally:
        first.close()
        second.close()


# --- columns, defaults, constraints ---------------------------------------------------------

def test_defaults_and_json_roundtrip(session_factory):
    with session_factory() as session:
        case = new_case(session)
        case.data = {"applicant_name": "李芳", "monthly_income": Decimal("450.50"), "photos": []}
        user = User(username="lifang", name="李芳", password_hash="!")
        session.add(user)
        session.commit()
        case_id, user_id = case.id, user.id
    with session_factory() as session:
        case = session.get(Case, case_id)
        assert case.data == {"applicant_name": "李芳", "monthly_income": "450.50", "photos": []}
        assert case.confidential is False and case.audit_head is None and case.closed_at is None
        assert case.created_at.tzinfo is None and case.updated_at >= case.created_at
        user = session.get(User, user_id)
        assert (user.active, user.locale, user.away_until) == (True, "zh", None)


def test_big_tables_ids_count_up(session_factory):
    with session_factory() as session:
        ids = [new_case(session).id for _ in range(3)]
        session.commit()
    assert ids == sorted(ids) and len(set(ids)) == 3


def test_duplicate_role_assignment_is_refused(session_factory):
    with session_factory() as session:
        unit = OrgUnit(code="county", name="某县", level="county", path="/county/")
        user = User(username="wangmin", name="王敏", password_hash="!")
        session.add_all([RoleAssignment(user=user, role="town_cadre", org_unit=unit),
                         RoleAssignment(user=user, role="town_cadre", org_unit=unit)])
        with pytest.raises(IntegrityError):
            session.commit()


def test_foreign_keys_are_enforced(session_factory):
    with session_factory() as session:
        session.add(Task(case_id=999, process_key="aid", state="s", name="s", role="r",
                         org_unit_id=999, org_path="/x/"))
        with pytest.raises(IntegrityError):
            session.commit()


def test_deleting_a_user_deletes_their_role_assignments(session_factory):
    with session_factory() as session:
        unit = OrgUnit(code="county", name="某县", level="county", path="/county/")
        user = User(username="wangmin", name="王敏", password_hash="!")
        session.add(RoleAssignment(user=user, role="admin", org_unit=unit))
        session.commit()
        # In the database itself (ON DELETE CASCADE), not only through the ORM.
        session.execute(delete(User).where(User.username == "wangmin"))
        session.commit()
        assert session.scalar(select(func.count()).select_from(RoleAssignment)) == 0


def test_the_schema_has_the_inbox_indexes(engine):
    def indexes(table: str) -> set[tuple[str, ...]]:
        found = {tuple(ix["column_names"]) for ix in inspect(engine).get_indexes(table)}
        found |= {tuple(uq["column_names"]) for uq in inspect(engine).get_unique_constraints(table)}
        return found

    assert {("assignee_id", "status"), ("role", "status", "org_path"), ("status", "due_at"),
            ("status", "escalate_at"), ("case_id", "status")} <= indexes("hexie_tasks")
    assert {("process_key", "state"), ("org_path",), ("subject",)} <= indexes("hexie_cases")
    assert {("role", "org_unit_id"), ("user_id", "role", "org_unit_id")} <= indexes("hexie_role_assignments")
    assert ("case_id", "seq") in indexes("hexie_audit_events")
    assert ("status", "due_at") in indexes("hexie_timers")


def test_postgres_paths_compare_bytewise(pg_url):
    # Whatever the server's locale, prefix LIKE on a path can use its b-tree index.
    engine = make_engine(pg_url)
    try:
        with engine.connect() as conn:
            collations = conn.execute(text(
                "SELECT table_name, column_name, collation_name FROM information_schema.columns "
                "WHERE column_name IN ('path', 'org_path') AND table_schema = current_schema()")).all()
    finally:
        engine.dispose()
    assert {(t, c) for t, c, _ in collations} == {("hexie_org_units", "path"), ("hexie_cases", "org_path"), ("hexie_tasks", "org_path"),
                                                  ("hexie_ledger_entries", "org_path")}
    assert {coll for _, _, coll in collations} == {"C"}


def test_migration_0003_fills_audit_seq_from_existing_events(empty_db_url):
    """Cases recorded before 0003 get the seq of their latest event."""
    from alembic import command
    engine = make_engine(empty_db_url)
    try:
        with engine.begin() as conn:
            command.upgrade(alembic_config(conn), "0002")
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO hexie_process_versions (id, key, version, source_text, content_hash, created_at) "
                              "VALUES (1, 'p', 1, 'x', 'h', CURRENT_TIMESTAMP)"))
            conn.execute(text("INSERT INTO hexie_org_units (id, code, name, level, path) VALUES (1, 'c', 'C', 'county', '/c/')"))
            conn.execute(text("INSERT INTO hexie_cases (id, process_version_id, process_key, state, data, org_unit_id, "
                              "org_path, created_at, updated_at, subject, confidential, lock_version, audit_head) "
                              "VALUES (7, 1, 'p', 's', '{}', 1, '/c/', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, '', "
                              "false, 1, 'h3')"))
            for seq in (1, 2, 3):
                conn.execute(text("INSERT INTO hexie_audit_events (case_id, seq, at, actor, kind, hash) "
                                  "VALUES (7, :seq, CURRENT_TIMESTAMP, 'system', 'fired', :h)"),
                             {"seq": seq, "h": f"h{seq}"})
        upgrade(engine)
        with engine.connect() as conn:
            assert conn.scalar(text("SELECT audit_seq FROM hexie_cases WHERE id = 7")) == 3
    finally:
        engine.dispose()
