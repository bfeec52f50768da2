"""The manager and administrator pages (``/admin``) through the Flask test client.

Runs on SQLite and PostgreSQL with the demo county's people (no sample cases: each test
makes the few it needs). The definitions are a copy in ``tmp_path``, so publishing a
definition writes that copy back, never the project's own files.
"""
from __future__ import annotations

import re
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hexie.models import AuditEvent, Case, OrgUnit, Task, User, make_session_factory
from hexie.workflows.audit import verify_chain
from hexie.workflows.auth import verify_password
from hexie.workflows.demo import DEMO_PASSWORD, load_demo
from hexie.workflows.engine import Engine
from hexie.workflows.loader import load_definitions_strict

DEFINITIONS = Path(__file__).resolve().parent.parent / "definitions"
TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')

MOTHER = {"applicant_name": "朱桂兰", "id_number": "320623197803152226", "phone": "13962811452",
          "household_size": 4, "declared_annual_income": "9600.00", "hardships": ["illness"],
          "self_reliant": True}
SURVEY = {"survey_date": "2026-03-03", "verified_annual_income": "9600.00", "household_size": 4,
          "survey_findings": "丈夫常年透析，家中缺少劳力。", "aid_programme": "project", "self_reliant": True}


# ------------------------------------------------------------------------- fixtures

@pytest.fixture
def defs(tmp_path: Path) -> Path:
    target = tmp_path / "definitions"
    shutil.copytree(DEFINITIONS, target)
    return target


@pytest.fixture
def hexie(engine, defs) -> Engine:
    workflow_engine = Engine(make_session_factory(engine), load_definitions_strict(defs))
    workflow_engine.sync_definitions()
    load_demo(workflow_engine, with_cases=False)
    return workflow_engine


@pytest.fixture
def app(hexie, tmp_path, monkeypatch):
    monkeypatch.setenv("HEXIE_SECRET_KEY", "test-secret")
    monkeypatch.setenv("HEXIE_INSTANCE", str(tmp_path / "instance"))
    from hexie.web import create_app
    application = create_app(engine=hexie, config={"TESTING": True, "HEXIE_UPLOAD_DIR": str(tmp_path / "up")})
    assert "admin" in application.blueprints
    return application


@pytest.fixture
def service(app):
    return app.extensions["hexie"].service


def token_of(html: str) -> str:
    match = TOKEN.search(html)
    assert match, "no CSRF token on the page"
    return match.group(1)


class Browser:
    """A signed-in test client that sends the session's CSRF token with each POST."""

    def __init__(self, app, username: str | None) -> None:
        self.client = app.test_client()
        self.token = token_of(self.client.get("/login").get_data(as_text=True))
        if username:
            response = self.client.post("/login", data={"username": username, "password": DEMO_PASSWORD,
                                                        "csrf_token": self.token})
            assert response.status_code == 302, response.get_data(as_text=True)[:500]
            self.token = token_of(self.client.get("/admin/away").get_data(as_text=True))

    def get(self, url: str, **kw):
        return self.client.get(url, **kw)

    def post(self, url: str, data: dict | None = None, csrf: bool = True, **kw):
        data = dict(data or {})
        if csrf:
            data["csrf_token"] = self.token
        return self.client.post(url, data=data, **kw)

    def post_json(self, url: str, payload: dict, csrf: bool = True):
        headers = {"X-CSRFToken": self.token} if csrf else {}
        return self.client.post(url, json=payload, headers=headers)


@pytest.fixture
def browse(app):
    return lambda username=None: Browser(app, username)


def text_of(response) -> str:
    return response.get_data(as_text=True)


def open_task(hexie: Engine, case_id: int) -> Task:
    with hexie.session_factory() as s:
        return s.scalars(select(Task).where(Task.case_id == case_id, Task.status.in_(("offered", "allocated")))
                         .order_by(Task.id)).first()


def surveyed_case(hexie: Engine, service, claim: bool = True) -> int:
    """An aid application of t01v01 in home_survey, claimed by cadre01."""
    rep = hexie.actor("rep0101")
    case_id = service.start_case(rep, "poor_mother_aid", "t01v01", MOTHER)
    service.fire(rep, case_id, "submit")
    if claim:
        service.claim(hexie.actor("cadre01"), open_task(hexie, case_id).id)
    return case_id


# ----------------------------------------------------------------------- access

@pytest.mark.parametrize("url", ["/admin/", "/admin/approvals", "/admin/tasks", "/admin/processes",
                                 "/admin/processes/poor_mother_aid/edit", "/admin/users", "/admin/units",
                                 "/admin/away"])
def test_anonymous_people_are_sent_to_sign_in(browse, url):
    response = browse().get(url)
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_each_page_checks_the_role(browse):
    expected = {
        "rep0101": {"/admin/": 403, "/admin/approvals": 403, "/admin/tasks": 403, "/admin/processes": 403,
                    "/admin/users": 403, "/admin/units": 403, "/admin/away": 200},
        "chair01": {"/admin/": 200, "/admin/approvals": 200, "/admin/tasks": 200, "/admin/processes": 403,
                    "/admin/users": 403, "/admin/units": 403, "/admin/away": 200},
        "zhuxi": {"/admin/": 200, "/admin/approvals": 200, "/admin/tasks": 200, "/admin/processes": 403,
                  "/admin/processes/poor_mother_aid": 403, "/admin/users/admin": 403},
        "admin": {"/admin/": 200, "/admin/processes": 200, "/admin/processes/poor_mother_aid": 200,
                  "/admin/processes/poor_mother_aid/edit": 200, "/admin/users": 200, "/admin/users/zhuxi": 200,
                  "/admin/units": 200, "/admin/units/t01": 200, "/admin/processes/nope": 404},
    }
    for username, pages in expected.items():
        browser = browse(username)
        for url, status in pages.items():
            assert browser.get(url).status_code == status, (username, url)
    # POSTs too: a county leader may not publish or create users.
    zhuxi = browse("zhuxi")
    assert zhuxi.post("/admin/users", {"username": "x", "name": "x"}).status_code == 403
    assert zhuxi.post_json("/admin/processes/poor_mother_aid/check", {"source": "x"}).status_code == 403


def test_the_admin_link_and_texts_are_bilingual(browse):
    admin = browse("admin")
    page = text_of(admin.get("/admin/"))
    assert "流程定义" in page and 'href="/admin/"' in page
    # every card on the overview says what its page is for (users and units had only a title)
    assert "重置密码或停用账号" in page and "调整上级单位" in page
    assert "勾选下面的选项" not in page      # the away page's own intro names a checkbox the card has not
    admin.post("/lang/en")
    page = text_of(admin.get("/admin/"))
    assert "Process definitions" in page and "deactivate an account" in page


def test_every_post_needs_the_csrf_token(browse):
    admin = browse("admin")
    assert admin.post("/admin/users", {"username": "xinren", "name": "新人", "password": "long-password-1",
                                       "password2": "long-password-1"}, csrf=False).status_code == 400
    assert admin.post_json("/admin/processes/poor_mother_aid/check", {"source": "x"}, csrf=False).status_code == 400
    assert admin.post("/admin/away", {"action": "back"}, csrf=False).status_code == 400


def test_assets_are_served_from_the_app(browse):
    anonymous = browse()
    js = anonymous.get("/admin/assets/admin.js")
    assert js.status_code == 200 and "javascript" in js.headers["Content-Type"]
    assert anonymous.get("/admin/assets/admin.css").status_code == 200
    assert anonymous.get("/admin/assets/secret.py").status_code == 404


# ------------------------------------------------------------------- definitions

def test_a_definition_reads_with_line_numbers(browse):
    page = text_of(browse("admin").get("/admin/processes/poor_mother_aid?line=3"))
    assert 'id="source-L1"' in page and 'class="yaml-line yaml-marked"' in page
    assert '<span class="y-key">process</span>' in page and "<svg" in page


def test_an_edit_with_an_error_shows_the_error_at_its_line(browse, hexie, defs):
    admin = browse("admin")
    source = (defs / "poor_mother_aid.yaml").read_text(encoding="utf-8")
    lines = source.split("\n")
    number = next(i for i, line in enumerate(lines, 1) if "role: county_manager" in line)
    lines[number - 1] = lines[number - 1].replace("county_manager", "county_manger")
    broken = "\n".join(lines)

    response = admin.post("/admin/processes/poor_mother_aid/edit", {"source": broken, "action": "publish",
                                                                     "base_version": "1"})
    assert response.status_code == 422
    page = text_of(response)
    assert f"第 {number} 行" in page and "county_manger" in page and "county_manager" in page
    assert f'id="source-L{number}" class="yaml-line yaml-marked"' in page
    assert hexie.current("poor_mother_aid")[2] == 1            # nothing was published

    checked = admin.post_json("/admin/processes/poor_mother_aid/check", {"source": broken})
    assert checked.status_code == 200
    result = checked.get_json()
    assert result["ok"] is False and result["svg"] is None
    assert any(d["line"] == number and d["severity"] == "error" for d in result["diagnostics"])

    fine = admin.post_json("/admin/processes/poor_mother_aid/check", {"source": source}).get_json()
    assert fine["ok"] is True and fine["svg"].startswith("<svg")
    assert admin.post_json("/admin/processes/poor_mother_aid/check", {"text": 1}).status_code == 400
    # The key of a process cannot change from its page.
    renamed = source.replace("process: poor_mother_aid", "process: other_aid", 1)
    assert admin.post_json("/admin/processes/poor_mother_aid/check", {"source": renamed}).get_json()["ok"] is False


def test_user_text_in_a_definition_is_escaped(browse, defs):
    admin = browse("admin")
    source = (defs / "spring_bud.yaml").read_text(encoding="utf-8")
    hostile = source.replace("title: {zh: 春蕾班资助, en: Spring Bud class sponsorship}",
                             "title: {zh: '<script>alert(1)</script>', en: x}", 1)
    page = text_of(admin.post("/admin/processes/spring_bud/edit", {"source": hostile, "action": "check",
                                                                    "base_version": "1"}))
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


def test_publishing_makes_version_2_and_running_cases_keep_version_1(browse, hexie, service, defs):
    running = surveyed_case(hexie, service)
    admin = browse("admin")
    source = (defs / "poor_mother_aid.yaml").read_text(encoding="utf-8")
    edited = source.replace("label: {zh: 入户调查, en: Home survey}", "label: {zh: 入户核查, en: Home check}", 1)
    assert edited != source

    response = admin.post("/admin/processes/poor_mother_aid/edit", {"source": edited, "action": "publish",
                                                                     "base_version": "1"})
    assert response.status_code == 302
    page = text_of(admin.get(response.headers["Location"]))
    assert "第 2 版" in page and "入户核查" in page
    assert hexie.current("poor_mother_aid")[2] == 2
    assert (defs / "poor_mother_aid.yaml").read_text(encoding="utf-8") == edited   # written back

    queries = admin.client.application.extensions["hexie"].queries
    zhuxi = hexie.actor("zhuxi")
    assert queries.case(zhuxi, running)["version"] == 1
    fresh = service.start_case(hexie.actor("rep0101"), "poor_mother_aid", "t01v01", MOTHER)
    assert queries.case(zhuxi, fresh)["version"] == 2
    # The old case goes on under version 1.
    service.fire(hexie.actor("cadre01"), running, "surveyed", SURVEY)
    assert queries.case(zhuxi, running)["state"] == "approval"

    # Publishing over a version someone else published meanwhile is refused.
    stale = admin.post("/admin/processes/poor_mother_aid/edit", {"source": source, "action": "publish",
                                                                  "base_version": "1"})
    assert stale.status_code == 409 and hexie.current("poor_mother_aid")[2] == 2
    # The same content again is no new version.
    same = admin.post("/admin/processes/poor_mother_aid/edit", {"source": edited, "action": "publish",
                                                                 "base_version": "2"})
    assert same.status_code == 302 and hexie.current("poor_mother_aid")[2] == 2
    versions = text_of(admin.get("/admin/processes/poor_mother_aid?version=1"))
    assert "入户调查" in versions and "第 1 版" in versions
    with hexie.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(AuditEvent)
                        .where(AuditEvent.kind == "process_published")) == 1
        assert verify_chain(s) == []


# ------------------------------------------------------------------------- users

def test_creating_a_user_and_assigning_roles(browse, hexie):
    admin = browse("admin")
    bad = admin.post("/admin/users", {"username": "xin ren", "name": "", "password": "short", "password2": "x"})
    assert bad.status_code == 422
    response = admin.post("/admin/users", {"username": "xinren", "name": "<b>新人</b>", "password": "long-password-1",
                                           "password2": "long-password-1", "locale": "zh",
                                           "role": "village_rep", "unit": "t01v02"})
    assert response.status_code == 302
    assert admin.post("/admin/users", {"username": "xinren", "name": "again", "password": "long-password-1",
                                       "password2": "long-password-1"}).status_code == 422
    page = text_of(admin.get("/admin/users?q=xinren"))
    assert "&lt;b&gt;新人&lt;/b&gt;" in page and "<b>新人</b>" not in page
    actor = hexie.actor("xinren")
    assert {(a.role, a.unit_code) for a in actor.assignments} == {("village_rep", "t01v02")}

    assert admin.post("/admin/users/xinren", {"action": "add_role", "role": "town_cadre",
                                              "unit": "t01"}).status_code == 302
    assert {(a.role, a.unit_code) for a in hexie.actor("xinren").assignments} == {
        ("village_rep", "t01v02"), ("town_cadre", "t01")}
    unknown = admin.post("/admin/users/xinren", {"action": "add_role", "role": "queen", "unit": "t01"})
    assert unknown.status_code == 422 and "queen" in text_of(unknown)
    assert admin.post("/admin/users/xinren", {"action": "remove_role",
                                              "assignment": "village_rep@t01v02"}).status_code == 302
    assert {(a.role, a.unit_code) for a in hexie.actor("xinren").assignments} == {("town_cadre", "t01")}

    assert admin.post("/admin/users/xinren", {"action": "password", "password": "another-pass-2",
                                              "password2": "another-pass-2"}).status_code == 302
    assert admin.post("/admin/users/xinren", {"action": "save", "name": "辛仁", "locale": "en"}).status_code == 302
    assert admin.post("/admin/users/xinren", {"action": "deactivate"}).status_code == 302
    with hexie.session_factory() as s:
        user = s.scalars(select(User).where(User.username == "xinren")).one()
        assert verify_password(user.password_hash, "another-pass-2")
        assert (user.name, user.locale, user.active) == ("辛仁", "en", False)
    # The new user signs in with her password only while active.
    assert browse().client.post("/login", data={"username": "xinren", "password": "another-pass-2",
                                                "csrf_token": browse().token}).status_code != 302
    # No one locks herself out.
    assert admin.post("/admin/users/admin", {"action": "deactivate"}).status_code == 409
    assert admin.post("/admin/users/admin", {"action": "remove_role",
                                             "assignment": "admin@county"}).status_code == 409
    with hexie.session_factory() as s:
        kinds = set(s.scalars(select(AuditEvent.kind).where(AuditEvent.case_id.is_(None))))
        assert {"user_created", "roles_changed", "password_reset", "user_updated"} <= kinds
        assert verify_chain(s) == []
        assert not any("another-pass-2" in str(c) for c in s.scalars(select(AuditEvent.changes)))


def test_org_units_are_created_renamed_and_moved(browse, hexie, service):
    admin = browse("admin")
    assert admin.post("/admin/units", {"code": "t15", "name": "新港镇", "level": "town",
                                       "parent": "county"}).status_code == 302
    assert admin.post("/admin/units", {"code": "t15", "name": "重复", "level": "town",
                                       "parent": "county"}).status_code == 422
    wrong = admin.post("/admin/units", {"code": "t16", "name": "层级错", "level": "county", "parent": "county"})
    assert wrong.status_code == 422
    assert admin.post("/admin/units/t15", {"name": "新港镇（更名）", "parent": "county"}).status_code == 302

    case_id = service.start_case(hexie.actor("rep0104"), "poor_mother_aid", "t01v04", MOTHER)
    assert admin.post("/admin/units/t01v04", {"name": "北坎村", "parent": "t15"}).status_code == 302
    with hexie.session_factory() as s:
        unit = s.scalars(select(OrgUnit).where(OrgUnit.code == "t01v04")).one()
        assert unit.path == "/county/t15/t01v04/"
        assert s.get(Case, case_id).org_path == "/county/t15/t01v04/"
        assert s.scalars(select(OrgUnit.name).where(OrgUnit.code == "t15")).one() == "新港镇（更名）"
    # A cycle is refused: a town under its own village.
    assert admin.post("/admin/units/t15", {"name": "x", "parent": "t01v04"}).status_code == 422


# ------------------------------------------------------------- managers' pages

def test_a_town_chair_reassigns_work_in_her_town(browse, hexie, service):
    case_id = surveyed_case(hexie, service)
    task = open_task(hexie, case_id)
    chair = browse("chair01")
    listing = text_of(chair.get("/admin/tasks"))
    assert f"#{case_id}" in listing and "朱桂兰" in listing
    page = text_of(chair.get(f"/admin/tasks/{task.id}/reassign"))
    assert 'value="cadre01b"' in page and 'value="cadre01"' not in page and 'value="cadre02"' not in page
    response = chair.post(f"/admin/tasks/{task.id}/reassign", {"to": "cadre01b"})
    assert response.status_code == 302
    with hexie.session_factory() as s:
        assert s.get(Task, task.id).assignee_id == hexie.actor("cadre01b").user_id
    # Someone who may not take the task is refused by the service, with its message.
    refused = chair.post(f"/admin/tasks/{task.id}/reassign", {"to": "rep0101"})
    assert refused.status_code == 422 and "不能办理此任务" in text_of(refused)
    # Another town's chair does not even see it; a village rep may not use the page.
    assert browse("chair02").get(f"/admin/tasks/{task.id}/reassign").status_code == 404
    assert browse("chair02").post(f"/admin/tasks/{task.id}/reassign", {"to": "cadre01"}).status_code in (403, 404)
    assert browse("rep0101").get(f"/admin/tasks/{task.id}/reassign").status_code == 403


def test_confidential_tasks_stay_hidden_from_town_chairs(browse, hexie, service):
    complaint = {"channel": "hotline", "received_at": "2026-03-02T10:00", "victim_name": "刘某英",
                 "abuser_relation": "spouse", "violence_kinds": ["physical"], "incident_description": "……",
                 "risk_level": "medium", "consent_to_share": True, "intake_assessment": "转介"}
    case_id = service.start_case(hexie.actor("ganbu1"), "dv_complaint", "t01", complaint)
    assert f"#{case_id}" not in text_of(browse("chair01").get("/admin/tasks"))
    assert f"#{case_id}" in text_of(browse("zhuxi").get("/admin/tasks"))


def test_approvals_waiting_show_the_votes(browse, hexie, service):
    case_id = surveyed_case(hexie, service)
    service.fire(hexie.actor("cadre01"), case_id, "surveyed", SURVEY)
    page = text_of(browse("zhuxi").get("/admin/approvals"))
    assert f"#{case_id}" in page and "需 2 人同意" in page and "已有 0/2 票" in page
    service.fire(hexie.actor("zhuxi"), case_id, "approve", comment="同意")
    page = text_of(browse("zhuxi").get("/admin/approvals"))
    assert "已有 1/2 票（陈秀英）" in page and "您已同意" in page and "（zhuxi）" not in page
    english = browse("zhuxi")
    english.post("/lang/en")
    assert "1 of 2 votes (陈秀英)" in text_of(english.get("/admin/approvals"))   # English punctuation
    page = text_of(browse("fuzhuxi").get("/admin/approvals"))
    assert f"#{case_id}" in page and "您已同意" not in page
    assert f"#{case_id}" not in text_of(browse("chair01").get("/admin/approvals"))
    assert "1" in text_of(browse("fuzhuxi").get("/admin/"))


def test_delegating_my_tasks_while_away(browse, hexie, service):
    case_id = surveyed_case(hexie, service)
    task = open_task(hexie, case_id)
    cadre = browse("cadre01")
    page = text_of(cadre.get("/admin/away"))
    assert 'value="cadre01b"' in page and "1 项任务" in page
    bad = cadre.post("/admin/away", {"action": "set", "until": "2000-01-01", "delegate": "cadre01"})
    assert bad.status_code == 422
    until = (hexie.clock() + timedelta(days=7)).date().isoformat()
    response = cadre.post("/admin/away", {"action": "set", "until": until, "delegate": "cadre01b", "handover": "1"})
    assert response.status_code == 302
    with hexie.session_factory() as s:
        me = s.scalars(select(User).where(User.username == "cadre01")).one()
        assert me.away_until > hexie.clock() and me.delegate_to_id == hexie.actor("cadre01b").user_id
        assert s.get(Task, task.id).assignee_id == hexie.actor("cadre01b").user_id
        kinds = [e for e in s.scalars(select(AuditEvent.kind).where(AuditEvent.case_id == case_id))]
        assert "delegated" in kinds
    assert until in text_of(cadre.get("/admin/away"))
    assert cadre.post("/admin/away", {"action": "back"}).status_code == 302
    with hexie.session_factory() as s:
        me = s.scalars(select(User).where(User.username == "cadre01")).one()
        assert me.away_until is None and me.delegate_to_id is None
        assert verify_chain(s) == []
