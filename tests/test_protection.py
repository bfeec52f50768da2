"""protection.md, "Reports and exports", "Finding a survivor's case" and "Retention", on both
databases: small-count suppression, case codes and de-identification, the blind index, retention
with a redactable audit chain (hash scheme 2), and the older chains still verifying.
"""
from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import select, text, update

from hexie.models import Attachment, AuditEvent, Case, CaseLookup
from hexie.workflows import audit
from hexie.workflows.audit import TOMBSTONE, make_anchor, verify_anchor, verify_chain
from hexie.workflows.protection import SUPPRESSED, case_code, lookup_digest, normalise, reindex, suppress_report
from hexie.workflows.retention import cutoff, parse_retention, run_retention

from .engine_helpers import env_with


def english(problems: list[str]) -> list[str]:
    """The English half of each problem (they read ``案件 7：… / case 7: …``, Chinese first)."""
    assert all(" / " in p for p in problems), problems
    return [p.split(" / ", 1)[1] for p in problems]


COMPLAINT = """
process: complaint
title: {zh: 投诉, en: Complaint}
confidential: true
starters: [county_cadre]
retention: {anonymise_after: P5Y}
fields:
  victim_name: {type: text, required: true, sensitive: true, searchable: true}
  victim_id: {type: text, sensitive: true, searchable: true}
  victim_phone: {type: text, sensitive: true}
  evidence: {type: file, multiple: true}
  decision: {type: textarea}
states:
  - name: intake
    task: {role: county_cadre, form: [victim_name, victim_id, victim_phone, evidence]}
  - name: outcome
    task: {role: county_cadre, form: [victim_phone]}
  - name: closed
    final: true
transitions:
  - {trigger: refer, source: intake, dest: outcome}
  - {trigger: close, source: outcome, dest: closed, form: [decision]}
"""

OPEN_AID = """
process: aid
title: {zh: 救助, en: Aid}
starters: [county_cadre]
fields:
  applicant: {type: text, required: true}
states:
  - name: open
    task: {role: county_cadre, form: [applicant]}
  - name: done
    final: true
transitions:
  - {trigger: finish, source: open, dest: done}
"""


@pytest.fixture
def env(session_factory, tmp_path):
    return env_with(session_factory, tmp_path / "defs", complaint=COMPLAINT, aid=OPEN_AID)


def _complaint(env, name="王芳", id_number="11010519900307002X", phone="13800000000", close=False) -> int:
    cadre = env.actor("ccadre")
    case_id = env.service.start_case(cadre, "complaint", "county",
                                     {"victim_name": name, "victim_id": id_number, "victim_phone": phone})
    env.service.fire(cadre, case_id, "refer")
    env.service.fire(cadre, case_id, "close", {"decision": "referred"}) if close else None
    return case_id


# ---------------------------------------------------------------------- suppression

def test_counts_below_five_read_less_than_five_and_the_total_cannot_give_them_back(env):
    cadre = env.actor("ccadre")
    for _ in range(3):
        _complaint(env)                                          # 3 in outcome
    for _ in range(6):
        _complaint(env, close=True)                              # 6 closed
        env.service.start_case(cadre, "complaint", "county", {"victim_name": "x"})   # 6 in intake
    report = env.queries.report(env.actor("mgr1"), "complaint")
    assert report["suppressed"] is True
    (unit,) = report["units"]
    assert unit["counts"]["outcome"] == SUPPRESSED
    row = [unit["total"], *unit["counts"].values()]
    # 15 - 6 - 6 would give the 3 back: a second cell is hidden with it (not the total)
    assert sum(1 for v in row if v == SUPPRESSED) == 2 and unit["total"] == 15
    totals = [report["total"], *(report["totals"][st] for st in report["states"])]
    assert totals == row
    shown = [v for v in [*row, *totals, *(n for _, n in report["months"])] if v != SUPPRESSED]
    assert all(isinstance(v, int) and v >= 5 for v in shown)
    assert report["months"] == [("2026-03", 15)]


def test_the_complement_is_another_cell_when_the_total_is_large(env):
    report = {"states": ["a", "b", "c"], "units": [
        {"code": "u", "name": "u", "counts": {"a": 20, "b": 3, "c": 9}, "total": 32, "rates": {},
         "open_tasks": 12, "overdue": 0}],
        "totals": {"a": 20, "b": 3, "c": 9, "open_tasks": 12, "overdue": 0}, "total_rates": {},
        "months": [("2026-01", 30), ("2026-02", 2)], "total": 32}
    out = suppress_report(report)
    unit = out["units"][0]
    assert unit["counts"] == {"a": 20, "b": SUPPRESSED, "c": SUPPRESSED}     # 9 hidden, not the 32
    assert unit["total"] == 32 and out["total"] == 32
    assert out["months"] == [("2026-01", SUPPRESSED), ("2026-02", SUPPRESSED)]
    assert unit["overdue"] == SUPPRESSED and out["totals"]["overdue"] == SUPPRESSED


def test_reports_of_open_processes_are_not_suppressed(env):
    env.service.start_case(env.actor("ccadre"), "aid", "county", {"applicant": "李四"})
    report = env.queries.report(env.actor("mgr1"), "aid")
    assert report["suppressed"] is False and report["total"] == 1


# ---------------------------------------------------------------------- codes

def test_lists_carry_the_case_code_never_a_name(env):
    case_id = _complaint(env)
    page = env.queries.cases(env.actor("ccadre"), process="complaint")
    (row,) = page.items
    assert row["subject"] == case_code(case_id) and "王芳" not in str(row)
    tasks = env.queries.tasks(env.actor("ccadre"), "mine")
    assert all(t["subject"] == case_code(t["case_id"]) for t in tasks.items)
    assert case_code(case_id) == case_code(case_id) != case_code(case_id + 1)


# ---------------------------------------------------------------------- blind index

def test_the_blind_index_finds_a_case_by_full_name_or_id_for_those_working_it(env):
    mine = _complaint(env, name="王芳", id_number="11010519900307002X")
    _complaint(env, name="王芳芳", id_number="110105199003070011")
    cadre, overseer = env.actor("ccadre"), env.actor("mgr1")
    assert env.queries.lookup_ids(cadre, "王芳") == [mine]
    assert env.queries.lookup_ids(cadre, "  王芳 ") == [mine]
    assert env.queries.lookup_ids(cadre, "11010519900307002x") == [mine]       # case folded
    assert env.queries.lookup_ids(cadre, "１１０１０５１９９００３０７００２Ｘ") == [mine]   # full-width, NFKC
    assert env.queries.lookup_ids(cadre, "王") == []                          # never a substring
    assert env.queries.lookup_ids(overseer, "王芳") == [mine]                 # overseers too
    for other in ("cadre", "police", "legal", "rep", "admin"):
        assert env.queries.lookup_ids(env.actor(other), "王芳") == []        # as for no match
    page = env.queries.cases(cadre, lookup="王芳")
    assert [c["id"] for c in page.items] == [mine]
    assert env.queries.cases(env.actor("police"), lookup="王芳").total == 0
    with env.engine.session_factory() as s:
        stored = list(s.scalars(select(CaseLookup.digest).where(CaseLookup.case_id == mine)))
        assert lookup_digest("王芳") in stored and all("王芳" not in d for d in stored)
        searched = list(s.execute(select(AuditEvent.actor, AuditEvent.changes).where(
            AuditEvent.case_id.is_(None), AuditEvent.kind == "searched").order_by(AuditEvent.seq)))
        assert len(searched) == 13 and searched[0].actor == "ccadre"
        assert searched[0].changes == {"found": [None, [mine]]}
        assert "王芳" not in str([row.changes for row in searched])            # the value is never kept
        assert verify_chain(s) == []


def test_the_index_follows_changes_and_reindex_fills_it(env):
    case_id = _complaint(env, name="李娜")
    with env.engine.transaction() as s:
        s.execute(text("DELETE FROM hexie_case_lookups"))
    assert env.queries.lookup_ids(env.actor("ccadre"), "李娜") == []
    assert reindex(env.engine) == 1
    assert env.queries.lookup_ids(env.actor("ccadre"), "李娜") == [case_id]
    assert normalise(" A  b ") == "a b"


def test_an_empty_searchable_field_has_no_entry_and_no_search_finds_it(env):
    case_id = _complaint(env, name="赵敏", id_number=None)
    with env.engine.session_factory() as s:
        fields = set(s.scalars(select(CaseLookup.field).where(CaseLookup.case_id == case_id)))
    assert "victim_name" in fields and "victim_id" not in fields
    assert normalise(None) == "" and lookup_digest(None) is None
    cadre = env.actor("ccadre")
    assert env.queries.lookup_ids(cadre, "赵敏") == [case_id]
    for text_ in ("None", "none", "NONE"):
        assert env.queries.lookup_ids(cadre, text_) == []


def test_a_search_value_that_cannot_be_stored_is_a_bad_request(env):
    from hexie.workflows.errors import BadRequest
    with pytest.raises(BadRequest):
        env.queries.lookup_ids(env.actor("ccadre"), "a\x00b")


# ---------------------------------------------------------------------- audit scheme 2

def test_sensitive_values_are_sealed_in_the_chain(env):
    case_id = _complaint(env)
    with env.engine.session_factory() as s:
        started = s.scalars(select(AuditEvent).where(AuditEvent.case_id == case_id, AuditEvent.seq == 1)).one()
        assert started.hash_version == 2
        assert set(started.sealed) == {"victim_name", "victim_id", "victim_phone"}
        assert verify_chain(s, case_id) == []
        # a sealed value changed: found (its seal no longer matches, even with the hash untouched)
        changes = dict(started.changes)
        changes["victim_name"] = [None, "张三"]
        s.execute(update(AuditEvent).where(AuditEvent.id == started.id).values(changes=changes))
        s.commit()
        assert english(verify_chain(s, case_id)) == [f"case {case_id}: event 1 was altered (hash mismatch)"]
        # a value erased without a retention run on record: found too
        changes["victim_name"] = [None, TOMBSTONE]
        s.execute(update(AuditEvent).where(AuditEvent.id == started.id).values(changes=changes))
        s.commit()
        assert english(verify_chain(s, case_id)) == [
            f"case {case_id}: values were erased without a retention run on record"]
        # and downgrading the event to scheme 1 does not hide an edit
        s.execute(update(AuditEvent).where(AuditEvent.id == started.id).values(hash_version=1, sealed=None))
        s.commit()
        assert f"case {case_id}: event 1 was altered (hash mismatch)" in english(verify_chain(s, case_id))


# ---------------------------------------------------------------------- retention

def test_retention_periods():
    assert parse_retention("P5Y") == (5, 0, 0)
    assert parse_retention("P1Y6M") == (1, 6, 0)
    assert parse_retention("30d") == (0, 0, 30)
    assert cutoff(datetime(2032, 2, 29, 12), "P5Y") == datetime(2027, 2, 28, 12)
    for bad in ("5Y", "P", "P0Y", "", None, 5):
        with pytest.raises(ValueError):
            parse_retention(bad)


def _attach(env, case_id: int, folder) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "k1").write_bytes(b"scan of her ID card")
    with env.engine.transaction() as s:
        s.add(Attachment(case_id=case_id, field="evidence", filename="王芳身份证.jpg", content_type="image/jpeg",
                         size=19, storage_key="k1", uploaded_by_id=s.scalar(text(
                             "SELECT id FROM hexie_users WHERE username = 'ccadre'"))))
        s.flush()
        case = s.get(Case, case_id)
        audit.append_event(s, case, kind="attached", actor=None, changes={"evidence": [None, "王芳身份证.jpg"]},
                           seal=audit.sealed_fields(env.engine.processes["complaint"]))
    return case_id


def test_retention_erases_data_history_and_files_and_the_chain_still_verifies(env, tmp_path):
    old = _complaint(env, close=True)
    uploads = tmp_path / "uploads"
    _attach(env, old, uploads)
    env.clock.advance(days=365 * 3)
    recent = _complaint(env, name="赵敏", close=True)
    running = _complaint(env, name="钱红")
    with env.engine.session_factory() as s:
        anchor = make_anchor(s)
    env.clock.advance(days=365 * 2 + 5)                 # old: closed 5 years ago; recent: 2 years

    dry = run_retention(env.engine, upload_dir=uploads, dry_run=True)
    assert dry.cases == [old] and (uploads / "k1").exists()
    assert dry.lines()[0] == "将匿名化 / would anonymise: 1 件 cases"   # no made-up "0 values"
    summary = run_retention(env.engine, upload_dir=uploads)
    assert summary.cases == [old] and summary.attachments == 1 and summary.values >= 4
    assert not (uploads / "k1").exists()
    with env.engine.session_factory() as s:
        case = s.get(Case, old)
        assert case.anonymised_at is not None
        assert case.data["victim_name"] == case.data["victim_id"] == case.data["victim_phone"] == TOMBSTONE
        assert case.data["decision"] == "referred"                      # not sensitive: kept
        history = str([e.changes for e in s.scalars(select(AuditEvent).where(AuditEvent.case_id == old))])
        for value in ("王芳", "11010519900307002X", "13800000000"):
            assert value not in history
        (attachment,) = s.scalars(select(Attachment).where(Attachment.case_id == old))
        assert attachment.filename == TOMBSTONE and attachment.size == 0
        assert s.scalars(select(CaseLookup).where(CaseLookup.case_id == old)).all() == []
        assert s.get(Case, recent).data["victim_name"] == "赵敏"
        assert s.get(Case, running).anonymised_at is None
        assert verify_chain(s) == []
        assert verify_anchor(s, anchor) == []                      # scheme 2: no hash changed
        kinds = [e.kind for e in s.scalars(select(AuditEvent).where(AuditEvent.case_id == old)
                                          .order_by(AuditEvent.seq))]
        assert kinds[-1] == "anonymised"
        run = s.scalars(select(AuditEvent).where(AuditEvent.kind == "retention_run")).one()
        assert run.case_id is None and run.changes["cases"] == [None, [old]]
    assert env.queries.lookup_ids(env.actor("ccadre"), "王芳") == []
    view = env.queries.case(env.actor("ccadre"), old)
    assert view["anonymised_at"] is not None and view["data"]["victim_name"] == TOMBSTONE
    assert run_retention(env.engine, upload_dir=uploads).cases == []      # once only


def _as_scheme_one(s, case_id: int) -> None:
    """The case's chain as written before migration 0017: scheme 1 everywhere."""
    prev = None
    for e in list(s.scalars(select(AuditEvent).where(AuditEvent.case_id == case_id).order_by(AuditEvent.seq))):
        fields = {name: getattr(e, name) for name in audit.HASHED_FIELDS} | {"prev_hash": prev}
        digest = audit.event_hash(**fields)
        s.execute(update(AuditEvent).where(AuditEvent.id == e.id).values(
            hash=digest, prev_hash=prev, hash_version=1, sealed=None))
        prev = digest
    s.execute(update(Case).where(Case.id == case_id).values(audit_head=prev))
    s.commit()


def test_retention_reseals_chains_written_before_scheme_two(env, tmp_path):
    case_id = _complaint(env, close=True)
    with env.engine.session_factory() as s:
        _as_scheme_one(s, case_id)
        assert verify_chain(s) == []
        anchor = make_anchor(s)
    env.clock.advance(days=365 * 5 + 2)
    summary = run_retention(env.engine)
    assert summary.cases == [case_id] and summary.resealed_events >= 1
    with env.engine.session_factory() as s:
        assert verify_chain(s) == []
        assert verify_anchor(s, anchor) == []           # the re-sealed heads are on record in the chain
        assert "王芳" not in str([e.changes for e in s.scalars(select(AuditEvent).where(
            AuditEvent.case_id == case_id))])


def test_retention_leaves_a_broken_chain_alone(env):
    case_id = _complaint(env, close=True)
    with env.engine.session_factory() as s:
        _as_scheme_one(s, case_id)
        s.execute(update(AuditEvent).where(AuditEvent.case_id == case_id, AuditEvent.seq == 2)
                  .values(comment="forged"))
        s.commit()
    env.clock.advance(days=365 * 5 + 2)
    summary = run_retention(env.engine)
    assert summary.cases == [] and list(summary.skipped) == [case_id]
    with env.engine.session_factory() as s:
        assert s.get(Case, case_id).data["victim_name"] == "王芳"


def test_the_command_line(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from hexie.cli import main
    from .engine_helpers import FIXTURES
    monkeypatch.setenv("HEXIE_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("HEXIE_INSTANCE", str(tmp_path / "instance"))
    runner = CliRunner()
    assert runner.invoke(main, ["org", "load", str(FIXTURES.parent / "engine_org.yaml")]).exit_code == 0
    assert runner.invoke(main, ["demo"]).exit_code == 0
    indexed = runner.invoke(main, ["search", "reindex", "dv_complaint"])
    assert indexed.exit_code == 0 and "indexed:" in indexed.output, indexed.output
    dry = runner.invoke(main, ["retention", "run", "--dry-run"])
    assert dry.exit_code == 0 and "would anonymise: 0" in dry.output, dry.output
    run = runner.invoke(main, ["retention", "run"])
    assert run.exit_code == 0 and "anonymised: 0" in run.output, run.output
    assert runner.invoke(main, ["audit", "verify"]).exit_code == 0


def test_the_worker_applies_retention_once_a_day(engine, db_url, tmp_path):
    """interfaces.md: `hexie retention run` applies the definitions' retention rules "(also run
    daily by the worker)": `hexie worker --once` anonymises a complaint closed over five years ago."""
    from datetime import timedelta

    from click.testing import CliRunner
    from sqlalchemy import update

    from hexie.cli import main

    from .api_support import DEFINITIONS, api_env
    api = api_env(engine)
    case_id = api.start_dv()
    api.service.fire(api.actor("ccadre"), case_id, "withdraw", comment="当事人撤回")
    with api.engine.transaction() as s:
        closed = s.get(Case, case_id).closed_at
        assert closed is not None
        s.execute(update(Case).where(Case.id == case_id).values(closed_at=closed - timedelta(days=365 * 6)))
    runner = CliRunner(env={"HEXIE_DATABASE_URL": db_url, "HEXIE_DEFINITIONS": str(DEFINITIONS),
                            "HEXIE_UPLOAD_DIR": str(tmp_path / "uploads"), "HEXIE_SMTP_URL": None})
    result = runner.invoke(main, ["worker", "--once"])
    assert result.exit_code == 0, result.output
    assert "anonymise" in result.output
    with api.engine.session_factory() as s:
        case = s.get(Case, case_id)
        assert case.anonymised_at is not None and case.data["victim_name"] == TOMBSTONE
        assert verify_chain(s) == []
