"""The plugin contract's language and API parts (host.md, definitions.md "Additions"): roles
flagged in roles.yaml, ``host_editable``, ``starters: [system]``, business keys in the API.
The host side (one transaction, locks, the review box) is in test_example_host.py."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import hexie
from hexie.workflows.loader import load_definitions, load_roles

from .api_support import AID_APPLICATION, ApiEnv, api_env, error_of
from .test_loader import VALID, check, load

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / d for d in ("workflows", "models", "web")]


@pytest.fixture(scope="module")
def roles():
    spec, diagnostics = load_roles(ROOT / "tests" / "fixtures" / "defs" / "roles.yaml")
    assert diagnostics == []
    return spec


def test_the_federations_roles_are_flagged_not_named():
    spec, diagnostics = load_roles(ROOT / "definitions" / "roles.yaml")
    assert diagnostics == []
    assert spec.managers == {"county_manager", "town_chair", "admin"}
    assert spec.overseers == {"county_manager"}
    assert spec.admins == {"admin"}
    # no code names a role: the flags decide
    for folder in SOURCES:
        for path in folder.rglob("*.py"):
            if path.name == "demo.py":      # the demo county's data, not rules
                continue
            text = path.read_text(encoding="utf-8")
            for role in ("county_manager", "town_chair"):
                assert role not in text, f"{path} names {role}"
            assert not re.search(r"""["']admin["']\s+(not\s+)?in\s+[\w.]*(all_roles|roles)\b""", text), f"{path} tests for 'admin'"


def test_a_role_flag_must_be_a_boolean(tmp_path):
    (tmp_path / "roles.yaml").write_text("levels: [county]\nroles:\n  boss: {label: B, manager: often}\n",
                                         encoding="utf-8")
    spec, (d,) = load_roles(tmp_path / "roles.yaml")
    assert spec is None and (d.line, d.column, d.path) == (3, 29, "roles.boss.manager")
    assert "expected true or false" in d.message


def test_host_editable_and_system_starters_load(roles):
    text = VALID.replace("title: Demo", "title: Demo\nstarters: [system]").replace(
        "  - name: draft\n", "  - name: draft\n    host_editable: true\n")
    spec, diagnostics = load(text, roles)
    assert diagnostics == [] and spec.host_started and spec.state("draft").host_editable
    assert not spec.state("done").host_editable


def test_host_editable_of_the_wrong_type_is_reported_at_its_place(roles):
    text = VALID.replace("  - name: draft\n", "  - name: draft\n    host_editable: sometimes\n")
    check(text, roles, 7, "sometimes", "states[0].host_editable", "expected true or false")


def test_the_public_names_are_importable_from_hexie():
    for name in ("Hexie", "WorkflowMixin", "create_engine", "Actor", "NotFound", "Forbidden", "Conflict",
                 "Invalid", "WorkflowLocked", "HexieError"):
        assert getattr(hexie, name) is not None and name in dir(hexie)
    assert issubclass(hexie.WorkflowLocked, hexie.Conflict)


@pytest.fixture
def env(engine) -> ApiEnv:
    return api_env(engine)


def test_business_key_through_the_api(env: ApiEnv) -> None:
    client = env.as_("vrep1")
    body = {"process": "poor_mother_aid", "org_unit": "t01v01", "data": AID_APPLICATION, "business_key": "ERP-42"}
    r = client.post("/cases", body)
    assert r.status_code == 201, r.get_json()
    case = r.get_json()
    assert case["business_key"] == "ERP-42" and case["host_fields"] == []
    again = client.post("/cases", body)
    assert again.status_code == 409
    error = error_of(again)
    assert "ERP-42" in error["message"] and "已有" in error["message"] and "already exists" in error["message"]
    other = client.post("/cases", {**body, "business_key": None})
    assert other.status_code == 201 and other.get_json()["business_key"] is None
    listed = client.get("/cases?business_key=ERP-42")
    assert [c["id"] for c in listed.get_json()] == [case["id"]] and listed.get_json()[0]["business_key"] == "ERP-42"
    assert client.get("/cases?business_key=ERP-4").get_json() == []
    assert [c["id"] for c in client.get("/cases?search=ERP-4").get_json()] == [case["id"]]
    assert client.post("/cases", {**body, "business_key": ""}).status_code == 400
    spec = client.get("/openapi.json").get_json()["components"]["schemas"]
    assert "business_key" in spec["CaseStart"]["properties"] and "business_key" in spec["Case"]["properties"]


def test_webhook_payloads_carry_the_business_key(env: ApiEnv) -> None:
    events = []
    env.engine.subscribe(events.append)
    case_id = env.service.start_case(env.actor("vrep1"), "poor_mother_aid", "t01v01", AID_APPLICATION,
                                     business_key="ERP-7")
    env.service.fire(env.actor("vrep1"), case_id, "submit")
    assert events and {e["business_key"] for e in events} == {"ERP-7"}


def test_a_person_the_hosts_actor_loader_names_becomes_known_to_hexie(env: ApiEnv) -> None:
    """host.md: ``engine.actor(username)`` returns a person "loaded from an org file, the people
    API or the host's actor_loader"; the host says who is signed in and her roles (no password).
    A loader that builds the Actor itself makes her row, keeps her roles in line with what it
    says, and someone Hexie deactivated is signed in as nobody."""
    from flask import Flask
    from sqlalchemy import func, select

    from hexie.models import AuditEvent, User
    from hexie.workflows.access import Assignment

    engine = env.engine
    says = {"actor": hexie.Actor(username="carol_host", name="Carol 陈",
                                 assignments=(Assignment("town_chair", "t01", "/county/t01/", "town"),))}
    app = Flask("a_host")
    app.config.update(SECRET_KEY="host-secret-0123456789abcdef", HEXIE_URL_PREFIX="/hx")
    hexie.Hexie(app, engine=engine, actor_loader=lambda: says["actor"])
    client = app.test_client()
    with pytest.raises(hexie.NotFound):
        engine.actor("carol_host")
    assert client.get("/hx/").status_code == 200
    carol = engine.actor("carol_host")
    assert carol.user_id is not None and carol.name == "Carol 陈"
    assert [(a.role, a.unit_code) for a in carol.assignments] == [("town_chair", "t01")]
    with engine.session_factory() as s:           # Hexie keeps no password for her
        assert s.scalars(select(User.password_hash).where(User.username == "carol_host")).one() == "!"
    with app.app_context():
        token = hexie.issue_token("carol_host")
    assert client.get("/hx/api/v1/cases", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    # the host moves her: the next request brings Hexie in line
    says["actor"] = hexie.Actor(username="carol_host", name="Carol 陈",
                                assignments=(Assignment("county_cadre", "county", "/county/", "county"),))
    assert client.get("/hx/").status_code == 200
    assert [(a.role, a.unit_code) for a in engine.actor("carol_host").assignments] == [("county_cadre", "county")]
    # the capabilities it names (a task's requires:) are hers in Hexie too; naming none keeps them
    says["actor"] = hexie.Actor(username="carol_host", name="Carol 陈", capabilities=frozenset({"sign_language"}),
                                assignments=(Assignment("county_cadre", "county", "/county/", "county"),))
    assert client.get("/hx/").status_code == 200
    assert engine.actor("carol_host").capabilities == frozenset({"sign_language"})
    with engine.session_factory() as s:
        assert s.scalars(select(User.capabilities).where(User.username == "carol_host")).one() == ["sign_language"]
    says["actor"] = hexie.Actor(username="carol_host", name="Carol 陈",
                                assignments=(Assignment("county_cadre", "county", "/county/", "county"),))
    assert client.get("/hx/").status_code == 200
    assert engine.actor("carol_host").capabilities == frozenset({"sign_language"})
    # roles Hexie does not know: a 422 naming them, and nothing written
    with engine.session_factory() as s:
        events = s.scalar(select(func.count(AuditEvent.id)))
    says["actor"] = hexie.Actor(username="carol_host", assignments=(Assignment("sultan", "t01", "/county/t01/", "town"),))
    refused = client.get("/hx/")
    assert refused.status_code == 422
    assert [(a.role, a.unit_code) for a in engine.actor("carol_host").assignments] == [("county_cadre", "county")]
    with engine.session_factory() as s:
        assert s.scalar(select(func.count(AuditEvent.id))) == events
    # deactivated in Hexie (the people API): the loader's word no longer signs her in
    assert env.as_("admin").call("PATCH", "/users/carol_host", json={"active": False}).status_code == 200
    says["actor"] = hexie.Actor(username="carol_host", assignments=(Assignment("town_chair", "t01", "/county/t01/", "town"),))
    assert client.get("/hx/").status_code == 401
    with pytest.raises(hexie.NotFound):
        engine.actor("carol_host")
