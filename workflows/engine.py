"""The engine: loaded definitions, their recorded versions, transactions and events.

One :class:`Engine` per application (or host). It owns no Flask state; the web
layer, the CLI, the worker and host applications all drive it the same way.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone, tzinfo
from pathlib import Path
from typing import Any, Callable, Iterator

from sqlalchemy import event as sa_event, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from hexie.models import OrgUnit, ProcessVersion, RoleAssignment, User, fast, make_engine, make_session_factory

from .access import Actor, Assignment
from .errors import NotFound
from .loader import Registry, load_definitions_strict, load_process_text
from .machine import CompiledProcess, compile_process
from .outbox import EVENT_KINDS, resolve_pending, write_events
from .spec import ProcessSpec

log = logging.getLogger(__name__)


def local_timezone(name: str | None = None) -> tzinfo:
    """The zone ``name``, else ``$HEXIE_TIMEZONE``, else Asia/Shanghai (UTC+8 without a tz database)."""
    import os
    name = name or os.environ.get("HEXIE_TIMEZONE") or "Asia/Shanghai"
    try:
        from zoneinfo import ZoneInfo
        return ZoneInfo(name)
    except Exception:  # no tz database on this host (or an unknown name)
        log.warning("time zone %r is not known here; using UTC+8", name)
        return timezone(timedelta(hours=8))


def utcnow() -> datetime:
    """Naive UTC, as every timestamp is stored."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Engine:
    """Definitions + database + clock + subscribers."""

    def __init__(self, session_factory: sessionmaker, registry: Registry,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.session_factory = session_factory
        self.registry = registry
        self.clock = clock
        self._versions: dict[str, tuple[int, int]] = {}      # key -> (version id, version)
        self._by_version_id: dict[int, ProcessSpec] = {}
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[dict[str, Any]], None]] = []
        self._outbox_listeners: list[Callable[[dict[str, list[int]]], None]] = []
        self._checked_at = 0.0
        self.timezone: tzinfo = local_timezone(None)
        # The file each process was loaded from. A version re-read from the database (published
        # by another worker, or older) keeps its file's path: the editor writes a publish back
        # to that file, whichever worker made the previous one.
        self._paths: dict[str, str] = {key: spec.path for key, spec in registry.processes.items() if spec.path}

    # -- the office's time zone (HEXIE_TIMEZONE) ---------------------------------
    def set_timezone(self, name: str | None) -> None:
        """Use the time zone ``name`` (IANA, e.g. ``Asia/Shanghai``) for local dates and times."""
        self.timezone = local_timezone(name)

    def local_now(self) -> datetime:
        """The engine's clock (naive UTC) as an aware time in the office's zone."""
        return self.clock().replace(tzinfo=timezone.utc).astimezone(self.timezone)

    def today(self) -> date:
        """Today's date in the office's time zone (what ``today()`` in a guard means)."""
        return self.local_now().date()

    @classmethod
    def from_config(cls, database_url: str, definitions: str | Path, **kw: Any) -> "Engine":
        engine = make_engine(database_url)
        return cls(make_session_factory(engine), load_definitions_strict(definitions), **kw)

    # -- definitions and versions --------------------------------------------
    def sync_definitions(self, published: str | None = None) -> dict[str, int]:
        """Record a new version of each process whose content changed; return key -> version.

        Content that differs from the newest stored version is a new version, even when it
        equals an older one (a file put back as it was: the number still grows). Except
        that a file still holding an older version does not roll back a newer one that was
        published from the browser (``published``: the key :meth:`publish` is recording)
        into a folder it could not write.
        """
        with self.session_factory() as s:
            for key, spec in sorted(self.registry.processes.items()):
                origin = "published" if key == published else "file"
                for _attempt in range(3):
                    latest = self._latest(s, key)
                    if latest is not None and latest.content_hash == spec.content_hash:
                        break
                    if latest is not None and latest.origin == "published" and origin == "file" and s.scalar(
                            select(ProcessVersion.id).where(ProcessVersion.key == key,
                                                            ProcessVersion.content_hash == spec.content_hash)):
                        log.warning("%s: the file holds an older version than v%s, published from the browser; "
                                    "keeping v%s", key, latest.version, latest.version)
                        break
                    row = ProcessVersion(key=key, version=(latest.version + 1) if latest else 1,
                                         source_text=spec.source_text, content_hash=spec.content_hash,
                                         created_at=self.clock(), origin=origin)
                    s.add(row)
                    try:
                        s.commit()
                        latest = row
                        break
                    except IntegrityError:  # another process recorded it first
                        s.rollback()
                if latest.content_hash == spec.content_hash:
                    self._by_version_id[latest.id] = spec    # keep the file's path for messages
                self._adopt(s, latest)
            self._checked_at = time.monotonic()
        return {k: v for k, (_, v) in self._versions.items()}

    @staticmethod
    def _latest(s: Session, key: str) -> ProcessVersion | None:
        return s.scalars(select(ProcessVersion).where(ProcessVersion.key == key)
                         .order_by(ProcessVersion.version.desc()).limit(1)).first()

    def _adopt(self, s: Session, row: ProcessVersion) -> None:
        """Make a stored version the current definition of its process in this process."""
        spec = self.spec_of(s, row.id) if row.id not in self._by_version_id else self._by_version_id[row.id]
        if self.registry.processes.get(row.key) is not spec:
            with self._lock:
                self.registry = Registry(self.registry.roles, {**self.registry.processes, row.key: spec}, [])
        self._versions[row.key] = (row.id, row.version)

    def refresh_versions(self, max_age: float = 5.0) -> None:
        """Pick up versions published by other workers (gunicorn, hosts) at most every ``max_age`` s."""
        if time.monotonic() - self._checked_at < max_age:
            return
        self._checked_at = time.monotonic()
        with self.session_factory() as s:
            rows = s.execute(select(ProcessVersion.key, func.max(ProcessVersion.version))
                             .group_by(ProcessVersion.key)).all()
            for key, version in rows:
                if key in self._versions and version > self._versions[key][1]:
                    self._adopt(s, s.scalars(select(ProcessVersion).where(
                        ProcessVersion.key == key, ProcessVersion.version == version)).one())

    def publish(self, spec: ProcessSpec) -> int:
        """Make ``spec`` the current definition of its process (admin edit); returns its version."""
        with self._lock:
            self.registry = Registry(self.registry.roles, {**self.registry.processes, spec.key: spec}, [])
        return self.sync_definitions(published=spec.key)[spec.key]

    @property
    def processes(self) -> dict[str, ProcessSpec]:
        return self.registry.processes

    def current(self, key: str) -> tuple[ProcessSpec, int, int]:
        """(spec, version id, version) of the current definition of ``key``."""
        self.refresh_versions()
        spec = self.registry.processes.get(key)
        if spec is None or key not in self._versions:
            raise NotFound("没有这个流程", f"no process named {key!r}")
        version_id, version = self._versions[key]
        return spec, version_id, version

    def spec_of(self, session: Session, version_id: int) -> ProcessSpec:
        """The definition a case runs on (older versions are re-read from their source)."""
        spec = self._by_version_id.get(version_id)
        if spec is None:
            row = session.get(ProcessVersion, version_id)
            filename = self._paths.get(row.key) or f"{row.key}.yaml"
            # recorded versions run as they were checked then: a guard the cost model (newer than
            # some of them) refuses is held by the evaluation budget instead of breaking the start
            spec, diagnostics = load_process_text(row.source_text, filename, self.registry.roles, cost_check=False)
            if spec is None:
                raise RuntimeError(f"stored version {row.key} v{row.version} no longer loads: "
                                   + "; ".join(map(str, diagnostics)))
            self._by_version_id[version_id] = spec
        return spec

    def compiled(self, session: Session, version_id: int) -> CompiledProcess:
        return compile_process(self.spec_of(session, version_id))

    def version_number(self, session: Session, version_id: int) -> int:
        for vid, number in self._versions.values():
            if vid == version_id:
                return number
        return session.get(ProcessVersion, version_id).version

    # -- people ----------------------------------------------------------------
    def actor(self, username: str) -> Actor:
        """Load a user and the roles she holds where (one query for the roles)."""
        if not username or "\x00" in username or len(username) > 80:
            raise NotFound("没有这个用户", f"no active user {username!r}")
        with self.session_factory() as s:
            user = s.scalars(select(User).where(User.username == username)).first()
            if user is None or not user.active:
                raise NotFound("没有这个用户", f"no active user {username!r}")
            return self.actor_for(s, user)

    @staticmethod
    def actor_for(session: Session, user: User) -> Actor:
        rows = session.execute(
            select(RoleAssignment.role, OrgUnit.code, OrgUnit.path, OrgUnit.level)
            .join(OrgUnit, OrgUnit.id == RoleAssignment.org_unit_id)
            .where(RoleAssignment.user_id == user.id)).all()
        return Actor(username=user.username, user_id=user.id, name=user.name, locale=user.locale if user.locale_chosen else None,
                     assignments=tuple(Assignment(*r) for r in rows),
                     capabilities=frozenset(user.capabilities or ()))

    # -- transactions and events -------------------------------------------------
    def read_session(self) -> Session:
        """A session for reading only (the pages' and the API's queries).

        On PostgreSQL its connection runs in autocommit: no ``BEGIN`` before the first statement
        and no ``ROLLBACK`` after the last, two round trips fewer for each reading session. It
        reads what a READ COMMITTED transaction reads (there too each statement sees what was
        committed when it started), and it takes no locks. Elsewhere it is a plain session
        (SQLite begins no transaction for reads anyway).
        """
        reader = self.__dict__.get("_reader")
        if reader is None:
            bind = self.session_factory.kw["bind"]
            if bind.dialect.name == "postgresql":
                reader = sessionmaker(bind=bind.execution_options(isolation_level="AUTOCOMMIT"),
                                      expire_on_commit=False)
            else:
                reader = self.session_factory
            self.__dict__["_reader"] = reader
        return reader()

    @contextmanager
    def transaction(self, session: Session | None = None) -> Iterator[Session]:
        """One service call: commit on success, roll back on any error, then publish events.

        The events the call emitted are written to the outbox (one webhook row per
        subscription) in the call's own transaction, just before it commits; after the
        commit they go to the in-process subscribers, and the ids of the outbox rows
        written to the outbox listeners (the webhook dispatcher).

        ``session``: a host's own SQLAlchemy session on the same database (host.md, "One
        transaction with the host"). The call then runs inside it, in a SAVEPOINT: a refused
        call leaves nothing of its own behind (the host's pending work is kept), a successful
        one is committed or rolled back by the host together with the host's records (its
        outbox rows too), and its events are published only after the host's session commits
        (dropped if it rolls back).
        """
        if session is not None:
            with self._joined(session) as joined:
                yield joined
            return
        session = self.session_factory()
        session.info["events"] = []
        session.info["outbox"] = {}
        try:
            yield session
            events = session.info["events"]
            self._write_outbox(session, events)
            written = session.info["outbox"]
            fast.commit(session)    # on PostgreSQL the writes still queued travel with the COMMIT
            session.commit()
            resolve_pending(session)
        except BaseException:
            session.rollback()
            raise
        finally:
            _forget_rows(session)
            session.close()
        self._publish(events)
        if written:
            self._tell_outbox(written)

    @contextmanager
    def _joined(self, session: Session) -> Iterator[Session]:
        _begin_sqlite(session)
        session.info["hexie_joined"] = True      # the mixin's lock check reads the case through it
        outer = session.info.pop("events", None)
        session.info["events"] = []
        session.info.setdefault("outbox", {})
        savepoint = session.begin_nested()
        _forget_rows(session)
        try:
            yield session
            events = session.info["events"]
            self._write_outbox(session, events)   # in the host's transaction: sent once it commits
            savepoint.commit()
            resolve_pending(session)
        except BaseException:
            if savepoint.is_active:
                savepoint.rollback()
            raise
        finally:
            _forget_rows(session)
            if outer is None:
                session.info.pop("events", None)
            else:
                session.info["events"] = outer
        if events:
            self._publish_after_commit(session, events)

    def _publish_after_commit(self, session: Session, events: list[dict[str, Any]]) -> None:
        """Keep ``events`` on the host's session until it commits (then publish) or rolls back (drop)."""
        pending = session.info.setdefault(_PENDING, {})
        pending.setdefault(id(self), (self, []))[1].extend(events)
        if not sa_event.contains(session, "after_commit", _publish_pending):
            sa_event.listen(session, "after_commit", _publish_pending)
            sa_event.listen(session, "after_transaction_end", _drop_pending)

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call ``callback(event)`` after each commit that produced an event."""
        self._subscribers.append(callback)

    def on_outbox(self, callback: Callable[[dict[str, list[int]]], None]) -> None:
        """Call ``callback({kind: [outbox row id, ...]})`` after each commit that wrote outbox rows."""
        self._outbox_listeners.append(callback)

    @staticmethod
    def emit(session: Session, kind: str, **payload: Any) -> None:
        """Queue an outbound event: written to the outbox in this transaction, published after it commits."""
        session.info.setdefault("events", []).append({"event": kind, **payload})

    def _write_outbox(self, session: Session, events: list[dict[str, Any]]) -> None:
        """The call's events as outbox rows, stamped with when they happened."""
        if events:
            stamp = self.clock().isoformat() + "Z"
            for event in events:
                event.setdefault("occurred_at", stamp)
            write_events(session, events, self.clock())

    def _publish(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            for callback in self._subscribers:
                try:
                    callback(event)
                except Exception:  # a subscriber never breaks the person acting
                    log.exception("event subscriber failed for %s", event.get("event"))

    def _tell_outbox(self, written: dict[str, list[int]]) -> None:
        for callback in self._outbox_listeners:
            try:
                callback(written)
            except Exception:  # the rows are committed: the worker sends them if this fails
                log.exception("outbox listener failed")

    def count(self, session: Session, stmt) -> int:
        return session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0


_default: "Engine | None" = None


def default_engine() -> "Engine | None":
    """The engine made last by :func:`create_engine` or mounted by the ``Hexie`` extension (the
    mixin's fallback when a model is not bound to one)."""
    return _default


def set_default_engine(engine: "Engine") -> None:
    global _default
    _default = engine


#: Key in a host session's ``info``: {id(engine): (engine, events)} waiting for its commit.
_PENDING = "hexie_pending_events"


def _publish_pending(session: Session) -> None:
    if session.in_nested_transaction():   # a SAVEPOINT released (after_commit fires for those too)
        return
    for engine, events in session.info.pop(_PENDING, {}).values():
        engine._publish(events)


def _drop_pending(session: Session, transaction: Any) -> None:
    """The host's outermost transaction ended without a commit: its events never happened."""
    if transaction.parent is None and not transaction.nested:
        session.info.pop(_PENDING, None)


def _forget_rows(session: Session) -> None:
    """Forget the rows a service call read with its locked case (they belong to its transaction)."""
    session.info.pop("hexie_case_tasks", None)
    session.info.pop("hexie_case_rows", None)


def _begin_sqlite(session: Session) -> None:
    """Make sure a host's SQLite connection is inside a transaction before the SAVEPOINT.

    Python's sqlite3 driver begins a transaction only before the first INSERT/UPDATE/DELETE;
    a SAVEPOINT outside one would start a transaction of its own, which its RELEASE would
    commit behind the host's back.
    """
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return
    raw = connection.connection.dbapi_connection
    if raw is not None and getattr(raw, "in_transaction", True) is False:
        connection.exec_driver_sql("BEGIN")


def create_engine(database_url: str | None = None, definitions: str | Path | None = None,
                  *, upgrade: bool = True, **kw: Any) -> Engine:
    """The engine a host (or Hexie's own app) runs on: schema upgraded, definitions recorded.

    ``database_url`` defaults to ``$HEXIE_DATABASE_URL`` (else ``sqlite:///hexie.db``),
    ``definitions`` to ``$HEXIE_DEFINITIONS`` (else the federation's programmes shipped
    with Hexie). Raises :class:`~hexie.workflows.loader.DefinitionError` when a
    definition does not load.
    """
    from hexie.models import database_url as default_url, upgrade as upgrade_schema

    from .loader import default_definitions_dir

    url = database_url or default_url()
    if upgrade:
        upgrade_schema(url)
    engine = Engine.from_config(url, definitions or default_definitions_dir(), **kw)
    engine.sync_definitions()
    set_default_engine(engine)
    return engine
