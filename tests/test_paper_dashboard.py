"""The dashboard: five figures, each a table on the page and the same numbers as JSON; the funds
page (balances, receipts by form and by .xlsx). SQLite and PostgreSQL."""
from __future__ import annotations

import re
from decimal import Decimal

import pytest
from openpyxl import Workbook

from hexie.models import LedgerEntry
from hexie.workflows.ledger import record_receipt

from .test_web_ledger import pay_aid, pay_spring_bud
from .web_helpers import make_web_env

FIGURES = ("cases", "money", "signing", "overdue", "sla")


@pytest.fixture
def env(session_factory, tmp_path):
    return make_web_env(session_factory, tmp_path)


def page_tables(html: str, figure: str) -> list[list[list[str]]]:
    out = []
    for body in re.findall(rf'<table class="table report dash-table" data-figure="{figure}"[^>]*>(.*?)</table>',
                           html, re.S):
        rows = re.findall(r"<tbody>(.*?)</tbody>", body, re.S)[0]
        out.append([[re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", r, re.S)]
                    for r in re.findall(r"<tr>(.*?)</tr>", rows, re.S)])
    return out


def number(text: str):
    text = str(text).replace("¥", "").replace(",", "").replace("%", "").strip()
    if text in ("—", "None", ""):
        return None
    return Decimal(text)


def test_the_charts_data_match_the_tables(env) -> None:
    pay_aid(env)
    env.clock.advance(days=40)
    pay_spring_bud(env)
    client = env.client("cm1")
    r = client.get("/reports/dashboard?process=poor_mother_aid")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    for name in FIGURES:
        data = client.get(f"/reports/dashboard/{name}.json?process=poor_mother_aid")
        assert data.status_code == 200, name
        fig = data.get_json()
        tables = page_tables(html, name)
        non_empty = [t for t in fig["tables"] if t["rows"]]
        assert len(tables) == len(non_empty), name
        for shown, table in zip(tables, non_empty):
            assert [row[0] for row in shown] == [str(row[0]) for row in table["rows"]], name
            assert [[number(c) for c in row[1:]] for row in shown] == \
                [[number(v) if v is not None else None for v in row[1:]] for row in table["rows"]], name
    money = client.get("/reports/dashboard/money.json").get_json()["tables"][0]
    assert [row[0] for row in money["rows"]] == ["2026-03", "2026-04"]
    assert money["rows"][0][-1] == "1200.50"
    cases = client.get("/reports/dashboard/cases.json?process=poor_mother_aid").get_json()["tables"][0]
    assert cases["rows"][0][0] == "2026-03" and cases["rows"][0][-1] == 1
    assert client.get("/reports/dashboard/nope.json").status_code == 404
    assert client.get("/reports/dashboard?process=nope").status_code == 404


def test_another_town_sees_only_its_own(env) -> None:
    pay_aid(env)
    fig = env.client("tch2").get("/reports/dashboard/overdue.json").get_json()
    assert fig["tables"][0]["rows"] == []
    assert env.client("tch2").get("/reports/dashboard/money.json").get_json()["tables"][0]["rows"] == []


def test_open_work_by_town_leaves_out_the_confidential_programmes(env) -> None:
    """A town's count of open work would tell an overseer's staff that a complaint is there."""
    from .test_web import COMPLAINT
    client = env.client("cm1")
    before = client.get("/reports/dashboard/overdue.json").get_json()["tables"][0]["rows"]
    env.service.start_case(env.actor("cc1"), "dv_complaint", "t01", dict(COMPLAINT))
    assert client.get("/reports/dashboard/overdue.json").get_json()["tables"][0]["rows"] == before
    from .test_web import APPLICATION
    env.service.start_case(env.actor("vr1"), "poor_mother_aid", "t01v01", dict(APPLICATION))
    assert client.get("/reports/dashboard/overdue.json").get_json()["tables"][0]["rows"] != before   # others count
    # the complaint's own figure holds its small numbers back, and the page says why ("<5")
    assert 'id="suppression-note"' in client.get("/reports/dashboard?process=dv_complaint").get_data(as_text=True)
    assert 'id="suppression-note"' not in client.get("/reports/dashboard?process=poor_mother_aid").get_data(as_text=True)


def test_the_echarts_library_is_served_by_the_app(env) -> None:
    client = env.client("cm1")
    r = client.get("/static/hexie/vendor/echarts/echarts.min.js")
    if r.status_code == 404:
        html = client.get("/reports/dashboard").get_data(as_text=True)
        src = re.search(r'src="([^"]*hexie\.js)"', html).group(1)
        r = client.get(src.replace("hexie.js", "vendor/echarts/echarts.min.js"))
    assert r.status_code == 200 and b"Apache" in r.get_data()[:2000]


def test_the_funds_page_records_receipts_and_shows_balances(env, tmp_path) -> None:
    pay_aid(env)
    client = env.client("fo1")
    r = client.post("/reports/funds/receipts", data={
        "fund": "poor_mother_aid:donations_round1", "amount": "159215", "donor": "县直机关干部职工",
        "received_on": "2026-02-20", "voucher": "记-2026-017", "org_unit": "county"})
    assert r.status_code == 302, r.get_data(as_text=True)[:3000]
    html = client.get("/reports/funds").get_data(as_text=True)
    assert "县直机关干部职工" in html and "记-2026-017" in html
    assert "158,014.50" in html          # 159,215.00 received − 1,200.50 paid
    r = client.post("/reports/funds/receipts", data={
        "fund": "poor_mother_aid:donations_round1", "amount": "-1", "donor": "", "received_on": "x",
        "voucher": "v", "org_unit": "county"})
    assert r.status_code == 422
    book = Workbook()
    sheet = book.active
    sheet.append(["process", "fund", "amount", "donor", "received_on", "voucher", "org_unit"])
    sheet.append(["poor_mother_aid", "donations_round1", 5000, "某企业", "2026-02-21", "记-2026-018", "county"])
    sheet.append(["poor_mother_aid", "donations_round1", 300.5, "某个人", "2026-02-22", "记-2026-019", "county"])
    path = tmp_path / "receipts.xlsx"
    book.save(path)
    with open(path, "rb") as f:
        r = client.post("/reports/funds/receipts/import", data={"file": (f, "receipts.xlsx")},
                        content_type="multipart/form-data")
    assert r.status_code == 302, r.get_data(as_text=True)[-3000:]
    html = client.get("/reports/funds").get_data(as_text=True)
    assert "163,315.00" in html          # + 5,000 + 300.50
    sheet.append(["poor_mother_aid", "donations_round1", "abc", "x", "2026-02-22", "记-2026-020", "county"])
    book.save(path)
    with open(path, "rb") as f:
        r = client.post("/reports/funds/receipts/import", data={"file": (f, "receipts.xlsx")},
                        content_type="multipart/form-data")
    assert r.status_code == 422
    html = r.get_data(as_text=True)
    assert "row 2: voucher" in html and "row 4: amount" in html
    # a village rep may not record receipts: no form
    assert "receipt-form" not in env.client("vr1").get("/reports/funds").get_data(as_text=True)


def test_a_confidential_programme_reads_less_than_five_on_the_dashboard(env) -> None:
    """protection.md: reports over a confidential process show counts below 5 as "<5", and no sum
    gives one back: the dashboard's cases grid (months by states) and its on-time rows too."""
    from .test_protection_web import _web_dv
    TITLE = "家庭暴力"
    _web_dv(env, 3)
    client = env.client("cm1")
    fig = client.get("/reports/dashboard/cases.json?process=dv_complaint").get_json()
    (row,) = fig["tables"][0]["rows"]
    assert row[0] == "2026-03" and set(row[1:]) == {"<5"}            # the 3 cases, and their total
    page = client.get("/reports/dashboard?process=dv_complaint")
    assert page.status_code == 200 and "&lt;5" in page.get_data(as_text=True)
    pay_aid(env)                                                         # an open programme beside it
    sla = client.get("/reports/dashboard/sla.json").get_json()["tables"][0]
    (intake,) = [row for row in sla["rows"] if row[0].startswith(TITLE)]   # the 3 intakes, done on time
    assert intake[1:] == ["<5", "<5", None]
    shown = [row for row in sla["rows"] if not row[0].startswith(TITLE)]
    total = client.get("/reports/dashboard/sla.json").get_json()
    assert shown and sum(row[1] for row in shown) == sum(
        row[1] for row in total["tables"][0]["rows"] if row[1] != "<5")   # the total leaves the hidden row out
    aid = client.get("/reports/dashboard/cases.json?process=poor_mother_aid").get_json()["tables"][0]["rows"]
    assert aid and "<5" not in aid[0]                                     # open programmes: plain counts


def test_a_refused_receipt_is_said_at_the_top_of_the_funds_page(env, tmp_path) -> None:
    """The receipt form is at the end of a long page: a refusal opens at the top, so it says
    there that nothing was recorded and which fields are wrong, each a link to its field; what
    she typed stays in the form."""
    client = env.client("fo1")
    r = client.post("/reports/funds/receipts", data={
        "fund": "poor_mother_aid:donations_round2", "amount": "12.345", "donor": "县直机关",
        "received_on": "", "voucher": "记-2026-021", "org_unit": "county"})
    assert r.status_code == 422
    html = r.get_data(as_text=True)
    top = html[html.index('class="flash flash-error"'):]
    top = top[:top.index("</div>")]
    assert html.index('class="flash flash-error"') < html.index("receipt-form")     # above the tables
    assert "收款未登记" in top
    assert re.search(r'<a href="#r-amount">金额（元）</a>：金额须为', top), top
    assert '<a href="#r-received_on">' in top and '<a href="#r-donor">' not in top
    assert 'value="12.345"' in html and 'value="县直机关"' in html and 'value="记-2026-021"' in html
    # an import refused: said at the top too, with a link to the import form
    book = Workbook()
    sheet = book.active
    sheet.append(["process", "fund", "amount", "donor", "received_on", "voucher", "org_unit"])
    sheet.append(["poor_mother_aid", "donations_round1", "abc", "x", "2026-02-22", "记-2026-020", "county"])
    path = tmp_path / "bad.xlsx"
    book.save(path)
    with open(path, "rb") as f:
        r = client.post("/reports/funds/receipts/import", data={"file": (f, "bad.xlsx")},
                        content_type="multipart/form-data")
    html = r.get_data(as_text=True)
    assert r.status_code == 422 and '<a href="#receipts-import">' in html and 'id="receipts-import"' in html
    with env.engine.session_factory() as s:
        assert s.query(LedgerEntry).count() == 0
