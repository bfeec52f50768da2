"""Retention (protection.md): ``retention: {anonymise_after: P5Y}`` and ``hexie retention run``.

A case closed longer ago than its process's ``anonymise_after`` is anonymised, one case per
transaction: every value of its sensitive fields, in its data and in every event of its
history, becomes :data:`~hexie.workflows.audit.TOMBSTONE`; every attachment's file is deleted
and its name becomes the tombstone; its blind-index entries are removed. The audit chain still
verifies: the events written since hash scheme 2 cover each such value through its own seal
(:mod:`hexie.workflows.audit`), so erasing the value changes no hash. An older event (scheme 1)
that holds such a value is re-sealed first (the case's chain is verified, then rehashed from
that event on with the values' seals); the new hashes are recorded, with the old ones, in the
``anonymised`` event that closes the run on the case, and an anchor written before accepts
them from there. Each case gets that event; the run as a whole is one ``retention_run`` event
on the case-less chain, and :func:`run_retention` returns the summary the CLI prints.
"""
from __future__ import annotations

import re
from calendar import monthrange
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Iterable

from sqlalchemy import select, text, update

from hexie.models import Attachment, AuditEvent, Case

from . import audit
from .audit import TOMBSTONE
from .protection import forget_case

_CALENDAR = re.compile(r"P(?:(?P<years>\d+)Y)?(?:(?P<months>\d+)M)?(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?")
_SHORT = re.compile(r"(?P<n>\d+)\s*(?P<unit>[dw])")


def parse_retention(value: Any) -> tuple[int, int, int]:
    """``P5Y``, ``P18M``, ``P1Y6M``, ``P400D``, ``P52W``, ``30d``, ``2w`` -> (years, months, days).

    Years and months are calendar years and months (allowed here, unlike other durations: five
    years after closure is a date, not a number of days). Raises ValueError with both languages.
    """
    source = value.strip().upper() if isinstance(value, str) else None
    match = _CALENDAR.fullmatch(source) if source else None
    if match and any(match.groupdict().values()):
        parts = {k: int(v or 0) for k, v in match.groupdict().items()}
        years, months, days = parts["years"], parts["months"], parts["days"] + 7 * parts["weeks"]
    else:
        short = _SHORT.fullmatch(source.lower()) if source else None
        if not short:
            raise ValueError(f"保留期限无效 '{value}'：应为 ISO 8601 时长，如 P5Y、P18M、P400D / "
                             f"bad retention period '{value}': use an ISO 8601 duration such as P5Y, P18M or P400D")
        years, months, days = 0, 0, int(short["n"]) * (7 if short["unit"] == "w" else 1)
    if not (years or months or days):
        raise ValueError(f"保留期限必须大于零：'{value}' / a retention period must be longer than zero: '{value}'")
    if years > 200:
        raise ValueError(f"保留期限过长：'{value}' / a retention period of more than 200 years: '{value}'")
    return years, months, days


def cutoff(now: datetime, period: str) -> datetime:
    """The moment ``period`` before ``now`` (calendar arithmetic; 29 February becomes the 28th)."""
    years, months, days = parse_retention(period)
    total = now.year * 12 + (now.month - 1) - years * 12 - months
    year, month = divmod(total, 12)
    month += 1
    day = min(now.day, monthrange(year, month)[1])
    return now.replace(year=year, month=month, day=day) - timedelta(days=days)


@dataclass
class RetentionSummary:
    """What a run did (or, with ``dry_run``, would do)."""

    at: datetime
    dry_run: bool = False
    cases: list[int] = field(default_factory=list)
    values: int = 0
    attachments: int = 0
    resealed_events: int = 0
    skipped: dict[int, list[str]] = field(default_factory=dict)   # case -> why (its chain is broken)
    per_process: dict[str, int] = field(default_factory=dict)

    def lines(self) -> list[str]:
        if self.dry_run:   # nothing was read of the cases: no counts of values that would say 0
            out = [f"将匿名化 / would anonymise: {len(self.cases)} 件 cases"]
        else:
            out = [f"已匿名化 / anonymised: {len(self.cases)} 件 cases; {self.values} 个敏感值 sensitive values; "
                   f"{self.attachments} 个附件 attachments; {self.resealed_events} 条旧记录重新封存 "
                   "older events re-sealed"]
        out += [f"  {key}: {n}" for key, n in sorted(self.per_process.items())]
        out += [f"  跳过 skipped case {case_id}: {'; '.join(why)}" for case_id, why in sorted(self.skipped.items())]
        return out


def due_cases(engine: Any, now: datetime) -> list[tuple[str, int]]:
    """(process, case id) of every closed case past its process's retention, not yet anonymised."""
    out: list[tuple[str, int]] = []
    with engine.session_factory() as s:
        for key, spec in sorted(engine.processes.items()):
            if not spec.anonymise_after:
                continue
            limit = cutoff(now, spec.anonymise_after)
            out += [(key, case_id) for case_id in s.scalars(select(Case.id).where(
                Case.process_key == key, Case.closed_at.is_not(None), Case.closed_at <= limit,
                Case.anonymised_at.is_(None)).order_by(Case.id))]
    return out


def run_retention(engine: Any, *, upload_dir: Path | None = None, dry_run: bool = False,
                  now: datetime | None = None) -> RetentionSummary:
    """Anonymise every case past its retention (see the module doc); one transaction per case."""
    now = now or engine.clock()
    summary = RetentionSummary(at=now, dry_run=dry_run)
    for key, case_id in due_cases(engine, now):
        if dry_run:
            summary.cases.append(case_id)
            summary.per_process[key] = summary.per_process.get(key, 0) + 1
            continue
        with engine.transaction() as s:
            done = anonymise_case(s, engine, case_id, now, upload_dir)
        if isinstance(done, list):
            summary.skipped[case_id] = done
            continue
        summary.cases.append(case_id)
        summary.per_process[key] = summary.per_process.get(key, 0) + 1
        summary.values += done["values"]
        summary.attachments += done["attachments"]
        summary.resealed_events += done["resealed"]
    if not dry_run and (summary.cases or summary.skipped):
        with engine.transaction() as s:
            if s.get_bind().dialect.name == "postgresql":
                from .people import CASELESS_CHAIN_LOCK
                s.execute(text(f"SELECT pg_advisory_xact_lock({CASELESS_CHAIN_LOCK})"))
            audit.append_event(s, None, kind="retention_run", actor=None, at=now, changes={
                "cases": [None, summary.cases], "values": [None, summary.values],
                "attachments": [None, summary.attachments], "skipped": [None, sorted(summary.skipped)]})
    return summary


def erasable_fields(specs: Iterable[Any]) -> tuple[set[str], set[str]]:
    """(sensitive fields, file fields) of the case's process versions, by name."""
    sensitive, files = set(), set()
    for spec in specs:
        for name, f in spec.fields.items():
            if f.sensitive:
                sensitive.add(name)
            if f.type == "file":
                files.add(name)
    return sensitive, files


def _erase_value(name: str, value: Any, sensitive: set[str], files: set[str]) -> Any:
    """The tombstone for a value retention erases; the value itself otherwise."""
    if value in (None, "", [], TOMBSTONE):
        return value
    if name in sensitive:
        return TOMBSTONE
    if name in files and isinstance(value, str):   # the name of an attached file (ids stay)
        return TOMBSTONE
    return value


def anonymise_case(s: Any, engine: Any, case_id: int, now: datetime,
                   upload_dir: Path | None) -> dict[str, int] | list[str]:
    """Anonymise one case in the caller's transaction: counts done, or the problems of its
    chain that keep it from being re-sealed (then nothing is written)."""
    case = s.scalars(select(Case).where(Case.id == case_id).with_for_update()).one()
    if case.anonymised_at is not None:
        return {"values": 0, "attachments": 0, "resealed": 0}
    specs = [engine.spec_of(s, case.process_version_id)]
    if case.process_key in engine.processes:
        specs.append(engine.processes[case.process_key])
    sensitive, files = erasable_fields(specs)
    erasable = sensitive | files

    erased_values = 0
    data = dict(case.data or {})
    for name in list(data):
        new = _erase_value(name, data[name], sensitive, set())
        if new != data[name]:
            data[name], erased_values = new, erased_values + 1

    events = list(s.scalars(select(AuditEvent).where(AuditEvent.case_id == case_id).order_by(AuditEvent.seq)))
    plans = []   # (event, new changes, needs reseal)
    for event in events:
        changes = event.changes or {}
        new_changes = {}
        touched = reseal = False
        for name, value in changes.items():
            if name in erasable and isinstance(value, list) and len(value) == 2:
                new_pair = [_erase_value(name, v, sensitive, files) for v in value]
                if new_pair != value:
                    touched = True
                    erased_values += sum(1 for a, b in zip(value, new_pair) if a != b)
                    if event.hash_version != 2 or name not in (event.sealed or {}):
                        reseal = True
                new_changes[name] = new_pair
            else:
                new_changes[name] = value
        plans.append((event, new_changes if touched else None, reseal))

    resealed: list[list[Any]] = []
    first = next((i for i, (_e, _c, reseal) in enumerate(plans) if reseal), None)
    if first is not None:
        problems = audit.verify_chain(s, case_id)
        if problems:    # never launder a chain that was already tampered with
            return problems
        prev = plans[first - 1][0].hash if first > 0 else None
        for event, new_changes, reseal in plans[first:]:
            fields = {name: getattr(event, name) for name in audit.HASHED_FIELDS}
            fields["prev_hash"] = prev
            original = event.changes
            if reseal or event.hash_version == 2:
                # seal what this event records of the erasable fields (over the values as they were)
                seal_names = set(erasable) | set(event.sealed or {})
                sealed = audit.seal_changes(case_id, event.seq, original, seal_names)
            else:
                sealed = None
            digest = audit.event_hash(**fields, sealed=sealed)
            values = {"prev_hash": prev, "hash": digest, "hash_version": 2 if sealed else 1, "sealed": sealed}
            if new_changes is not None:
                values["changes"] = new_changes
            if digest != event.hash or prev != event.prev_hash:
                resealed.append([event.seq, event.hash, digest])
            s.execute(update(AuditEvent).where(AuditEvent.id == event.id).values(**values))
            prev = digest
        case.audit_head = prev
    for event, new_changes, _reseal in (plans[:first] if first is not None else plans):
        if new_changes is not None:
            s.execute(update(AuditEvent).where(AuditEvent.id == event.id).values(changes=new_changes))

    attachments = list(s.scalars(select(Attachment).where(Attachment.case_id == case_id)))
    for row in attachments:
        if upload_dir is not None:
            folder = Path(upload_dir).resolve()
            path = (folder / row.storage_key).resolve()
            if folder in path.parents:
                path.unlink(missing_ok=True)
        row.filename, row.size, row.content_type = TOMBSTONE, 0, "application/octet-stream"
    forget_case(s, case_id)
    case.data = data
    case.anonymised_at = now
    case.updated_at = now
    s.flush()
    changes: dict[str, Any] = {"erased": [None, {"values": erased_values, "attachments": len(attachments)}]}
    if resealed:
        changes["resealed"] = [None, resealed]
    audit.append_event(s, case, kind=audit.ANONYMISED, actor=None, from_state=case.state, to_state=case.state,
                       at=now, changes=changes)
    return {"values": erased_values, "attachments": len(attachments), "resealed": len(resealed)}
