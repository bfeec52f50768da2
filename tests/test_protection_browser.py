"""protection.md in Debian's headless chromium: the search box finds a survivor's case by her full
name, the report hides small counts, the case page exports an encrypted case file, and an
anonymised case reads as such. ``HEXIE_SCREENSHOTS=DIR`` keeps the screenshots (docs/screenshots/).
"""
from __future__ import annotations

import io
import json
from datetime import timedelta

import pytest
import pyzipper
from sqlalchemy import update

from hexie.models import Case, Task
from hexie.workflows.retention import run_retention

from .test_browser import Person, browser, site  # noqa: F401  (fixtures)
from .test_web import COMPLAINT

pytestmark = pytest.mark.browser


def _complaint(site, name: str) -> int:
    case_id = site.service.start_case(site.actor("cc1"), "dv_complaint", "t01",
                                      {**COMPLAINT, "victim_name": name, "victim_id_number": "11010519900307002X"})
    site.service.fire(site.actor("cc1"), case_id, "refer")
    return case_id


def test_search_report_export_and_an_anonymised_case(browser, site, tmp_path):  # noqa: F811
    wang = _complaint(site, "王芳")
    _complaint(site, "李娜")
    old = _complaint(site, "赵敏")
    # an old case, closed six years ago (the engine tests walk the whole way; here it is the page)
    with site.engine.transaction() as s:
        s.execute(update(Case).where(Case.id == old).values(state="closed", closed_at=site.clock() - timedelta(days=2200)))
        s.execute(update(Task).where(Task.case_id == old).values(status="cancelled"))
    assert run_retention(site.engine, upload_dir=tmp_path / "uploads").cases == [old]

    cadre = Person(browser, site, "cc1")
    page = cadre.page
    page.goto(site.base + "/cases")
    page.fill("#lookup", "王芳")
    page.click("#case-lookup button[type=submit]")
    assert "/cases/find" in page.url and "王芳" not in page.url
    links = page.locator("a.case-link").all_inner_texts()
    assert links == [f"#{wang}"]
    cadre.shot("cases-lookup")

    cadre.open_case(wang)
    page.fill("#export-password", "a long enough secret")
    with page.expect_download() as download:
        page.click("#case-export button[type=submit]")
    path = tmp_path / "case.zip"
    download.value.save_as(path)
    with pyzipper.AESZipFile(path) as archive:
        archive.setpassword(b"a long enough secret")
        assert json.loads(archive.read("case.json"))["data"]["victim_name"] == "王芳"
    page.locator("#case-export").scroll_into_view_if_needed()
    cadre.shot("case-export")

    cadre.open_case(old)
    assert page.locator("#anonymised-note").is_visible()
    assert "已按保留期限删除" in page.inner_text("body") and "赵敏" not in page.content()
    cadre.shot("case-anonymised")
    cadre.close()

    chair = Person(browser, site, "cm1")
    chair.page.goto(site.base + "/reports?process=dv_complaint")
    assert chair.page.locator("#suppression-note").is_visible()
    cells = chair.page.locator("table.report td.num").all_inner_texts()
    assert "<5" in " ".join(cells) and not any(c.strip() in ("1", "2", "3", "4") for c in cells)
    chair.shot("reports-suppressed")
    chair.close()
