"""The web app through the Flask test client, on a real database (SQLite and PostgreSQL).

Sign-in and throttling, every page for every role, the poor-mother-aid path worked
through the forms (start, submit, claim, survey, two approvals), who sees what
(other towns and confidential complaints get 404), CSRF, English, escaping, uploads,
no outside URLs, and Hexie mounted in a host application with its own sign-in.
"""
from __future__ import annotations

import io
import re
from html.parser import HTMLParser

import pytest
from flask import Flask

from hexie.models import Attachment
from hexie.web.auth import LoginThrottle
from hexie.web.extension import Hexie, current_actor
from hexie.workflows.access import SYSTEM

from .web_helpers import PASSWORD, PEOPLE, csrf_token, login, make_engine, make_web_env

PDF = b"%PDF-1.4\n% test\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"

APPLICATION = {
    "applicant_name": "王小红", "id_number": "11010119800101123X", "household_size": "4",
    "declared_annual_income": "6000", "hardships": ["illness", "single_mother"], "self_reliant": "y",
}
SURVEY = {
    "survey_date": "2026-03-03", "verified_annual_income": "5600.50", "household_size": "4",
    "survey_findings": "住房简陋，丈夫因病卧床。", "aid_programme": "consolation", "self_reliant": "y",
}
COMPLAINT = {
    "channel": "hotline", "received_at": "2026-03-01T10:00", "victim_name": "秘密受害人",
    "abuser_relation": "spouse", "violence_kinds": ["physical"], "incident_description": "详情保密",
    "risk_level": "medium", "consent_to_share": True, "intake_assessment": "需要转介",
}


@pytest.fixture
def env(session_factory, tmp_path):
    return make_web_env(session_factory, tmp_path)


def prefixed(prefix: str, values: dict) -> dict:
    return {f"{prefix}-{k}": v for k, v in values.items()}


def page_text(response) -> str:
    return response.get_data(as_text=True)


def start_case(client, values=APPLICATION, unit="t01v01", **extra):
    data = {"org_unit": unit, **prefixed("f", values), **extra}
    return client.post("/start/poor_mother_aid", data=data)


def case_id_of(response) -> int:
    match = re.search(r"/cases/(\d+)$", response.headers["Location"])
    assert match, response.headers.get("Location")
    return int(match.group(1))


def lock_version(env, username: str, case_id: int) -> int:
    return env.queries.case(env.actor(username), case_id)["lock_version"]


def fire(env, client, username, case_id, trigger, values=None, comment=None, **extra):
    data = prefixed(f"a-{trigger}", values or {})
    if comment is not None:
        data[f"a-{trigger}-comment"] = comment
    data["lock_version"] = str(lock_version(env, username, case_id))
    data.update(extra)
    return client.post(f"/cases/{case_id}/actions/{trigger}", data=data)


def open_task_id(env, username, case_id, view="available") -> int:
    page = env.queries.tasks(env.actor(username), view, per_page=200)
    return next(t["id"] for t in page.items if t["case_id"] == case_id)


def new_aid_case(env) -> int:
    """A poor-mother-aid case submitted by vr1 (now waiting for t01's survey)."""
    actor = env.actor("vr1")
    data = {k: (v if k != "self_reliant" else True) for k, v in APPLICATION.items()}
    case_id = env.service.start_case(actor, "poor_mother_aid", "t01v01", data)
    env.service.fire(actor, case_id, "submit")
    return case_id


def new_complaint(env, unit="t01", consent=True) -> int:
    """A complaint at intake; ``consent``: her consent to every agency recorded (its referrals open)."""
    case_id = env.service.start_case(env.actor("cc1"), "dv_complaint", unit, COMPLAINT)
    if consent:
        from .api_support import consent_to_all
        consent_to_all(env.engine, env.actor("cc1"), case_id)
    return case_id


# --------------------------------------------------------------------------- sign-in

def test_pages_need_sign_in(env):
    client = env.app.test_client()
    for path in ("/", "/cases", "/start", "/cases/1", "/start/poor_mother_aid"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/login?next=")
    assert client.post("/tasks/1/claim").status_code == 401
    assert client.get("/login").status_code == 200


def test_login_and_logout(env):
    client = env.app.test_client()
    response = login(client, "vr1")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    home = client.get("/")
    assert home.status_code == 200 and "李芳" in page_text(home)
    assert client.get("/logout").status_code == 200          # GET only asks
    assert client.get("/").status_code == 200
    response = client.post("/logout")
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert client.get("/").status_code == 302


def test_login_redirects_only_within_the_site(env):
    client = env.app.test_client()
    response = client.post("/login", data={"username": "vr1", "password": PASSWORD, "next": "/cases"})
    assert response.headers["Location"] == "/cases"
    client = env.app.test_client()
    response = client.post("/login", data={"username": "vr1", "password": PASSWORD,
                                           "next": "https://evil.example/x"})
    assert response.headers["Location"] == "/"


def test_bad_password_and_unknown_user_look_the_same(env):
    client = env.app.test_client()
    wrong = client.post("/login", data={"username": "vr1", "password": "nope"})
    nobody = client.post("/login", data={"username": "nobody", "password": "nope"})
    assert wrong.status_code == nobody.status_code == 401
    assert "用户名或密码不正确" in page_text(wrong)

    def message(response):
        return re.search(r'class="flash flash-error"[^>]*>([^<]*)<', page_text(response)).group(1)

    assert message(wrong) == message(nobody)
    assert client.get("/").status_code == 302


def test_repeated_failures_are_slowed_down(env):
    now = [1000.0]
    env.app.extensions["hexie"].extra["throttle"] = LoginThrottle(clock=lambda: now[0])
    client = env.app.test_client()
    for _ in range(5):
        assert client.post("/login", data={"username": "vr1", "password": "bad"}).status_code == 401
    refused = client.post("/login", data={"username": "vr1", "password": PASSWORD})
    assert refused.status_code == 429
    assert "一分钟" in page_text(refused)
    # another address, or another name, is not held up
    other = env.app.test_client()
    assert other.post("/login", data={"username": "vr1", "password": PASSWORD},
                      environ_base={"REMOTE_ADDR": "10.0.0.9"}).status_code == 302
    assert env.app.test_client().post("/login", data={"username": "tc1", "password": PASSWORD}).status_code == 302
    now[0] += 61
    assert client.post("/login", data={"username": "vr1", "password": PASSWORD}).status_code == 302


def test_password_change_signs_out_other_sessions(env):
    from sqlalchemy import select
    from hexie.models import User
    from hexie.workflows.auth import hash_password
    client = env.client("vr1")
    assert client.get("/").status_code == 200
    with env.engine.session_factory() as s:
        user = s.scalars(select(User).where(User.username == "vr1")).one()
        user.password_hash = hash_password("another-pass-2")
        s.commit()
    assert client.get("/").status_code == 302


# ------------------------------------------------------------------------ every page

@pytest.mark.parametrize("username", sorted(PEOPLE))
def test_every_page_renders_for_each_role(env, username):
    aid = new_aid_case(env)
    complaint = new_complaint(env)
    client = env.client(username)
    for path in ("/", "/?view=available", "/?view=overdue", "/?view=escalated", "/?view=bogus",
                 "/cases", "/cases?process=poor_mother_aid&state=home_survey&q=王",
                 "/?process=poor_mother_aid&unit=t01&page=2", "/start", "/lang/en", "/", "/lang/zh"):
        response = client.get(path, follow_redirects=True)
        assert response.status_code == 200, (username, path)
    start_page = page_text(client.get("/start"))
    for process in re.findall(r'href="/start/([a-z_]+)"', start_page):
        assert client.get(f"/start/{process}").status_code == 200, (username, process)
    # the case pages: 200 for those who may see them, 404 for the others
    for case_id in (aid, complaint):
        actor = env.actor(username)
        try:
            env.queries.case(actor, case_id)
            expected = 200
        except Exception:
            expected = 404
        assert client.get(f"/cases/{case_id}").status_code == expected, (username, case_id)


# ------------------------------------------------------------------- the aid path

def test_poor_mother_aid_through_the_forms(env):
    rep = env.client("vr1")
    form = page_text(rep.get("/start/poor_mother_aid"))
    assert 'name="f-applicant_name"' in form and 'name="org_unit"' in form
    response = start_case(rep, **{"f-comment": "村里上报"})
    assert response.status_code == 302
    case_id = case_id_of(response)
    page = page_text(rep.get(f"/cases/{case_id}"))
    assert "王小红" in page and "申请" in page and "<svg" in page
    assert f'/cases/{case_id}/actions/submit' in page

    response = fire(env, rep, "vr1", case_id, "submit", APPLICATION)
    assert response.status_code == 302, page_text(response)
    assert env.queries.case(env.actor("vr1"), case_id)["state"] == "home_survey"

    cadre = env.client("tc1")
    available = page_text(cadre.get("/?view=available"))
    assert "王小红" in available and "领取" in available
    task_id = open_task_id(env, "tc1", case_id)
    response = cadre.post(f"/tasks/{task_id}/claim", data={"next": "/?view=available"})
    assert response.status_code == 302 and response.headers["Location"] == "/?view=available"
    assert "王小红" in page_text(cadre.get("/"))                     # now in "mine"
    case_page = page_text(cadre.get(f"/cases/{case_id}"))
    assert "您的任务" in case_page and f"/tasks/{task_id}/release" in case_page

    response = fire(env, cadre, "tc1", case_id, "surveyed", SURVEY)
    assert response.status_code == 302, page_text(response)
    view = env.queries.case(env.actor("tc1"), case_id)
    assert view["state"] == "approval"
    assert view["data"]["verified_annual_income"] == "5600.50"
    assert view["data"]["survey_date"] == "2026-03-03"

    chair = env.client("cm1")
    response = fire(env, chair, "cm1", case_id, "approve", comment="同意")
    assert response.status_code == 302
    follow = page_text(chair.get("/"))
    assert "1/2" in follow                                          # the vote is recorded
    assert env.queries.case(env.actor("cm1"), case_id)["state"] == "approval"
    assert "1/2" in page_text(chair.get(f"/cases/{case_id}"))
    again = fire(env, chair, "cm1", case_id, "approve", comment="再次同意")
    assert again.status_code == 409                                 # one vote per person

    vice = env.client("cm2")
    response = fire(env, vice, "cm2", case_id, "approve", comment="同意发放")
    assert response.status_code == 302
    assert env.queries.case(env.actor("cm2"), case_id)["state"] == "disbursement"
    history = page_text(vice.get(f"/cases/{case_id}"))
    for text in ("立案", "投票", "领取任务", "提交调查结果", "同意发放", "资金发放"):
        assert text in history


def test_form_errors_are_shown_next_to_their_fields(env):
    rep = env.client("vr1")
    bad = dict(APPLICATION, id_number="12345", household_size="many", declared_annual_income="1.234")
    del bad["applicant_name"]
    response = start_case(rep, bad)
    assert response.status_code == 422
    page = page_text(response)
    for field in ("applicant_name", "id_number", "household_size", "declared_annual_income"):
        assert re.search(rf'id="f-{field}-error"', page), field
    assert 'aria-invalid="true"' in page
    assert "格式不正确" in page and "请填写整数" in page
    assert "王小红" not in page or 'value="王小红"' not in page
    assert 'value="11010119800101123X"' not in page and 'value="12345"' in page   # her input kept
    # no unit chosen (vr1 has one village only, but the form was sent without it)
    response = rep.post("/start/poor_mother_aid", data=prefixed("f", APPLICATION))
    assert response.status_code == 422 and 'id="org_unit-error"' in page_text(response)


def test_engine_refusals_come_back_on_the_page(env):
    case_id = new_aid_case(env)
    cadre = env.client("tc1")
    rich = dict(SURVEY, verified_annual_income="900000")
    assert fire(env, cadre, "tc1", case_id, "surveyed", rich).status_code == 302
    chair = env.client("cm1")
    response = fire(env, chair, "cm1", case_id, "approve", comment="同意")
    assert response.status_code == 422                         # the guard (income line) refuses
    page = page_text(response)
    # in words (the definition's message), never as the expression (issue 12)
    assert "不能执行此操作" in page and "人均年收入" in page and "4000" in page
    assert "verified_annual_income" not in page and "household_size" not in page
    # a required comment is asked for next to the comment box
    response = fire(env, chair, "cm1", case_id, "reject")
    assert response.status_code == 422
    assert 'id="a-reject-comment-error"' in page_text(response)
    # a stale page is refused, and the person's input is kept
    response = fire(env, chair, "cm1", case_id, "reject", comment="收入过高", lock_version="1")
    assert response.status_code == 409
    assert "已被他人修改" in page_text(response) and "收入过高" in page_text(response)
    assert env.queries.case(env.actor("cm1"), case_id)["state"] == "approval"


def test_return_needs_a_comment_and_moves_back(env):
    case_id = new_aid_case(env)
    cadre = env.client("tc1")
    response = fire(env, cadre, "tc1", case_id, "surveyed", SURVEY)
    assert response.status_code == 302
    chair = env.client("cm1")
    response = fire(env, chair, "cm1", case_id, "return", comment="请补充邻里走访情况")
    assert response.status_code == 302
    assert env.queries.case(env.actor("cm1"), case_id)["state"] == "home_survey"


# ---------------------------------------------------------------- who sees what

def test_other_towns_and_outsiders_get_404(env):
    case_id = new_aid_case(env)
    for username in ("tc2", "vr2", "tch2", "vr1b"):
        client = env.client(username)
        assert client.get(f"/cases/{case_id}").status_code == 404, username
        response = client.post(f"/cases/{case_id}/actions/surveyed", data={})
        assert response.status_code == 404, username
        assert "王小红" not in page_text(client.get("/cases"))
        assert "王小红" not in page_text(client.get("/?view=available"))
    for username in ("vr1", "tc1", "tch1", "cm1", "admin"):
        assert env.client(username).get(f"/cases/{case_id}").status_code == 200, username
    task_id = open_task_id(env, "tc1", case_id)
    assert env.client("tc2").post(f"/tasks/{task_id}/claim").status_code == 404


def test_sensitive_fields_masked_for_people_not_working_the_case(env):
    case_id = new_aid_case(env)
    page = page_text(env.client("tch1").get(f"/cases/{case_id}"))   # the town chair oversees, does not work it
    assert "11010119800101123X" not in page and "●●●●" in page
    assert "11010119800101123X" in page_text(env.client("tc1").get(f"/cases/{case_id}"))


def test_confidential_complaint_is_invisible_to_others(env):
    case_id = new_complaint(env)
    for username in ("vr1", "tc1", "tch1", "la1", "admin"):
        client = env.client(username)
        assert client.get(f"/cases/{case_id}").status_code == 404, username
        assert "秘密受害人" not in page_text(client.get("/cases"))
    for username in ("cc1", "cm1"):
        response = env.client(username).get(f"/cases/{case_id}")
        assert response.status_code == 200, username
    # in lists, a complaint never shows a subject
    listing = page_text(env.client("cm1").get("/cases"))
    assert "秘密受害人" not in listing and "保密案件" in listing


def test_parallel_referral_task_marked_done(env):
    case_id = new_complaint(env)
    env.service.fire(env.actor("cc1"), case_id, "refer")
    police = env.client("pl1")
    task_id = open_task_id(env, "pl1", case_id)
    assert police.post(f"/tasks/{task_id}/claim").status_code == 302
    page = page_text(police.get(f"/cases/{case_id}"))
    assert f"/tasks/{task_id}/done" in page
    response = police.post(f"/tasks/{task_id}/done", data={
        "case_id": str(case_id), f"t{task_id}-police_action": "已出警并制止", f"t{task_id}-police_caution_issued": "y"})
    assert response.status_code == 302, page_text(response)
    view = env.queries.case(env.actor("cc1"), case_id)
    assert all(t["id"] != task_id for t in view["tasks"])
    assert view["data"]["police_action"] == "已出警并制止" and view["data"]["police_caution_issued"] is True
    # a missing required field is shown next to it
    la_task = open_task_id(env, "la1", case_id)
    assert env.client("la1").post(f"/tasks/{la_task}/claim").status_code == 302
    response = env.client("la1").post(f"/tasks/{la_task}/done", data={"case_id": str(case_id)})
    assert response.status_code == 422
    assert f'id="t{la_task}-legal_aid_notes-error"' in page_text(response)


# --------------------------------------------------------------------- inbox

def test_inbox_tabs_filters_search_and_pages(session_factory, tmp_path):
    env = make_web_env(session_factory, tmp_path, HEXIE_PER_PAGE=2)
    ids = [new_aid_case(env) for _ in range(3)]
    other = env.service.start_case(env.actor("vr1"), "poor_mother_aid", "t01v01",
                                   dict({k: (v if k != "self_reliant" else True) for k, v in APPLICATION.items()},
                                        applicant_name="李四妹"))
    env.service.fire(env.actor("vr1"), other, "submit")
    client = env.client("tc1")
    page = page_text(client.get("/?view=available"))
    assert "第 1 / 2 页，共 4 条" in page and "下一页" in page
    assert "第 2 / 2 页" in page_text(client.get("/?view=available&page=2"))
    found = page_text(client.get("/?view=available&q=李四"))
    assert "李四妹" in found and "王小红" not in found and "共 1 条" in found
    assert "共 4 条" in page_text(client.get("/?view=available&process=poor_mother_aid&state=home_survey"))
    assert "共 0 条" in page_text(client.get("/?view=available&process=microloan")) or \
        "暂时没有可领取的任务" in page_text(client.get("/?view=available&process=microloan"))
    assert "共 4 条" in page_text(client.get("/?view=available&unit=t01v01"))
    assert client.get("/?view=available&unit=nowhere").status_code == 200
    # the navigation bar counts
    nav = page_text(client.get("/"))
    assert re.search(r'可领取<span class="badge badge-soft">4</span>', nav)
    # overdue after the survey's 7 days (and escalated to the town chair after 3 more)
    env.clock.advance(days=11)
    assert env.service.escalate_overdue() == 4
    overdue = page_text(client.get("/?view=overdue"))
    assert "逾期" in overdue and "row-late" in overdue
    chair = page_text(env.client("tch1").get("/?view=escalated"))
    assert "已升级" in chair and "共 4 条" in chair
    assert ids


# ---------------------------------------------------------------------- security

def test_post_without_csrf_token_is_refused(session_factory, tmp_path):
    env = make_web_env(session_factory, tmp_path, csrf=True)
    case_id = new_aid_case(env)
    client = env.app.test_client()
    assert client.post("/login", data={"username": "tc1", "password": PASSWORD}).status_code == 400
    assert login(client, "tc1").status_code == 302                     # with the page's token
    task_id = open_task_id(env, "tc1", case_id)
    response = client.post(f"/tasks/{task_id}/claim")
    assert response.status_code == 400 and "页面已过期" in page_text(response)
    assert fire(env, client, "tc1", case_id, "surveyed", SURVEY).status_code == 400
    assert client.post("/logout").status_code == 400
    assert env.queries.case(env.actor("tc1"), case_id)["state"] == "home_survey"
    token = csrf_token(client, f"/cases/{case_id}")
    response = client.post(f"/tasks/{task_id}/claim", data={"csrf_token": token})
    assert response.status_code == 302
    response = fire(env, client, "tc1", case_id, "surveyed", SURVEY, csrf_token=token)
    assert response.status_code == 302
    assert env.queries.case(env.actor("tc1"), case_id)["state"] == "approval"


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href", "action", "srcset", "poster", "data") and value:
                self.urls.append(value)


def test_no_outside_urls_in_any_page(env):
    aid = new_aid_case(env)
    complaint = new_complaint(env)
    pages = {"-": ["/login"], "vr1": ["/", "/start", "/start/poor_mother_aid", f"/cases/{aid}", "/cases"],
             "cm1": ["/", "/?view=overdue", f"/cases/{aid}", f"/cases/{complaint}", "/cases", "/nowhere"]}
    for username, paths in pages.items():
        client = env.client(None if username == "-" else username)
        for path in paths:
            html = page_text(client.get(path))
            parser = _Links()
            parser.feed(html)
            assert parser.urls, path
            for url in parser.urls:
                assert not re.match(r"^\s*(https?:)?//", url, re.I), (path, url)
            assert "http://" not in html and "https://" not in html, path
    css = page_text(env.app.test_client().get("/static/hexie.css"))
    assert "url(" not in css and "@import" not in css


def test_security_headers(env):
    response = env.client("vr1").get("/")
    assert "default-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    cookie = env.app.test_client().post("/login", data={"username": "vr1", "password": PASSWORD}) \
        .headers.get("Set-Cookie", "")
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_everything_is_escaped(env):
    rep = env.client("vr1")
    evil = dict(APPLICATION, applicant_name='<script>alert("x")</script>')
    case_id = case_id_of(start_case(rep, evil, **{"f-comment": "<img src=x onerror=alert(1)>"}))
    for path in (f"/cases/{case_id}", "/", "/cases"):
        html = page_text(rep.get(path))
        assert '<script>alert("x")</script>' not in html
        assert "<img src=x" not in html
    html = page_text(rep.get(f"/cases/{case_id}"))
    assert "&lt;script&gt;alert(" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


def test_diagram_escapes_labels():
    from dataclasses import replace

    from hexie.web.diagram import render_svg
    from hexie.workflows.loader import load_definitions_strict
    from .web_helpers import DEFINITIONS
    spec = load_definitions_strict(DEFINITIONS).processes["poor_mother_aid"]
    state = replace(spec.states[0], label=replace(spec.states[0].label, zh="<b>申请</b>&"))
    evil = replace(spec, states=(state,) + spec.states[1:], content_hash="evil")
    svg = str(render_svg(evil, "application"))
    assert "<b>" not in svg and "&lt;b&gt;申请&lt;/b&gt;&amp;" in svg
    assert svg.startswith("<svg") and svg.count("<g class=\"state") == len(spec.states)
    assert 'class="state current"' in svg


# --------------------------------------------------------------------- language

def test_english_switch(env):
    new_aid_case(env)
    client = env.client("tc1")
    assert "待办" in page_text(client.get("/"))
    response = client.post("/lang/en", headers={"Referer": "http://localhost/cases"})
    assert response.status_code == 302 and response.headers["Location"] == "/cases"
    page = page_text(client.get("/?view=available"))
    assert "Inbox" in page and "Sign out" in page and "Aid to poor mothers" in page and "Home survey" in page
    assert 'lang="en"' in page
    # remembered for the user: a new session starts in English
    assert "Inbox" in page_text(env.client("tc1").get("/"))
    client.post("/lang/zh")
    assert "待办" in page_text(client.get("/"))
    assert env.app.test_client().post("/lang/xx").status_code == 404
    # an outside referrer is not followed
    assert client.post("/lang/zh", headers={"Referer": "https://evil.example/"}).headers["Location"] == "/"
    # a GET (a link, another site's <img>) changes nothing: it offers the button
    offered = client.get("/lang/en")
    assert offered.status_code == 200 and 'action="/lang/en"' in page_text(offered)
    assert "待办" in page_text(client.get("/"))


# ----------------------------------------------------------------------- files

def test_upload_and_download_attachment(env):
    rep = env.client("vr1")
    response = start_case(rep, **{"f-application_files": [(io.BytesIO(PDF), "申请书.pdf"),
                                                          (io.BytesIO(b"\x89PNG\r\n\x1a\n" + b"0" * 20), "photo.png")]})
    assert response.status_code == 302
    case_id = case_id_of(response)
    with env.engine.session_factory() as s:
        rows = s.query(Attachment).filter_by(case_id=case_id).order_by(Attachment.id).all()
        assert [r.filename for r in rows] == ["申请书.pdf", "photo.png"]
        assert all(re.fullmatch(r"[0-9a-f]{32}\.(pdf|png)", r.storage_key) for r in rows)
        pdf_id = rows[0].id
    page = page_text(rep.get(f"/cases/{case_id}"))
    assert f"/attachments/{pdf_id}" in page and "申请书.pdf" in page
    download = rep.get(f"/attachments/{pdf_id}")
    assert download.status_code == 200 and download.data == PDF
    assert download.mimetype == "application/pdf"
    # submitting the application references the files in the case data
    assert fire(env, rep, "vr1", case_id, "submit", APPLICATION).status_code == 302
    assert len(env.queries.case(env.actor("vr1"), case_id)["data"]["application_files"]) == 2
    assert env.client("tc1").get(f"/attachments/{pdf_id}").status_code == 200
    assert env.client("tc2").get(f"/attachments/{pdf_id}").status_code == 404
    assert env.client("vr2").get("/attachments/999999").status_code == 404


def test_uploads_of_other_types_are_refused(env):
    rep = env.client("vr1")
    for name, content in (("virus.exe", b"MZ\x90\x00"), ("fake.pdf", b"MZ\x90\x00 not a pdf"),
                          ("page.html", b"<html></html>")):
        response = start_case(rep, **{"f-application_files": [(io.BytesIO(content), name)]})
        assert response.status_code == 422, name
        assert 'id="f-application_files-error"' in page_text(response)
        assert "不支持的文件类型" in page_text(response)
    with env.engine.session_factory() as s:
        assert s.query(Attachment).count() == 0


def test_too_large_upload_is_refused(session_factory, tmp_path):
    env = make_web_env(session_factory, tmp_path, MAX_CONTENT_LENGTH=1024)
    rep = env.client("vr1")
    response = start_case(rep, **{"f-application_files": [(io.BytesIO(PDF + b"0" * 4096), "big.pdf")]})
    assert response.status_code == 413
    assert "文件过大" in page_text(response)


# ----------------------------------------------------------------- host plugin

def test_hexie_mounted_in_a_host_application(session_factory):
    """A host with its own sign-in hands Hexie the current Actor; that is the whole protocol."""
    engine = make_engine(session_factory)
    host = Flask("host")
    host.config.update(SECRET_KEY="host-secret", WTF_CSRF_ENABLED=False, TESTING=True,
                       HEXIE_URL_PREFIX="/workflow")
    who = {"username": "cm1"}

    def actor_loader():
        return engine.actor(who["username"]) if who["username"] else None

    @host.route("/")
    def host_home():
        actor = current_actor()
        return f"host page for {actor.username if actor else 'nobody'}"

    Hexie(host, engine, actor_loader=actor_loader)
    client = host.test_client()
    assert client.get("/").get_data(as_text=True) == "host page for cm1"
    inbox = client.get("/workflow/")
    assert inbox.status_code == 200 and "张主席" in page_text(inbox)
    assert "/workflow/static/hexie.css" in page_text(inbox)
    assert client.get("/workflow/static/hexie.css").status_code == 200
    assert client.get("/workflow/login").status_code == 404            # the host signs people in
    assert "退出" not in page_text(inbox)
    case_id = new_aid_case(type("E", (), {"actor": engine.actor, "service": __import__(
        "hexie.workflows.service", fromlist=["WorkflowService"]).WorkflowService(engine)})())
    assert client.get(f"/workflow/cases/{case_id}").status_code == 200
    who["username"] = "tc2"
    assert client.get(f"/workflow/cases/{case_id}").status_code == 404
    who["username"] = None
    assert client.get("/workflow/").status_code == 401
    host.config["HEXIE_LOGIN_URL"] = "/host-login"   # the older name of HEXIE_LOGIN_VIEW
    assert client.get("/workflow/").headers["Location"] == "/host-login?next=%2Fworkflow%2F"


def test_create_app_settings(env):
    app = env.app
    assert app.config["SESSION_COOKIE_HTTPONLY"] and app.config["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert app.config["MAX_CONTENT_LENGTH"] == 10 * 1024 * 1024
    state = app.extensions["hexie"]
    assert state.engine is env.engine and state["service"] is state.service and state.queries
    assert SYSTEM.is_system


def test_host_csrf_guards_only_hexie_forms(session_factory):
    """A host without CSRF protection keeps its own forms working; Hexie's still need the token."""
    engine = make_engine(session_factory)
    host = Flask("host2")
    host.config.update(SECRET_KEY="host-secret", TESTING=True)

    @host.route("/host-form", methods=["POST"])
    def host_form():
        return "ok"

    Hexie(host, engine, actor_loader=lambda: engine.actor("tc1"))
    client = host.test_client()
    assert client.post("/host-form").get_data(as_text=True) == "ok"
    assert "Content-Security-Policy" not in client.get("/host-form", method="POST").headers
    assert client.post("/tasks/1/claim").status_code == 400
    page = client.get("/")
    assert page.status_code == 200 and "Content-Security-Policy" in page.headers
    form = page_text(client.get("/start/microloan"))
    token = re.search(r'name="csrf_token" value="([^"]+)"', form).group(1)
    assert client.post("/tasks/999/claim", data={"csrf_token": token}).status_code == 404


# ------------------------------------------------------------------ small things

def test_voting_steps_are_not_taken_by_one_person(env):
    case_id = new_aid_case(env)
    assert fire(env, env.client("tc1"), "tc1", case_id, "surveyed", SURVEY).status_code == 302
    chair = env.client("cm1")
    page = page_text(chair.get(f"/cases/{case_id}"))
    assert "/claim" not in page and f"/cases/{case_id}/actions/approve" in page
    listing = page_text(chair.get("/?view=available"))
    assert f"/cases/{case_id}" in listing and "/claim" not in listing


def test_inbox_costs_a_fixed_number_of_queries(env):
    from sqlalchemy import event
    client = env.client("tc1")
    bind = env.engine.session_factory.kw["bind"]
    counted: list[str] = []

    def count(*args):
        counted.append(args[2])

    def queries_for(path):
        counted.clear()
        event.listen(bind, "before_cursor_execute", count)
        try:
            assert client.get(path).status_code == 200
        finally:
            event.remove(bind, "before_cursor_execute", count)
        return len(counted)

    new_aid_case(env)
    few = queries_for("/?view=available"), queries_for("/cases")
    for _ in range(6):
        new_aid_case(env)
    many = queries_for("/?view=available"), queries_for("/cases")
    assert few == many, (few, many)
    assert many[0] <= 15


def test_unexpected_errors_get_a_calm_page(session_factory, tmp_path):
    env = make_web_env(session_factory, tmp_path, PROPAGATE_EXCEPTIONS=False)

    def boom():
        raise RuntimeError("broken")

    env.app.add_url_rule("/boom", view_func=boom)
    response = env.client("vr1").get("/boom")
    assert response.status_code == 500
    assert "系统出现错误" in page_text(response) and "RuntimeError" not in page_text(response)
    assert env.app.test_client().get("/no-such-page").status_code == 404


def test_admin_link_when_admin_part_installed(env):
    if "admin" not in env.app.blueprints:
        pytest.skip("web/admin.py is not installed")
    assert ">管理<" in page_text(env.client("cm1").get("/")).replace("</svg>", ">")
    vr_page = page_text(env.client("vr1").get("/"))
    assert "/admin/away" in vr_page and ">管理<" not in vr_page.replace("</svg>", ">")


def test_send_back_form_shows_only_its_own_fields(env):
    case_id = new_aid_case(env)
    cadre = env.client("tc1")
    page = page_text(cadre.get(f"/cases/{case_id}"))
    survey_form = page.split(f'/cases/{case_id}/actions/surveyed', 1)[1].split("</form>", 1)[0]
    return_form = page.split(f'/cases/{case_id}/actions/return', 1)[1].split("</form>", 1)[0]
    assert 'name="a-surveyed-survey_findings"' in survey_form
    assert "survey_findings" not in return_form and 'name="a-return-comment"' in return_form
    response = fire(env, cadre, "tc1", case_id, "return", comment="缺少户口本复印件")
    assert response.status_code == 302, page_text(response)
    assert env.queries.case(env.actor("tc1"), case_id)["state"] == "application"


def test_an_approver_sees_why_approve_is_not_offered(env):
    case_id = new_aid_case(env)
    env.service.fire(env.actor("tc1"), case_id, "surveyed", {
        "survey_date": "2026-03-03", "verified_annual_income": "90000", "household_size": 3,
        "survey_findings": "收入较高", "aid_programme": "consolation"})
    page = page_text(env.client("cm1").get(f"/cases/{case_id}"))
    assert "暂不能执行" in page and "家庭人均年收入（核实）须低于 4000 元" in page   # the programme's words
    assert "verified_annual_income" not in page
    assert f'/cases/{case_id}/actions/approve"' not in page
    assert f'/cases/{case_id}/actions/reject"' in page


def test_reports_count_only_what_she_may_see(env):
    new_aid_case(env)
    new_complaint(env)
    page = page_text(env.client("tch1").get("/reports?process=poor_mother_aid"))
    assert "城关镇" in page and "入户调查" in page and "共 1 件" in page
    assert "共 0 件" in page_text(env.client("tch2").get("/reports?process=poor_mother_aid"))
    # confidential: counted for the overseer only, and any count below 5 reads "<5" (protection.md)
    chair = env.client("tch1").get("/reports?process=dv_complaint").get_data(as_text=True)
    overseer = env.client("cm1").get("/reports?process=dv_complaint").get_data(as_text=True)
    assert "共 &lt;5 件" in chair and "共 &lt;5 件" in overseer
    assert 'class="table report"' not in chair and 'class="table report"' in overseer
    assert env.client("tch1").get("/reports?process=nope").status_code == 404



def test_reports_show_each_final_states_share(env):
    # a case withdrawn (final) beside one still open: 50.0 % of the town's cases, and in the totals
    new_aid_case(env)
    withdrawn = new_aid_case(env)
    env.service.fire(env.actor("vr1"), withdrawn, "withdraw", comment="申请人撤回")
    report = env.queries.report(env.actor("tch1"), "poor_mother_aid")
    assert report["totals"] == {"home_survey": 1, "withdrawn": 1, "open_tasks": 1, "overdue": 0}
    assert "withdrawn" in report["final_states"]
    page = page_text(env.client("tch1").get("/reports?process=poor_mother_aid"))
    assert page.count("50.0%") == 2                                   # the town's row and the totals row
    env.clock.advance(days=30)                                        # the survey's SLA is long past
    (town,) = env.queries.report(env.actor("tch1"), "poor_mother_aid")["units"]
    assert (town["open_tasks"], town["overdue"]) == (1, 1)
    assert "逾期" in page_text(env.client("tch1").get("/reports?process=poor_mother_aid"))
    assert env.client().get("/reports").status_code in (302, 401)


@pytest.mark.parametrize("now, due, zh, en", [
    # (UTC) 23:30 in Shanghai; due at 09:00 the next local morning: tomorrow, not "today"
    ("2026-03-02 15:30", "2026-03-03 01:00", "明天到期", "due tomorrow"),
    ("2026-03-02 01:00", "2026-03-02 09:00", "今天到期", "due today"),
    # 7 calendar days away though only 6 days and 20 hours
    ("2026-03-02 05:00", "2026-03-09 01:00", "7 天后到期", "due in 7 days"),
    ("2026-03-02 05:00", "2026-03-02 04:00", "逾期 1 小时", "1 hour late"),
    ("2026-03-02 09:00", "2026-03-02 04:00", "逾期 5 小时", "5 hours late"),
    ("2026-03-03 01:00", "2026-03-02 15:00", "逾期 1 天", "1 day late"),   # yesterday 23:00, local
    ("2026-03-05 01:00", "2026-03-02 01:00", "逾期 3 天", "3 days late"),
])
def test_due_labels_count_calendar_days_in_the_office_time_zone(env, now, due, zh, en):
    from datetime import datetime

    from flask import g

    from hexie.web.views.common import due_hint

    env.clock.now = datetime.fromisoformat(now)
    with env.app.test_request_context("/"):
        assert due_hint(datetime.fromisoformat(due)) == zh
        g.hexie_locale = "en"
        assert due_hint(datetime.fromisoformat(due)) == en


@pytest.mark.parametrize("value, shown", [("1200.5", "¥1,200.50"), ("-200", "-¥200.00"), ("0", "¥0.00"),
                                          ("nope", "nope")])
def test_money_reads_as_accounts_write_it(env, value, shown):
    from hexie.web.views.common import money
    with env.app.test_request_context("/"):
        assert money(value) == shown
