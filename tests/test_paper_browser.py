"""In Debian's headless chromium over real HTTP: the dashboard draws its five charts (ECharts,
served by the app) beside their tables, on a desktop and on a 390 px phone; a case prints (the
print button, the print stylesheet, the case file PDF).

Set ``HEXIE_SCREENSHOTS=DIR`` to keep the dashboard's screenshots (docs/screenshots/).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from .test_browser import Person, browser, site  # noqa: F401  (fixtures)
from .test_web_ledger import pay_aid, pay_spring_bud

pytestmark = pytest.mark.browser


def _shot(page, name: str, full_page: bool = True) -> None:
    folder = os.environ.get("HEXIE_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=full_page)


def test_dashboard_draws_five_charts_and_a_case_prints(browser, site):  # noqa: F811
    from .test_bulk import HOUSEHOLD
    case_id = pay_aid(site)
    for unit, head in (("t01v01", "赵德厚"), ("t01v02", "钱广进"), ("t02v01", "孙有福")):
        site.service.start_case(site.actor("tc1" if unit.startswith("t01") else "tc2"), "elder_support", unit,
                                {**HOUSEHOLD, "household_head": head})
    site.clock.advance(days=35)                 # the registrations are overdue by now
    pay_spring_bud(site)
    chair = Person(browser, site, "cm1")
    page = chair.page
    page.goto(site.base + "/reports/dashboard?process=poor_mother_aid")
    page.locator(".dash-chart[data-drawn]").nth(4).wait_for(timeout=20000)
    assert page.locator(".dash-chart[data-drawn] svg").count() == 5
    assert page.locator("table.dash-table").count() >= 5
    assert page.locator("#fig-money table.dash-table tbody tr").count() == 2
    _shot(page, "dashboard")

    phone = browser.new_context(viewport={"width": 390, "height": 844}, locale="zh-CN", device_scale_factor=2,
                                storage_state=chair.context.storage_state())
    small = phone.new_page()
    small.goto(site.base + "/reports/dashboard?process=poor_mother_aid")
    small.locator(".dash-chart[data-drawn]").nth(4).wait_for(timeout=20000)
    # nothing wider than the phone: the page does not scroll sideways
    assert small.evaluate("document.documentElement.scrollWidth") <= 392
    box = small.locator("#fig-cases .dash-chart").bounding_box()
    assert box and box["width"] <= 390 and box["height"] > 150
    small.locator("#fig-money").scroll_into_view_if_needed()
    _shot(small, "dashboard-phone", full_page=False)
    phone.close()

    # printing a case: the print button, the page as printed, the case file
    page = chair.open_case(case_id)
    assert page.locator("[data-print]").is_visible()
    page.emulate_media(media="print")
    assert not page.locator(".topbar").is_visible() and not page.locator("[data-print]").is_visible()
    page.emulate_media(media="screen")
    # (a trailing 0: Playwright calls an expression that ends in a function)
    page.evaluate("window.__printed = 0; window.print = function () { window.__printed += 1; }; 0")
    page.click("[data-print]")
    assert page.evaluate("window.__printed") == 1
    pdf = page.request.get(f"{site.base}/cases/{case_id}/print.pdf")
    assert pdf.ok and pdf.headers["content-type"] == "application/pdf" and pdf.body()[:5] == b"%PDF-"
