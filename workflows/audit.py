"""The audit trail: every state change of a case, hash-chained so tampering shows.

Each event's ``hash`` is an HMAC-SHA256, with the audit key (:func:`~hexie.workflows.config.audit_key`,
kept outside the database), over a canonical JSON of its content and the previous event's
hash; the case keeps the latest hash in ``audit_head``. Editing an event breaks its hash,
removing one breaks the ``seq`` numbering and the link of the next, removing the latest
no longer matches ``audit_head``; and without the key nobody can recompute the chain to
hide an edit. Chains written before the chain was keyed (plain SHA-256) are re-sealed with
the key by the migration that brought it, if they verified then.

An *anchor* (:func:`make_anchor`, ``hexie audit anchor``) is the signed list of every
chain's head, kept away from the database; :func:`verify_anchor` (``hexie audit verify
--anchor FILE``) then finds any event rewritten, inserted or deleted since, and whole
cases removed, even by someone who holds the key.

Events are written in the same transaction as the change they record (the caller's
session; nothing here commits).

**Redactable values (hash scheme 2).** An event that records values of *sealed* fields (the
sensitive and file fields of its process: what retention may erase) is hashed with scheme 2:
each such value enters the hashed document only through its own keyed hash (its *seal*,
kept in ``sealed``), so ``hexie retention run`` can replace the value by :data:`TOMBSTONE`
and the chain still verifies: the verifier checks every value still present against its
seal, and takes the seal alone for a tombstone. Events without such values, and every event
written before scheme 2 (``hash_version`` 1), are hashed as before.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
from itertools import groupby
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

from sqlalchemy import exists, insert, select
from sqlalchemy.orm import Session

from hexie.models import AuditEvent, Case, User, fast, utcnow
from hexie.models.db import json_default

SYSTEM_ACTOR = "system"
#: What a value erased by retention reads, in a case's data and history.
TOMBSTONE = "[erased]"
#: The kind of the event that records a retention run on a case.
ANONYMISED = "anonymised"

#: The fields a hash covers, in the canonical document.
HASHED_FIELDS = ("prev_hash", "case_id", "seq", "at", "actor", "kind", "trigger",
                 "from_state", "to_state", "comment", "changes")


#: What :func:`canonical_json` encodes with (made once: ``json.dumps`` with these options makes
#: this very encoder on every call, and encodes with it).
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=json_default)
#: JSON text of one string, as the encoder above writes it (``ensure_ascii=False``).
_json_str = json.encoder.encode_basestring


def canonical_json(value: Any) -> str:
    """JSON that is the same text for the same content: sorted keys, no spaces."""
    return _CANONICAL.encode(value)


def _canonical_scalar(value: Any) -> str:
    """:func:`canonical_json` of one value, cheaper for the common scalars (the same text:
    a string as the encoder quotes it, an int by ``int.__repr__``, None as ``null``)."""
    kind = type(value)
    if kind is str:
        return _json_str(value)
    if kind is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    return _CANONICAL.encode(value)


def _naive_utc(at: datetime) -> datetime:
    if at.tzinfo is not None:
        at = at.astimezone(timezone.utc).replace(tzinfo=None)
    return at


_KEYS: dict[tuple[str | None, str | None], bytes] = {}
#: An HMAC-SHA256 keyed with each audit key, before any message: ``.copy()`` of it is the same
#: as ``hmac.new(key, digestmod=sha256)``, without the key's padding and hashing each time.
_KEYED: dict[bytes, Any] = {}


def _keyed(key: bytes) -> Any:
    found = _KEYED.get(key)
    if found is None:
        found = _KEYED[key] = hmac.new(key, digestmod=hashlib.sha256)
    return found


def _hmac_hex(key: bytes, text: bytes) -> str:
    """``hmac.new(key, text, sha256).hexdigest()``."""
    mac = _keyed(key).copy()
    mac.update(text)
    return mac.hexdigest()


def audit_key() -> bytes:
    """The audit key, read once per setting (an append must not read a file)."""
    setting = (os.environ.get("HEXIE_AUDIT_KEY"), os.environ.get("HEXIE_INSTANCE"))
    key = _KEYS.get(setting)
    if key is None:
        from .config import audit_key as configured
        key = _KEYS[setting] = configured()
    return key


def event_hash(*, prev_hash: str | None, case_id: int | None, seq: int, at: datetime,
               actor: str, kind: str, trigger: str | None, from_state: str | None,
               to_state: str | None, comment: str | None, changes: Any, keyed: bool = True,
               sealed: Mapping[str, list[str]] | None = None, key: bytes | None = None) -> str:
    """The HMAC-SHA256 (hex) of an event's canonical content with the audit key
    (``keyed=False``: the plain SHA-256 that chains written before the key had; ``key``: the
    audit key, when the caller has it already).

    ``sealed`` (scheme 2): field -> the seals of its ``[old, new]`` values, which then stand
    in the hashed document for the values themselves.
    """
    if sealed:
        changes = {name: ([{"#": seal} for seal in sealed[name]] if name in sealed else value)
                   for name, value in (changes or {}).items()}
    # canonical_json of {prev_hash, case_id, seq, at (naive UTC), actor, kind, trigger, from_state,
    # to_state, comment, changes, and "v": 2 when sealed}, put together here from its values' JSON:
    # the keys are fixed, so is their sorted order (the same bytes; tests/test_audit_keyed.py)
    at = _naive_utc(at)
    s = _canonical_scalar
    text = (f'{{"actor":{s(actor)},"at":{_json_str(at.isoformat()) if type(at) is datetime else s(at)},'
            f'"case_id":{s(case_id)},"changes":{_CANONICAL.encode(changes)},"comment":{s(comment)},'
            f'"from_state":{s(from_state)},"kind":{s(kind)},"prev_hash":{s(prev_hash)},"seq":{s(seq)},'
            f'"to_state":{s(to_state)},"trigger":{s(trigger)}' + (',"v":2}' if sealed else "}")).encode("utf-8")
    if not keyed:
        return hashlib.sha256(text).hexdigest()
    return _hmac_hex(key if key is not None else audit_key(), text)


def value_seal(case_id: int | None, seq: int, field: str, index: int, value: Any,
               key: bytes | None = None) -> str:
    """The keyed hash of one recorded value (``index`` 0: old, 1: new), bound to its place:
    over ``canonical_json(["hexie-seal/1", case_id, seq, field, index, value])``, whose text is
    put together here from its items' (the same bytes; ``tests/test_audit_keyed.py``)."""
    return _seal(_seal_prefix(case_id, seq), _canonical_scalar(field), _canonical_scalar(index), value,
                 key if key is not None else audit_key())


def _seal_prefix(case_id: int | None, seq: int) -> str:
    return f'["hexie-seal/1",{_canonical_scalar(case_id)},{_canonical_scalar(seq)},'


def _seal(prefix: str, field_json: str, index_json: str, value: Any, key: bytes) -> str:
    """:func:`value_seal` from the canonical JSON of its place (case and seq, field, index)."""
    return _hmac_hex(key, f"{prefix}{field_json},{index_json},{_canonical_scalar(value)}]".encode("utf-8"))


def seal_changes(case_id: int | None, seq: int, changes: Mapping[str, Any] | None,
                 seal: Iterable[str], key: bytes | None = None) -> dict[str, list[str]] | None:
    """The seals of the values of ``seal`` fields that ``changes`` records (None: nothing to seal)."""
    if not changes:
        return None
    names = seal if isinstance(seal, (set, frozenset)) else set(seal)
    key = key if key is not None else audit_key()
    prefix = _seal_prefix(case_id, seq)
    sealed = {}
    for name, value in changes.items():
        if name in names and isinstance(value, list) and len(value) == 2:
            field_json = _canonical_scalar(name)
            sealed[name] = [_seal(prefix, field_json, "0", value[0], key),
                            _seal(prefix, field_json, "1", value[1], key)]
    return sealed or None


def hash_event(event: Mapping[str, Any], seal: Iterable[str] = (),
               key: bytes | None = None) -> tuple[str, int, dict[str, list[str]] | None]:
    """(hash, hash_version, sealed) of an event about to be written (its fields as JSON-safe values;
    ``key``: the audit key, when the caller has it already)."""
    key = key if key is not None else audit_key()
    sealed = seal_changes(event["case_id"], event["seq"], event["changes"], seal, key)
    digest = event_hash(**{name: event[name] for name in HASHED_FIELDS}, sealed=sealed, key=key)
    return digest, 2 if sealed else 1, sealed



_INSERT_EVENT = fast.Statement(insert(AuditEvent.__table__).returning(AuditEvent.__table__.c.id))


class WrittenEvent(SimpleNamespace):
    """An appended event as written. Its ``id`` is asked of the database only when read: on
    PostgreSQL the INSERT waits to travel with the transaction's next round trip."""

    def __getattr__(self, name: str) -> Any:
        if name != "id":
            raise AttributeError(name)
        pending = self.__dict__.pop("_pending")
        if not pending.done:
            fast.flush(self.__dict__.pop("_session"))
        self.__dict__["id"] = pending.scalar()
        return self.__dict__["id"]


def append_event(session: Session, case: Case | None, *, kind: str, actor: User | None,
                 trigger: str | None = None, from_state: str | None = None,
                 to_state: str | None = None, comment: str | None = None,
                 changes: Mapping[str, Any] | None = None, at: datetime | None = None,
                 seal: Iterable[str] = ()) -> SimpleNamespace:
    """Append an event to ``case``'s history (``case=None``: the case-less chain).

    ``seal``: the fields whose values retention may erase (:func:`sealed_fields`); the values
    of those that ``changes`` records are hashed through their own seals (scheme 2).

    ``actor=None`` means the engine itself (recorded as ``system``). ``changes`` maps
    a field to ``[old, new]``; it is stored JSON-safe (Decimal and dates as strings),
    exactly as hashed. Sets ``case.audit_head``. Call it inside the transaction that
    changes the case: that transaction already holds the case row, so two appends to
    one case cannot interleave.
    """
    if case is not None and case.id is None:
        session.flush()  # the hash covers the case id
    case_id = case.id if case is not None else None
    if changes is not None:
        changes = json.loads(canonical_json(changes))
    at = _naive_utc(at) if at is not None else utcnow()

    # No query for a case: its row keeps the chain's end. The case-less chain reads its end
    # (events are inserted at once, so this transaction's own are found too).
    if case is not None:  # the case row (locked by the caller) keeps its chain's end
        last_seq, prev_hash = case.audit_seq or 0, case.audit_head
    else:
        with session.no_autoflush:
            last = session.execute(
                select(AuditEvent.seq, AuditEvent.hash).where(AuditEvent.case_id.is_(None))
                .order_by(AuditEvent.seq.desc()).limit(1)).first()
        last_seq, prev_hash = (last.seq, last.hash) if last else (0, None)

    event = {"case_id": case_id, "seq": last_seq + 1, "at": at,
             "actor_id": actor.id if actor is not None else None,
             "actor": actor.username if actor is not None else SYSTEM_ACTOR,
             "kind": kind, "trigger": trigger, "from_state": from_state, "to_state": to_state,
             "comment": comment, "changes": changes, "prev_hash": prev_hash}
    event["hash"], event["hash_version"], event["sealed"] = hash_event(event, seal)
    pending = fast.defer(session, _INSERT_EVENT, event, insert=True)   # no unit of work for an append
    if case is not None:
        case.audit_head, case.audit_seq = event["hash"], event["seq"]
    written = WrittenEvent(**event)   # the event as written (seq, hash, prev_hash, ...; id when asked)
    written.__dict__.update(_pending=pending, _session=session)
    return written


def sealed_fields(spec: Any) -> frozenset[str]:
    """The fields of a process whose recorded values are sealed: its sensitive and file fields."""
    return frozenset(name for name, field in spec.fields.items() if field.sensitive or field.type == "file")


def _check_seals(row: Any) -> tuple[bool, bool]:
    """(a sealed value no longer matches its seal, a sealed value was erased) for a scheme-2 row."""
    if row.hash_version != 2:
        return False, False
    sealed, changes = row.sealed or {}, row.changes or {}
    altered = erased = False
    for name, seals in sealed.items():
        values = changes.get(name)
        if not isinstance(values, list) or len(values) != len(seals) or not isinstance(seals, list):
            altered = True
            continue
        for index, (value, seal) in enumerate(zip(values, seals)):
            if value == TOMBSTONE:
                erased = True
            elif not hmac.compare_digest(value_seal(row.case_id, row.seq, name, index, value), str(seal)):
                altered = True
    return altered, erased


def _label(case_id: int | None) -> str:
    return f"case {case_id}" if case_id is not None else "events without a case"


def _zh_label(case_id: int | None) -> str:
    return f"案件 {case_id}" if case_id is not None else "无案件的事件"


def _problem(case_id: int | None, zh: str, en: str) -> str:
    """One problem, Chinese first: ``案件 7：… / case 7: …``."""
    return f"{_zh_label(case_id)}：{zh} / {_label(case_id)}: {en}"


def verify_chain(session: Session, case_id: int | None = None, *, batch_size: int = 1000) -> list[str]:
    """Check the audit trail (of one case, or all of it); returns the problems found.

    An empty list means intact: every event's hash matches its content, each event
    links to the one before (``prev_hash``), ``seq`` runs 1, 2, 3… without gaps, and
    the case's ``audit_head`` is its last event's hash. Streams plain rows (not ORM
    objects, so the caller's session is left alone) ordered by case and seq, so it
    works on tables larger than memory.
    """
    problems: list[str] = []
    columns = [getattr(AuditEvent, name) for name in HASHED_FIELDS]
    query = (select(AuditEvent.hash, AuditEvent.hash_version, AuditEvent.sealed, Case.audit_head, Case.audit_seq,
                    *columns)
             .outerjoin(Case, Case.id == AuditEvent.case_id)
             .order_by(AuditEvent.case_id, AuditEvent.seq)
             .execution_options(yield_per=batch_size))
    if case_id is not None:
        query = query.where(AuditEvent.case_id == case_id)

    rows = session.execute(query)
    for current, events in groupby(rows, key=lambda row: row.case_id):
        expected_seq, prev_hash, last = 1, None, None
        tombstones = anonymised = False
        for row in events:
            if row.seq != expected_seq:
                problems.append(_problem(current, f"缺少第 {expected_seq} 条事件（下一条是第 {row.seq} 条）",
                                         f"event {expected_seq} is missing (found {row.seq})")
                                if row.seq > expected_seq else
                                _problem(current, f"第 {row.seq} 条事件顺序错乱", f"event {row.seq} is out of sequence"))
            if row.prev_hash != prev_hash:
                problems.append(_problem(current, f"第 {row.seq} 条事件与前一条衔接不上",
                                         f"event {row.seq} does not link to the event before it"))
            altered, erased = _check_seals(row)
            tombstones = tombstones or erased
            anonymised = anonymised or row.kind == ANONYMISED
            fields = {name: getattr(row, name) for name in HASHED_FIELDS}
            if altered or not hmac.compare_digest(event_hash(**fields, sealed=row.sealed if row.hash_version == 2
                                                             else None), row.hash or ""):
                problems.append(_problem(current, f"第 {row.seq} 条事件被改动（哈希不符）",
                                         f"event {row.seq} was altered (hash mismatch)"))
            expected_seq, prev_hash, last = row.seq + 1, row.hash, row
        if tombstones and not anonymised:
            problems.append(_problem(current, "有数值被抹去，但没有相应的保留期限处理记录",
                                     "values were erased without a retention run on record"))
        if current is not None and last is not None and (last.audit_head != last.hash
                                                         or last.audit_seq != last.seq):
            problems.append(_problem(current, f"案件记录的审计链头不是其最后一条事件（第 {last.seq} 条）：其后的事件被删除，或链头被改动",
                                     f"the case's audit head is not its last event {last.seq} "
                                     "(later events were removed, or the head was changed)"))

    # Cases that say they have a history, but have no event left at all.
    orphans = select(Case.id).where(
        Case.audit_head.is_not(None),
        ~exists().where(AuditEvent.case_id == Case.id)).order_by(Case.id)
    if case_id is not None:
        orphans = orphans.where(Case.id == case_id)
    for orphan in session.scalars(orphans.execution_options(yield_per=batch_size)):
        problems.append(_problem(orphan, "全部事件缺失（案件仍有审计链头）",
                                 "every event is missing (the case has an audit head)"))
    return problems


# ----------------------------------------------------------------------------- anchors

ANCHOR_FORMAT = "hexie-audit-anchor/1"


def _signature(body: Mapping[str, Any]) -> str:
    return _hmac_hex(audit_key(), canonical_json(body).encode("utf-8"))


def make_anchor(session: Session) -> dict[str, Any]:
    """The heads of every chain now, signed with the audit key: keep it away from the database.

    ``{"format", "at", "chains": [[case_id, seq, hash], ...], "caseless": [seq, hash] or
    null, "signature"}``.
    """
    chains = [[case_id, seq, head] for case_id, seq, head in session.execute(
        select(Case.id, Case.audit_seq, Case.audit_head).where(Case.audit_head.is_not(None)).order_by(Case.id))]
    last = session.execute(select(AuditEvent.seq, AuditEvent.hash).where(AuditEvent.case_id.is_(None))
                           .order_by(AuditEvent.seq.desc()).limit(1)).first()
    body = {"format": ANCHOR_FORMAT, "at": utcnow().isoformat(timespec="seconds"), "chains": chains,
            "caseless": [last.seq, last.hash] if last else None}
    return {**body, "signature": _signature(body)}


def _resealed(session: Session, case_id: int) -> list[list[Any]]:
    """[seq, old hash, new hash] of the events a retention run re-sealed (its ``anonymised`` event)."""
    out: list[list[Any]] = []
    for changes in session.scalars(select(AuditEvent.changes).where(AuditEvent.case_id == case_id,
                                                                    AuditEvent.kind == ANONYMISED)):
        pair = (changes or {}).get("resealed")
        if isinstance(pair, list) and len(pair) == 2 and isinstance(pair[1], list):
            out += [list(entry) for entry in pair[1]]
    return out


def verify_anchor(session: Session, anchor: Mapping[str, Any]) -> list[str]:
    """What changed since ``anchor`` was made that the chain may not change: an anchored event
    rewritten (also by someone holding the key), one inserted before it, a chain cut short,
    a whole case removed. Returns the problems found (empty: every anchored head is intact).
    Use with :func:`verify_chain`, which checks the events up to each head and after it.
    """
    body = {k: v for k, v in anchor.items() if k != "signature"} if isinstance(anchor, Mapping) else {}
    if body.get("format") != ANCHOR_FORMAT:
        return ["锚点文件不是 Hexie 审计锚点 / the anchor is not a Hexie audit anchor"]
    if not hmac.compare_digest(str(anchor.get("signature", "")), _signature(body)):
        return ["锚点签名不符（密钥不同，或文件被改动） / "
                "the anchor's signature does not match (another key, or the file was edited)"]
    problems: list[str] = []
    anchored = [(case_id, seq, head) for case_id, seq, head in body.get("chains", [])]
    if body.get("caseless"):
        anchored.append((None, *body["caseless"]))
    for case_id, seq, head in anchored:
        found = session.scalar(select(AuditEvent.hash).where(
            AuditEvent.case_id.is_(None) if case_id is None else AuditEvent.case_id == case_id,
            AuditEvent.seq == seq))
        if found == head or (case_id is not None and found is not None
                             and [seq, head, found] in _resealed(session, case_id)):
            continue   # unchanged, or re-sealed by a retention run that the chain itself records
        if found is not None:
            problems.append(_problem(case_id, f"第 {seq} 条事件在锚定后被改写（或在其前插入了事件）",
                                     f"event {seq} was rewritten since the anchor (or events inserted before it)"))
        elif case_id is not None and session.get(Case, case_id) is None:
            problems.append(_problem(case_id, f"整个案件在锚定后被删除（当时有 {seq} 条事件）",
                                     f"the whole case was removed since the anchor (it had {seq} events)"))
        else:
            problems.append(_problem(case_id, f"第 {seq} 条事件在锚定后被删除", f"event {seq} was removed since the anchor"))
    return problems
