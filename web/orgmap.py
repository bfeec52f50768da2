"""The org tree as the pages read it, kept in each process (the inbox's filter bar and places).

Every inbox request asked the database for the units of her area (the filter bar) and for
the unit and town of each of the page's tasks: two statements and a few hundred ORM objects
for a tree that changes a few times a year. This module keeps the whole tree per engine as
plain tuples, in the order the database sorts the paths, and answers both from it.

Invalidation:

* *In this process*: any ORM flush that inserts, updates or deletes an :class:`OrgUnit`
  (``load_org``, the people API, the admin) marks the tree stale, once at the flush and again
  when that session commits, so the next request reads it afresh.
* *By any other process* (another gunicorn worker, the command line, a host): at most every
  :data:`CHECK_SECONDS` each process compares a digest of the whole table (PostgreSQL:
  ``md5`` over every row, 8 ms at 15,500 units) with the one its tree was read with, and reads
  the tree again when it differs: the same bound as a definition another worker publishes
  (:meth:`hexie.workflows.engine.Engine.refresh_versions`).

What is built from the tree (the filter bar's options, per person) names the tree's
:attr:`OrgMap.version` in its key, so a new tree makes it afresh.
"""
from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import event, select
from sqlalchemy.orm import Session, object_session

from hexie.models import OrgUnit

#: How often (seconds) a process compares its tree with the database's.
CHECK_SECONDS = 5.0

_changes = itertools.count(1)
_changed = 0                     # bumped by every flush and commit that touched an OrgUnit here
_versions = itertools.count(1)
_lock = threading.Lock()


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
    changed: int                  # the process's change mark it was read at

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


def _bump() -> None:
    global _changed
    _changed = next(_changes)


@event.listens_for(OrgUnit, "after_insert")
@event.listens_for(OrgUnit, "after_update")
@event.listens_for(OrgUnit, "after_delete")
def _unit_written(mapper, connection, target) -> None:   # noqa: ANN001
    _bump()
    session = object_session(target)
    if session is not None:
        session.info["hexie_org_changed"] = True


@event.listens_for(Session, "after_commit")
def _committed(session: Session) -> None:
    if session.info.pop("hexie_org_changed", False):
        _bump()   # again: a reader between the flush and the commit read the old tree


def _digest(s: Session) -> Any:
    conn = s.connection()
    if conn.dialect.name == "postgresql":
        row = conn.exec_driver_sql(
            "SELECT count(*), md5(string_agg(id || '|' || code || '|' || name || '|' || level || '|' || path"
            " || '|' || coalesce(parent_id, -1), ',' ORDER BY id)) FROM hexie_org_units").one()
        return tuple(row)
    return None   # elsewhere the rows themselves are compared


def _read(s: Session) -> tuple[Unit, ...]:
    rows = s.execute(select(OrgUnit.id, OrgUnit.code, OrgUnit.name, OrgUnit.level, OrgUnit.path,
                            OrgUnit.parent_id).order_by(OrgUnit.path)).all()
    return tuple(Unit(*r) for r in rows)


def org_map(engine: Any) -> OrgMap:
    """The engine's org tree as this process knows it (see the module's docstring)."""
    kept = engine.__dict__.get("_hexie_org_map")
    now = time.monotonic()
    if kept is not None:
        tree, checked_at = kept
        if tree.changed == _changed and now - checked_at < CHECK_SECONDS:
            return tree
    with _lock:
        kept = engine.__dict__.get("_hexie_org_map")
        changed = _changed
        with engine.read_session() as s:
            digest = _digest(s)
            if kept is not None and kept[0].changed == changed:
                tree = kept[0]
                if digest is not None and digest == tree.digest:
                    engine.__dict__["_hexie_org_map"] = (tree, now)
                    return tree
            units = _read(s)
        if kept is not None and digest is None and units == kept[0].units and kept[0].changed == changed:
            tree = kept[0]
        else:
            tree = OrgMap(units, {u.id: u for u in units}, digest, next(_versions), changed)
        engine.__dict__["_hexie_org_map"] = (tree, now)
        return tree

