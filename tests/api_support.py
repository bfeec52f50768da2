"""Shared set-up for the API tests: an engine on the real definitions, a small org,
a Flask app with the API mounted at /api/v1, and a thin JSON client.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import func, select

from hexie.models import AuditEvent, Case, Task, Vote, make_session_factory, utcnow
from hexie.workflows.engine import Engine
from hexie.workflows.loader import load_definitions_strict
from hexie.workflows.org import load_org
from hexie.workflows.queries import CaseQueries
from hexie.workflows.service import WorkflowService
from hexie.workflows.errors import NotFound
from hexie.workflows.tokens import issue_token, make_token

DEFINITIONS = Path(__file__).resolve().parent.parent / "definitions"
SECRET = "api-test-secret-0123456789abcdef"
PASSWORD = "s3cret-pass"

# One user per role, a county with two towns and their villages.
USERS = {
    "vrep1": ["village_rep@t01v01"],
    "vrep2": ["village_rep@t02v01"],
    "cadre1": ["town_cadre@t01"],
    "cadre1b": ["town_cadre@t01"],
    "cadre2": ["town_cadre@t02"],
    "chair1": ["town_chair@t01"],
    "chair2": ["town_chair@t02"],
    "ccadre": ["county_cadre@county"],
    "manager": ["county_manager@county"],
    "manager2": ["county_manager@county"],
    "finance": ["finance_officer@county"],
    "police1": ["police_liaison@t01"],
    "police2": ["police_liaison@t02"],
    "legal": ["legal_aid@county"],
    "court": ["court_liaison@county"],
    "admin": ["admin@county"],
}
ORG = {
    "units": [
        {"code": "county", "name": "某县", "level": "county"},
        {"code": "t01", "name": "城关镇", "level": "town", "parent": "county"},
        {"code": "t01v01", "name": "东村", "level": "village", "parent": "t01"},
        {"code": "t01v02", "name": "西村", "level": "village", "parent": "t01"},
        {"code": "t02", "name": "河口镇", "level": "town", "parent": "county"},
        {"code": "t02v01", "name": "南村", "level": "village", "parent": "t02"},
    ],
    "users": [{"username": u, "name": u, "password": PASSWORD, "roles": roles} for u, roles in USERS.items()],
}

# Valid first forms, and the forms of later steps, of the processes the tests drive.
AID_APPLICATION = {"applicant_name": "王秀英", "id_number": "110101199003071234", "household_size": 4,
                   "declared_annual_income": "6000.00", "hardships": ["illness"], "self_reliant": False}
AID_SURVEY = {"survey_date": "2026-03-05", "verified_annual_income": "5600.00", "survey_findings": "属实",
              "aid_programme": "consolation"}
AID_DISBURSE = {"fund": "donations_round1", "aid_kind": "cash", "approved_amount": "200.00",
                "disbursed_on": "2026-03-20", "voucher_number": "记-2026-031"}
DV_INTAKE = {"channel": "hotline", "received_at": "2026-03-02T09:00", "victim_name": "某女士",
             "abuser_relation": "spouse", "violence_kinds": ["physical"], "incident_description": "……",
             "risk_level": "medium", "consent_to_share": True, "intake_assessment": "需转介"}
LOAN_APPLICATION = {"applicant_name": "刘春花", "id_number": "110101199003071234", "phone": "13800138000",
                    "applicant_age": 35, "business_kind": "farming", "business_plan": "养鸡",
                    "loan_amount": "20000.00", "term_months": 12, "guarantee": "credit"}


class Clock:
    """A clock the test moves by hand (the engine's ``clock``)."""

    def __init__(self, now: datetime | None = datetime(2026, 3, 2, 9, 0)) -> None:
        self.now = now  # None: follow real time

    def __call__(self) -> datetime:
        return self.now if self.now is not None else utcnow()

    def advance(self, **kw: Any) -> None:
        self.now += timedelta(**kw)


@lru_cache(maxsize=1)
def _registry() -> Any:
    """The project's definitions, parsed once per test session (the registry is never mutated)."""
    return load_definitions_strict(DEFINITIONS)


def build_engine(sa_engine: Any, clock: Any = None) -> Engine:
    """A workflow engine on the test database with the project's definitions and the test org."""
    engine = Engine(make_session_factory(sa_engine), _registry(),
                    **({"clock": clock} if clock is not None else {}))
    engine.sync_definitions()
    roles = engine.registry.roles
    with engine.transaction() as s:
        load_org(s, ORG, roles=list(roles.roles), levels=list(roles.levels))
    return engine


def make_app(engine: Engine, **extra: Any) -> Flask:
    """The app (API at /api/v1) on ``engine``.

    Webhook delivery is off unless asked for (``HEXIE_WEBHOOKS=True``): the webhook tests
    start their own dispatcher with a policy of their choosing.
    """
    from hexie.web import create_app
    config = {"TESTING": True, "SECRET_KEY": SECRET, "WTF_CSRF_ENABLED": False, "HEXIE_WEBHOOKS": False, **extra}
    return create_app(engine=engine, config=config)


@dataclass
class Api:
    """A JSON client for one user (or nobody) against /api/v1."""

    client: Any
    token: str | None = None
    prefix: str = "/api/v1"
    headers: dict[str, str] = field(default_factory=dict)

    def call(self, method: str, path: str, json: Any = None, **kw: Any):
        headers = dict(self.headers)
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(kw.pop("headers", {}))
        return self.client.open(self.prefix + path, method=method, json=json, headers=headers, **kw)

    def get(self, path: str, **kw: Any):
        return self.call("GET", path, **kw)

    def post(self, path: str, json: Any = None, **kw: Any):
        return self.call("POST", path, json=json, **kw)

    def delete(self, path: str, **kw: Any):
        return self.call("DELETE", path, **kw)


@dataclass
class ApiEnv:
    engine: Engine
    app: Flask
    service: WorkflowService
    queries: CaseQueries
    clock: Clock

    def as_(self, username: str | None) -> Api:
        try:
            token = issue_token(username, engine=self.engine, secret=SECRET) if username else None
        except NotFound:  # an unknown or inactive user: a well-signed token with no row (refused)
            token = make_token(SECRET, username)
        return Api(self.app.test_client(), token)

    def actor(self, username: str):
        return self.engine.actor(username)

    def start_aid(self, username: str = "vrep1", unit: str = "t01v01", **data: Any) -> int:
        return self.service.start_case(self.actor(username), "poor_mother_aid", unit, {**AID_APPLICATION, **data})

    def start_dv(self, username: str = "ccadre", unit: str = "t01", consent: bool = True) -> int:
        """A complaint at intake; ``consent``: her consent to every agency recorded at intake
        (so that its referrals open when the case is referred; protection.md)."""
        case_id = self.service.start_case(self.actor(username), "dv_complaint", unit, dict(DV_INTAKE))
        if consent:
            consent_to_all(self.engine, self.actor(username), case_id)
        return case_id

    def to_approval(self, case_id: int, **survey: Any) -> None:
        """application -> home_survey -> approval (vrep1 submits, cadre1 surveys)."""
        self.service.fire(self.actor("vrep1"), case_id, "submit")
        self.service.fire(self.actor("cadre1"), case_id, "surveyed", data={**AID_SURVEY, **survey})

    def state_of(self, case_id: int) -> str:
        with self.engine.session_factory() as s:
            return s.get(Case, case_id).state

    def open_task(self, case_id: int) -> int:
        with self.engine.session_factory() as s:
            return s.scalar(select(Task.id).where(Task.case_id == case_id,
                                                  Task.status.in_(("offered", "allocated"))).order_by(Task.id))

    def snapshot(self, case_id: int) -> tuple:
        """Everything about a case that a refused call must leave as it was."""
        with self.engine.session_factory() as s:
            case = s.get(Case, case_id)
            tasks = s.execute(select(Task.id, Task.status, Task.assignee_id).where(Task.case_id == case_id)
                              .order_by(Task.id)).all()
            return (case.state, dict(case.data), case.lock_version, tuple(map(tuple, tasks)),
                    s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.case_id == case_id)),
                    s.scalar(select(func.count()).select_from(Vote).where(Vote.case_id == case_id)))


def api_env(sa_engine: Any) -> ApiEnv:
    """Engine (on a hand-moved clock), org and app, on the test database ``sa_engine``."""
    clock = Clock()
    engine = build_engine(sa_engine, clock)
    app = make_app(engine)
    state = app.extensions["hexie"]
    return ApiEnv(engine, app, state["service"], state["queries"], clock)


def error_of(response) -> dict[str, Any]:
    """The error body, checked for its contract shape."""
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    assert isinstance(body["error"]["details"], dict)
    return body["error"]


def consent_to_all(engine, actor, case_id: int) -> None:
    """Record the survivor's consent (services) for every agency of the case's process."""
    from hexie.workflows.consent import Protection
    protection = Protection(engine)
    process = engine.processes["dv_complaint"]
    for agency, _ in process.agencies:
        protection.record_consent(actor, case_id, agency)
