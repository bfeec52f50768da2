"""Bulk start from CSV (hexie.workflows.bulk, ``hexie cases import``) on SQLite and PostgreSQL."""
from __future__ import annotations

import csv

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from hexie.models import AuditEvent, Case, Task
from hexie.workflows.access import SYSTEM
from hexie.workflows.audit import verify_chain
from hexie.workflows.bulk import import_cases

from .engine_helpers import DEFINITIONS, FIXTURES, make_env

HOUSEHOLD = {"household_head": "赵德厚", "household_address": "东村3组12号", "phone": "13812345678",
             "elder_names": "赵德厚、钱秀英", "elder_count": "2", "youngest_elder_age": "72",
             "children_count": "3", "children_names": "赵一、赵二、赵三", "living_arrangement": "rotating"}


@pytest.fixture
def env(session_factory):
    return make_env(session_factory, definitions=DEFINITIONS)


def _write(path, rows, header=None):
    header = header or ["org_unit", *HOUSEHOLD]
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(rows)
    return path


def _households(n, units=("t01v01", "t01v02")):
    return [{**HOUSEHOLD, "org_unit": units[i % len(units)], "household_head": f"户主{i:03d}"} for i in range(n)]


def lose_unit_between_passes(monkeypatch, code: str) -> None:
    """The unit ``code`` is merged away while pass 1 runs: the import's second read of the org
    units (pass 2's) no longer has it."""
    from hexie.workflows import bulk
    real, calls = bulk._load_units, []

    def units_then_lose_one(engine):
        units = real(engine)
        calls.append(1)
        if len(calls) == 2:
            units.pop(code)
        return units
    monkeypatch.setattr(bulk, "_load_units", units_then_lose_one)


def _count(env, table):
    with env.engine.session_factory() as s:
        return s.scalar(select(func.count()).select_from(table))


def test_valid_file_starts_every_case_like_start_case(env, tmp_path):
    events = []
    env.engine.subscribe(events.append)
    cadre = env.actor("cadre")          # town_cadre (a starter) and village_rep at t01
    path = _write(tmp_path / "households.csv", _households(25))
    result = import_cases(env.engine, cadre, "elder_support", path, batch_size=10)
    assert result.errors == [] and result.started == 25 and result.rows == 25

    reference_id = env.service.start_case(cadre, "elder_support", "t01v01",
                                       {**HOUSEHOLD, "household_head": "户主000"})
    with env.engine.session_factory() as s:
        cases = s.scalars(select(Case).order_by(Case.id)).all()
        assert len(cases) == 26
        first, ref = cases[0], cases[-1]
        assert ref.id == reference_id
        for column in ("process_key", "process_version_id", "state", "data", "org_unit_id", "org_path",
                       "created_by_id", "subject", "confidential", "closed_at"):
            assert getattr(first, column) == getattr(ref, column), column
        assert first.data["elder_count"] == 2 and first.subject == "户主000"
        tasks = s.scalars(select(Task).order_by(Task.id)).all()
        assert len(tasks) == 26
        t, rt = tasks[0], tasks[-1]
        for column in ("state", "name", "role", "status", "assignee_id", "priority", "due_at", "escalate_at",
                       "escalate_to", "org_path"):
            assert getattr(t, column) == getattr(rt, column), column
        assert t.status == "allocated" and t.assignee_id == cadre.user_id   # the starter holds the task
        started = s.scalars(select(AuditEvent).where(AuditEvent.case_id.in_([first.id, ref.id]))
                            .order_by(AuditEvent.case_id)).all()
        assert [(e.seq, e.kind, e.actor, e.to_state, e.changes) for e in started][0] == \
            [(e.seq, e.kind, e.actor, e.to_state, e.changes) for e in started][1]
        assert verify_chain(s) == []
    assert env.queries.tasks(cadre, "mine").total == 26
    kinds = [e["event"] for e in events]
    assert kinds.count("case_started") == 26 and kinds.count("task_created") == 26


def test_import_as_system_offers_the_tasks(env, tmp_path):
    path = _write(tmp_path / "h.csv", _households(3, units=("t02v01",)))
    result = import_cases(env.engine, SYSTEM, "elder_support", path)
    assert result.started == 3
    rep2 = env.actor("rep2")            # village_rep at t02v01
    assert env.queries.tasks(rep2, "available").total == 3
    with env.engine.session_factory() as s:
        assert verify_chain(s) == []
        assert set(s.scalars(select(AuditEvent.actor))) == {"system"}


def test_one_bad_row_writes_nothing_and_names_row_and_field(env, tmp_path):
    rows = _households(30)
    rows[7]["elder_count"] = "9"            # max 4: spreadsheet row 9
    rows[12]["org_unit"] = "nowhere"        # row 14
    rows[20]["living_arrangement"] = ""     # required: row 22
    path = _write(tmp_path / "bad.csv", rows)
    result = import_cases(env.engine, env.actor("cadre"), "elder_support", path, batch_size=4)
    assert result.started == 0 and result.error_rows == 3
    assert result.errors[0].startswith("row 9: elder_count: ")
    assert result.errors[1].startswith("row 14: org_unit: ")
    assert result.errors[2] == "row 22: living_arrangement: 必填 / required"
    assert _count(env, Case) == 0 and _count(env, Task) == 0 and _count(env, AuditEvent) == 0


def test_rows_outside_the_starters_area_are_refused(env, tmp_path):
    path = _write(tmp_path / "h.csv", _households(2, units=("t01v01", "t02v01")))
    result = import_cases(env.engine, env.actor("rep"), "elder_support", path)   # rep works at t01v01 only
    assert result.started == 0
    assert len(result.errors) == 1 and result.errors[0].startswith("row 3: org_unit: ")
    assert _count(env, Case) == 0


def test_unknown_column_is_an_error_of_the_header(env, tmp_path):
    path = _write(tmp_path / "h.csv", [{**HOUSEHOLD, "org_unit": "t01v01", "visit_date": "2026-03-01"}],
                  header=["org_unit", *HOUSEHOLD, "visit_date"])
    result = import_cases(env.engine, env.actor("cadre"), "elder_support", path)
    assert result.errors == ["row 1: visit_date: 此表单不含该字段 / not a field of this form"]
    assert _count(env, Case) == 0


def test_cli_import(tmp_path, monkeypatch):
    from hexie.cli import main
    monkeypatch.setenv("HEXIE_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    runner = CliRunner()
    assert runner.invoke(main, ["org", "load", str(FIXTURES.parent / "engine_org.yaml")]).exit_code == 0
    good = _write(tmp_path / "good.csv", _households(5))
    out = runner.invoke(main, ["cases", "import", "elder_support", str(good), "--as", "cadre", "--batch", "2"])
    assert out.exit_code == 0, out.output
    assert "started: 5" in out.output
    rows = _households(2)
    rows[1]["youngest_elder_age"] = "abc"
    bad = _write(tmp_path / "bad.csv", rows)
    out = runner.invoke(main, ["cases", "import", "elder_support", str(bad), "--as", "cadre"])
    assert out.exit_code == 1
    assert "row 3: youngest_elder_age:" in out.output


def test_imported_cases_webhook_rows_carry_each_events_exact_payload(env, tmp_path):
    """The outbox rows of an import (PostgreSQL: one JSON document of the batch's events) are one
    per event and subscription listing it, in order, each payload the very text of the event."""
    from sqlalchemy import String, cast

    from hexie.models import OutboxMessage, WebhookSubscription
    from hexie.models.db import json_dumps
    with env.engine.transaction() as s:
        s.add_all([WebhookSubscription(url="http://127.0.0.1:9/a", secret="s", events=["case_started"]),
                   WebhookSubscription(url="http://127.0.0.1:9/b", secret="s", events=[]),
                   WebhookSubscription(url="http://127.0.0.1:9/c", secret="s", events=None, active=False)])
    events = []
    env.engine.subscribe(events.append)
    rows = [{**row, "business_key": key} for row, key in
            zip(_households(5), ['K-1 "引号"', "K-2 \\ 反斜杠", "K-3\n换行", "K-4 ' 单引号", "K-5 \u2028"])]
    path = _write(tmp_path / "h.csv", rows, header=["org_unit", "business_key", *HOUSEHOLD])
    result = import_cases(env.engine, env.actor("cadre"), "elder_support", path, batch_size=2)
    assert result.started == 5 and [e["event"] for e in events].count("case_started") == 5
    with env.engine.session_factory() as s:
        subs = dict(s.execute(select(WebhookSubscription.url, WebhookSubscription.id)).all())
        written = [tuple(r) for r in s.execute(
            select(OutboxMessage.subscription_id, OutboxMessage.event, OutboxMessage.case_id, OutboxMessage.seq,
                   cast(OutboxMessage.payload, String)).where(OutboxMessage.kind == "webhook")
            .order_by(OutboxMessage.id))]
    expected = [(subs[url], e["event"], e["case_id"], e["seq"], json_dumps(e)) for e in events
                for url in ("http://127.0.0.1:9/a", "http://127.0.0.1:9/b")
                if url.endswith("b") or e["event"] == "case_started"]
    assert written == expected and len(written) == 15


def test_csv_rows_are_read_as_dictreader_reads_them(tmp_path):
    import io

    from hexie.workflows.bulk import _csv_dicts
    text = ('org_unit,household_head,phone,phone\r\n'
            't01v01,"王""秀""英",1381,dup\r\n\r\n'          # quotes, an empty line, a repeated column
            't01v02,short\n'                                # cells missing
            't01v03,long,1,2,extra,more\n'                  # more cells than the header
            '"t01\nv04","多\r\n行",,\n'                     # quoted line breaks, empty cells
            ',,,\n\n')
    assert list(_csv_dicts(io.StringIO(text, newline=""))) == list(csv.DictReader(io.StringIO(text, newline="")))
    assert list(_csv_dicts(io.StringIO(""))) == list(csv.DictReader(io.StringIO("")))
    assert list(_csv_dicts(io.StringIO("\n\na,b\n1,2\n"))) == list(csv.DictReader(io.StringIO("\n\na,b\n1,2\n")))
