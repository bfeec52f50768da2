"""Fixtures shared by the whole test suite: databases, engines, sessions.

Every database test runs twice, on SQLite and on PostgreSQL, through ``db_url``:

* ``sqlite``: a fresh file in the test's ``tmp_path``, copied from a template
  upgraded once per session (cheaper than migrating for every test);
* ``postgres``: one database per pytest-xdist worker (``hexie_test_gw0``, or
  ``hexie_test_main`` without xdist) on the server named by
  ``$HEXIE_TEST_DATABASE_URL``, created and upgraded once per session, and emptied
  before each test (every row deleted, id sequences restarted). Skipped when the
  variable is unset.

``db_url`` always names a database at the head revision with no rows. ``engine``,
``session_factory`` and ``session`` are built on it. ``pg_url`` is the same
PostgreSQL database alone, for concurrency tests with real parallel connections
(tests using it are marked ``postgres`` automatically). ``empty_db_url`` names a
database with no schema at all, for migration tests.
"""
from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from sqlalchemy import Engine, MetaData, create_engine, text
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from hexie.models import make_engine, make_session_factory, upgrade
from hexie.models.db import normalize_url
from hexie.workflows import auth

PG_ENV = "HEXIE_TEST_DATABASE_URL"

# The suite checks the same thing whatever the developer's shell holds: every HEXIE_*
# setting but the two that say where PostgreSQL is and that nothing may be skipped (and
# HEXIE_SCREENSHOTS, where the browser tests keep their screenshots: it changes no
# behaviour) is dropped before any test (or any subprocess a test starts) reads it.
_KEPT = (PG_ENV, "HEXIE_REQUIRE_ALL", "HEXIE_SCREENSHOTS")
for _name in [n for n in os.environ if n.startswith("HEXIE_") and n not in _KEPT]:
    del os.environ[_name]
# One audit key for the whole run and the processes it starts (tests that move the instance
# folder mid-test would otherwise hash one chain with two keys); tests of the key unset it.
os.environ["HEXIE_AUDIT_KEY"] = "hexie-test-audit-key"

DATABASES = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "pg_url" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.postgres)


@pytest.fixture(scope="session", autouse=True)
def fast_password_hashing() -> Iterator[None]:
    """Cheap Argon2 parameters: the defaults cost ~50 ms and 64 MiB per hash."""
    old = auth.configure_hasher(PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    yield
    auth.configure_hasher(old)


# --- PostgreSQL -----------------------------------------------------------------------

def _worker() -> str:
    # the pid keeps concurrent pytest runs on one server (developers, helpers) apart
    return f'{os.environ.get("PYTEST_XDIST_WORKER", "main")}_{os.getpid()}'


def _pg_server() -> URL:
    raw = os.environ.get(PG_ENV)
    if not raw:
        if os.environ.get("HEXIE_REQUIRE_ALL"):  # CI: a skipped database test would hide a failure
            pytest.fail(f"{PG_ENV} is not set but HEXIE_REQUIRE_ALL is")
        pytest.skip(f"{PG_ENV} is not set")
    return normalize_url(raw)


def _url_string(url: URL) -> str:
    return url.render_as_string(hide_password=False)


def _recreate_database(server: URL, name: str) -> str:
    """Drop and create database ``name`` on ``server``; returns its URL."""
    admin = create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        admin.dispose()
    return _url_string(server.set(database=name))


def _drop_database(server: URL, name: str) -> None:
    admin = create_engine(server, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def _deletion_order(url: str) -> list[str]:
    """The database's tables (but hexie_alembic_version), children before parents."""
    engine = create_engine(normalize_url(url), poolclass=NullPool)
    try:
        metadata = MetaData()
        metadata.reflect(engine)
    finally:
        engine.dispose()
    return [t.name for t in reversed(metadata.sorted_tables) if t.name != "hexie_alembic_version"]


def _empty_tables(url: str, tables: list[str]) -> None:
    """Delete every row and restart every id sequence, as before the first test.

    The effect of ``TRUNCATE … RESTART IDENTITY CASCADE``, but DELETE on these small
    tables takes ~20 ms where TRUNCATE (new files for every table) takes 300 ms.
    """
    engine = create_engine(normalize_url(url), poolclass=NullPool)
    try:
        with engine.connect() as conn:
            # A connection a previous test forgot to close would hold locks that block us.
            conn.execute(text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
            conn.exec_driver_sql("SET LOCAL synchronous_commit = off")  # nothing to keep
            for table in tables:
                conn.exec_driver_sql(f'DELETE FROM "{table}"')
            conn.execute(text(
                "SELECT setval(c.oid, 1, false) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind = 'S' AND n.nspname = current_schema()"))
            conn.commit()
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def _pg_database() -> Iterator[tuple[str, list[str]]]:
    """This worker's PostgreSQL test database, at head, and its tables in deletion
    order; dropped at the end."""
    server = _pg_server()
    name = f"hexie_test_{_worker()}"
    url = _recreate_database(server, name)
    upgrade(url)
    yield url, _deletion_order(url)
    _drop_database(server, name)


@pytest.fixture
def pg_url(_pg_database: tuple[str, list[str]]) -> str:
    """URL of an empty PostgreSQL database at head (skipped without the server)."""
    url, tables = _pg_database
    _empty_tables(url, tables)
    return url


# --- SQLite ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "hexie.db"
    upgrade(f"sqlite:///{path}")  # disposes its engine: the WAL is checkpointed into the file
    return path


# --- the parametrized database ---------------------------------------------------------

@pytest.fixture(params=DATABASES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """URL of an empty database at the head revision: SQLite, then PostgreSQL."""
    if request.param == "sqlite":
        template: Path = request.getfixturevalue("_sqlite_template")
        target = tmp_path / "hexie.db"
        shutil.copyfile(template, target)
        return f"sqlite:///{target}"
    return request.getfixturevalue("pg_url")


@pytest.fixture(params=DATABASES)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """URL of a database without any table: an empty SQLite file, a new PostgreSQL database."""
    if request.param == "sqlite":
        target = tmp_path / "empty.db"
        target.touch()
        yield f"sqlite:///{target}"
        return
    server = _pg_server()
    name = f"hexie_test_{_worker()}_empty"
    yield _recreate_database(server, name)
    _drop_database(server, name)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on ``db_url`` (already at head); disposed after the test."""
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    return make_session_factory(engine)


@pytest.fixture
def session(session_factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session for the test; whatever it did not commit is rolled back."""
    with session_factory() as session:
        yield session
