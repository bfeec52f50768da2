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

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.orm import Session, sessionmaker

from .naming import LEGACY_TABLES, LEGACY_VERSION_TABLE, PREFIX, VERSION_TABLE, prefixed

DEFAULT_DATABASE_URL = "sqlite:///hexie.db"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

# Any constant will do: it only has to be the same in every process that upgrades.
_UPGRADE_LOCK_KEY = 0x4E58_1E00


def database_url() -> str:
    """The database to use: ``$HEXIE_DATABASE_URL``, else ``hexie.db`` in the cwd."""
    return os.environ.get("HEXIE_DATABASE_URL") or DEFAULT_DATABASE_URL


def db_schema() -> str | None:
    """``$HEXIE_DB_SCHEMA``: the PostgreSQL schema that holds all of Hexie's tables, if any."""
    schema = (os.environ.get("HEXIE_DB_SCHEMA") or "").strip()
    if schema and not schema.replace("_", "").isalnum():
        raise ValueError(f"HEXIE_DB_SCHEMA={schema!r}: use letters, digits and _ only")
    return schema or None


def owns(table_name: str) -> bool:
    """Whether a table of the database is Hexie's (the others are the host's)."""
    return table_name.startswith(PREFIX)


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


#: What :func:`json_dumps` encodes with, made once (``json.dumps`` with these options makes the
#: same encoder on every call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=json_default)


def json_dumps(value: Any) -> str:
    """Serialize a JSON column value: readable Chinese, Decimal and dates as strings."""
    return _ENCODER.encode(value)


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


def make_engine(url: str | URL, schema: str | None = None, **kwargs: Any) -> Engine:
    """Create an engine for ``url`` configured for Hexie.

    SQLite: WAL journal, foreign keys on, 5 s busy timeout, usable from several
    threads. PostgreSQL through psycopg 3; with ``schema`` (default
    ``$HEXIE_DB_SCHEMA``) every connection looks in that schema first, so that all
    of Hexie's tables live there. Extra ``kwargs`` go to :func:`sqlalchemy.create_engine`.

    PostgreSQL connections are not pinged before each use (``pool_pre_ping``: one more round
    trip per transaction, 3–10 % of a step). A connection that a restarted server or a
    network blip broke fails its first statement; SQLAlchemy then invalidates it and every
    connection older than it in the pool, and the call answers 503 with ``Retry-After``
    (:func:`database_unavailable`), so the retry gets a fresh connection.
    """
    parsed = normalize_url(url)
    schema = schema or db_schema()
    options: dict[str, Any] = {"pool_pre_ping": False, "json_serializer": json_dumps}
    if parsed.get_backend_name() == "sqlite":
        options["connect_args"] = {"check_same_thread": False}
        options["pool_pre_ping"] = True     # no server to reach: the ping costs microseconds, not a round trip
    options.update(kwargs)
    engine = create_engine(parsed, **options)
    from . import fast
    fast.install(engine)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _set_sqlite_pragmas)
    else:
        event.listen(engine, "connect", _no_jit)
    if engine.dialect.name != "sqlite" and schema:
        def _set_search_path(dbapi_connection: Any, _record: Any) -> None:
            with dbapi_connection.cursor() as cursor:
                cursor.execute(f'SET search_path TO "{schema}", public')
            dbapi_connection.commit()
        event.listen(engine, "connect", _set_search_path)
        engine.hexie_schema = schema  # read by upgrade()
    return engine


def _no_jit(dbapi_connection: Any, _record: Any) -> None:
    """PostgreSQL's JIT off for Hexie's connections: its statements are short (an inbox page, a
    step), and the planner's cost of a count over a million tasks started a JIT compilation of
    0.5 s for a statement that runs in 2 ms (bench/bench_http.py, 1 Dec; docs/performance.md)."""
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET jit = off")
    dbapi_connection.commit()


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
                if connection.dialect.name == "postgresql":
                    schema = getattr(engine, "hexie_schema", None)
                    if schema:
                        connection.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
                    _adopt_legacy_postgres(connection, schema)
                elif connection.dialect.name == "sqlite":
                    _adopt_legacy_sqlite(connection)
                command.upgrade(alembic_config(connection), revision)
        finally:
            if own_engine:
                engine.dispose()


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at, or None when it has none."""
    from alembic.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision()


# --- databases made by Hexie 0.1 (bare table names, the shared alembic_version) ---------

#: The revisions Hexie 0.1 wrote into ``alembic_version``.
LEGACY_REVISIONS = ("0001", "0002", "0003", "0004", "0005", "0006")


def _legacy_revision(connection: Connection) -> str | None:
    """Hexie 0.1's revision when ``connection``'s database was made by it, else None."""
    names = set(inspect(connection).get_table_names())
    if VERSION_TABLE in names or LEGACY_VERSION_TABLE not in names:
        return None
    if not {"process_versions", "cases", "audit_events"} <= names:
        return None
    rows = connection.exec_driver_sql(f"SELECT version_num FROM {LEGACY_VERSION_TABLE}").scalars().all()
    ours = [r for r in rows if r in LEGACY_REVISIONS]
    return ours[0] if len(ours) == 1 else None


def _move_revision(connection: Connection, revision: str) -> None:
    """Hexie's revision goes to its own version table; ``alembic_version`` is left to the host."""
    connection.exec_driver_sql(f"CREATE TABLE {VERSION_TABLE} (version_num VARCHAR(32) NOT NULL, "
                               f"CONSTRAINT {VERSION_TABLE}_pkc PRIMARY KEY (version_num))")
    connection.exec_driver_sql(f"INSERT INTO {VERSION_TABLE} (version_num) VALUES ('{revision}')")
    connection.exec_driver_sql(f"DELETE FROM {LEGACY_VERSION_TABLE} WHERE version_num = '{revision}'")
    if not connection.exec_driver_sql(f"SELECT count(*) FROM {LEGACY_VERSION_TABLE}").scalar():
        connection.exec_driver_sql(f"DROP TABLE {LEGACY_VERSION_TABLE}")


def _adopt_legacy_postgres(connection: Connection, schema: str | None) -> None:
    """Rename a 0.1 database's tables, indexes, constraints and sequences in place (every row kept)."""
    revision = _legacy_revision(connection)
    if revision is None:
        return
    present = set(inspect(connection).get_table_names())
    for table in LEGACY_TABLES:
        if table in present:
            connection.exec_driver_sql(f'ALTER TABLE "{table}" RENAME TO "{prefixed(table)}"')
    here = "(SELECT oid FROM pg_namespace WHERE nspname = current_schema())"
    for name, relkind in connection.exec_driver_sql(
            f"SELECT relname, relkind FROM pg_class WHERE relnamespace = {here} AND relkind IN ('i', 'S')").all():
        if prefixed(name) != name:
            kind = "SEQUENCE" if relkind == "S" else "INDEX"
            connection.exec_driver_sql(f'ALTER {kind} "{name}" RENAME TO "{prefixed(name)}"')
    for table, name in connection.exec_driver_sql(
            f"SELECT c.relname, k.conname FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid "
            f"WHERE c.relnamespace = {here}").all():
        if owns(table) and prefixed(name) != name:
            connection.exec_driver_sql(f'ALTER TABLE "{table}" RENAME CONSTRAINT "{name}" TO "{prefixed(name)}"')
    _move_revision(connection, revision)
    if schema:
        for table in [VERSION_TABLE, *(prefixed(t) for t in LEGACY_TABLES if t in present)]:
            connection.exec_driver_sql(f'ALTER TABLE public."{table}" SET SCHEMA "{schema}"')


def _adopt_legacy_sqlite(connection: Connection) -> None:
    """The same for SQLite: each table rebuilt under its new name (SQLite renames no constraint).

    Foreign keys are switched off for the copy (``PRAGMA foreign_keys`` cannot change
    inside a transaction, so this runs before the upgrade's own one) and checked after it.
    """
    if _legacy_revision(connection) is None:
        return
    connection.exec_driver_sql("COMMIT")          # leave upgrade()'s BEGIN IMMEDIATE for a moment
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    try:
        connection.exec_driver_sql("BEGIN IMMEDIATE")
        revision = _legacy_revision(connection)   # another upgrader may have done it meanwhile
        if revision is not None:
            schema_rows = connection.exec_driver_sql(
                "SELECT type, name, tbl_name, sql FROM sqlite_master WHERE sql IS NOT NULL").all()
            legacy = [r for r in schema_rows if r.tbl_name in LEGACY_TABLES]
            for row in (r for r in legacy if r.type == "table"):
                connection.exec_driver_sql(prefixed(row.sql))
                connection.exec_driver_sql(f'INSERT INTO "{prefixed(row.name)}" SELECT * FROM "{row.name}"')
            for row in (r for r in legacy if r.type == "table"):
                connection.exec_driver_sql(f'DROP TABLE "{row.name}"')
            for row in (r for r in legacy if r.type == "index"):
                connection.exec_driver_sql(prefixed(row.sql))
            if "sqlite_sequence" in {r.name for r in schema_rows}:
                for table in LEGACY_TABLES:
                    connection.exec_driver_sql(
                        f"UPDATE sqlite_sequence SET name = '{prefixed(table)}' WHERE name = '{table}'")
            _move_revision(connection, revision)
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
            if broken:
                raise RuntimeError(f"renaming the tables of Hexie 0.1 broke foreign keys: {broken[:5]}")
        connection.exec_driver_sql("COMMIT")
    except BaseException:
        connection.exec_driver_sql("ROLLBACK")
        raise
    finally:
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def database_unavailable(err: BaseException) -> bool:
    """True when ``err`` says the database could not be reached or the connection broke (a
    restart, a network blip, a pool exhausted, SQLite's file busy or missing): the request
    may succeed if tried again, so the edge answers 503 with ``Retry-After``, never a 500."""
    from sqlalchemy import exc

    if isinstance(err, (exc.OperationalError, exc.InterfaceError, exc.TimeoutError, exc.DisconnectionError)):
        return True
    return isinstance(err, exc.DBAPIError) and bool(getattr(err, "connection_invalidated", False))
