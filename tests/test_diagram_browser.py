"""The process map in Debian's headless chromium, as a person sees it: one case of each of
the five programmes, on an office PC and on a phone, in Chinese and in English.

The map is laid out in the browser by ELK (web/static/vendor/elkjs) under the app's strict
CSP. Checked on screen: it is drawn (not the server's fallback), it stays inside its panel
(or, on a phone, its panel scrolls it at a readable size), no edge label covers a state
box, and the current state is the highlighted one. The admin editor's live preview is
laid out again after each check.

Set ``HEXIE_SCREENSHOTS=DIR`` to keep each programme's map (desktop, Chinese) as
``diagram-<programme>.png`` (docs/screenshots/).
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from .test_browser import Person, browser, site  # noqa: F401  (fixtures)
from .test_web import APPLICATION, COMPLAINT
from .web_helpers import PASSWORD

pytestmark = pytest.mark.browser

STARTS = {
    "poor_mother_aid": ("vr1", "t01v01", {**APPLICATION, "self_reliant": True, "household_size": 4}, "submit",
                        "home_survey"),
    "dv_complaint": ("cc1", "t01", COMPLAINT, None, "intake"),
    "microloan": ("vr1", "t01v01", {
        "applicant_name": "孙秀芳", "id_number": "320123198803051226", "phone": "13912345678",
        "applicant_age": 38, "business_kind": "farming", "business_plan": "扩大蔬菜大棚",
        "loan_amount": "80000", "term_months": 24, "guarantee": "joint_guarantee"}, "submit", "eligibility_check"),
    "spring_bud": ("vr1", "t01v01", {
        "student_name": "李小红", "birth_date": "2014-09-01", "school": "城关中心小学", "grade": "primary_5",
        "class_name": "春蕾班", "guardian_name": "李大山", "family_hardships": ["single_parent", "low_income"],
        "nomination_reason": "父亲残疾，家庭困难"}, "nominate", "family_verification"),
    "elder_support": ("vr1", "t01v01", {
        "household_head": "赵德厚", "household_address": "东村3组12号", "elder_names": "赵德厚、钱秀英",
        "elder_count": 2, "youngest_elder_age": 72, "children_count": 3, "children_names": "赵一、赵二、赵三",
        "living_arrangement": "rotating"}, "register", "persuasion"),
}

#: Everything measured in one go, in the page (rectangles in CSS pixels).
MEASURE = """() => {
  const panel = document.querySelector('.panel-diagram');
  const wrap = panel.querySelector('.diagram-wrap');
  const svg = wrap.querySelector('svg.diagram');
  const box = (el) => { const r = el.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  const style = getComputedStyle(panel);
  const inner = panel.getBoundingClientRect();
  return {
    laid: svg.classList.contains('diagram-laid'),
    panel: [inner.left + parseFloat(style.paddingLeft), inner.right - parseFloat(style.paddingRight)],
    wrap: box(wrap), svg: box(svg), scrolls: wrap.scrollWidth > wrap.clientWidth + 1,
    scale: svg.getBoundingClientRect().width / svg.viewBox.baseVal.width,
    states: [...svg.querySelectorAll('g.state')].map((g) => ({
      id: g.getAttribute('data-state'), current: g.classList.contains('current'),
      fill: g.querySelector('rect').getAttribute('fill'), box: box(g.querySelector('rect')),
      note: [...g.querySelectorAll('text.state-note')].map((t) => t.textContent).join(''),
      markers: [...g.querySelectorAll('.marker-for-each, .marker-call, .marker-one-at-a-time')].length,
      link: g.closest('a') ? g.closest('a').getAttribute('href') : null,
      text: [...g.querySelectorAll('text:not(.state-note):not(.marker-one-at-a-time)')]
        .map((t) => t.textContent).join('')})),
    labels: [...svg.querySelectorAll('g.edge-label')].map((g) => ({
      box: box(g.querySelector('rect')), text: g.querySelector('text').textContent})),
    edges: svg.querySelectorAll('g.edge path').length,
  };
}"""


def _overlap(a, b, margin=0.5):
    return a[0] < b[2] - margin and b[0] < a[2] - margin and a[1] < b[3] - margin and b[1] < a[3] - margin


@pytest.fixture
def cases(site):
    ids = {}
    for process, (who, unit, data, trigger, _state) in STARTS.items():
        actor = site.actor(who)
        ids[process] = site.service.start_case(actor, process, unit, data)
        if trigger:
            site.service.fire(actor, ids[process], trigger)
    return ids


def _check_map(page, process, state, phone):
    page.locator(".panel-diagram svg.diagram-laid").wait_for(timeout=15000)
    m = page.evaluate(MEASURE)
    assert m["laid"], process
    left, right = m["panel"]
    # the drawing's box stays inside its panel: shrunk to fit, or scrolled inside it
    assert m["wrap"][0] >= left - 1 and m["wrap"][2] <= right + 1, (process, m["wrap"], m["panel"])
    if not m["scrolls"]:
        assert m["svg"][0] >= left - 1 and m["svg"][2] <= right + 1, (process, m["svg"], m["panel"])
    else:
        assert phone, f"{process} scrolls on a desktop"
    assert m["scale"] >= 0.79, (process, m["scale"])                   # never shrunk past reading
    if not phone:
        assert not m["scrolls"] and m["scale"] > 0.999, (process, m["scale"])   # desktop: full size
    # every state is drawn, the current one (and only it) highlighted
    current = [s for s in m["states"] if s["current"]]
    assert [s["id"] for s in current] == [state], process
    assert current[0]["fill"].lower() == "#c8102e"
    assert all(s["fill"].lower() != "#c8102e" for s in m["states"] if not s["current"])
    assert m["labels"] and m["edges"] >= len(m["labels"])
    # no edge label covers a state box, nor another label
    for label in m["labels"]:
        for s in m["states"]:
            assert not _overlap(label["box"], s["box"]), (process, label["text"], s["id"])
    for i, a in enumerate(m["labels"]):
        for b in m["labels"][i + 1:]:
            assert not _overlap(a["box"], b["box"]), (process, a["text"], b["text"])
    return m


@pytest.mark.parametrize("width", [1280, 390])
def test_the_five_maps_fit_their_panels_and_show_the_current_state(browser, site, cases, width):  # noqa: F811
    problems = []
    context = browser.new_context(viewport={"width": width, "height": 900}, locale="zh-CN")
    page = context.new_page()
    page.on("console", lambda msg: problems.append(msg.text) if msg.type in ("error", "warning") else None)
    page.on("pageerror", lambda err: problems.append(str(err)))
    outside = []
    page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(site.base) else None)
    page.goto(site.base + "/login")
    page.fill("input[name=username]", "cm1")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    for lang in ("zh", "en"):
        page.goto(f"{site.base}/lang/{lang}")          # the switch is a POST: the page offers its button
        page.click(f'main form[action="/lang/{lang}"] button')
        for process, case_id in cases.items():
            page.goto(f"{site.base}/cases/{case_id}")
            m = _check_map(page, process, STARTS[process][4], phone=width < 700)
            shown = [s["text"].replace(" ", "") for s in m["states"]]     # wrapped lines run together
            spec = site.engine.processes[process]
            assert shown == [s.label.get(lang).replace(" ", "") for s in spec.states], process
            target = os.environ.get("HEXIE_SCREENSHOTS")
            if target and width > 700 and lang == "zh":
                Path(target).mkdir(parents=True, exist_ok=True)
                page.locator(".panel-diagram").screenshot(path=str(Path(target) / f"diagram-{process}.png"))
    assert problems == [] and outside == []
    context.close()


def test_the_editor_preview_is_laid_out_again(browser, site):  # noqa: F811
    admin = Person(browser, site, "admin")
    page = admin.page
    problems = []
    page.on("pageerror", lambda err: problems.append(str(err)))
    page.goto(f"{site.base}/admin/processes/elder_support")
    page.locator(".panel-diagram svg.diagram-laid").wait_for(timeout=15000)
    page.goto(f"{site.base}/admin/processes/elder_support/edit")
    page.locator("#preview svg.diagram-laid").wait_for(timeout=15000)
    text = page.locator("textarea.editor-text")
    text.fill(text.input_value().replace("{zh: 再次入户, en: Visit again}", "{zh: 再次入户<b>看看</b>, en: Visit again}"))
    page.locator("#preview svg.diagram-laid", has_text="再次入户<b>看看</b>").wait_for(timeout=15000)
    assert page.locator("#preview b").count() == 0          # a label is text, never markup
    assert page.locator("#preview svg.diagram-laid").count() == 1
    assert problems == []
    admin.close()


def test_run_time_work_on_the_map_and_the_linked_cases(browser, site):  # noqa: F811
    """A complaint's referral is drawn as one task per agency chosen, a loan's mentor pairing as a
    called process linked to its own map; the loan's page links the pairing case, and back."""
    from sqlalchemy import select
    from hexie.models import Case
    vr1, tc1 = site.actor("vr1"), site.actor("tc1")
    loan = site.service.start_case(vr1, "microloan", "t01v01", STARTS["microloan"][2])
    site.service.fire(vr1, loan, "submit")
    site.service.fire(tc1, loan, "eligible", {"local_resident": True, "credit_record": "good",
                                              "applicant_age": 38, "eligibility_notes": "信用良好"})
    with site.engine.session_factory() as s:
        pairing = s.scalar(select(Case.id).where(Case.parent_case_id == loan))
    admin = Person(browser, site, "admin")
    page = admin.open_case(loan)
    m = _check_map(page, "microloan", "mentor_pairing", phone=False)
    called = next(st for st in m["states"] if st["id"] == "mentor_pairing")
    assert called["markers"] == 1 and called["note"].startswith("调用：") and "姐妹同行" in called["note"]
    assert called["link"] == "/admin/processes/mentor_pairing"
    linked = page.locator(".panel-linked")
    assert linked.locator(f'a[href="/cases/{pairing}"]').count() == 1
    admin.shot("case-linked-pairing")
    target = os.environ.get("HEXIE_SCREENSHOTS")
    if target:
        page.locator(".panel-diagram").screenshot(path=str(Path(target) / "diagram-microloan-call.png"))
    page = admin.open_case(pairing)
    page.locator(".panel-diagram svg.diagram-laid").wait_for(timeout=15000)
    assert page.locator(f'.panel-linked a[href="/cases/{loan}"]').count() == 1
    admin.close()
    overseer = Person(browser, site, "cm1")     # a complaint is confidential: the county chair oversees it
    complaint = site.service.start_case(site.actor("cc1"), "dv_complaint", "t01", COMPLAINT)
    page = overseer.open_case(complaint)
    m = _check_map(page, "dv_complaint", "intake", phone=False)
    referral = next(st for st in m["states"] if st["id"] == "referral")
    assert referral["markers"] == 3 and referral["note"].startswith("逐项：")
    if target:
        page.locator(".panel-diagram").screenshot(path=str(Path(target) / "diagram-dv_complaint-for-each.png"))
    overseer.close()
