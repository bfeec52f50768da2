"""The engine: loaded definitions, their recorded versions, transactions and events.

One :class:`Engine` per application (or host). It owns no Flask state; the web
layer, the CLI, the worker and host applications all drive it the same way.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from hexie.models import OrgUnit, ProcessVersion, RoleAssignment, User, make_engine, make_session_factory

from .access import Actor, Assignment
from .errors import NotFound
from .loader import Registry, load_definitions_strict, load_process_text
from .machine import CompiledProcess, compile_process
from .spec import ProcessSpec

log = logging.getLogger(__name__)

EVENT_KINDS = ("case_started", "state_changed", "task_created", "case_closed")


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
        self._checked_at = 0.0
        # The file each process was loaded from. A version re-read from the database (published
        # by another worker, or older) keeps its file's path: the editor writes a publish back
        # to that file, whichever worker made the previous one.
        self._paths: dict[str, str] = {key: spec.path for key, spec in registry.processes.items() if spec.path}

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
        return Actor(username=user.username, user_id=user.id, name=user.name, locale=user.locale or "zh",
                     assignments=tuple(Assignment(*r) for r in rows))

    # -- transactions and events -------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One service call: commit on success, roll back on any error, then publish events."""
        session = self.session_factory()
        session.info["events"] = []
        try:
            yield session
            session.commit()
            events = session.info["events"]
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()
        self._publish(events)

    def subscribe(self, callback: Callable[[dict[str, Any]], None]) -> None:
        """Call ``callback(event)`` after each commit that produced an event."""
        self._subscribers.append(callback)

    @staticmethod
    def emit(session: Session, kind: str, **payload: Any) -> None:
        """Queue an outbound event; it is published only if the transaction commits."""
        session.info.setdefault("events", []).append({"event": kind, **payload})

    def _publish(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            for callback in self._subscribers:
                try:
                    callback(event)
                except Exception:  # a subscriber never breaks the person acting
                    log.exception("event subscriber failed for %s", event.get("event"))

    def count(self, session: Session, stmt) -> int:
        return session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0


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
    return engine
