"""End to end in Debian's headless chromium over real HTTP: an aid case from the village
rep's application to the follow-up visit, each step checked on screen.

Set ``HEXIE_SCREENSHOTS=DIR`` to keep a screenshot of each main page (docs/screenshots/).
"""
from __future__ import annotations

import os
import shutil
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest
from werkzeug.serving import make_server

from hexie.models import make_engine, make_session_factory, upgrade

from .web_helpers import PASSWORD, make_web_env

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = pytest.mark.browser


@contextmanager
def served(app: Any) -> Iterator[str]:
    """``app`` over real HTTP on a free loopback port while the block lasts; yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


@pytest.fixture
def browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("HEXIE_REQUIRE_ALL"):
            pytest.fail("Debian's chromium is required (HEXIE_REQUIRE_ALL) but not installed")
        pytest.skip("chromium is not installed")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


@pytest.fixture
def site(tmp_path):
    """The real app on a fresh SQLite database, served over HTTP on a free loopback port."""
    url = f"sqlite:///{tmp_path / 'hexie.db'}"
    upgrade(url)
    db = make_engine(url)
    env = make_web_env(make_session_factory(db), tmp_path)
    with served(env.app) as base:
        env.base = base
        yield env
    db.dispose()


class Person:
    """One signed-in browser context."""

    def __init__(self, browser, site, username, width=1280, password=PASSWORD, height=900):
        self.site = site
        self.context = browser.new_context(viewport={"width": width, "height": height}, locale="zh-CN")
        self.page = self.context.new_page()
        self.page.goto(site.base + "/login")
        self.page.fill("input[name=username]", username)
        self.page.fill("input[name=password]", password)
        self.page.click("button[type=submit]")
        self.page.wait_for_load_state()   # the landing page parsed, not only its URL committed
        assert "/login" not in self.page.url, f"{username} could not sign in"

    def open_case(self, case_id):
        self.page.goto(f"{self.site.base}/cases/{case_id}")
        return self.page

    def action(self, trigger):
        """The form of one action on the case page, opened."""
        form = self.page.locator(f'form[action$="/actions/{trigger}"]')
        details = self.page.locator("details.action", has=form)
        if details.get_attribute("open") is None:
            details.locator("summary").click()
        return form

    def shot(self, name):
        target = os.environ.get("HEXIE_SCREENSHOTS")
        if target:
            Path(target).mkdir(parents=True, exist_ok=True)
            self.page.screenshot(path=str(Path(target) / f"{name}.png"), full_page=True)

    def close(self):
        self.context.close()


def choose(form, name, value):
    """Pick ``value`` in a choice field, whether drawn as a select or as radio buttons."""
    field = form.locator(f"[name={name}]")
    if field.first.evaluate("e => e.tagName") == "SELECT":
        field.select_option(value)
    else:
        form.locator(f"input[name={name}][value={value}]").check()


def _state_shown(page, text):
    assert page.locator(".case-head, header, main").first.inner_text().find(text) >= 0 or \
        text in page.content(), f"{text!r} not on the page"


def test_aid_case_from_application_to_follow_up(browser, site, tmp_path):
    # 1. the village rep files an application
    rep = Person(browser, site, "vr1")
    rep.page.goto(site.base + "/start/poor_mother_aid")
    page = rep.page
    page.fill("[name=f-applicant_name]", "王桂兰")
    page.fill("[name=f-id_number]", "320123198507121247")
    page.fill("[name=f-household_size]", "4")
    page.fill("[name=f-declared_annual_income]", "6800")
    page.check("input[name=f-hardships][value=illness]")
    page.check("[name=f-self_reliant]")
    rep.shot("start-form")
    page.locator("form button[type=submit]").last.click()
    assert "/cases/" in page.url, page.content()[:2000]
    case_id = int(page.url.rstrip("/").rsplit("/", 1)[-1])
    assert "王桂兰" in page.content()
    rep.action("submit").locator("button[type=submit]").click()
    assert site.queries.case(site.actor("vr1"), case_id)["state"] == "home_survey"
    _state_shown(page, "入户调查")
    rep.close()

    # 2. the town cadre claims the survey from her inbox and completes it
    cadre = Person(browser, site, "tc1")
    cadre.page.goto(site.base + "/?view=available")
    assert "王桂兰" in cadre.page.content()
    cadre.shot("inbox-available")
    cadre.page.locator("form[action*='/claim'] button").first.click()
    page = cadre.open_case(case_id)
    form = cadre.action("surveyed")
    form.locator("[name=a-surveyed-survey_date]").fill("2026-03-05")
    form.locator("[name=a-surveyed-verified_annual_income]").fill("7200")
    form.locator("[name=a-surveyed-survey_findings]").fill("丈夫病故，两个孩子上学")
    choose(form, "a-surveyed-aid_programme", "project")
    cadre.shot("case-survey")
    form.locator("button[type=submit]").click()
    assert site.queries.case(site.actor("tc1"), case_id)["state"] == "approval"
    _state_shown(page, "审批")
    cadre.close()

    # 3. two county managers approve (quorum 2)
    for n, manager in enumerate(("cm1", "cm2")):
        person = Person(browser, site, manager)
        page = person.open_case(case_id)
        if n == 0:
            person.shot("case-approval")
        person.action("approve").locator("button[type=submit]").click()
        expected = "approval" if n == 0 else "disbursement"
        assert site.queries.case(site.actor(manager), case_id)["state"] == expected
        if n == 0:
            assert "1/2" in page.content()          # the vote count is shown
        person.close()

    # 4. finance disburses project aid
    finance = Person(browser, site, "fo1")
    finance.open_case(case_id)
    form = finance.action("disburse")
    choose(form, "a-disburse-fund", "donations_round1")
    choose(form, "a-disburse-aid_kind", "piglets")
    form.locator("[name=a-disburse-approved_amount]").fill("800")
    form.locator("[name=a-disburse-disbursed_on]").fill("2026-03-10")
    form.locator("[name=a-disburse-voucher_number]").fill("JZ-2026-031")
    form.locator("button[type=submit]").click()
    assert site.queries.case(site.actor("fo1"), case_id)["state"] == "agreement"
    # the payment is in the fund's ledger, on the money page and in its entries
    finance.page.goto(site.base + "/reports/money")
    money = finance.page.locator("main").inner_text()
    assert "800.00" in money and "首轮捐款" in money
    finance.shot("money")
    finance.page.goto(site.base + "/reports/ledger")
    assert f"#{case_id}" in finance.page.locator("main").inner_text()
    finance.close()

    # 5. the town chair signs the agreement, uploading the signed file
    chair = Person(browser, site, "tch1")
    chair.open_case(case_id)
    form = chair.action("sign")
    form.locator("[name=a-sign-agreement_signed_on]").fill("2026-03-12")
    for name, value in (("responsible_town_chair", "tch1"), ("responsible_village_rep", "vr1")):
        field = form.locator(f"[name=a-sign-{name}]")
        if field.evaluate("e => e.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)     # a user field drawn as text when there are many people
    form.locator("[name=a-sign-year_end_visit_date]").fill("2026-12-15")
    pdf = tmp_path / "agreement.pdf"
    pdf.write_bytes(b"%PDF-1.4\n% Hexie test\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n")
    form.locator("[name=a-sign-agreement_file]").set_input_files(str(pdf))
    form.locator("button[type=submit]").click()
    view = site.queries.case(site.actor("tch1"), case_id)
    assert view["state"] == "awaiting_mid_year_visit", chair.page.content()[:3000]
    page = chair.open_case(case_id)                 # the signed file and the history are on the case page
    assert "agreement.pdf" in page.content() and "签订帮扶协议" in page.content()
    chair.shot("case-history")
    chair.close()

    # 6. half a year later the worker's timer opens the mid-year visit for the surveyor
    site.clock.advance(days=181)
    assert site.service.run_due_timers() == 1
    cadre = Person(browser, site, "tc1")
    cadre.page.goto(site.base + "/")
    assert "王桂兰" in cadre.page.content() and "年中回访" in cadre.page.content()
    cadre.shot("inbox-mine")
    cadre.close()
