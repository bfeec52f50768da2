"""Security finding 8: a killed bulk import can be resumed, each row imported exactly once.

``hexie cases import`` records every row it turned into a case (line number, business key)
in the batch's own transaction; ``--resume`` carries on after the last committed row. The
test kills a real ``hexie cases import`` process (SIGKILL, nothing to clean up) part-way
through, then resumes it.
"""
from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from hexie.models import Case, ImportRow, ImportRun
from hexie.workflows.audit import verify_chain
from hexie.workflows.bulk import import_cases

from .engine_helpers import DEFINITIONS, make_env
from .test_bulk import HOUSEHOLD, _households, _write, lose_unit_between_passes


@pytest.fixture
def env(session_factory):
    return make_env(session_factory, definitions=DEFINITIONS)


def _count(env, what) -> int:
    with env.engine.session_factory() as s:
        return s.scalar(select(func.count()).select_from(what))


def _heads(env) -> list[str]:
    with env.engine.session_factory() as s:
        return [d["household_head"] for d in s.scalars(select(Case.data))]


def test_a_killed_import_resumes_and_imports_each_row_once(env, db_url, tmp_path: Path):
    n = 6000
    rows = _households(n)
    for i, row in enumerate(rows):
        row["business_key"] = f"HH-{i:05d}"
    path = _write(tmp_path / "big.csv", rows, header=["org_unit", "business_key", *HOUSEHOLD])
    cli = [sys.executable, "-m", "hexie.cli", "cases", "import", "elder_support", str(path),
           "--as", "cadre", "--batch", "50"]
    environ = {**os.environ, "HEXIE_DATABASE_URL": db_url, "HEXIE_DEFINITIONS": str(DEFINITIONS)}
    proc = subprocess.Popen(cli, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while _count(env, ImportRow) < 200 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        proc.kill()
        out, err = proc.communicate()
    done = _count(env, Case)
    assert 0 < done < n, (done, out, err)
    assert _count(env, ImportRow) == done                    # rows recorded with their cases
    with env.engine.session_factory() as s:
        (run,) = s.scalars(select(ImportRun))
        assert run.finished_at is None and run.started == done and run.last_line == done + 1

    # without --resume the command says so rather than importing the file twice
    runner = CliRunner(env={"HEXIE_DATABASE_URL": db_url, "HEXIE_DEFINITIONS": str(DEFINITIONS)})
    from hexie.cli import main
    again = runner.invoke(main, ["cases", "import", "elder_support", str(path), "--as", "cadre"])
    assert again.exit_code == 1 and "--resume" in again.output
    assert _count(env, Case) == done

    resumed = runner.invoke(main, ["cases", "import", "elder_support", str(path), "--as", "cadre", "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert f"started: {n - done}" in resumed.output and f"skipped: {done}" in resumed.output
    heads = _heads(env)
    assert len(heads) == n and len(set(heads)) == n          # every row exactly once
    with env.engine.session_factory() as s:
        lines = sorted(s.scalars(select(ImportRow.line)))
        keys = set(s.scalars(select(ImportRow.business_key)))
        run = s.scalars(select(ImportRun)).one()
        assert verify_chain(s) == []
    assert lines == list(range(2, n + 2)) and len(keys) == n
    assert run.finished_at is not None and run.started == n

    # resuming a finished import is refused with a clear message, and starts nothing
    twice = runner.invoke(main, ["cases", "import", "elder_support", str(path), "--as", "cadre", "--resume"])
    assert twice.exit_code == 1 and "nothing to resume" in twice.output
    assert _count(env, Case) == n


def test_resume_in_process_after_an_aborted_batch(env, tmp_path: Path, monkeypatch):
    """A row that turns invalid between the passes stops the import at its batch; once the
    cause is put right, --resume imports the rest (the committed rows are not imported again)."""
    rows = _households(40, units=("t01v01",))
    rows[25]["org_unit"] = "t01v02"
    path = _write(tmp_path / "h.csv", rows)
    cadre = env.actor("cadre")
    from hexie.workflows import bulk
    with monkeypatch.context() as m:
        lose_unit_between_passes(m, "t01v02")
        with pytest.raises(bulk.ImportAborted) as info:
            import_cases(env.engine, cadre, "elder_support", path, batch_size=10)
    assert info.value.row == 27 and info.value.started == 20 and _count(env, Case) == 20
    result = import_cases(env.engine, cadre, "elder_support", path, batch_size=10, resume=True)
    assert result.ok and result.started == 20 and result.skipped == 20
    heads = _heads(env)
    assert len(heads) == 40 and len(set(heads)) == 40


def test_resume_needs_the_same_file(env, tmp_path: Path):
    path = _write(tmp_path / "h.csv", _households(3))
    result = import_cases(env.engine, env.actor("cadre"), "elder_support", path, resume=True)
    assert not result.ok and "nothing to resume" in result.errors[0]
    assert _count(env, Case) == 0


def test_the_business_key_column_is_the_cases_business_key(env, tmp_path: Path):
    """interfaces.md: GET /cases/{id} has the case's ``business_key``; an import's business_key
    column gives it (unique per process: a key twice in the file, or one a case of the process
    already has, is a row error and nothing is imported); its events carry it."""
    rows = _households(3)
    for i, row in enumerate(rows):
        row["business_key"] = f"HH-{i}"
    header = ["org_unit", "business_key", *HOUSEHOLD]
    path = _write(tmp_path / "keys.csv", rows, header=header)
    result = import_cases(env.engine, env.actor("cadre"), "elder_support", path, batch_size=2)
    assert result.ok and result.started == 3
    with env.engine.session_factory() as s:
        assert sorted(s.scalars(select(Case.business_key))) == ["HH-0", "HH-1", "HH-2"]
        assert {r.business_key for r in s.scalars(select(ImportRow))} == {"HH-0", "HH-1", "HH-2"}
    again = _households(3)
    for i, row in enumerate(again):
        row["business_key"] = ["HH-9", "HH-1", "HH-9"][i]
    path = _write(tmp_path / "again.csv", again, header=header)
    refused = import_cases(env.engine, env.actor("cadre"), "elder_support", path)
    assert not refused.ok and _count(env, Case) == 3
    assert any(e.startswith("row 3: business_key:") for e in refused.errors), refused.errors
    assert any(e.startswith("row 4: business_key:") and "row 2" in e for e in refused.errors), refused.errors
