"""Protecting survivors' data (protection.md): case codes, the blind index, small-count
suppression and de-identification.

Every keyed hash here uses a key derived from the audit key (:func:`hexie.workflows.audit.audit_key`:
``HEXIE_AUDIT_KEY`` or the instance folder, never the database), one derived key per purpose,
so that whoever reads the database can neither recompute a code nor test a name against the
blind index.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from hexie.models import CaseLookup

from . import audit

#: What a suppressed count reads, in pages, the API and exports.
SUPPRESSED = "<5"
#: Counts below this are suppressed in reports over a confidential process.
THRESHOLD = 5


def _key(purpose: str) -> bytes:
    return hmac.new(audit.audit_key(), f"hexie/{purpose}".encode(), hashlib.sha256).digest()


# ----------------------------------------------------------------------------- case codes

def case_code(case_id: int) -> str:
    """A stable code for a case that says nothing about it and cannot be counted through
    (``K7Q2-9XFD-M3``): what lists and exports of confidential cases carry instead of a name,
    and what ``deidentified=1`` puts in every sensitive field."""
    digest = hmac.new(_key("case-code"), str(int(case_id)).encode(), hashlib.sha256).digest()
    text = base64.b32encode(digest).decode().rstrip("=")[:10]
    return f"{text[:4]}-{text[4:8]}-{text[8:10]}"


def deidentify(spec: Any, case_id: int, data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with every sensitive field (one with a value) replaced by the case's code."""
    code = case_code(case_id)
    return {name: (code if value not in (None, "", []) and name in spec.fields and spec.fields[name].sensitive
                   else value) for name, value in data.items()}


# ----------------------------------------------------------------------------- blind index

_SPACES = re.compile(r"\s+")


def normalise(value: Any) -> str:
    """The form a searched value is compared in: Unicode NFKC (full-width digits and letters
    become plain ones), case folded (an ID number's ``x`` is ``X``), spaces at the ends dropped and
    runs of spaces inside made one. Nothing else: a name is found only when written in full.
    An empty field (None) is the empty text: it has no entry, and no search finds it."""
    if value is None:
        return ""
    text = unicodedata.normalize("NFKC", str(value))
    return _SPACES.sub(" ", text).strip().casefold()


def lookup_digest(value: Any) -> str | None:
    """The blind-index entry of a value (None for an empty one)."""
    text = normalise(value)
    if not text:
        return None
    return hmac.new(_key("blind-index"), text.encode("utf-8"), hashlib.sha256).hexdigest()


def searchable_fields(spec: Any) -> tuple[str, ...]:
    """The fields a definition marks ``searchable: true`` (sensitive text fields)."""
    return tuple(name for name, field in spec.fields.items() if getattr(field, "searchable", False))


def index_case(s: Session, spec: Any, case_id: int, data: Mapping[str, Any],
               changed: Iterable[str] | None = None) -> None:
    """Write the blind-index entries of the case's searchable fields (``changed``: only those),
    in the caller's transaction: an entry per field with a value, none for an empty one."""
    names = [n for n in searchable_fields(spec) if changed is None or n in set(changed)]
    if not names:
        return
    conn = s.connection()
    conn.execute(delete(CaseLookup.__table__).where(CaseLookup.case_id == case_id, CaseLookup.field.in_(names)))
    rows = [{"case_id": case_id, "field": n, "digest": d} for n in names
            if (d := lookup_digest(data.get(n)) if data.get(n) != audit.TOMBSTONE else None) is not None]
    if rows:
        conn.execute(insert(CaseLookup.__table__), rows)


def forget_case(s: Session, case_id: int) -> None:
    """Remove the case's blind-index entries (retention)."""
    s.connection().execute(delete(CaseLookup.__table__).where(CaseLookup.case_id == case_id))


def matching_case_ids(s: Session, value: Any) -> list[int]:
    """Ids of the cases one of whose searchable fields is exactly ``value`` (normalised)."""
    digest = lookup_digest(value)
    if digest is None:
        return []
    return sorted(set(s.scalars(select(CaseLookup.case_id).where(CaseLookup.digest == digest))))


# ----------------------------------------------------------------------------- small counts

def suppress_report(report: dict[str, Any], rates: Iterable[Any] = ()) -> dict[str, Any]:
    """Small-count suppression of a report (:meth:`CaseQueries.report`) over a confidential process.

    Every count below 5 reads ``<5`` (:data:`SUPPRESSED`); then, complementary suppression:
    wherever counts add up to a shown sum (a unit's states to its total, a state's units to its
    total, the units' totals, the states' totals and the months to the grand total, the open
    and overdue work to theirs, the states a rate counts to its numerator and denominator), one
    hidden member would be found by subtraction, so another member is hidden too (the smallest
    shown one), until no sum gives a hidden count back. Returns the report with the hidden
    counts replaced and ``suppressed: True``; ``rates``: the process's :class:`RateSpec` list.
    """
    cells: dict[tuple, int] = {}
    states = list(report["states"])
    units = report["units"]
    for i, unit in enumerate(units):
        for st in states:
            cells[("u", i, st)] = unit["counts"].get(st, 0)
        cells[("ut", i)] = unit["total"]
        cells[("uo", i)] = unit["open_tasks"]
        cells[("ul", i)] = unit["overdue"]
        for name, (n, of) in unit["rates"].items():
            cells[("ur", i, name, 0)], cells[("ur", i, name, 1)] = n, of
    for st in states:
        cells[("t", st)] = report["totals"].get(st, 0)
    cells[("to",)] = report["totals"].get("open_tasks", 0)
    cells[("tl",)] = report["totals"].get("overdue", 0)
    cells[("T",)] = report["total"]
    for name, (n, of) in report.get("total_rates", {}).items():
        cells[("tr", name, 0)], cells[("tr", name, 1)] = n, of
    for j, (_month, n) in enumerate(report["months"]):
        cells[("m", j)] = n

    rate_specs = {r.name: {"of": tuple(r.of), "over": tuple(r.over)} for r in rates}
    sums: list[list[tuple]] = []     # each: [sum cell, member cells...]
    for i, _unit in enumerate(units):
        sums.append([("ut", i), *(("u", i, st) for st in states)])
        for name, spec in rate_specs.items():
            sums.append([("ur", i, name, 0), *(("u", i, st) for st in spec["of"])])
            sums.append([("ur", i, name, 1), *(("u", i, st) for st in (spec["over"] or states))])
    for st in states:
        sums.append([("t", st), *(("u", i, st) for i in range(len(units)))])
    for name, spec in rate_specs.items():
        sums.append([("tr", name, 0), *(("t", st) for st in spec["of"])])
        sums.append([("tr", name, 1), *(("t", st) for st in (spec["over"] or states))])
        for k in (0, 1):
            sums.append([("tr", name, k), *(("ur", i, name, k) for i in range(len(units)))])
    sums.append([("T",), *(("ut", i) for i in range(len(units)))])
    sums.append([("T",), *(("t", st) for st in states)])
    if report["months"]:
        sums.append([("T",), *(("m", j) for j in range(len(report["months"])))])
    sums.append([("to",), *(("uo", i) for i in range(len(units)))])
    sums.append([("tl",), *(("ul", i) for i in range(len(units)))])

    hidden = {key for key, n in cells.items() if n < THRESHOLD}
    changed = True
    while changed:
        changed = False
        for group in sums:
            present = [key for key in group if key in cells]
            if sum(1 for key in present if key in hidden) == 1:
                shown = [key for key in present if key not in hidden]
                if shown:   # hide the smallest shown member: a cell before its sum when they tie
                    hidden.add(min(shown, key=lambda key: (cells[key], key == group[0])))
                    changed = True

    def value(key: tuple) -> Any:
        return SUPPRESSED if key in hidden else cells[key]

    out = dict(report)
    out["units"] = []
    for i, unit in enumerate(units):
        row = dict(unit)
        row["counts"] = {st: value(("u", i, st)) for st in states}
        row["total"], row["open_tasks"], row["overdue"] = value(("ut", i)), value(("uo", i)), value(("ul", i))
        row["rates"] = {name: [value(("ur", i, name, 0)), value(("ur", i, name, 1))] for name in unit["rates"]}
        out["units"].append(row)
    out["totals"] = {**{st: value(("t", st)) for st in states}, "open_tasks": value(("to",)),
                     "overdue": value(("tl",))}
    out["total_rates"] = {name: [value(("tr", name, 0)), value(("tr", name, 1))]
                          for name in report.get("total_rates", {})}
    out["months"] = [(month, value(("m", j))) for j, (month, _n) in enumerate(report["months"])]
    out["total"] = value(("T",))
    out["suppressed"] = True
    return out


def reindex(engine: Any, process: str | None = None, batch: int = 500) -> int:
    """Write the blind index of every case of the processes with searchable fields (``process``:
    only that one), for cases written before a field was marked searchable; returns how many
    cases were indexed. Idempotent; a batch per transaction."""
    from hexie.models import Case
    done = 0
    for key, spec in sorted(engine.processes.items()):
        if (process is not None and key != process) or not searchable_fields(spec):
            continue
        last = 0
        while True:
            with engine.transaction() as s:
                rows = s.execute(select(Case.id, Case.data).where(Case.process_key == key, Case.id > last,
                                                                  Case.anonymised_at.is_(None))
                                 .order_by(Case.id).limit(batch)).all()
                for case_id, data in rows:
                    index_case(s, spec, case_id, data or {})
            if not rows:
                break
            last, done = rows[-1][0], done + len(rows)
    return done


def record_export(engine: Any, actor: Any, kind: str, case_ids: Iterable[int], deidentified: bool) -> None:
    """An export (``cases.csv``, ``case.json``, ``case.zip``, ``report.csv``) on the case-less audit
    chain: who, which cases, whether de-identified; its own transaction (an export changes nothing)."""
    from sqlalchemy import text as sql
    from types import SimpleNamespace
    with engine.transaction() as s:
        if s.get_bind().dialect.name == "postgresql":
            from .people import CASELESS_CHAIN_LOCK
            s.execute(sql(f"SELECT pg_advisory_xact_lock({CASELESS_CHAIN_LOCK})"))
        user = None if actor.is_system or actor.user_id is None else SimpleNamespace(id=actor.user_id,
                                                                                    username=actor.username)
        audit.append_event(s, None, kind="exported", actor=user, at=engine.clock(), changes={
            "export": [None, kind], "cases": [None, sorted(set(case_ids))], "deidentified": [None, deidentified]})
