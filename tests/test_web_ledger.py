"""The money pages (``/reports/money``, ``/reports/ledger`` and its CSV file) through the
Flask test client, on SQLite and PostgreSQL: totals by fund, town and month, the entries
with links to their cases, the CSV an auditor opens in Excel, and who sees what."""
from __future__ import annotations

import csv
import io
import re

import pytest

from hexie.web.i18n import both
from hexie.web.views import reports

from .engine_helpers import pay_spring_bud as pay, spring_bud_to_disbursement
from .web_helpers import make_web_env

APPLICATION = {"applicant_name": "王小红", "id_number": "11010119800101123X", "household_size": 4,
               "declared_annual_income": "6000", "hardships": ["illness"], "self_reliant": True}
SURVEY = {"survey_date": "2026-03-03", "verified_annual_income": "5600.50", "household_size": 4,
          "survey_findings": "属实", "aid_programme": "consolation"}
AID_FUND = "“奉献你的爱心 救助贫困母亲”首轮捐款"
BUD_FUND = "春蕾班资助方专款"


@pytest.fixture
def env(session_factory, tmp_path):
    return make_web_env(session_factory, tmp_path)


def pay_aid(env, amount="1200.50", name="王小红") -> int:
    """A poor-mother-aid case of 东村 (t01) taken to its disbursement through the service."""
    fire = env.service.fire
    case_id = env.service.start_case(env.actor("vr1"), "poor_mother_aid", "t01v01",
                                     {**APPLICATION, "applicant_name": name})
    fire(env.actor("vr1"), case_id, "submit")
    fire(env.actor("tc1"), case_id, "surveyed", SURVEY)
    fire(env.actor("cm1"), case_id, "approve")
    fire(env.actor("cm2"), case_id, "approve")
    fire(env.actor("fo1"), case_id, "disburse", {"fund": "donations_round1", "aid_kind": "cash",
                                                 "approved_amount": amount, "disbursed_on": "2026-03-05",
                                                 "voucher_number": "记-2026-031"})
    return case_id


def pay_spring_bud(env, amount="1000") -> int:
    """A Spring Bud pupil of 东村 (t01) sponsored and paid for one school year."""
    people = {"rep": "vr1", "cadre": "tc1", "manager": "cm1", "matcher": "cc1"}
    case_id = spring_bud_to_disbursement(env.service, env.actor, people)
    pay(env.service, env.actor, "fo1", case_id, amount)
    return case_id


@pytest.fixture
def paid(env):
    """Two disbursements a day apart: aid (1,200.50) first, then Spring Bud (1,000.00)."""
    aid = pay_aid(env)
    env.clock.advance(days=1)
    bud = pay_spring_bud(env)
    return aid, bud


def text_of(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.get_data(as_text=True)


def table(page: str, css_class: str) -> str:
    match = re.search(rf'<table class="table report {css_class}">(.*?)</table>', page, re.S)
    assert match, css_class
    return match.group(1)


def cells(row_html: str) -> list[str]:
    return [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", row_html, re.S)]


def rows(table_html: str, part: str = "tbody") -> list[list[str]]:
    body = re.search(rf"<{part}>(.*?)</{part}>", table_html, re.S).group(1)
    return [cells(r) for r in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)]


def read_csv(response) -> list[list[str]]:
    assert response.status_code == 200
    raw = response.get_data()
    assert raw.startswith(b"\xef\xbb\xbf")                 # UTF-8 with a BOM, for Excel
    return list(csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline="")))


# ------------------------------------------------------------------ the totals

def test_county_chair_sees_both_funds_with_their_totals(env, paid):
    page = text_of(env.client("cm1").get("/reports/money"))
    assert "共 2 笔，净支出 ¥2,200.50" in page
    funds = table(page, "money-funds")
    assert rows(funds) == [
        [AID_FUND, "救助贫困母亲", "1", "¥1,200.50", "¥0.00", "¥1,200.50"],
        [BUD_FUND, "春蕾班资助", "1", "¥1,000.00", "¥0.00", "¥1,000.00"],
    ]
    assert rows(funds, "tfoot") == [["合计", "", "2", "¥2,200.50", "¥0.00", "¥2,200.50"]]
    towns = table(page, "money-towns")
    assert rows(towns) == [["城关镇", "¥1,200.50", "¥1,000.00", "¥2,200.50"]]
    assert rows(towns, "tfoot") == [["合计", "¥1,200.50", "¥1,000.00", "¥2,200.50"]]
    assert rows(table(page, "money-months")) == [["2026-03", "¥2,200.50", "¥0.00", "¥2,200.50"]]
    # on a phone each number is a card line under its column's name (the cells carry the label)
    assert '<td class="num" data-label="净支出">¥1,200.50</td>' in funds
    assert f'data-label="{BUD_FUND}"' in towns and 'data-label="合计"' in towns
    # the tab beside the cases report, and the cases report links here
    assert 'href="/reports/money" aria-current="page"' in page
    assert 'href="/reports/money"' in text_of(env.client("cm1").get("/reports"))


def test_filters_by_programme_and_fund(env, paid):
    client = env.client("cm1")
    page = text_of(client.get("/reports/money?process=spring_bud"))
    assert rows(table(page, "money-funds")) == [[BUD_FUND, "春蕾班资助", "1", "¥1,000.00", "¥0.00", "¥1,000.00"]]
    assert '<option value="spring_bud" selected>' in page and "donations_round1" not in page
    page = text_of(client.get("/reports/money?fund=donations_round1"))
    assert [r[0] for r in rows(table(page, "money-funds"))] == [AID_FUND]
    # a fund of another programme is dropped (the programme was changed in the form)
    page = text_of(client.get("/reports/money?process=spring_bud&fund=donations_round1"))
    assert [r[0] for r in rows(table(page, "money-funds"))] == [BUD_FUND]
    # a programme without money shows nothing; one that does not exist is 404
    assert "没有可统计的资金记录" in text_of(client.get("/reports/money?process=elder_support"))
    assert client.get("/reports/money?process=nope").status_code == 404
    assert client.get("/reports/ledger?process=nope").status_code == 404
    assert client.get("/reports/ledger.csv?process=nope").status_code == 404


def test_the_entries_newest_first_with_links_to_their_cases(env, paid):
    aid, bud = paid
    client = env.client("cm1")
    page = text_of(client.get("/reports/ledger"))
    entries = rows(table(page, "ledger"))
    assert entries == [
        ["2026-03-03", f"#{bud}", "城关镇 东村", "春蕾班资助", BUD_FUND, "支出", "¥1,000.00", "CL-2026-007",
         "城关中心小学"],
        ["2026-03-02", f"#{aid}", "城关镇 东村", "救助贫困母亲", AID_FUND, "支出", "¥1,200.50", "记-2026-031", "王小红"],
    ]
    assert f'href="/cases/{aid}"' in page and f'href="/cases/{bud}"' in page
    assert "共 2 条" in page
    only = rows(table(text_of(client.get("/reports/ledger?process=poor_mother_aid")), "ledger"))
    assert [r[1] for r in only] == [f"#{aid}"]
    # paged
    env.app.config["HEXIE_PER_PAGE"] = 1
    first = text_of(client.get("/reports/ledger"))
    assert [r[1] for r in rows(table(first, "ledger"))] == [f"#{bud}"]
    assert 'href="/reports/ledger?page=2"' in first
    second = text_of(client.get("/reports/ledger?page=2"))
    assert [r[1] for r in rows(table(second, "ledger"))] == [f"#{aid}"]


def test_csv_of_every_entry(env, paid, monkeypatch):
    aid, bud = paid
    monkeypatch.setattr(reports, "CSV_BATCH", 1)             # one entry per query: every page is read
    response = env.client("cm1").get("/reports/ledger.csv")
    assert response.mimetype == "text/csv" and response.mimetype_params["charset"] == "utf-8"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="ledger-')
    data = read_csv(response)
    header, body = data[0], data[1:]
    assert header == [both(key) for key in reports.CSV_COLUMNS]
    assert header[7] == "金额（元） / Amount (yuan)"
    assert len(body) == 2
    column = dict(zip(reports.CSV_COLUMNS, zip(*body)))
    assert column["ledger.col.case"] == (str(bud), str(aid))
    assert column["ledger.col.amount"] == ("1000.00", "1200.50")
    assert column["ledger.col.fund_code"] == ("spring_bud_sponsors", "donations_round1")
    assert column["ledger.col.fund"] == (BUD_FUND, AID_FUND)
    assert column["ledger.col.kind"] == ("支出", "支出")
    assert column["ledger.col.place"] == ("城关镇 东村", "城关镇 东村")
    assert column["ledger.col.subject"] == ("城关中心小学", "王小红")
    assert column["ledger.col.time"][1].startswith("2026-03-02 ")
    filtered = read_csv(env.client("cm1").get("/reports/ledger.csv?fund=spring_bud_sponsors"))
    assert [row[2] for row in filtered[1:]] == [str(bud)]


def test_another_towns_chair_sees_none_of_it(env, paid):
    client = env.client("tch2")
    page = text_of(client.get("/reports/money"))
    assert "共 0 笔，净支出 ¥0.00" in page and "没有可统计的资金记录" in page
    assert "money-funds" not in page and "¥1,200.50" not in page
    assert "没有符合条件的记账" in text_of(client.get("/reports/ledger"))
    assert len(read_csv(client.get("/reports/ledger.csv"))) == 1     # the header alone
    # her colleague of the town where the money went sees it
    assert "共 2 笔" in text_of(env.client("tch1").get("/reports/money"))


def test_anonymous_is_sent_to_sign_in(env):
    client = env.app.test_client()
    for path in ("/reports/money", "/reports/ledger", "/reports/ledger.csv?process=spring_bud"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response.headers["Location"].startswith("/login?next=")


def test_formula_like_text_is_neutralized_in_the_csv_and_escaped_on_the_page(env):
    case_id = pay_aid(env, "88", name='=HYPERLINK("http://x")<b>')
    data = read_csv(env.client("cm1").get("/reports/ledger.csv"))
    (row,) = data[1:]
    assert row[2] == str(case_id)
    assert row[10] == "'=HYPERLINK(\"http://x\")<b>" and row[7] == "88.00"
    page = text_of(env.client("cm1").get("/reports/ledger"))
    assert "&lt;b&gt;" in page and "<b>" not in page
    for text in ("=1+2", "+1", "-1", "@SUM(A1)", "\t=1"):
        assert reports.csv_cell(text) == "'" + text
    assert reports.csv_cell("王小红") == "王小红" and reports.csv_cell(None) == ""


def test_english(env, paid):
    client = env.client("cm1")
    client.post("/lang/en")
    page = text_of(client.get("/reports/money"))
    assert "Money by fund" in page and "Paid out" in page and "Net by town and fund" in page
    assert "Aid-poor-mothers donations, first round" in page and "Spring Bud sponsors&#39; earmarked fund" in page
    assert "2 ledger entries you may see, ¥2,200.50 net." in page
    page = text_of(client.get("/reports/ledger"))
    assert "Ledger entries" in page and "Town / village" in page and ">Payment<" in page
    assert "Aid to poor mothers" in page
    data = read_csv(client.get("/reports/ledger.csv"))
    assert data[0][7] == "金额（元） / Amount (yuan)"            # the header carries both languages
    assert {row[6] for row in data[1:]} == {"Payment"}


def test_a_receipt_among_the_entries_reads_with_its_donor_and_voucher(env, paid):
    """Money received into a fund is an entry without a case: the ledger page (it was a 500 as
    soon as one receipt was recorded), its CSV and its voucher column show it for what it is."""
    from hexie.workflows.ledger import record_receipt
    record_receipt(env.engine, env.actor("fo1"), {
        "process": "poor_mother_aid", "fund": "donations_round1", "amount": "159215", "donor": "县直机关干部职工",
        "received_on": "2026-02-20", "voucher": "记-2026-017", "org_unit": "county"})
    response = env.client("cm1").get("/reports/ledger")
    assert response.status_code == 200
    entries = rows(table(text_of(response), "ledger"))
    receipt = [r for r in entries if r[5] == "收入"][0]
    assert receipt[1] == "—" and receipt[2] == "和谐县" and receipt[6] == "¥159,215.00"
    assert receipt[7] == "记-2026-017" and receipt[8].startswith("县直机关干部职工")
    data = read_csv(env.client("cm1").get("/reports/ledger.csv"))
    column = dict(zip(reports.CSV_COLUMNS, zip(*data[1:])))
    at = column["ledger.col.kind"].index("收入")
    assert column["ledger.col.case"][at] == "" and column["funds.voucher"][at] == "记-2026-017"
    assert column["funds.donor"][at] == "县直机关干部职工" and column["funds.received_on"][at] == "2026-02-20"
    assert "记-2026-031" in column["funds.voucher"]                  # a payment's voucher too
