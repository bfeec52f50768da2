"""In headless chromium: a domestic-violence complaint's consent per agency, a referral
accepted by the police desk, one declined by legal aid, and the access log, on the case page.

Set ``HEXIE_SCREENSHOTS=DIR`` to keep the screenshots (docs/screenshots/case-protection*.png).
"""
from __future__ import annotations

import pytest

from .test_browser import Person, browser, site  # noqa: F401  (the fixtures, reused)
from .test_web import COMPLAINT

pytestmark = pytest.mark.browser
REFER = {"abuser_relation": "spouse", "violence_kinds": ["physical"], "risk_level": "high",
         "consent_to_share": True, "intake_assessment": "有明显伤情，需转介派出所和法律援助",
         "referred_to": ["police", "legal_aid", "court"]}


def test_consent_referrals_accepted_and_declined_and_the_access_log(browser, site):  # noqa: F811
    case_id = site.service.start_case(site.actor("cc1"), "dv_complaint", "t01", dict(COMPLAINT))

    # 1. the county cadre records her consent, agency by agency, on the case page
    cadre = Person(browser, site, "cc1")
    page = cadre.open_case(case_id)
    assert "当事人同意（按机构）" in page.content()
    for agency in ("police", "legal_aid"):
        page.locator(f'tr.consent-row[data-agency="{agency}"] button').click()
        page.wait_for_load_state()
        assert "已记录当事人的同意" in page.content()
    row = page.locator('tr.consent-row[data-agency="police"]')
    assert "已同意" in row.inner_text()
    assert "尚未询问" in page.locator('tr.consent-row[data-agency="court"]').inner_text()
    site.service.fire(site.actor("cc1"), case_id, "refer", REFER)
    page = cadre.open_case(case_id)
    court = page.locator('li.referral[data-task="court"]')
    assert "等待当事人同意" in court.inner_text()
    cadre.shot("case-protection-consent")

    # 2. the police desk accepts its referral
    police = Person(browser, site, "pl1")
    page = police.open_case(case_id)
    task = page.locator("li.task", has_text="派出所处置")
    assert task.locator("button", has_text="接受转介").count() == 1
    assert task.locator("button", has_text="领取").count() == 0
    task.locator("button", has_text="接受转介").click()
    page.wait_for_load_state()
    page = police.open_case(case_id)
    assert "接受" in page.locator('li.referral[data-task="police"]').inner_text()
    police.shot("case-protection-accepted")

    # 3. legal aid declines, with its reason
    legal = Person(browser, site, "la1")
    page = legal.open_case(case_id)
    task = page.locator("li.task", has_text="法律援助")
    task.locator("details.referral-decline summary").click()
    task.locator("details.referral-decline textarea[name=comment]").fill("当事人已委托私人律师代理，本中心不重复提供法律援助")
    task.locator("details.referral-decline button[type=submit]").click()
    page.wait_for_load_state()
    assert "已拒绝转介" in page.content()

    # 4. the cadre (the case owner) sees both, and who read the case, from where
    page = cadre.open_case(case_id)
    declined = page.locator('li.referral[data-task="legal_aid"]')
    assert "拒绝" in declined.inner_text() and "私人律师" in declined.inner_text()
    assert "接受" in page.locator('li.referral[data-task="police"]').inner_text()
    log = page.locator("section.panel-access-log")
    text = log.inner_text()
    assert "查阅记录" in text and "pl1" in text and "la1" in text and "cc1" in text and "127.0.0.1" in text
    assert log.locator("tbody tr").count() >= 5
    cadre.shot("case-protection")
    for person in (cadre, police, legal):
        person.close()
