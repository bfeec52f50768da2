"""Reusable set-up for web tests: a small county, one user per role, an app, sign-in.

    env = make_web_env(session_factory, tmp_path)       # app + engine on the test database
    client = env.app.test_client()
    login(client, "vr1")                                 # password PASSWORD
    token = csrf_token(client)                           # when CSRF is on

The org: county ``county`` with towns ``t01`` (villages ``t01v01``, ``t01v02``) and
``t02`` (village ``t02v01``). Users (all with password :data:`PASSWORD`):

=========  ======================  =============
username   role                    at
=========  ======================  =============
vr1        village_rep             t01v01
vr1b       village_rep             t01v02
vr2        village_rep             t02v01
tc1        town_cadre              t01
tch1       town_chair              t01
tc2        town_cadre              t02
tch2       town_chair              t02
cc1        county_cadre            county
cm1, cm2   county_manager          county
fo1        finance_officer         county
la1        legal_aid               county
pl1        police_liaison          t01
cl1        court_liaison           county
admin      admin                   county
=========  ======================  =============
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from hexie.workflows.engine import Engine
from hexie.workflows.loader import load_definitions_strict
from hexie.workflows.org import load_org
from hexie.workflows.queries import CaseQueries
from hexie.workflows.service import WorkflowService

DEFINITIONS = Path(__file__).resolve().parent.parent / "definitions"
PASSWORD = "s3cret-pass-1"

UNITS = [
    {"code": "county", "name": "和谐县", "level": "county"},
    {"code": "t01", "name": "城关镇", "level": "town", "parent": "county"},
    {"code": "t02", "name": "龙泉镇", "level": "town", "parent": "county"},
    {"code": "t01v01", "name": "东村", "level": "village", "parent": "t01"},
    {"code": "t01v02", "name": "西村", "level": "village", "parent": "t01"},
    {"code": "t02v01", "name": "南村", "level": "village", "parent": "t02"},
]

#: username -> (name, [role@unit, ...])
PEOPLE: dict[str, tuple[str, list[str]]] = {
    "vr1": ("李芳", ["village_rep@t01v01"]),
    "vr1b": ("黄梅", ["village_rep@t01v02"]),
    "vr2": ("赵丽", ["village_rep@t02v01"]),
    "tc1": ("王敏", ["town_cadre@t01"]),
    "tch1": ("陈红", ["town_chair@t01"]),
    "tc2": ("刘静", ["town_cadre@t02"]),
    "tch2": ("何兰", ["town_chair@t02"]),
    "cc1": ("周霞", ["county_cadre@county"]),
    "cm1": ("张主席", ["county_manager@county"]),
    "cm2": ("孙副主席", ["county_manager@county"]),
    "fo1": ("钱会计", ["finance_officer@county"]),
    "la1": ("吴律师", ["legal_aid@county"]),
    "pl1": ("郑警官", ["police_liaison@t01"]),
    "cl1": ("冯法官", ["court_liaison@county"]),
    "admin": ("管理员", ["admin@county"]),
}


def org_data() -> dict[str, Any]:
    """The test org in the org-file shape (interfaces.md)."""
    return {"units": UNITS,
            "users": [{"username": u, "name": n, "password": PASSWORD, "roles": roles}
                      for u, (n, roles) in PEOPLE.items()]}


class Clock:
    """A clock the test moves by hand (naive UTC, like the engine's)."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw: float) -> None:
        self.now += timedelta(**kw)


@dataclass
class WebEnv:
    app: Flask
    engine: Engine
    service: WorkflowService
    queries: CaseQueries
    clock: Clock

    def client(self, username: str | None = None) -> FlaskClient:
        """A test client, signed in as ``username`` when given."""
        client = self.app.test_client()
        if username:
            login(client, username)
        return client

    def actor(self, username: str):
        return self.engine.actor(username)


def make_engine(session_factory, clock: Clock | None = None) -> Engine:
    """An engine on the real definitions with the test org loaded."""
    engine = Engine(session_factory, load_definitions_strict(DEFINITIONS),
                    **({"clock": clock} if clock else {}))
    engine.sync_definitions()
    roles = engine.registry.roles
    with engine.transaction() as s:
        load_org(s, org_data(), roles=list(roles.roles), levels=list(roles.levels))
    return engine


def make_web_env(session_factory, tmp_path: Path, csrf: bool = False, **config: Any) -> WebEnv:
    """An app on the test database. CSRF is off unless ``csrf=True`` (then use :func:`csrf_token`)."""
    from hexie.web import create_app

    clock = Clock(datetime(2026, 3, 2, 1, 0))
    engine = make_engine(session_factory, clock)
    settings = {
        "TESTING": True, "SECRET_KEY": "test-secret", "WTF_CSRF_ENABLED": csrf,
        "HEXIE_UPLOAD_DIR": str(tmp_path / "uploads"), "SERVER_NAME": None,
    }
    settings.update(config)
    app = create_app(engine=engine, config=settings)
    return WebEnv(app, engine, WorkflowService(engine), CaseQueries(engine), clock)


_TOKEN = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')


def csrf_token(client: FlaskClient, path: str = "/login") -> str:
    """The CSRF token a page of ``path`` carries (for POSTs when CSRF is on)."""
    page = client.get(path).get_data(as_text=True)
    match = _TOKEN.search(page)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def login(client: FlaskClient, username: str, password: str = PASSWORD, follow: bool = False):
    """Sign in through the form (with the CSRF token when the app checks it)."""
    data = {"username": username, "password": password}
    if client.application.config.get("WTF_CSRF_ENABLED", True):
        data["csrf_token"] = csrf_token(client, "/login")
    response = client.post("/login", data=data, follow_redirects=follow)
    return response
