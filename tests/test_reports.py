"""Reports: by town or by village, a definition's rates (elder support's 签约率), a date range, phone labels."""
from __future__ import annotations

import re
from datetime import date

import pytest

from hexie.workflows.errors import BadRequest
from hexie.workflows.loader import load_process_text, load_roles

from .engine_helpers import DEFINITIONS
from .test_admin import app, browse, defs, service, text_of  # noqa: F401


@pytest.fixture
def hexie(engine, defs):
    from hexie.models import make_session_factory
    from hexie.workflows.demo import load_demo
    from hexie.workflows.engine import Engine
    from hexie.workflows.loader import load_definitions_strict

    workflow_engine = Engine(make_session_factory(engine), load_definitions_strict(defs))
    workflow_engine.sync_definitions()
    load_demo(workflow_engine)                     # the demo county with its sample cases
    return workflow_engine


def test_elder_supports_signing_rate_by_town_and_village(hexie):
    from hexie.workflows.queries import CaseQueries

    queries, zhuxi = CaseQueries(hexie), hexie.actor("zhuxi")
    towns = queries.report(zhuxi, "elder_support")
    assert [r["name"] for r in towns["rates"]] == ["signing_rate"]
    signed = sum(towns["totals"].get(s, 0) for s in ("archiving", "archived"))
    registered = towns["total"] - towns["totals"].get("not_applicable", 0)
    assert towns["total_rates"]["signing_rate"] == [signed, registered] and registered > 0
    for row in towns["units"]:
        n, of = row["rates"]["signing_rate"]
        assert of == row["total"] - row["counts"].get("not_applicable", 0)
        assert n == row["counts"].get("archiving", 0) + row["counts"].get("archived", 0)
    villages = queries.report(zhuxi, "elder_support", by="village")
    assert villages["total"] == towns["total"]
    assert len(villages["units"]) >= len(towns["units"])
    assert all(" · " in row["name"] for row in villages["units"])          # 城关镇 · 东村
    # within one town: only its villages
    t01 = queries.report(zhuxi, "elder_support", by="village", within="t01")
    assert t01["units"] and all(row["code"].startswith("t01") for row in t01["units"])
    with pytest.raises(BadRequest):
        queries.report(zhuxi, "elder_support", by="household")


def test_a_date_range_counts_the_cases_opened_in_it(hexie):
    from hexie.workflows.queries import CaseQueries

    queries, zhuxi = CaseQueries(hexie), hexie.actor("zhuxi")
    everything = queries.report(zhuxi, "poor_mother_aid")
    months = everything["months"]
    first = date.fromisoformat(months[-1][0] + "-01")              # the last month with new cases
    later = queries.report(zhuxi, "poor_mother_aid", since=first)
    assert later["total"] == months[-1][1] and later["months"] == [months[-1]]
    none = queries.report(zhuxi, "poor_mother_aid", until=date(2000, 1, 1))
    assert none["total"] == 0
    with pytest.raises(BadRequest):
        queries.report(zhuxi, "poor_mother_aid", since=date(2026, 3, 1), until=date(2026, 2, 1))


def test_the_report_page_labels_every_number_for_a_phone(browse, hexie):
    page = text_of(browse("zhuxi").get("/reports?process=elder_support&by=village"))
    assert "签约率" in page and "村" in page
    row = re.search(r"<tbody>(.*?)</tbody>", page, re.S).group(1)
    cells = re.findall(r"<td [^>]*>", row)
    assert cells and all("data-label=" in c for c in cells)                 # each number says what it is
    assert re.search(r'data-label="签约率"><strong>\d+\.\d%', row)
    page = text_of(browse("zhuxi").get("/reports?process=elder_support&since=2026-05-01&until=2026-04-01"))
    assert "开始日期晚于结束日期" in page
    from sqlalchemy import update

    from hexie.models import User
    with hexie.session_factory() as s:                                    # she reads English
        s.execute(update(User).where(User.username == "fuzhuxi").values(locale="en", locale_chosen=True))
        s.commit()
    assert "Signing rate" in text_of(browse("fuzhuxi").get("/reports?process=elder_support"))


def test_a_rate_naming_an_unknown_state_is_reported_where_it_is():
    roles, _ = load_roles(DEFINITIONS / "roles.yaml")
    text = (DEFINITIONS / "elder_support.yaml").read_text(encoding="utf-8").replace(
        "of: [archiving, archived]", "of: [archiving, archivd]")
    spec, diagnostics = load_process_text(text, "elder_support.yaml", roles)
    assert spec is None
    (problem,) = [d for d in diagnostics if "rates" in str(d)]
    assert "rates.signing_rate.of[1]" in str(problem) and "archived" in str(problem)
