"""What a leader judges before she says yes: the figures each decision rests on (the loan asked
for, the household's income and size) beside the checkbox of the approvals list and above the
buttons of the case page, on the phone's first screen; and the number of votes each case needs."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from hexie.workflows.demo import TOWNS, DemoCases

from .test_admin import app, browse, defs, hexie, service, text_of  # noqa: F401
from .test_approvals import approval_case
from .test_browser import CHROMIUM, Person, browser, served  # noqa: F401

WOMAN = dict(name="邵红梅", id="320623198107154421", phone="13912340000", age=45, kind="farming",
             plan="扩大养鸡场，新建鸡舍两栋。")


def loan_at_approval(hexie, amount: str, village: int = 1) -> int:
    """A micro-loan of t01 worked by the demo people up to the county leaders' approval."""
    demo = DemoCases(hexie)
    real = hexie.clock
    hexie.clock = demo.now
    try:
        return demo.microloan(TOWNS[0], village, 20, "approval", dict(WOMAN, amount=amount))
    finally:
        hexie.clock = real


def _row(page: str, case_id: int) -> str:
    """The approvals list's row of one case."""
    start = page.index(f'>#{case_id}</a>')
    return page[start:page.index("</tr>", start)]


def test_the_approvals_list_shows_the_figures_and_the_votes_each_case_needs(browse, hexie, service):
    big, small = loan_at_approval(hexie, "120000.00"), loan_at_approval(hexie, "10000.00", village=2)
    aid = approval_case(hexie, service)
    page = text_of(browse("zhuxi").get("/admin/approvals"))
    assert "审批要点" in page
    big_row, small_row, aid_row = _row(page, big), _row(page, small), _row(page, aid)
    assert "申请贷款金额（元）" in big_row and "¥120,000.00" in big_row
    assert "¥10,000.00" in small_row
    # a loan of 50,000 yuan or less needs one leader (microloan.yaml): not "0/2 votes"
    assert "已有 0/2 票" in big_row and "/2 票" not in small_row
    # aid to a poor mother: the household's verified income and size, the programme
    assert "家庭年收入（核实）" in aid_row and "¥9,600.00" in aid_row and "家庭人口" in aid_row
    assert "项目帮扶" in aid_row
    # a sensitive field is never among the figures (the ID number, the phone)
    assert "320623197803152226" not in page and "13962811452" not in page
    # the same in English
    en = browse("zhuxi")
    english = text_of(en.get("/admin/approvals", headers={"Accept-Language": "en"}))
    assert "What the decision rests on" in english and "¥120,000.00" in english


def test_the_case_page_puts_the_figures_above_the_buttons(browse, hexie, service):
    case_id = loan_at_approval(hexie, "120000.00")
    page = text_of(browse("zhuxi").get(f"/cases/{case_id}"))
    figures = page.index('class="key-figures"')
    assert figures < page.index('/actions/approve"')
    block = page[figures:page.index("</dl>", figures)]
    assert "申请贷款金额（元）" in block and "¥120,000.00" in block
    # someone with nothing to do here sees no such block
    assert 'class="key-figures"' not in text_of(browse("caiwu").get(f"/cases/{case_id}"))


def test_the_finance_officer_sees_each_funds_balance_where_she_pays(browse, hexie):
    demo = DemoCases(hexie)
    real = hexie.clock
    hexie.clock = demo.now
    try:
        demo._receipts()                           # 370,000 yuan from the Spring Bud sponsors
        case_id = demo.spring_bud(TOWNS[0], 1, 100, "disbursement", dict(
            name="顾小雨", birth="2013-04-12", school="城关小学", grade="primary_5", guardian="顾建华",
            hardships=["low_income"], reason="父亲病故。", size=3, income="9000.00", sponsor="县供电公司",
            sponsor_kind="government_department"))
    finally:
        hexie.clock = real
    page = text_of(browse("caiwu").get(f"/cases/{case_id}"))
    block = page[page.index('class="key-figures"'):page.index("</dl>", page.index('class="key-figures"'))]
    assert "春蕾班资助方专款结余" in block and "¥370,000.00" in block
    assert "上级“春蕾计划”专款结余" in block and "¥0.00" in block
    assert block.index("春蕾班资助方专款结余") < page.index('/actions/disburse"') - page.index('class="key-figures"')
    # an approval step pays nothing: no balances there
    loan = loan_at_approval(hexie, "10000.00")
    assert "结余" not in text_of(browse("zhuxi").get(f"/cases/{loan}")).split('class="key-figures"')[1][:2000]


@pytest.fixture
def live(app):
    with served(app) as base:
        yield base


@pytest.mark.browser
def test_on_the_phone_the_amount_is_on_the_first_screen_with_the_button(browser, live, hexie):  # noqa: F811
    case_id = loan_at_approval(hexie, "120000.00")
    person = Person(browser, SimpleNamespace(base=live), "zhuxi", width=390, height=844, password="hexie-demo-2026")
    page = person.page   # a phone
    page.goto(f"{live}/cases/{case_id}")
    amount = page.locator(".key-figures dd", has_text="¥120,000.00")
    box = amount.bounding_box()
    assert box is not None and box["y"] + box["height"] <= 844, box      # no scrolling to find it
    assert page.evaluate("document.documentElement.scrollWidth") <= 390  # nothing off to the side
    button = page.locator('form[action$="/actions/approve"] button[type=submit]')
    button.scroll_into_view_if_needed()
    assert button.is_visible()
    person.context.close()
