"""The org tree as the pages read it, kept in each process (the inbox's filter bar and places).

Every inbox request asked the database for the units of her area (the filter bar) and for
the unit and town of each of the page's tasks: two statements and a few hundred ORM objects
for a tree that changes a few times a year. This module keeps the whole tree per engine as
plain tuples, in the order the database sorts the paths, and answers both from it.

Invalidation, per database (its URL):

* *In this process*: any ORM flush that inserts, updates or deletes an :class:`OrgUnit`
  (``load_org``, the people API, the admin) marks the database's tree stale, at the flush and
  again when that session commits, so the next request reads it afresh.
* *By any other process* (another gunicorn worker, the command line, a host): a thread of each
  process compares, every :data:`CHECK_SECONDS`, a digest of the whole table (PostgreSQL:
  ``md5`` over every row, 8 ms at 15,500 units; elsewhere the rows themselves) with the one the
  kept tree was read with, on a connection of its own; a different digest makes the next
  request read the tree again. The bound is the one a definition another worker publishes
  already has (:meth:`hexie.workflows.engine.Engine.refresh_versions`, 5 s). Requests never
  send the check: what a page costs does not depend on the time.

What is built from the tree (the filter bar's options, per person) names the tree's
:attr:`OrgMap.version` in its key, so a new tree makes it afresh.
"""
from __future__ import annotations

import hashlib
import itertools
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import create_engine, event, select
from sqlalchemy.orm import Session, object_session
from sqlalchemy.pool import NullPool

from hexie.models import OrgUnit

log = logging.getLogger(__name__)

#: How often (seconds) each process compares the trees it keeps with the database's.
CHECK_SECONDS = 5.0
#: A database whose tree no request asked for in this long is no longer compared.
IDLE_SECONDS = 60.0

_marks = itertools.count(1)
_changed: dict[str, int] = {}      # database URL -> mark of the last write to its units seen here
_current: dict[str, Any] = {}      # database URL -> the digest the checking thread last read
_used: dict[str, float] = {}       # database URL -> when a request last asked for its tree
_versions = itertools.count(1)
_lock = threading.Lock()
_checker: tuple[int, threading.Thread] | None = None


class Unit(NamedTuple):
    id: int
    code: str
    name: str
    level: str
    path: str
    parent_id: int | None


@dataclass(frozen=True)
class OrgMap:
    units: tuple[Unit, ...]       # ordered by path, as the database orders them
    by_id: dict[int, Unit]
    digest: Any
    version: int                  # names this reading of the tree (cache keys)
    changed: int                  # the database's change mark it was read at

    def place(self, unit_id: int | None, lowest: str) -> str | None:
        """Where a unit is, as people say it: "城关镇 东村" for a village (``lowest`` level), else its name."""
        unit = self.by_id.get(unit_id)
        if unit is None:
            return None
        town = self.by_id.get(unit.parent_id) if unit.parent_id is not None else None
        return f"{town.name} {unit.name}" if unit.level == lowest and town is not None and town.name else unit.name

    def in_area(self, paths, limit: int = 2000) -> list[Unit]:
        """Units in the subtrees at ``paths``, in path order, at most ``limit``."""
        prefixes = tuple(sorted(paths))
        if not prefixes:
            return []
        found = []
        for unit in self.units:
            if unit.path.startswith(prefixes):
                found.append(unit)
                if len(found) >= limit:
                    break
        return found


def _url(bind: Any) -> str:
    return bind.url.render_as_string(hide_password=False)


def _bump(url: str) -> None:
    _changed[url] = next(_marks)


@event.listens_for(OrgUnit, "after_insert")
@event.listens_for(OrgUnit, "after_update")
@event.listens_for(OrgUnit, "after_delete")
def _unit_written(mapper, connection, target) -> None:   # noqa: ANN001
    url = _url(connection.engine)
    _bump(url)
    session = object_session(target)
    if session is not None:
        session.info.setdefault("hexie_org_changed", set()).add(url)


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    for url in session.info.pop("hexie_org_changed", ()):
        _bump(url)   # again: a reader between the flush and the commit read the old tree


_DIGEST = ("SELECT count(*), md5(string_agg(id || '|' || code || '|' || name || '|' || level || '|' || path"
           " || '|' || coalesce(parent_id, -1), ',' ORDER BY id)) FROM hexie_org_units")
_ROWS = select(OrgUnit.id, OrgUnit.code, OrgUnit.name, OrgUnit.level, OrgUnit.path,
               OrgUnit.parent_id).order_by(OrgUnit.path)


def _digest_of(conn) -> Any:   # noqa: ANN001
    """The table's digest as read on ``conn``."""
    if conn.dialect.name == "postgresql":
        return tuple(conn.exec_driver_sql(_DIGEST).one())
    return _rows_digest(tuple(Unit(*r) for r in conn.execute(_ROWS).all()))


def _rows_digest(units: tuple[Unit, ...]) -> str:
    return hashlib.md5(repr(sorted(units)).encode()).hexdigest()


def org_map(engine: Any) -> OrgMap:
    """The engine's org tree as this process knows it (see the module's docstring)."""
    bind = engine.session_factory.kw["bind"]
    url = _url(bind)
    _used[url] = time.monotonic()
    kept = engine.__dict__.get("_hexie_org_map")
    if kept is not None and kept.changed == _changed.get(url, 0) and _current.get(url, kept.digest) == kept.digest:
        return kept
    with _lock:
        changed = _changed.get(url, 0)
        with engine.read_session() as s:
            conn = s.connection()
            digest = conn.exec_driver_sql(_DIGEST).one() if conn.dialect.name == "postgresql" else None
            units = tuple(Unit(*r) for r in conn.execute(_ROWS).all())
        digest = tuple(digest) if digest is not None else _rows_digest(units)
        _current[url] = digest
        tree = OrgMap(units, {u.id: u for u in units}, digest, next(_versions), changed)
        engine.__dict__["_hexie_org_map"] = tree
    _start_checker(url)
    return tree


#: Held while :func:`check_now` reads a database, and by a fork of this process (``os.fork``:
#: multiprocessing's builder of an import, ``hexie.workflows.bulk``): a child forked while this
#: thread was inside SQLite or libpq would inherit their locks held, and hang on its first
#: connection. The checker thread says so (``hexie_fork_safe``).
_fork_guard = threading.Lock()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_fork_guard.acquire, after_in_parent=_fork_guard.release,
                        after_in_child=_fork_guard.release)


def check_now() -> None:
    """Compare, once, every tree a request asked for lately with its database (what the thread does)."""
    with _fork_guard:
        _check()


def _check() -> None:
    now = time.monotonic()
    for url, used in list(_used.items()):
        if now - used > IDLE_SECONDS or url in _PRIVATE:
            _used.pop(url, None)
            continue
        try:
            checker = create_engine(url, poolclass=NullPool)
            if checker.dialect.name == "sqlite" and not os.path.exists(checker.url.database or ""):
                raise FileNotFoundError(checker.url.database)   # gone: connecting would make an empty one
            try:
                with checker.connect() as conn:
                    _current[url] = _digest_of(conn)
            finally:
                checker.dispose()
        except Exception:   # the database went away (a test's, a restart): the next request reads it anew
            log.debug("org tree check failed for a database", exc_info=True)
            _bump(url)
            _used.pop(url, None)


#: Databases no other process can open: nothing to compare.
_PRIVATE = ("sqlite://", "sqlite:///:memory:")


def _run() -> None:
    while True:
        time.sleep(CHECK_SECONDS)
        check_now()


def _start_checker(url: str) -> None:
    global _checker
    if url in _PRIVATE:
        return   # one process's own database: nobody else writes it
    if _checker is not None and _checker[0] == os.getpid() and _checker[1].is_alive():
        return
    with _lock:
        if _checker is None or _checker[0] != os.getpid() or not _checker[1].is_alive():
            thread = threading.Thread(target=_run, name="hexie-org-check", daemon=True)
            thread.hexie_fork_safe = True      # its database work holds _fork_guard
            thread.start()
            _checker = (os.getpid(), thread)
