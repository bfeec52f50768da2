"""Excel out: the case list, the task lists and every report as .xlsx with the page's filters
and masking (read back with openpyxl); SQLite and PostgreSQL."""
from __future__ import annotations

import io
from decimal import Decimal

import pytest
from openpyxl import load_workbook

from hexie.workflows.ledger import record_receipt

from .test_web_ledger import pay_aid, pay_spring_bud
from .web_helpers import make_web_env


@pytest.fixture
def env(session_factory, tmp_path):
    return make_web_env(session_factory, tmp_path)


def sheets(response) -> dict[str, list[list]]:
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert "attachment" in response.headers["Content-Disposition"]
    book = load_workbook(io.BytesIO(response.get_data()), read_only=True)
    return {ws.title: [list(r) for r in ws.iter_rows(values_only=True)] for ws in book.worksheets}


def test_case_list_xlsx_has_the_lists_rows_and_filters(env) -> None:
    first = pay_aid(env, name="王小红")
    second = pay_aid(env, name="李=1+1")
    client = env.client("cm1")
    (rows,) = sheets(client.get("/cases.xlsx")).values()
    assert rows[0][:3] == ["案件编号", "业务编号", "项目"]
    assert [r[0] for r in rows[1:]] == [second, first]
    assert rows[1][6] == "'李=1+1" or rows[1][6] == "李=1+1"
    assert rows[2][5] == "城关镇 · 东村" or "东村" in rows[2][5]
    # the same filters as the page
    (rows,) = sheets(client.get("/cases.xlsx?q=王小红")).values()
    assert [r[0] for r in rows[1:]] == [first]
    # a village rep of another town sees none
    (rows,) = sheets(env.client("vr2").get("/cases.xlsx")).values()
    assert rows[1:] == []


def test_task_list_xlsx(env) -> None:
    case_id = env.service.start_case(env.actor("vr1"), "poor_mother_aid", "t01v01",
                                     {"applicant_name": "王小红", "id_number": "11010119800101123X",
                                      "household_size": 4, "declared_annual_income": "6000",
                                      "hardships": ["illness"], "self_reliant": True})
    (rows,) = sheets(env.client("vr1").get("/tasks.xlsx?view=mine")).values()
    assert rows[0][0] == "任务编号"
    assert [r[1] for r in rows[1:]] == [case_id]
    assert env.client("vr1").get("/tasks.xlsx?view=nope").status_code == 404


def test_reports_and_money_xlsx_match_the_pages(env) -> None:
    pay_aid(env)
    env.clock.advance(days=1)
    pay_spring_bud(env)
    record_receipt(env.engine, env.actor("fo1"), {
        "process": "poor_mother_aid", "fund": "donations_round1", "amount": "159215", "donor": "县直机关",
        "received_on": "2026-02-20", "voucher": "记-2026-017", "org_unit": "county"})
    client = env.client("cm1")
    book = sheets(client.get("/reports.xlsx?process=poor_mother_aid"))
    (units, months) = book.values()
    assert units[-1][0] == "合计" and units[-1][-3] == 1
    assert months[1][1] == 1
    money = sheets(client.get("/reports/money.xlsx"))
    funds, towns, by_month, balances = money.values()
    assert [r[3] for r in funds[1:-1]] == [1200.5, 1000] or [Decimal(str(r[3])) for r in funds[1:-1]] == \
        [Decimal("1200.5"), Decimal("1000")]
    # the page's 合计 rows, and the figures tie: fund totals = town totals = the total
    assert funds[-1][0] == "合计" and funds[-1][2] == 2 and Decimal(str(funds[-1][5])) == Decimal("2200.50")
    assert towns[-1][0] == "合计" and Decimal(str(towns[-1][-1])) == Decimal("2200.50")
    assert sum(Decimal(str(r[-1])) for r in towns[1:-1]) == Decimal(str(towns[-1][-1]))
    assert [Decimal(str(v)) for v in towns[-1][1:-1]] == [Decimal(str(r[5])) for r in funds[1:-1]]
    balance = [r for r in balances[1:] if r[1] == "2026-03" and r[0].startswith("“奉献")][0]
    assert Decimal(str(balance[-1])) == Decimal("159215") - Decimal("1200.50")
    # amounts read as money: thousands and two decimals (¥1,200.50 on the page, not 1200.5)
    book = load_workbook(io.BytesIO(client.get("/reports/money.xlsx").get_data()))
    assert book.worksheets[0]["D2"].number_format == "#,##0.00"
    assert book.worksheets[0]["C2"].number_format == "General"          # a count stays a count
    (ledger,) = sheets(client.get("/reports/ledger.xlsx")).values()
    assert "凭证号" in ledger[0]
    receipt = [r for r in ledger[1:] if r[6] == "收入"][0]
    assert receipt[8] == "记-2026-017" and receipt[9] == "县直机关"
    (only,) = sheets(client.get("/reports/ledger.xlsx?kind=receipt")).values()
    assert len(only) == 2


def _bearer(env, username: str) -> dict[str, str]:
    from hexie.workflows.tokens import issue_token
    return {"Authorization": f"Bearer {issue_token(username, engine=env.engine, secret='test-secret')}"}


def test_the_lists_and_reports_as_xlsx_through_the_api(env) -> None:
    """interfaces.md, "Documents and exports": GET /api/v1/cases.xlsx, /tasks.xlsx and
    /reports/{process}.xlsx with a Bearer token and the API's filters (org_unit, view, sort)."""
    first = pay_aid(env, name="王小红")
    second = pay_aid(env, name="李小兰")
    api = env.app.test_client()
    (rows,) = sheets(api.get("/api/v1/cases.xlsx", headers=_bearer(env, "cm1"))).values()
    assert [r[0] for r in rows[1:]] == [second, first]
    (rows,) = sheets(api.get("/api/v1/cases.xlsx?page=2&per_page=1", headers=_bearer(env, "cm1"))).values()
    assert [r[0] for r in rows[1:]] == [second, first]          # the list's query string: every page
    (rows,) = sheets(api.get("/api/v1/cases.xlsx?search=王小红&process=poor_mother_aid",
                             headers=_bearer(env, "cm1"))).values()
    assert [r[0] for r in rows[1:]] == [first]
    (rows,) = sheets(api.get("/api/v1/cases.xlsx", headers=_bearer(env, "vr2"))).values()
    assert rows[1:] == []
    bad = api.get("/api/v1/cases.xlsx?process=nope", headers=_bearer(env, "cm1"))
    assert bad.status_code == 400 and "process" in bad.get_json()["error"]["details"]
    case_id = env.service.start_case(env.actor("vr1"), "poor_mother_aid", "t01v01",
                                     {"applicant_name": "王小红", "id_number": "11010119800101123X",
                                      "household_size": 4, "declared_annual_income": "6000",
                                      "hardships": ["illness"], "self_reliant": True})
    (rows,) = sheets(api.get("/api/v1/tasks.xlsx?view=mine&sort=-created", headers=_bearer(env, "vr1"))).values()
    assert [r[1] for r in rows[1:]] == [case_id]
    assert api.get("/api/v1/tasks.xlsx?view=nope", headers=_bearer(env, "vr1")).status_code == 400
    book = sheets(api.get("/api/v1/reports/poor_mother_aid.xlsx", headers=_bearer(env, "cm1")))
    assert len(book) == 2
    assert api.get("/api/v1/reports/nope.xlsx", headers=_bearer(env, "cm1")).status_code == 404
    assert api.get("/api/v1/cases.xlsx").status_code == 401


def test_exports_take_deidentified(env) -> None:
    """interfaces.md: exports take deidentified=1 — the case number, business key and subject
    become the case's stable code (protection.md), on the page's and the API's exports."""
    from hexie.workflows.protection import case_code
    case_id = pay_aid(env, name="王小红")
    for response in (env.client("cm1").get("/cases.xlsx?deidentified=1"),
                     env.app.test_client().get("/api/v1/cases.xlsx?deidentified=1", headers=_bearer(env, "cm1"))):
        (rows,) = sheets(response).values()
        assert rows[1][0] == case_code(case_id) and rows[1][6] == case_code(case_id)
        assert all("王小红" not in str(cell) for row in rows for cell in row)
    started = env.service.start_case(env.actor("vr1"), "poor_mother_aid", "t01v01",
                                     {"applicant_name": "王小红", "id_number": "11010119800101123X",
                                      "household_size": 4, "declared_annual_income": "6000",
                                      "hardships": ["illness"], "self_reliant": True})
    (rows,) = sheets(env.client("vr1").get("/tasks.xlsx?view=mine&deidentified=1")).values()
    assert rows[1][1] == case_code(started) and rows[1][12] == case_code(started)
    (rows,) = sheets(env.client("vr1").get("/tasks.xlsx?view=mine")).values()
    assert rows[1][1] == started and rows[1][12] == "王小红"


def test_the_money_workbooks_through_the_api(env) -> None:
    """An auditor's script: GET /api/v1/ledger.xlsx and /api/v1/ledger/summary.xlsx with a Bearer
    token give the same workbooks as the pages' (the entries and totals she may see)."""
    pay_aid(env)
    pay_spring_bud(env)
    api = env.app.test_client()
    page = sheets(env.client("cm1").get("/reports/money.xlsx"))
    through_api = sheets(api.get("/api/v1/ledger/summary.xlsx", headers=_bearer(env, "cm1")))
    assert through_api == page and list(through_api.values())[0][-1][0] == "合计"
    (entries,) = sheets(api.get("/api/v1/ledger.xlsx?process=spring_bud", headers=_bearer(env, "cm1"))).values()
    assert len(entries) == 2 and entries[1][3] == "春蕾班资助"
    assert api.get("/api/v1/ledger.xlsx?fund=nope", headers=_bearer(env, "cm1")).status_code == 400
    assert api.get("/api/v1/ledger/summary.xlsx").status_code == 401
    # the village rep: her village's entries, as on her page
    assert sheets(api.get("/api/v1/ledger.xlsx", headers=_bearer(env, "vr1"))) == \
        sheets(env.client("vr1").get("/reports/ledger.xlsx"))
