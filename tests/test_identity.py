"""Identity settings of host.md ("People, roles, identity"): the host's login view, the site
name, the default locale and Accept-Language, the office's time zone, and a language switch
that only a POST with the CSRF token can work. On SQLite and PostgreSQL.
"""
from __future__ import annotations

import re
from datetime import datetime

from flask import Flask

from hexie.web import Hexie, create_app
from hexie.web.views.common import fmt_dt

from .web_helpers import csrf_token, login, make_engine, make_web_env


def text(response) -> str:
    return response.get_data(as_text=True)


def title(response) -> str:
    return re.search(r"<title>(.*?)</title>", text(response), re.S).group(1)


# ------------------------------------------------------------------ the login view
def test_hexie_redirects_to_its_own_login_with_next(session_factory, tmp_path) -> None:
    web = make_web_env(session_factory, tmp_path)
    r = web.app.test_client().get("/cases?process=microloan")
    assert r.status_code == 302
    assert r.headers["Location"] == "/login?next=%2Fcases%3Fprocess%3Dmicroloan"
    assert web.app.test_client().post("/tasks/1/claim").status_code == 401      # not a page: no redirect


def test_a_host_login_view_by_endpoint_or_path(session_factory) -> None:
    engine = make_engine(session_factory)
    host = Flask("host")
    host.config.update(SECRET_KEY="host-secret", TESTING=True, HEXIE_URL_PREFIX="/wf",
                       HEXIE_LOGIN_VIEW="accounts.sign_in")
    from flask import Blueprint
    accounts = Blueprint("accounts", __name__)

    @accounts.route("/accounts/sign-in")
    def sign_in():
        return "the host's own sign-in"

    host.register_blueprint(accounts)
    Hexie(host, engine, actor_loader=lambda: None)
    client = host.test_client()
    r = client.get("/wf/cases/7")
    assert r.status_code == 302 and r.headers["Location"] == "/accounts/sign-in?next=%2Fwf%2Fcases%2F7"
    assert client.get("/wf/admin/").headers["Location"].startswith("/accounts/sign-in?next=")
    assert client.get("/wf/api/v1/tasks").status_code == 401                    # the API: 401 JSON
    host.config["HEXIE_LOGIN_VIEW"] = "/sso/login?realm=x"
    assert client.get("/wf/").headers["Location"] == "/sso/login?realm=x&next=%2Fwf%2F"


# ------------------------------------------------------------------ the site name
def test_site_name_default_config_and_environment(session_factory, tmp_path, monkeypatch) -> None:
    web = make_web_env(session_factory, tmp_path)
    page = web.client("vr1").get("/")
    assert "县妇联业务办理系统" in title(page) and 'class="brand-tag">县妇联业务办理系统<' in text(page)
    assert "县妇联业务办理系统" in title(web.app.test_client().get("/login"))

    named = make_web_env(session_factory, tmp_path, HEXIE_SITE_NAME="某某集团 ERP")
    page = named.client("vr1").get("/")
    assert "某某集团 ERP" in title(page) and "县妇联业务办理系统" not in text(page)

    monkeypatch.setenv("HEXIE_SITE_NAME", "环境里的名字")
    app = create_app(engine=web.engine, config={"TESTING": True, "SECRET_KEY": "x", "WTF_CSRF_ENABLED": False})
    assert app.config["HEXIE_SITE_NAME"] == "环境里的名字"
    assert "环境里的名字" in title(app.test_client().get("/login"))


def test_site_name_in_both_languages(session_factory, tmp_path) -> None:
    web = make_web_env(session_factory, tmp_path, HEXIE_SITE_NAME={"zh": "甲公司", "en": "Company A"})
    client = web.client("vr1")
    assert "甲公司" in title(client.get("/"))
    assert "Company A" in title(client.get("/", headers={"Accept-Language": "en"}))


# ------------------------------------------------------------------ the locale
def test_accept_language_decides_for_a_person_with_no_stored_choice(session_factory, tmp_path) -> None:
    web = make_web_env(session_factory, tmp_path)
    client = web.client("tc1")
    assert "待办" in text(client.get("/"))
    assert "Inbox" in text(client.get("/", headers={"Accept-Language": "en-GB,en;q=0.8"}))
    assert "待办" in text(client.get("/", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.5"}))
    assert "待办" in text(client.get("/", headers={"Accept-Language": "fr"}))     # neither: the default
    # once she chooses, her choice wins over the browser's
    client.post("/lang/zh")
    other = web.client("tc1")
    assert "待办" in text(other.get("/", headers={"Accept-Language": "en"}))


def test_default_locale(session_factory, tmp_path, monkeypatch) -> None:
    web = make_web_env(session_factory, tmp_path, HEXIE_DEFAULT_LOCALE="en")
    client = web.client("tc1")
    assert "Inbox" in text(client.get("/"))
    assert "待办" in text(client.get("/", headers={"Accept-Language": "zh"}))
    assert "Sign in" in text(web.app.test_client().get("/login"))
    monkeypatch.setenv("HEXIE_DEFAULT_LOCALE", "en")
    app = create_app(engine=web.engine, config={"TESTING": True, "SECRET_KEY": "x"})
    assert "Sign in" in text(app.test_client().get("/login"))


def test_a_host_actor_without_a_locale_follows_accept_language(session_factory) -> None:
    from hexie.workflows.access import Actor
    engine = make_engine(session_factory)
    host = Flask("host")
    host.config.update(SECRET_KEY="host-secret", TESTING=True)
    base = engine.actor("tc1")
    Hexie(host, engine, actor_loader=lambda: Actor(username=base.username, user_id=base.user_id,
                                                   assignments=base.assignments, name=base.name))
    client = host.test_client()
    assert "Inbox" in text(client.get("/", headers={"Accept-Language": "en"}))
    assert "待办" in text(client.get("/"))


# ------------------------------------------------------------------ the language switch
def test_only_a_post_with_the_csrf_token_switches(session_factory, tmp_path) -> None:
    web = make_web_env(session_factory, tmp_path, csrf=True)
    client = web.app.test_client()
    login(client, "tc1")
    page = text(client.get("/"))
    assert re.search(r'<form class="inline" method="post" action="/lang/en">\s*<input type="hidden" '
                     r'name="csrf_token"', page)
    assert client.get("/lang/en").status_code == 200                      # a link changes nothing
    assert client.post("/lang/en").status_code == 400                     # no token: refused
    assert "待办" in text(client.get("/"))
    with web.engine.session_factory() as s:
        from hexie.models import User
        from sqlalchemy import select
        user = s.scalars(select(User).where(User.username == "tc1")).one()
        assert not user.locale_chosen
    token = csrf_token(client, "/")
    assert client.post("/lang/en", data={"csrf_token": token}).status_code == 302
    assert "Inbox" in text(client.get("/"))


# ------------------------------------------------------------------ the time zone
def test_the_time_zone_is_used_for_dates_and_times(session_factory, tmp_path, monkeypatch) -> None:
    web = make_web_env(session_factory, tmp_path)                          # clock: 2026-03-02 01:00 UTC
    assert web.engine.today().isoformat() == "2026-03-02"                   # 09:00 in Shanghai
    with web.app.test_request_context():
        assert fmt_dt(datetime(2026, 3, 1, 20, 0)) == "2026-03-02 04:00"
    west = make_web_env(session_factory, tmp_path, HEXIE_TIMEZONE="America/New_York")
    assert west.engine.today().isoformat() == "2026-03-01"                  # 20:00 the evening before
    with west.app.test_request_context():
        assert fmt_dt(datetime(2026, 3, 1, 20, 0)) == "2026-03-01 15:00"
    monkeypatch.setenv("HEXIE_TIMEZONE", "Europe/London")
    app = create_app(engine=west.engine, config={"TESTING": True, "SECRET_KEY": "x"})
    assert app.config["HEXIE_TIMEZONE"] == "Europe/London" and west.engine.today().isoformat() == "2026-03-02"


def test_a_timer_at_a_date_field_falls_due_at_local_midnight(session_factory, tmp_path) -> None:
    from hexie.workflows.service import _field_moment
    from zoneinfo import ZoneInfo
    assert _field_moment("2026-12-20", ZoneInfo("Asia/Shanghai")) == datetime(2026, 12, 19, 16, 0)
    assert _field_moment("2026-12-20T10:00", ZoneInfo("Asia/Shanghai")) == datetime(2026, 12, 20, 2, 0)
    assert _field_moment("2026-12-20T10:00+00:00", ZoneInfo("Asia/Shanghai")) == datetime(2026, 12, 20, 10, 0)
    assert _field_moment("2026-12-20") == datetime(2026, 12, 20, 0, 0)
