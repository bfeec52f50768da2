"""A refused form says what is wrong and where at the top, where she is: the banner lists each
field in error with its message, a link to the field (on a phone the field may be screens below),
money limits read as amounts (¥300,000.00), and nothing she typed is lost."""
from __future__ import annotations

import re
from types import SimpleNamespace

import pytest

from .test_admin import app, browse, defs, hexie, service, text_of  # noqa: F401
from .test_approvals import approval_case
from .test_browser import Person, browser, served  # noqa: F401

LOAN = {"org_unit": "t01v01", "f-applicant_name": "", "f-id_number": "32062319850101123X",
        "f-phone": "13800001111", "f-applicant_age": "35", "f-business_kind": "farming",
        "f-business_plan": "养鸡 200 只，年收入约 3 万元。", "f-loan_amount": "3000000", "f-term_months": "12",
        "f-guarantee": "credit"}


def banner(page: str) -> str:
    start = page.index('class="flash flash-error"')
    return page[start:page.index("</div>", start)]


def test_a_refused_application_lists_each_field_in_error_at_the_top(browse):
    cadre = browse("cadre01")
    response = cadre.post("/start/microloan", dict(LOAN))
    assert response.status_code == 422
    page = text_of(response)
    top = banner(page)
    assert "表单有误" in top
    assert re.search(r'<a href="#f-applicant_name">申请人姓名</a>：此项必填', top)
    assert re.search(r'<a href="#f-loan_amount">申请贷款金额（元）</a>：不能大于 ¥300,000.00', top)
    assert top.index("f-applicant_name") < top.index("f-loan_amount")          # in the form's order
    assert 'id="f-loan_amount"' in page and 'id="f-applicant_name"' in page     # the links land
    # nothing she typed is lost
    assert 'value="32062319850101123X"' in page and "养鸡 200 只，年收入约 3 万元。" in page
    assert 'value="3000000"' in page
    # a missing unit is listed too; too small an amount reads as money
    page = text_of(cadre.post("/start/microloan", {**LOAN, "org_unit": "", "f-applicant_name": "李某",
                                                   "f-loan_amount": "999"}))
    top = banner(page)
    assert '<a href="#org_unit">' in top and "不能小于 ¥1,000.00" in top
    # in English
    page = text_of(cadre.post("/start/microloan", dict(LOAN), headers={"Accept-Language": "en"}))
    assert re.search(r"<a href=\"#f-loan_amount\">Loan requested \(yuan\)</a>: Must be at most ¥300,000.00",
                     banner(page))


def test_a_refused_action_on_the_case_page_names_its_field(browse, hexie, service):
    case_id = approval_case(hexie, service)
    chair = browse("zhuxi")
    page = text_of(chair.get(f"/cases/{case_id}"))
    lock = re.search(r'name="lock_version" value="(\d+)"', page).group(1)
    response = chair.post(f"/cases/{case_id}/actions/return", {"lock_version": lock})
    assert response.status_code == 422
    top = banner(text_of(response))
    link = re.search(r'<a href="#([^"]+)">意见</a>：', top)
    assert link, top
    assert f'id="{link.group(1)}"' in text_of(response)


@pytest.fixture
def live(app):
    with served(app) as base:
        yield base


@pytest.mark.browser
def test_on_the_phone_the_banner_takes_her_to_the_field(browser, live):  # noqa: F811
    person = Person(browser, SimpleNamespace(base=live), "cadre01", width=390, height=844, password="hexie-demo-2026")
    page = person.page   # a phone
    page.goto(live + "/start/microloan")
    page.select_option("[name=org_unit]", "t01v01")
    for name in ("applicant_name", "id_number", "phone", "applicant_age", "business_plan", "loan_amount",
                 "term_months"):
        page.fill(f"[name=f-{name}]", LOAN[f"f-{name}"] or "李秀英")
    page.select_option("[name=f-business_kind]", "farming")
    page.check("[name=f-guarantee][value=credit]")
    page.click("form.start-form button[type=submit]")
    page.wait_for_load_state()
    link = page.locator('.error-summary a[href="#f-loan_amount"]')
    box = link.bounding_box()
    assert box is not None and box["y"] + box["height"] <= 844, box        # on her first screen
    link.click()
    field = page.locator("#f-loan_amount").bounding_box()
    assert field is not None and 0 <= field["y"] <= 844, field              # and it takes her there
    assert page.locator("#f-loan_amount").input_value() == "3000000"
    assert page.evaluate("document.documentElement.scrollWidth") <= 390   # nothing off to the side
    person.context.close()
