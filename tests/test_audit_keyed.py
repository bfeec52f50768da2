"""Security finding 3: the audit chain could be recomputed by anyone who can write to the database.

Now every event's hash is an HMAC with a key kept outside the database (``HEXIE_AUDIT_KEY`` or
the instance folder), and ``hexie audit anchor`` writes the signed heads of all chains;
``hexie audit verify --anchor FILE`` finds any event rewritten, inserted or deleted since,
whole cases included, even by someone who holds the key. The attacks are the tester's: a
payment changed from 200 to 20,000 with the chain recomputed, and a whole paid case deleted.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from hexie.models import AuditEvent, Case
from hexie.models.db import json_default
from hexie.workflows import audit
from hexie.workflows.audit import HASHED_FIELDS, canonical_json, event_hash, make_anchor, verify_anchor, verify_chain
from hexie.workflows.ledger import verify_ledger

from .engine_helpers import DEFINITIONS, make_env, pay_spring_bud, spring_bud_to_disbursement


def english(problems: list[str]) -> list[str]:
    """The English half of each problem (they read ``案件 7：… / case 7: …``, Chinese first)."""
    assert all(" / " in p for p in problems), problems
    return [p.split(" / ", 1)[1] for p in problems]


PEOPLE = {"rep": "rep", "cadre": "cadre2", "manager": "mgr1", "matcher": "ccadre"}


@pytest.fixture
def env(session_factory):
    return make_env(session_factory, definitions=DEFINITIONS)


def _paid_cases(env, n: int = 2) -> list[int]:
    """Spring Bud pupils paid 200 yuan each (a posting to the sponsors' fund)."""
    ids = []
    for _ in range(n):
        case_id = spring_bud_to_disbursement(env.service, env.actor, PEOPLE)
        pay_spring_bud(env.service, env.actor, "fin", case_id, "200")
        ids.append(case_id)
    return ids


def _events(s, case_id: int) -> list:
    return list(s.execute(select(AuditEvent.__table__).where(AuditEvent.case_id == case_id)
                          .order_by(AuditEvent.seq)))


def _recompute(s, case_id: int, *, keyed: bool, key: bytes | None = None) -> None:
    """What an attacker with database access does: re-hash the whole chain after an edit."""
    prev = None
    for row in _events(s, case_id):
        fields = {name: getattr(row, name) for name in HASHED_FIELDS} | {"prev_hash": prev}
        if key is not None:
            document = canonical_json({**fields, "at": fields["at"]}).encode()
            digest = __import__("hmac").new(key, document, hashlib.sha256).hexdigest()
        else:
            digest = event_hash(**fields, keyed=keyed)
        # (as scheme 1: the values hashed as they are, which the verifier accepts from the key holder)
        s.execute(text("UPDATE hexie_audit_events SET hash = :h, prev_hash = :p, hash_version = 1, sealed = NULL "
                       "WHERE id = :i"),
                  {"h": digest, "p": prev, "i": row.id})
        prev = digest
    s.execute(text("UPDATE hexie_cases SET audit_head = :h WHERE id = :c"), {"h": prev, "c": case_id})
    s.commit()


def _pay_twenty_thousand(s, case_id: int) -> None:
    for row in _events(s, case_id):
        if row.changes and '"200.00"' in json.dumps(row.changes):
            changes = json.loads(json.dumps(row.changes).replace('"200.00"', '"20000.00"'))
            s.execute(text("UPDATE hexie_audit_events SET changes = :c WHERE id = :i"),
                      {"c": json.dumps(changes, ensure_ascii=False), "i": row.id})
    s.execute(text("UPDATE hexie_ledger_entries SET amount = 20000 WHERE case_id = :c"), {"c": case_id})


def test_events_are_keyed(env):
    (case_id,) = _paid_cases(env, 1)
    with env.engine.session_factory() as s:
        rows = _events(s, case_id)
        first = rows[0]
        plain = event_hash(**{name: getattr(first, name) for name in HASHED_FIELDS}, keyed=False)
        assert first.hash != plain                              # not something anyone can recompute
        assert verify_chain(s) == [] and verify_ledger(s) == []


@pytest.mark.parametrize("forger", ["plain sha-256", "a guessed key"])
def test_a_recomputed_chain_is_detected(env, forger):
    (case_id,) = _paid_cases(env, 1)
    with env.engine.session_factory() as s:
        _pay_twenty_thousand(s, case_id)
        if forger == "plain sha-256":
            _recompute(s, case_id, keyed=False)
        else:
            _recompute(s, case_id, keyed=True, key=b"not-the-key")
        problems = verify_chain(s)
    assert problems and all(p.startswith(f"case {case_id}:") for p in english(problems)), problems


def test_the_anchor_finds_a_deleted_case_and_an_insiders_rewrite(env):
    paid, other = _paid_cases(env, 2)
    with env.engine.session_factory() as s:
        anchor = make_anchor(s)
        assert verify_anchor(s, anchor) == []
        # a whole paid case removed: nothing of it is left for the chain to miss
        for table in ("hexie_ledger_entries", "hexie_audit_events", "hexie_timers", "hexie_votes",
                      "hexie_tasks", "hexie_attachments"):
            s.execute(text(f"DELETE FROM {table} WHERE case_id = :c"), {"c": paid})
        s.execute(text("DELETE FROM hexie_cases WHERE id = :c"), {"c": paid})
        s.commit()
        assert verify_chain(s) == []                      # the chain alone cannot see it
        assert english(verify_anchor(s, anchor)) == [
            f"case {paid}: the whole case was removed since the anchor "
            f"(it had {anchor['chains'][0][1]} events)"]
        # someone holding the key rewrites the other case's payment and re-hashes its chain
        _pay_twenty_thousand(s, other)
        _recompute(s, other, keyed=True)
        assert verify_chain(s) == []
        assert [p.split(":")[0] for p in english(verify_anchor(s, anchor))] == [f"case {paid}", f"case {other}"]


def test_an_edited_anchor_is_refused(env):
    _paid_cases(env, 1)
    with env.engine.session_factory() as s:
        anchor = make_anchor(s)
        forged = {**anchor, "chains": anchor["chains"][:-1]}
        assert english(verify_anchor(s, forged)) == [
            "the anchor's signature does not match (another key, or the file was edited)"]
        assert english(verify_anchor(s, {"chains": []})) == ["the anchor is not a Hexie audit anchor"]


def test_cli_anchor_and_verify(tmp_path: Path, monkeypatch):
    from hexie.cli import main
    from .engine_helpers import FIXTURES
    monkeypatch.setenv("HEXIE_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    runner = CliRunner()
    assert runner.invoke(main, ["org", "load", str(FIXTURES.parent / "engine_org.yaml")]).exit_code == 0
    assert runner.invoke(main, ["demo"]).exit_code == 0
    anchor = tmp_path / "anchor.json"
    out = runner.invoke(main, ["audit", "anchor", "--output", str(anchor)])
    assert out.exit_code == 0, out.output
    assert json.loads(anchor.read_text())["format"] == "hexie-audit-anchor/1"
    ok = runner.invoke(main, ["audit", "verify", "--anchor", str(anchor)])
    assert ok.exit_code == 0, ok.output
    from sqlalchemy import create_engine
    engine = create_engine(f"sqlite:///{tmp_path / 'cli.db'}")
    with engine.begin() as conn:
        victim = conn.execute(text("SELECT max(id) FROM hexie_cases")).scalar()
        for table in ("hexie_ledger_entries", "hexie_audit_events", "hexie_timers", "hexie_votes", "hexie_tasks",
                      "hexie_attachments", "hexie_notifications", "hexie_request_keys", "hexie_import_rows"):
            try:
                conn.execute(text(f"DELETE FROM {table} WHERE case_id = :c"), {"c": victim})
            except Exception:
                pass
        conn.execute(text("DELETE FROM hexie_cases WHERE id = :c"), {"c": victim})
    engine.dispose()
    assert runner.invoke(main, ["audit", "verify"]).exit_code == 0          # unseen without the anchor
    broken = runner.invoke(main, ["audit", "verify", "--anchor", str(anchor)])
    assert broken.exit_code == 1 and f"case {victim}: the whole case was removed" in broken.output


def test_the_key_lives_in_the_instance_folder_when_not_configured(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("HEXIE_AUDIT_KEY")
    monkeypatch.setenv("HEXIE_INSTANCE", str(tmp_path / "instance"))
    key = audit.audit_key()
    path = tmp_path / "instance" / "audit_key"
    assert path.read_text().strip().encode() == key and len(key) == 64
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    audit._KEYS.clear()
    assert audit.audit_key() == key                               # generated once, then kept
    monkeypatch.setenv("HEXIE_AUDIT_KEY", "another")
    assert audit.audit_key() == b"another"


@pytest.mark.parametrize("value", ["13812345678", "县城\"1\"号\\\n\u2028\x01", "", 0, -7, 10**20, None, True, False,
                                   1.5, "1.50", ["a", 2, None], {"b": [1], "a": "县"}, [], {}])
def test_seals_and_hashes_are_the_plain_paths_bytes(value):
    """value_seal puts its canonical JSON together from its items', and both HMACs start from a
    keyed copy: the same digests as canonical_json and hmac.new give."""
    key = audit.audit_key()
    for case_id, seq, field, index in ((1, 1, "phone", 1), (None, 12, "地址", 0), (2**40, 3, 'a"b', 1)):
        document = canonical_json(["hexie-seal/1", case_id, seq, field, index, value]).encode("utf-8")
        plain = hmac.new(key, document, hashlib.sha256).hexdigest()
        assert audit.value_seal(case_id, seq, field, index, value) == plain
        assert audit.value_seal(case_id, seq, field, index, value, key) == plain
        pair = [hmac.new(key, canonical_json(["hexie-seal/1", case_id, seq, field, i, v]).encode("utf-8"),
                         hashlib.sha256).hexdigest() for i, v in enumerate(["旧", value])]
        changes = {field: ["旧", value], "other": [None, 1]}
        assert audit.seal_changes(case_id, seq, changes, [field]) == {field: pair}
    fields = dict(prev_hash="ab" * 32, case_id=5, seq=2, at=datetime(2026, 12, 1, 8, 30),
                  actor="rep", kind="started", trigger=None, from_state=None, to_state="registration",
                  comment=None, changes={"phone": [None, value]})
    plain = hmac.new(key, canonical_json(fields).encode("utf-8"), hashlib.sha256).hexdigest()
    assert event_hash(**fields) == plain == event_hash(**fields, key=key)
    assert canonical_json(fields) == json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                                                default=json_default)


def _plain_event_hash(key: bytes, fields: dict, sealed: dict | None) -> str:
    """event_hash as it was first written: the document built as a dict, then canonical_json."""
    changes = fields["changes"]
    if sealed:
        changes = {n: ([{"#": seal} for seal in sealed[n]] if n in sealed else v) for n, v in (changes or {}).items()}
    at = fields["at"]
    if at.tzinfo is not None:
        at = at.astimezone(timezone.utc).replace(tzinfo=None)
    document = {**fields, "at": at, "changes": changes} | ({"v": 2} if sealed else {})
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=json_default)
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


@pytest.mark.parametrize("changes,sealed", [
    (None, None), ({}, None), ({"amount": ["200.00", "20000.00"], "名字": [None, "王\"秀\\英\n"]}, None),
    ({"phone": [None, "13812345678"], "n": [1, 2.5], "x": [True, {"b": 1, "a": [None]}]},
     {"phone": ["a" * 64, "b" * 64]}),
    ("a string", None), ([1, "二"], None)])
@pytest.mark.parametrize("at", [datetime(2026, 12, 1, 8, 30, 0, 123456), datetime(2026, 1, 2),
                                datetime(2026, 6, 1, 16, 0, tzinfo=timezone(
                                    timedelta(hours=8)))])
def test_event_hash_is_the_dict_documents_bytes(changes, sealed, at):
    key = audit.audit_key()
    for fields in (dict(prev_hash=None, case_id=None, seq=1, at=at, actor="system", kind="started", trigger=None,
                        from_state=None, to_state="registration", comment=None, changes=changes),
                   dict(prev_hash="f" * 64, case_id=2**40, seq=17, at=at, actor="王'rep\"", kind="transition",
                        trigger="approve", from_state="审核", to_state="done", comment="同意\u2028 ok \\", changes=changes)):
        assert event_hash(**fields, sealed=sealed) == _plain_event_hash(key, fields, sealed)
        assert event_hash(**fields, sealed=sealed, keyed=False) == hashlib.sha256(
            json.dumps({**fields, "at": fields["at"] if at.tzinfo is None else datetime(2026, 6, 1, 8, 0),
                        "changes": {n: ([{"#": s} for s in sealed[n]] if n in sealed else v)
                                    for n, v in changes.items()} if sealed else changes}
                       | ({"v": 2} if sealed else {}), sort_keys=True, separators=(",", ":"),
                       ensure_ascii=False, default=json_default).encode("utf-8")).hexdigest()
