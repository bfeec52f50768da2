"""The working day in Debian's headless chromium, as the demo county's people (issue 12):
a return to the filer, a hold and resume, a consult, and a bulk approval by the two county
leaders (zhuxi, fuzhuxi) from their inbox.

Set ``HEXIE_SCREENSHOTS=DIR`` to keep a screenshot of each page walked (docs/screenshots/).
"""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from hexie.models import Case, Task, make_engine, make_session_factory, upgrade
from hexie.workflows.demo import DEMO_PASSWORD, load_demo
from hexie.workflows.engine import Engine
from hexie.workflows.loader import load_definitions_strict

from .test_admin import MOTHER, SURVEY
from .test_browser import Person as BrowserPerson, browser, served  # noqa: F401  (the chromium fixture)

DEFINITIONS = Path(__file__).resolve().parent.parent / "definitions"
pytestmark = pytest.mark.browser


@pytest.fixture
def demo(tmp_path, monkeypatch):
    """The real app with the demo county's people (no sample cases), over HTTP on loopback."""
    url = f"sqlite:///{tmp_path / 'hexie.db'}"
    upgrade(url)
    db = make_engine(url)
    engine = Engine(make_session_factory(db), load_definitions_strict(DEFINITIONS))
    engine.sync_definitions()
    load_demo(engine, with_cases=False)
    monkeypatch.setenv("HEXIE_SECRET_KEY", "browser-test-secret")
    monkeypatch.setenv("HEXIE_INSTANCE", str(tmp_path / "instance"))
    from hexie.web import create_app
    app = create_app(engine=engine, config={"HEXIE_UPLOAD_DIR": str(tmp_path / "up")})
    with served(app) as base:
        site = type("Site", (), {})()
        site.base, site.engine, site.service = base, engine, app.extensions["hexie"].service
        yield site
    db.dispose()


class Person(BrowserPerson):
    """One signed-in browser context of a demo person."""

    def __init__(self, browser, site, username, width=1280):
        super().__init__(browser, site, username, width=width, password=DEMO_PASSWORD)

    def case(self, case_id):
        return self.open_case(case_id)

    def tool(self, action_suffix):
        """Open the <details> holding the form that posts to ``action_suffix``; return the form."""
        form = self.page.locator(f'form[action$="{action_suffix}"]').first
        details = self.page.locator("details.action", has=form).first
        if details.get_attribute("open") is None:
            details.locator("summary").click()
        return form

    def flash(self):
        return " ".join(self.page.locator(".flash").all_inner_texts())


def _task(site, case_id):
    with site.engine.session_factory() as s:
        return s.scalars(select(Task).where(Task.case_id == case_id, Task.kind == "work",
                                            Task.status.in_(("offered", "allocated")))).first()


def _state(site, case_id):
    with site.engine.session_factory() as s:
        return s.get(Case, case_id).state


def _surveyed(site, who="rep0101"):
    rep = site.engine.actor(who)
    case_id = site.service.start_case(rep, "poor_mother_aid", "t01v01", MOTHER)
    site.service.fire(rep, case_id, "submit")
    site.service.claim(site.engine.actor("cadre01"), _task(site, case_id).id)
    return case_id


def test_a_return_goes_back_to_the_rep_who_filed_it(browser, demo):
    case_id = _surveyed(demo)
    cadre = Person(browser, demo, "cadre01")
    page = cadre.case(case_id)
    assert "张桂芳" in page.content()                        # the owner, by name (not rep0101)
    form = cadre.tool(f"/actions/return")
    form.locator("textarea[name$=comment]").fill("请补充低保证明")
    form.locator("button[type=submit]").click()
    assert "/cases/" not in cadre.page.url or "退回" in cadre.flash()
    rep = Person(browser, demo, "rep0101")
    rep.page.goto(demo.base + "/?view=mine")
    row = rep.page.locator("table.tasks tbody tr", has=rep.page.locator(f'a[href$="/cases/{case_id}"]'))
    assert row.count() == 1, rep.page.content()[:2000]       # back with her, not in the village pool
    rep.shot("workday-returned-to-filer")
    assert _task(demo, case_id).assignee_id == demo.engine.actor("rep0101").user_id


def test_a_hold_and_resume(browser, demo):
    case_id = _surveyed(demo)
    rep = Person(browser, demo, "rep0101")                    # the owner holds it
    rep.case(case_id)
    form = rep.tool(f"/cases/{case_id}/suspend")
    form.locator("input[name=comment]").fill("申请人住院治疗")
    form.locator("button[type=submit]").click()
    assert "本案已暂停办理" in rep.page.content() and "申请人住院治疗" in rep.page.content()
    rep.shot("workday-case-on-hold")
    cadre = Person(browser, demo, "cadre01")
    cadre.page.goto(demo.base + "/?view=mine")
    row = cadre.page.locator("table.tasks tbody tr", has=cadre.page.locator(f'a[href$="/cases/{case_id}"]'))
    assert "已暂停" in row.inner_text()
    cadre.shot("workday-inbox-held")
    cadre.case(case_id)
    assert "案件已暂停办理" in cadre.page.content()            # her actions are blocked, with why
    assert cadre.page.locator(f'form[action$="/actions/surveyed"]').count() == 0
    rep.case(case_id)
    rep.page.locator(f'form[action$="/cases/{case_id}/resume"] input[name=comment]').fill("已出院")
    rep.page.locator(f'form[action$="/cases/{case_id}/resume"] button[type=submit]').click()
    assert "案件已恢复办理" in rep.flash()
    assert "暂停办理" in rep.page.locator(".timeline").inner_text()
    cadre.case(case_id)
    assert cadre.page.locator(f'form[action$="/actions/surveyed"]').count() == 1


def test_a_consult_asked_and_answered(browser, demo):
    case_id = _surveyed(demo)
    task_id = _task(demo, case_id).id
    cadre = Person(browser, demo, "cadre01")
    cadre.case(case_id)
    form = cadre.tool(f"/tasks/{task_id}/consult")
    form.locator("select[name=to]").select_option("chair01")
    assert "顾秀兰" in form.locator("select[name=to]").inner_text()   # names, not usernames
    form.locator("textarea[name=comment]").fill("丈夫透析的费用算不算支出？")
    form.locator("button[type=submit]").click()
    assert "已征求意见" in cadre.flash()
    chair = Person(browser, demo, "chair01")
    chair.page.goto(demo.base + "/?view=mine")
    row = chair.page.locator("table.tasks tbody tr", has=chair.page.locator(f'a[href$="/cases/{case_id}"]'))
    assert "征求意见" in row.inner_text()
    chair.shot("workday-consult-in-inbox")
    chair.case(case_id)
    chair.page.locator("form[action$='/answer'] textarea[name=comment]").fill("算，按实际发生额扣除")
    chair.shot("workday-consult-answer")
    chair.page.locator("form[action$='/answer'] button[type=submit]").click()
    assert "意见已答复" in chair.flash()
    cadre.case(case_id)
    timeline = cadre.page.locator(".timeline").inner_text()
    assert "答复意见" in timeline and "算，按实际发生额扣除" in timeline and "顾秀兰" in timeline
    assert _task(demo, case_id).assignee_id == demo.engine.actor("cadre01").user_id


def test_the_two_county_leaders_approve_in_bulk_from_their_inbox(browser, demo):
    cases = []
    for _ in range(2):
        case_id = _surveyed(demo)
        demo.service.fire(demo.engine.actor("cadre01"), case_id, "surveyed", SURVEY)
        cases.append(case_id)
    for username in ("zhuxi", "fuzhuxi"):
        leader = Person(browser, demo, username)
        leader.page.wait_for_selector("table.tasks")                # her inbox opens on what she may approve
        for case_id in cases:
            leader.page.locator(f'input[name=case][value="{case_id}:approve"]').check()
        leader.page.fill("#inbox-bulk-comment", "经审核，同意救助")
        if username == "zhuxi":
            leader.shot("workday-inbox-bulk-approve")
        leader.page.locator("#inbox-bulk button[type=submit]").click()
        assert "已审批 2 件" in leader.flash(), leader.flash()
        assert leader.page.url.startswith(demo.base + "/")           # back in her inbox
    assert [_state(demo, c) for c in cases] == ["disbursement", "disbursement"]
