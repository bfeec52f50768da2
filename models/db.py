"""Engines, sessions and schema upgrades, for SQLite and PostgreSQL alike.

Plain SQLAlchemy (no Flask-SQLAlchemy) so that the CLI, the timer worker, a host
application and the tests all open the database the same way.
"""
from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.orm import Session, sessionmaker

DEFAULT_DATABASE_URL = "sqlite:///hexie.db"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Any constant will do: it only has to be the same in every process that upgrades.
_UPGRADE_LOCK_KEY = 0x4E58_1E00


def database_url() -> str:
    """The database to use: ``$HEXIE_DATABASE_URL``, else ``hexie.db`` in the cwd."""
    return os.environ.get("HEXIE_DATABASE_URL") or DEFAULT_DATABASE_URL


def normalize_url(url: str | URL) -> URL:
    """Parse ``url``, sending plain ``postgresql://`` (and ``postgres://``) to psycopg 3.

    psycopg 3 is the only PostgreSQL driver Hexie depends on; SQLAlchemy's default
    for a bare ``postgresql://`` would be psycopg2.
    """
    if isinstance(url, str) and url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    parsed = make_url(url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def json_default(value: Any) -> Any:
    """``json.dumps`` default for stored values (also used by the audit hash)."""
    # Money and dates travel as strings; anything else is a programming error.
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def json_dumps(value: Any) -> str:
    """Serialize a JSON column value: readable Chinese, Decimal and dates as strings."""
    return json.dumps(value, ensure_ascii=False, default=json_default)


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        # busy_timeout first: a second writer waits instead of failing at once, and
        # switching to WAL itself needs the lock another process's upgrade may hold.
        # WAL: readers do not block the writer; foreign_keys: SQLite ignores them otherwise.
        cursor.execute("PRAGMA busy_timeout=15000")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Org paths are compared with LIKE 'prefix%': make that case-sensitive, as on
        # PostgreSQL (unit 'T01' is not in the subtree of 't01'), which also lets SQLite
        # use the path indexes. Case-insensitive search should use ilike().
        cursor.execute("PRAGMA case_sensitive_like=ON")
    finally:
        cursor.close()


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` configured for Hexie.

    SQLite: WAL journal, foreign keys on, 5 s busy timeout, usable from several
    threads. PostgreSQL through psycopg 3. Connections are pinged before use, so a
    restarted database server does not break the first request after it.
    Extra ``kwargs`` go to :func:`sqlalchemy.create_engine`.
    """
    parsed = normalize_url(url)
    options: dict[str, Any] = {"pool_pre_ping": True, "json_serializer": json_dumps}
    if parsed.get_backend_name() == "sqlite":
        options["connect_args"] = {"check_same_thread": False}
    options.update(kwargs)
    engine = create_engine(parsed, **options)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _set_sqlite_pragmas)
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory whose objects stay readable after commit (no reload per access)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def alembic_config(connection: Connection | None = None):  # -> alembic.config.Config
    """An Alembic configuration without alembic.ini, pointing at our migrations."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@contextmanager
def _sqlite_upgrade_lock(url: URL) -> Iterator[None]:
    """Hold an exclusive lock on ``<database>.upgrade-lock`` (threads and processes).

    SQLite's own locks are taken per statement: the switch to WAL on a database file
    that is still empty, made by each new connection, can race with another
    upgrader's first write and fail with "database is locked" whatever the busy
    timeout. Upgraders of one file therefore queue here before they connect at all.
    """
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    lock_path = Path(database).resolve().with_name(Path(database).name + ".upgrade-lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def upgrade(engine_or_url: Engine | str | URL, revision: str = "head") -> None:
    """Create or migrate the schema up to ``revision``; a no-op when already there.

    Runs in one transaction. Several processes may call it at once (gunicorn workers
    starting together): on PostgreSQL they queue on an advisory lock, on SQLite on a
    lock file beside the database, and those that come second find nothing left to do.
    """
    from alembic import command

    own_engine = not isinstance(engine_or_url, Engine)
    url = normalize_url(engine_or_url) if own_engine else engine_or_url.url
    serialize = _sqlite_upgrade_lock(url) if url.get_backend_name() == "sqlite" else nullcontext()
    with serialize:
        engine = make_engine(url) if own_engine else engine_or_url
        try:
            with engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_UPGRADE_LOCK_KEY})")
                elif connection.dialect.name == "sqlite":
                    # pysqlite would run each DDL statement in autocommit; an explicit
                    # BEGIN IMMEDIATE makes the whole upgrade atomic, and keeps out
                    # writers other than upgraders (the app's own connections).
                    connection.exec_driver_sql("PRAGMA busy_timeout=120000")
                    connection.exec_driver_sql("BEGIN IMMEDIATE")
                command.upgrade(alembic_config(connection), revision)
        finally:
            if own_engine:
                engine.dispose()


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at, or None when it has none."""
    from alembic.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()
