"""On a phone (390 x 844): the top menu and the tabs show every entry (wrapped onto a second
line, none hidden off to the side), the page never scrolls sideways, and the ledger stays a
table scrolled inside its own frame, its amounts and days each on one line and in view; the
filter bar folds under a button so that the list starts on the first screen. The demo county with
its sample cases, as the county chair and the finance officer; headless chromium, zh-CN."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from hexie.models import make_session_factory
from hexie.workflows.demo import DEMO_PASSWORD, load_demo
from hexie.workflows.engine import Engine
from hexie.workflows.loader import load_definitions_strict

from .test_admin import app, defs  # noqa: F401
from .test_browser import CHROMIUM, Person, browser, served  # noqa: F401

WIDTH, HEIGHT = 390, 844


@pytest.fixture
def hexie(engine, defs):  # noqa: F811
    """The demo county with its sample cases (payments and receipts in the ledger)."""
    workflow_engine = Engine(make_session_factory(engine), load_definitions_strict(defs))
    workflow_engine.sync_definitions()
    load_demo(workflow_engine, with_cases=True)
    return workflow_engine


@pytest.fixture
def live(app):  # noqa: F811
    with served(app) as base:
        yield base


def _fits(page, path: str) -> None:
    """Nothing of the page, its menu or its tabs lies beyond the phone's width."""
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= WIDTH, (path, width)
    hidden = page.evaluate("""() => Array.from(document.querySelectorAll('.mainnav a, .tabs a'))
        .filter(a => { const r = a.getBoundingClientRect(); return r.right > innerWidth + 0.5 || r.left < -0.5; })
        .map(a => a.textContent.trim())""")
    assert hidden == [], (path, hidden)
    menu = page.evaluate("[...document.querySelectorAll('.mainnav-inner, .tabs')].map(e => e.scrollWidth - e.clientWidth)")
    assert all(extra <= 0 for extra in menu), (path, menu)


@pytest.mark.browser
@pytest.mark.parametrize("username", ["zhuxi", "caiwu"])
def test_on_the_phone_the_menu_fits_and_the_ledger_scrolls_in_its_frame(browser, live, username):  # noqa: F811
    person = Person(browser, SimpleNamespace(base=live), username, width=WIDTH, height=HEIGHT, password=DEMO_PASSWORD)
    page = person.page
    for path in ("/", "/?view=available"):
        page.goto(live + path)
        _fits(page, path)
    # the filter bar folds under its button there, so the first task is on the first screen; it
    # opens when tapped, and is open on a page that a filter is set on
    fold = page.locator("details.filter-fold")
    assert fold.evaluate("d => d.open") is False and not page.locator("#f-q").is_visible()
    first = page.locator("tbody a[href^='/cases/']").first.bounding_box()
    assert first is not None and first["y"] + first["height"] < HEIGHT, first
    fold.locator("summary").click()
    assert page.locator("#f-q").is_visible()
    page.goto(live + "/?view=available&q=" + "无此人")
    assert fold.evaluate("d => d.open") is True and page.locator("#f-q").input_value() == "无此人"
    assert "1" in fold.locator("summary").inner_text()
    page.goto(live + "/?view=available")
    case = page.locator("a[href^='/cases/']").first.get_attribute("href")
    page.goto(live + case)
    _fits(page, case)
    page.goto(live + "/reports/ledger")
    _fits(page, "/reports/ledger")
    # a real table, wider than the phone: it scrolls inside its frame
    frame = page.evaluate("(() => { const w = document.querySelector('.table-wrap'); "
                          "return [w.scrollWidth, w.clientWidth, getComputedStyle(w).overflowX]; })()")
    assert frame[0] > frame[1] and frame[2] == "auto", frame
    assert page.locator(".table.ledger thead").is_visible()
    # the day at the left edge and the amount stay in view (the amount clear of the day), scrolled or not
    for scrolled in (0, 150, 10_000):
        page.evaluate(f"document.querySelector('.table-wrap').scrollLeft = {scrolled}")
        edges = page.evaluate("""(() => { const w = document.querySelector('.table-wrap').getBoundingClientRect();
            const tr = document.querySelector('.table.ledger tbody tr');
            const day = tr.querySelector('td:first-child').getBoundingClientRect();
            const amount = tr.querySelector('td.amount').getBoundingClientRect();
            return [w.left, w.right, day.left, amount.right, amount.left >= day.right - 1]; })()""")
        assert abs(edges[2] - edges[0]) <= 2 and edges[3] <= edges[1] + 1 and edges[4], (scrolled, edges)
        if not scrolled:
            assert abs(edges[1] - edges[3]) <= 2, edges     # at first, at the right edge
    page.evaluate("document.querySelector('.table-wrap').scrollLeft = 0")
    # each amount, day and voucher on one line
    lines = page.evaluate("""[...document.querySelectorAll('.table.ledger tbody tr')].slice(0, 8).map(tr =>
        [...tr.querySelectorAll('td.num, td:first-child')].map(td => {
            const tops = new Set(), walk = document.createTreeWalker(td, NodeFilter.SHOW_TEXT);
            for (let node = walk.nextNode(); node; node = walk.nextNode()) {
                const range = document.createRange(); range.selectNodeContents(node);
                for (const r of range.getClientRects()) if (r.width) tops.add(Math.round(r.top));
            }
            return tops.size; }))""")
    assert lines and all(n == 1 for row in lines for n in row), lines
    person.context.close()
