"""Hexie's tables inside a host's database (host.md, "Tables").

Every table is ``hexie_…``, the history is in ``hexie_alembic_version``, a host's own
``users``/``tasks``/``cases``/``attachments``/``alembic_version`` are left untouched, and a
database made by Hexie 0.1 (commit a24fbbe: the demo county, 50 cases) is renamed in
place with every row kept and both verifications passing.
"""
from __future__ import annotations

import gzip
import shutil
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.pool import NullPool

from hexie.models import Base, make_engine, make_session_factory, upgrade
from hexie.models.db import current_revision
from hexie.models.naming import LEGACY_TABLES, VERSION_TABLE, prefixed
from hexie.workflows.audit import verify_chain
from hexie.workflows.ledger import verify_ledger

from .test_models import head_revision, schema_differences

LEGACY = Path(__file__).parent / "fixtures" / "legacy_a24fbbe"
#: tables whose rows a later migration moved: webhook deliveries into the outbox (0010)
MOVED = {"hexie_webhook_deliveries": "hexie_outbox"}


def _now_in(table: str) -> str:
    """Where a 0.1 table's rows are now."""
    return MOVED.get(prefixed(table), prefixed(table))

HOST_DDL = [
    "CREATE TABLE users (id INTEGER PRIMARY KEY, email VARCHAR(200) NOT NULL)",
    "CREATE TABLE tasks (id INTEGER PRIMARY KEY, title VARCHAR(200))",
    "CREATE TABLE cases (id INTEGER PRIMARY KEY, ref VARCHAR(50))",
    "CREATE TABLE attachments (id INTEGER PRIMARY KEY, path VARCHAR(200))",
    "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)",
    "INSERT INTO users (id, email) VALUES (1, 'boss@erp.example')",
    "INSERT INTO tasks (id, title) VALUES (1, 'order paper')",
    "INSERT INTO cases (id, ref) VALUES (1, 'PR-9')",
    "INSERT INTO alembic_version (version_num) VALUES ('ae1027a6acf')",
]


def _legacy_database(kind: str, tmp_path: Path, empty_db_url: str) -> str:
    """``empty_db_url`` filled with the a24fbbe demo database."""
    if kind == "sqlite":
        target = Path(empty_db_url.removeprefix("sqlite:///"))
        with gzip.open(LEGACY / "hexie-sqlite.db.gz") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
        return empty_db_url
    if shutil.which("psql") is None:
        pytest.fail("psql is needed to restore the PostgreSQL dump of a24fbbe")
    url = make_engine(empty_db_url).url
    sql = gzip.decompress((LEGACY / "hexie-postgres.sql.gz").read_bytes())
    subprocess.run(["psql", "-q", "-v", "ON_ERROR_STOP=1", "-h", url.host, "-p", str(url.port or 5432),
                    "-U", url.username, "-d", url.database], input=sql, check=True, capture_output=True)
    return empty_db_url


def _counts(url: str, tables: list[str]) -> dict[str, int]:
    engine = create_engine(make_engine(url).url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return {t: conn.execute(text(f'SELECT count(*) FROM "{t}"')).scalar() for t in tables}
    finally:
        engine.dispose()


@pytest.fixture
def legacy_url(empty_db_url, tmp_path):
    kind = "sqlite" if empty_db_url.startswith("sqlite") else "postgres"
    return _legacy_database(kind, tmp_path, empty_db_url)


def test_a24fbbe_database_upgrades_in_place(legacy_url):
    before = _counts(legacy_url, list(LEGACY_TABLES))
    assert before["cases"] == 50 and before["audit_events"] > 200 and before["ledger_entries"] > 0

    upgrade(legacy_url)

    engine = make_engine(legacy_url)
    try:
        names = set(inspect(engine).get_table_names())
        assert not names & set(LEGACY_TABLES)                 # nothing left under a bare name
        assert "alembic_version" not in names                 # it held only Hexie's revision
        assert current_revision(engine) == head_revision()
        assert schema_differences(engine) == []               # exactly the schema of a new database
        after = _counts(legacy_url, [_now_in(t) for t in LEGACY_TABLES])
        assert after == {_now_in(t): n for t, n in before.items()}
        with make_session_factory(engine)() as s:
            assert verify_chain(s) == []
            assert verify_ledger(s) == []
        # a second upgrade finds nothing to do
        upgrade(engine)
        assert _counts(legacy_url, [_now_in(t) for t in LEGACY_TABLES]) == after
    finally:
        engine.dispose()


def test_the_upgraded_database_runs_new_cases(legacy_url):
    from hexie.workflows.engine import create_engine as hexie_engine
    from hexie.workflows.service import WorkflowService

    engine = hexie_engine(legacy_url)                        # upgrades, records the definitions
    case_id = WorkflowService(engine).start_case(engine.actor("rep0101"), "elder_support", "t01v01", {
        "household_head": "张大山", "household_address": "东村3组", "elder_names": "张老汉", "elder_count": 1,
        "youngest_elder_age": 72, "children_count": 2, "children_names": "张一、张二", "living_arrangement": "alone"})
    assert case_id > 50                                        # ids go on after the old ones
    with engine.session_factory() as s:
        assert verify_chain(s) == []


def test_a_hosts_own_tables_are_left_untouched(empty_db_url):
    engine = create_engine(make_engine(empty_db_url).url, poolclass=NullPool)
    try:
        with engine.begin() as conn:
            for statement in HOST_DDL:
                conn.execute(text(statement))
    finally:
        engine.dispose()

    upgrade(empty_db_url)

    engine = make_engine(empty_db_url)
    try:
        names = set(inspect(engine).get_table_names())
        assert {"users", "tasks", "cases", "attachments", "alembic_version", VERSION_TABLE} <= names
        assert set(Base.metadata.tables) <= names
        assert all(t.startswith("hexie_") for t in Base.metadata.tables)
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "ae1027a6acf"
            assert conn.execute(text("SELECT email FROM users")).all() == [("boss@erp.example",)]
            assert conn.execute(text("SELECT ref FROM cases")).all() == [("PR-9",)]
        assert current_revision(engine) == head_revision()
        assert schema_differences(engine) == []
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_hexie_db_schema_puts_every_table_in_its_schema(pg_url, monkeypatch):
    from tests.conftest import _pg_server, _recreate_database, _drop_database, _worker

    server = _pg_server()
    name = f"hexie_test_{_worker()}_schema"
    url = _recreate_database(server, name)
    try:
        monkeypatch.setenv("HEXIE_DB_SCHEMA", "erp_hexie")
        upgrade(url)
        engine = make_engine(url)
        try:
            assert set(Base.metadata.tables) | {VERSION_TABLE} == set(inspect(engine).get_table_names("erp_hexie"))
            assert not set(inspect(engine).get_table_names("public")) & set(Base.metadata.tables)
            assert current_revision(engine) == head_revision()
        finally:
            engine.dispose()
    finally:
        _drop_database(server, name)
