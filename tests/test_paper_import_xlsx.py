"""Excel in: ``hexie cases import`` reads a village's .xlsx register with the same checks,
row numbers as Excel shows them, --resume and a progress bar on a terminal; an exported list
reads back (round trip). SQLite and PostgreSQL."""
from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner
from openpyxl import Workbook, load_workbook
from sqlalchemy import func, select

from hexie.models import Case
from hexie.workflows.bulk import ImportAborted, import_cases, xlsx_cell
from hexie.workflows import bulk

from .engine_helpers import DEFINITIONS, FIXTURES, make_env
from .test_bulk import HOUSEHOLD, _households, lose_unit_between_passes


@pytest.fixture
def env(session_factory):
    return make_env(session_factory, definitions=DEFINITIONS)


def write_xlsx(path: Path, rows: list[dict], header: list[str] | None = None, numbers: bool = True) -> Path:
    """A register as a village keeps it: numbers typed as numbers, blank rows at the end."""
    header = header or ["org_unit", *HOUSEHOLD]
    book = Workbook()
    sheet = book.active
    sheet.append(header)
    for row in rows:
        cells = []
        for name in header:
            value = row.get(name)
            if numbers and isinstance(value, str) and value.isdigit() and name != "phone":
                value = int(value)
            cells.append(value)
        sheet.append(cells)
    sheet.append([])
    sheet.append([None, None])
    book.save(path)
    return path


def _count(env) -> int:
    with env.engine.session_factory() as s:
        return s.scalar(select(func.count()).select_from(Case))


def test_an_xlsx_register_imports_like_its_csv(env, tmp_path):
    path = write_xlsx(tmp_path / "东村.xlsx", _households(7))
    result = import_cases(env.engine, env.actor("cadre"), "elder_support", path, batch_size=3)
    assert result.ok and result.started == 7 and result.rows == 7
    with env.engine.session_factory() as s:
        data = s.scalars(select(Case.data).order_by(Case.id)).first()
    assert data["elder_count"] == 2 and data["household_head"] == "户主000"


def test_errors_name_the_excel_row_and_nothing_is_written(env, tmp_path):
    rows = _households(4)
    rows[2]["youngest_elder_age"] = "abc"
    rows[3]["org_unit"] = "nowhere"
    path = write_xlsx(tmp_path / "bad.xlsx", rows)
    result = import_cases(env.engine, env.actor("cadre"), "elder_support", path)
    assert not result.ok and _count(env) == 0
    assert any(e.startswith("row 4: youngest_elder_age:") for e in result.errors), result.errors
    assert any(e.startswith("row 5: org_unit:") for e in result.errors), result.errors
    bad_header = write_xlsx(tmp_path / "header.xlsx", _households(1), header=["org_unit", "nonsense"])
    result = import_cases(env.engine, env.actor("cadre"), "elder_support", bad_header)
    assert result.errors[0].startswith("row 1: nonsense:")


def test_an_aborted_xlsx_import_resumes(env, tmp_path, monkeypatch):
    rows = _households(30, units=("t01v01",))
    rows[25]["org_unit"] = "t01v02"
    path = write_xlsx(tmp_path / "h.xlsx", rows)
    with monkeypatch.context() as m:
        lose_unit_between_passes(m, "t01v02")
        with pytest.raises(ImportAborted) as info:
            import_cases(env.engine, env.actor("cadre"), "elder_support", path, batch_size=10)
    assert info.value.row == 27 and _count(env) == 20
    result = import_cases(env.engine, env.actor("cadre"), "elder_support", path, batch_size=10, resume=True)
    assert result.ok and result.started == 10 and result.skipped == 20 and _count(env) == 30


def test_cells_become_the_text_a_csv_holds():
    assert [xlsx_cell(v) for v in (None, 3.0, 2.5, True, date(2026, 3, 2), "x")] == \
        ["", "3", "2.5", "true", "2026-03-02", "x"]


def test_cli_imports_xlsx(tmp_path, monkeypatch):
    from hexie.cli import main
    monkeypatch.setenv("HEXIE_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    runner = CliRunner()
    assert runner.invoke(main, ["org", "load", str(FIXTURES.parent / "engine_org.yaml")]).exit_code == 0
    good = write_xlsx(tmp_path / "good.xlsx", _households(5))
    out = runner.invoke(main, ["cases", "import", "elder_support", str(good), "--as", "cadre", "--batch", "2"])
    assert out.exit_code == 0, out.output
    assert "started: 5" in out.output


def test_progress_is_told_of_every_row(env, tmp_path):
    path = write_xlsx(tmp_path / "p.xlsx", _households(5))
    seen: dict[str, int] = {}
    import_cases(env.engine, env.actor("cadre"), "elder_support", path, batch_size=2,
                 progress=lambda phase, n: seen.__setitem__(phase, seen.get(phase, 0) + n))
    assert seen == {"check": 5, "write": 5}
    assert bulk.count_rows(path) == 5
