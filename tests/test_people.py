"""Identity, people and tokens (host.md "People, roles, identity"; interfaces.md "People"):
revocable tokens and sessions, the key tokens are signed with, the shared sign-in throttle,
``hexie org load --prune`` and the people API. On SQLite and PostgreSQL.
"""
from __future__ import annotations

import re
from typing import Any

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner
from flask import Flask
from sqlalchemy import func, select

from hexie.models import ApiToken, AuditEvent, LoginAttempt, User, make_engine as make_sa_engine
from hexie.web import Hexie
from hexie.workflows import auth
from hexie.cli import main
from hexie.workflows.tokens import issue_token, make_token

from .api_support import PASSWORD, SECRET, Api, ApiEnv, api_env, build_engine, error_of, make_app
from .web_helpers import PASSWORD as WEB_PASSWORD, login, make_web_env


@pytest.fixture
def env(engine) -> ApiEnv:
    return api_env(engine)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def password_token(env: ApiEnv, username: str, password: str = PASSWORD) -> str:
    r = env.as_(None).post("/token", {"username": username, "password": password})
    assert r.status_code == 200, r.get_json()
    return r.get_json()["token"]


def works(env: ApiEnv, token: str) -> bool:
    r = env.as_(None).get("/processes", headers=bearer(token))
    assert r.status_code in (200, 401), r.status_code
    return r.status_code == 200


# ------------------------------------------------------------------ the signing key
def test_issue_token_in_a_host_uses_hexie_secret_key_else_the_host_secret_key(env: ApiEnv) -> None:
    host = Flask("host")
    host.config.update(SECRET_KEY="host-own-secret", TESTING=True)
    Hexie(host, env.engine, actor_loader=lambda: None)
    with host.app_context():
        token = issue_token("vrep1")
    client = Api(host.test_client(), token)
    assert client.get("/processes").status_code == 200
    # signed with the host's SECRET_KEY, not with any other
    assert not works(env, token)                           # env.app signs with SECRET
    assert make_token("host-own-secret", "vrep1") != token

    host2 = Flask("host2")
    host2.config.update(SECRET_KEY="host-own-secret", HEXIE_SECRET_KEY="hexie-key-of-the-host", TESTING=True)
    Hexie(host2, env.engine, actor_loader=lambda: None)
    with host2.app_context():
        token2 = issue_token("vrep1")
    assert Api(host2.test_client(), token2).get("/processes").status_code == 200
    assert Api(host2.test_client(), token).get("/processes").status_code == 401   # the SECRET_KEY one is not it
    assert Api(host.test_client(), token2).get("/processes").status_code == 401


def test_hexie_token_command_gives_a_token_the_host_accepts(env: ApiEnv, db_url: str, monkeypatch) -> None:
    monkeypatch.setenv("HEXIE_DATABASE_URL", db_url)
    monkeypatch.setenv("HEXIE_SECRET_KEY", "the-shared-hexie-key")
    out = CliRunner().invoke(main, ["token", "cadre1"])
    assert out.exit_code == 0, out.output
    token = out.output.strip()
    host = Flask("host")
    host.config.update(SECRET_KEY="host-own-secret", HEXIE_SECRET_KEY="the-shared-hexie-key", TESTING=True)
    Hexie(host, env.engine, actor_loader=lambda: None)
    r = Api(host.test_client(), token).get("/tasks?view=available")
    assert r.status_code == 200
    with env.engine.session_factory() as s:
        assert s.scalar(select(ApiToken.origin).order_by(ApiToken.id.desc()).limit(1)) == "cli"
    # a host whose SECRET_KEY is that key (and no HEXIE_SECRET_KEY) accepts it too
    host2 = Flask("host2")
    host2.config.update(SECRET_KEY="the-shared-hexie-key", TESTING=True)
    Hexie(host2, env.engine, actor_loader=lambda: None)
    assert Api(host2.test_client(), token).get("/processes").status_code == 200
    # an unknown or inactive user gets none
    assert CliRunner().invoke(main, ["token", "nobody"]).exit_code == 1


def test_hexie_token_with_the_host_app(env: ApiEnv, db_url: str, tmp_path, monkeypatch) -> None:
    module = f"somehost_{abs(hash(db_url))}"            # a module of its own per database
    (tmp_path / f"{module}.py").write_text(
        "import os\nfrom flask import Flask\nimport hexie\n"
        "app = Flask('somehost')\napp.config['SECRET_KEY'] = 'the-host-key-only'\n"
        "hexie.Hexie(app, hexie.create_engine(os.environ['HEXIE_DATABASE_URL']), actor_loader=lambda: None)\n",
        encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HEXIE_DATABASE_URL", db_url)
    out = CliRunner().invoke(main, ["token", "cadre2", "--app", f"{module}:app"])
    assert out.exit_code == 0, out.output
    host = Flask("host")
    host.config.update(SECRET_KEY="the-host-key-only", TESTING=True)
    Hexie(host, env.engine, actor_loader=lambda: None)
    assert Api(host.test_client(), out.output.strip()).get("/processes").status_code == 200
    assert CliRunner().invoke(main, ["token", "cadre2", "--app", f"{module}:nothing"]).exit_code == 1


def test_issue_token_is_public_and_outside_a_request_uses_the_mounted_app(env: ApiEnv) -> None:
    import hexie
    assert hexie.issue_token is issue_token
    token = hexie.issue_token("vrep2", engine=env.engine)     # no app context: env.app's key (SECRET)
    assert works(env, token)
    with pytest.raises(hexie.NotFound):
        hexie.issue_token("nobody", engine=env.engine)


# ------------------------------------------------------------------ revocable tokens
def test_a_token_without_its_row_is_refused(env: ApiEnv) -> None:
    assert not works(env, make_token(SECRET, "vrep1"))                  # well signed, no jti
    assert not works(env, make_token(SECRET, "vrep1", "made-up-jti"))   # a jti no row has
    token = password_token(env, "vrep1")
    assert works(env, token)
    with env.engine.session_factory() as s:
        jti = s.scalar(select(ApiToken.jti).order_by(ApiToken.id.desc()).limit(1))
    assert not works(env, make_token(SECRET, "vrep2", jti))             # another user's name on it


def test_revoking_the_presented_token(env: ApiEnv) -> None:
    first, second = password_token(env, "vrep1"), password_token(env, "vrep1")
    r = env.as_(None).post("/token/revoke", headers=bearer(first))
    assert r.status_code == 200 and r.get_json() == {"revoked": 1}
    assert not works(env, first) and works(env, second)
    assert env.as_(None).post("/token/revoke", headers=bearer(first)).status_code == 401


def test_sign_out_everywhere_revokes_every_token(env: ApiEnv) -> None:
    tokens = [password_token(env, "vrep1") for _ in range(3)]
    other = password_token(env, "vrep2")
    r = env.as_(None).post("/token/revoke", {"everywhere": True}, headers=bearer(tokens[0]))
    assert r.status_code == 200 and r.get_json()["revoked"] == 3
    assert not any(works(env, t) for t in tokens) and works(env, other)


def test_password_reset_deactivation_and_reactivation(env: ApiEnv) -> None:
    admin = env.as_("admin")
    token = password_token(env, "vrep1")
    r = admin.call("PATCH", "/users/vrep1", {"password": "a-new-password-9"})
    assert r.status_code == 200, r.get_json()
    assert not works(env, token)                                         # the reset killed it
    token = password_token(env, "vrep1", "a-new-password-9")
    assert works(env, token)
    assert admin.call("PATCH", "/users/vrep1", {"active": False}).get_json()["active"] is False
    assert not works(env, token)
    assert admin.call("PATCH", "/users/vrep1", {"active": True}).get_json()["active"] is True
    assert not works(env, token)                                         # reactivation revives nothing
    assert works(env, password_token(env, "vrep1", "a-new-password-9"))  # a new sign-in works again
    with env.engine.session_factory() as s:
        kinds = s.scalars(select(AuditEvent.kind).where(AuditEvent.case_id.is_(None)).order_by(AuditEvent.id)).all()
    assert kinds == ["password_reset", "user_deactivated", "user_activated"]


def test_org_load_prune_deactivates_the_unlisted_and_revokes_their_tokens(env: ApiEnv, db_url, tmp_path,
                                                                       monkeypatch) -> None:
    token = password_token(env, "vrep2")
    kept = password_token(env, "vrep1")
    org = tmp_path / "org.yaml"
    org.write_text("units:\n  - {code: county, name: 某县, level: county}\n"
                   "users:\n"
                   "  - {username: vrep1, name: 一号, email: vrep1@example.org, roles: [village_rep@t01v01],\n"
                   "     capabilities: [sign_language, lawyer]}\n"
                   "  - {username: admin, name: admin, roles: [admin@county]}\n", encoding="utf-8")
    monkeypatch.setenv("HEXIE_DATABASE_URL", db_url)
    out = CliRunner().invoke(main, ["org", "load", str(org), "--prune"])
    assert out.exit_code == 0, out.output
    assert "14 停用 deactivated" in out.output     # 16 users, 2 kept
    assert not works(env, token) and works(env, kept)
    with env.engine.session_factory() as s:
        active = s.scalars(select(User.username).where(User.active.is_(True)).order_by(User.username)).all()
        vrep1 = s.scalars(select(User).where(User.username == "vrep1")).one()
        assert active == ["admin", "vrep1"]
        assert (vrep1.email, vrep1.capabilities) == ("vrep1@example.org", ["sign_language", "lawyer"])
    # without --prune nobody is deactivated; a file without users may not prune
    (tmp_path / "units.yaml").write_text("units:\n  - {code: county, name: 某县, level: county}\n", encoding="utf-8")
    out = CliRunner().invoke(main, ["org", "load", str(tmp_path / "units.yaml"), "--prune"])
    assert out.exit_code == 1 and "--prune" in out.output


# ------------------------------------------------------------------ sessions
def test_a_cookie_replayed_after_sign_out_is_refused(session_factory, tmp_path) -> None:
    web = make_web_env(session_factory, tmp_path)
    client = web.client("vr1")
    assert client.get("/").status_code == 200
    cookie = client.get_cookie("hexie_session").value
    assert client.post("/logout").status_code == 302
    thief = web.app.test_client()
    thief.set_cookie("hexie_session", cookie)
    r = thief.get("/")
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")


def test_sign_out_everywhere_and_deactivation_end_sessions(session_factory, tmp_path) -> None:
    web = make_web_env(session_factory, tmp_path)
    desk, phone = web.client("vr1"), web.client("vr1")
    token = issue_token("vr1", engine=web.engine, secret="test-secret")
    assert desk.get("/").status_code == phone.get("/").status_code == 200
    assert phone.post("/logout", data={"everywhere": "1"}).status_code == 302
    assert desk.get("/").status_code == 302
    assert Api(web.app.test_client(), token).get("/processes").status_code == 401
    # an administrator's deactivation ends her session at once
    desk = web.client("tc1")
    assert desk.get("/").status_code == 200
    admin_token = issue_token("admin", engine=web.engine, secret="test-secret")
    r = Api(web.app.test_client(), admin_token).call("PATCH", "/users/tc1", {"active": False})
    assert r.status_code == 200
    assert desk.get("/").status_code == 302
    # so does the admin page's
    desk = web.client("tch1")
    admin_page = web.client("admin")
    assert admin_page.post("/admin/users/tch1", data={"action": "deactivate"}).status_code == 302
    assert desk.get("/").status_code == 302
    # the logout page offers both
    page = web.client("tch2").get("/logout").get_data(as_text=True)
    assert 'name="everywhere" value="1"' in page


# ------------------------------------------------------------------ the shared throttle
class CountingHasher(PasswordHasher):
    """The real (cheap) Argon2 hasher, counting verifications."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=1024, parallelism=1)
        self.verified = 0

    def verify(self, hash: Any, password: Any) -> bool:  # noqa: A002 (argon2's own name)
        self.verified += 1
        return super().verify(hash, password)


@pytest.fixture
def counting_hasher():
    hasher = CountingHasher()
    old = auth.configure_hasher(hasher)
    yield hasher
    auth.configure_hasher(old)


def test_two_apps_on_one_database_share_the_throttle(engine, db_url, counting_hasher) -> None:
    first = api_env(engine)
    second_engine = build_engine(make_sa_engine(db_url))     # another process: its own pool and engine
    second = make_app(second_engine)
    a, b = first.as_(None), Api(second.test_client())
    counting_hasher.verified = 0     # (loading the org checked the passwords it already had)
    for i in range(5):
        client = (a, b)[i % 2]
        assert client.post("/token", {"username": "cadre1", "password": "guess"}).status_code == 401
    assert counting_hasher.verified == 5
    for client in (a, b):
        r = client.post("/token", {"username": "cadre1", "password": PASSWORD})
        assert r.status_code == 429 and error_of(r)["code"] == "too_many_attempts"
        assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert counting_hasher.verified == 5              # refused before Argon2 ran
    with second_engine.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(LoginAttempt)) == 5


def test_the_throttle_lifts_by_itself(engine) -> None:
    from hexie.workflows.throttle import PAIR_FAILURES, USER_FAILURES, LoginThrottle
    now = [1_000_000.0]
    throttle = LoginThrottle(build_engine(engine), clock=lambda: now[0])
    for _ in range(PAIR_FAILURES):
        throttle.failed("Cadre1", "10.0.0.1")
    assert not throttle.check("cadre1", "10.0.0.1")
    assert throttle.check("cadre1", "10.0.0.2")                 # another address: not this limit
    now[0] += 61
    assert throttle.check("cadre1", "10.0.0.1")                 # a minute later: may try again
    # a username guessed at from many addresses is held up everywhere ...
    throttle.succeeded("cadre1", "10.9.9.9")                    # ... but her own desk
    for i in range(USER_FAILURES):
        throttle.failed("cadre1", f"10.1.0.{i}")
    verdict = throttle.check("cadre1", "10.2.0.1")
    assert not verdict and verdict.reason == "username"
    assert throttle.check("cadre1", "10.9.9.9")
    now[0] += 15 * 60 + 1                                       # the window slides past them
    assert throttle.check("cadre1", "10.2.0.1")


def test_a_flood_from_one_address_is_refused_before_argon2(env: ApiEnv, counting_hasher) -> None:
    from hexie.workflows.throttle import ADDRESS_FAILURES, ADDRESS_RATE
    limit = min(ADDRESS_RATE, ADDRESS_FAILURES)
    client = env.as_(None)
    statuses = [client.post("/token", {"username": f"user{i}", "password": "x"},
                            environ_base={"REMOTE_ADDR": "10.7.7.7"}).status_code for i in range(limit + 5)]
    assert statuses[:limit] == [401] * limit and set(statuses[limit:]) == {429}
    assert counting_hasher.verified == limit
    # other addresses are not held up
    assert client.post("/token", {"username": "vrep1", "password": PASSWORD}).status_code == 200


def test_the_sign_in_form_and_the_api_share_it(session_factory, tmp_path) -> None:
    web = make_web_env(session_factory, tmp_path)
    client = web.app.test_client()
    for _ in range(3):
        assert client.post("/login", data={"username": "vr1", "password": "bad"}).status_code == 401
    api = Api(web.app.test_client())
    for _ in range(2):
        assert api.post("/token", {"username": "vr1", "password": "bad"}).status_code == 401
    refused = client.post("/login", data={"username": "vr1", "password": WEB_PASSWORD})
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 60
    assert api.post("/token", {"username": "vr1", "password": WEB_PASSWORD}).status_code == 429
    assert login(web.app.test_client(), "tc1").status_code == 302


# ------------------------------------------------------------------ the people API
def test_admin_creates_reads_and_lists_people(env: ApiEnv) -> None:
    admin = env.as_("admin")
    r = admin.post("/users", {"username": "newcadre", "name": "新干部", "email": "new@example.org",
                              "password": "long-enough-1", "roles": ["town_cadre@t02"],
                              "capabilities": ["sign_language"]})
    assert r.status_code == 201, r.get_json()
    body = r.get_json()
    assert body["roles"] == ["town_cadre@t02"] and body["email"] == "new@example.org" and body["active"]
    assert body["capabilities"] == ["sign_language"] and r.headers["Location"].endswith("/users/newcadre")
    assert admin.get("/users/newcadre").get_json() == body
    assert works(env, password_token(env, "newcadre", "long-enough-1"))
    page = admin.get("/users?per_page=5&page=2")
    assert page.status_code == 200 and len(page.get_json()) == 5
    assert page.headers["X-Total-Count"] == "17" and page.headers["X-Pages"] == "4"
    names = [u["username"] for u in admin.get("/users?org_unit=t02&per_page=200").get_json()]
    assert names == ["cadre2", "chair2", "newcadre", "police2", "vrep2"]
    assert [u["username"] for u in admin.get("/users?role=town_chair").get_json()] == ["chair1", "chair2"]
    assert [u["username"] for u in admin.get("/users?q=newc").get_json()] == ["newcadre"]


@pytest.mark.parametrize("body, field", [
    ({"username": "x1", "name": "某", "roles": ["town_cadre@t99"]}, "roles[0]"),
    ({"username": "x1", "name": "某", "roles": ["no_such_role@t01"]}, "roles[0]"),
    ({"username": "x1", "name": "某", "roles": ["town_cadre"]}, "roles[0]"),
    ({"username": "x 1", "name": "某"}, "username"),
    ({"username": "x1", "name": "某", "email": "not-an-address"}, "email"),
    ({"username": "x1", "name": "某", "capabilities": ["two words"]}, "capabilities[0]"),
    ({"username": "x1", "name": "某", "password": "short"}, "password"),
])
def test_the_org_file_rules_hold_with_details_per_field(env: ApiEnv, body: dict, field: str) -> None:
    r = env.as_("admin").post("/users", body)
    assert r.status_code == 422, r.get_json()
    error = error_of(r)
    assert field in error["details"] and " / " in error["details"][field]
    assert field.split("[")[0] in error["details"]   # "roles" as well as "roles[0]"
    assert env.as_("admin").get("/users/x1").status_code == 404          # nothing was written


def test_malformed_bodies_and_taken_names(env: ApiEnv) -> None:
    admin = env.as_("admin")
    r = admin.post("/users", {"username": "x1"})
    assert r.status_code == 400 and "name" in error_of(r)["details"]
    r = admin.post("/users", {"username": "x1", "name": "某", "admin": True})
    assert r.status_code == 400 and "admin" in error_of(r)["details"]
    r = admin.post("/users", {"username": "vrep1", "name": "某"})
    assert r.status_code == 409 and error_of(r)["details"] == {"username": "已存在 / exists"}
    r = admin.call("PATCH", "/users/admin", {"active": False})
    assert r.status_code == 409                                             # not herself
    r = admin.call("PATCH", "/users/admin", {"roles": ["town_cadre@t01"]})
    assert r.status_code == 409                                             # nor her last admin role


def test_managers_read_their_area_only_and_change_nothing(env: ApiEnv) -> None:
    chair = env.as_("chair1")
    names = [u["username"] for u in chair.get("/users?per_page=200").get_json()]
    assert names == ["cadre1", "cadre1b", "chair1", "police1", "vrep1"]
    assert chair.get("/users/vrep1").status_code == 200
    for path in ("/users/vrep2", "/users/manager", "/users/nobody"):
        r = chair.get(path)
        assert r.status_code == 404 and error_of(r)["code"] == "not_found"
    assert chair.call("PATCH", "/users/vrep1", {"name": "改名"}).status_code == 403
    assert chair.call("PATCH", "/users/vrep2", {"name": "改名"}).status_code == 404   # not hers: hidden
    assert chair.post("/users", {"username": "x1", "name": "某"}).status_code == 403
    assert [u["code"] for u in chair.get("/org-units").get_json()] == ["t01", "t01v01", "t01v02"]
    assert chair.call("PATCH", "/org-units/t01", {"name": "新名"}).status_code == 403
    assert chair.call("PATCH", "/org-units/t02", {"name": "新名"}).status_code == 404
    for who in ("vrep1", "cadre1", "finance"):
        r = env.as_(who).get("/users")
        assert r.status_code == 403 and error_of(r)["code"] == "forbidden"
        assert env.as_(who).get("/org-units").status_code == 403
    # the county manager reads the whole county
    assert env.as_("manager").get("/users").headers["X-Total-Count"] == "16"


def test_patch_changes_only_what_is_given(env: ApiEnv) -> None:
    admin = env.as_("admin")
    r = admin.call("PATCH", "/users/cadre1", {"email": "c1@example.org", "capabilities": ["lawyer"],
                                              "roles": ["town_cadre@t01", "town_chair@t01"]})
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["name"] == "cadre1" and body["roles"] == ["town_cadre@t01", "town_chair@t01"]
    assert body["email"] == "c1@example.org" and body["capabilities"] == ["lawyer"]
    assert env.actor("cadre1").holds("town_chair", "/county/t01/")
    r = admin.call("PATCH", "/users/cadre1", {"email": None, "name": "一号干部"})
    assert r.get_json()["email"] is None and r.get_json()["capabilities"] == ["lawyer"]
    assert r.get_json()["name"] == "一号干部"
    assert admin.call("PATCH", "/users/ghost", {"name": "x"}).status_code == 404
    r = admin.call("PATCH", "/users/cadre1", {"roles": ["town_cadre@nowhere"]})
    assert r.status_code == 422 and "roles[0]" in error_of(r)["details"]
    assert admin.get("/users/cadre1").get_json()["roles"] == ["town_cadre@t01", "town_chair@t01"]


def test_org_units_are_created_moved_and_checked(env: ApiEnv) -> None:
    admin = env.as_("admin")
    r = admin.post("/org-units", {"code": "t03", "name": "新镇", "level": "town", "parent": "county"})
    assert r.status_code == 201, r.get_json()
    assert r.get_json() == {"code": "t03", "name": "新镇", "level": "town", "parent": "county", "path": "/county/t03/"}
    assert admin.post("/org-units", {"code": "t03", "name": "x", "level": "town", "parent": "county"}).status_code == 409
    r = admin.post("/org-units", {"code": "t04", "name": "x", "level": "town", "parent": "nowhere"})
    assert r.status_code == 422 and "parent" in error_of(r)["details"]
    r = admin.post("/org-units", {"code": "t04", "name": "x", "level": "county", "parent": "county"})
    assert r.status_code == 422 and "level" in error_of(r)["details"]
    case_id = env.start_aid()                          # a case in t01v01 follows its village
    r = admin.call("PATCH", "/org-units/t01v01", {"parent": "t03"})
    assert r.status_code == 200 and r.get_json()["path"] == "/county/t03/t01v01/"
    from hexie.models import Case
    with env.engine.session_factory() as s:
        assert s.get(Case, case_id).org_path == "/county/t03/t01v01/"
    r = admin.call("PATCH", "/org-units/county", {"parent": "t03"})
    assert r.status_code == 422 and "cycle" in error_of(r)["details"]["parent"]
    units = admin.get("/org-units?per_page=3")
    assert units.headers["X-Total-Count"] == "7" and [u["code"] for u in units.get_json()] == ["county", "t01", "t01v02"]


def test_the_admin_page_shows_email_capabilities_and_live_sign_ins(session_factory, tmp_path) -> None:
    web = make_web_env(session_factory, tmp_path)
    admin_token = issue_token("admin", engine=web.engine, secret="test-secret")
    r = Api(web.app.test_client(), admin_token).call("PATCH", "/users/la1", {
        "email": "la1@example.org", "capabilities": ["lawyer", "sign_language"]})
    assert r.status_code == 200
    web.client("la1"), web.client("la1")                  # two sign-ins
    page = web.client("admin").get("/admin/users/la1").get_data(as_text=True)
    assert "la1@example.org" in page and "lawyer、sign_language" in page
    assert re.search(r"有效登录和令牌：\s*2", page)
