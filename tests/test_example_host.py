"""The example host application (examples/host_app): its own model, users and sign-in,
Hexie mounted with ``Hexie(app, engine=..., actor_loader=...)``, and a loan record
taken through the ``microloan`` process with :class:`WorkflowMixin` from start to a
final state.
"""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

from examples.host_app.app import HOST_USERS, LoanApplication, create_host_app
from hexie.models import make_session_factory
from hexie.workflows.engine import Engine
from hexie.workflows.errors import Conflict, Forbidden, Invalid
from hexie.workflows.tokens import issue_token

from .api_support import LOAN_APPLICATION, _registry

SECRET = "host-test-secret-0123456789"


@pytest.fixture
def host(engine, tmp_path: Path):
    """(app, hexie engine): Hexie on the test database, the host's own tables in a file of its own."""
    hexie_engine = Engine(make_session_factory(engine), _registry())
    app = create_host_app(hexie_engine, host_database_url=f"sqlite:///{tmp_path / 'host.db'}",
                          config={"TESTING": True, "SECRET_KEY": SECRET})
    return app, hexie_engine


def _sign_in(client, username: str) -> dict[str, str]:
    token = client.get("/csrf").get_json()["csrf_token"]
    r = client.post("/login", json={"username": username, "password": HOST_USERS[username]["password"]},
                    headers={"X-CSRFToken": token})
    assert r.status_code == 200, r.get_data(as_text=True)
    return {"X-CSRFToken": r.get_json()["csrf_token"]}


def test_mixin_adds_the_case_link_column() -> None:
    column = inspect(LoanApplication).columns["hexie_case_id"]
    assert column.nullable and column.index
    assert LoanApplication.workflow_process() == "microloan"


def test_a_loan_runs_through_the_mixin_from_start_to_repaid(host) -> None:
    app, hexie_engine = host
    state = app.extensions["hexie"]
    service, queries = state["service"], state["queries"]
    host_sessions = app.extensions["host_sessions"]

    def actor(name: str):
        return hexie_engine.actor(HOST_USERS[name]["hexie"])

    with host_sessions() as s:
        loan = LoanApplication(applicant_name="刘春花", amount=20000, created_by="lifang")
        s.add(loan)
        assert loan.workflow_state(queries, actor("lifang")) is None and loan.workflow_actions(queries, actor("lifang")) == []
        with pytest.raises(Conflict):
            loan.fire_workflow(service, actor("lifang"), "submit")  # nothing started yet
        with pytest.raises(Forbidden):  # a town chair is not among the starters of microloan
            loan.start_workflow(service, actor("chenjing"), "t01v01", LOAN_APPLICATION)
        assert loan.hexie_case_id is None
        with pytest.raises(Invalid):
            loan.start_workflow(service, actor("lifang"), "t01v01", {**LOAN_APPLICATION, "applicant_age": 5})
        assert loan.hexie_case_id is None
        case_id = loan.start_workflow(service, actor("lifang"), "t01v01", LOAN_APPLICATION)
        s.commit()  # the host commits its own session
        assert loan.hexie_case_id == case_id
        with pytest.raises(Conflict):
            loan.start_workflow(service, actor("lifang"), "t01v01", LOAN_APPLICATION)

    steps = [
        ("lifang", "submit", {}, None, "eligibility_check"),
        ("wangmin", "eligible", {"local_resident": True, "credit_record": "good",
                                 "eligibility_notes": "本县常住，信用良好"}, None, "mentor_pairing"),
        ("chenjing", "paired", {"mentor_kind": "skilled_woman", "mentor": "张大姐（养殖能手）",
                                "pairing_date": "2026-03-10"}, None, "coop_referral"),
        ("zhengli", "referred", {"coop_branch": "城关信用社", "coop_assessment": "favourable"}, None, "approval"),
        ("liuhong", "approve", {}, "同意", "disbursement"),
        ("qianhui", "disburse", {"disbursed_amount": "20000.00", "loan_contract_number": "XD-2026-0317",
                                 "disbursed_on": "2026-03-20", "maturity_date": "2027-03-20"}, None, "repaying"),
        ("qianhui", "report_repaid", {}, "提前一次还清", "repaid"),
    ]
    with host_sessions() as s:
        loan = s.get(LoanApplication, 1)  # a fresh read: only the id links the record to its case
        for name, trigger, data, comment, expected in steps:
            result = loan.fire_workflow(service, actor(name), trigger, data=data, comment=comment)
            assert result["outcome"] == "moved", (trigger, result)
            assert loan.workflow_state(queries, actor(name)) == expected, trigger
        assert loan.workflow_actions(queries, actor("qianhui")) == []
        history = loan.workflow_history(queries, actor("liuhong"))
        assert [e["trigger"] for e in history if e["kind"] == "fired"] == [t for _, t, *_ in steps]
        case = loan.workflow_case(queries, actor("liuhong"))
        assert case["closed_at"] is not None and case["data"]["loan_amount"] == "20000.00"


def test_the_host_routes_and_hexie_mounted_inside_it(host) -> None:
    app, hexie_engine = host
    client = app.test_client()
    assert client.get("/loans").status_code == 401
    headers = _sign_in(client, "lifang")
    r = client.post("/loans", json={"applicant_name": "刘春花", "amount": "20000", "org_unit": "t01v01",
                                    "data": {k: v for k, v in LOAN_APPLICATION.items() if k != "applicant_name"}},
                    headers=headers)
    assert r.status_code == 201, r.get_json()
    loan = r.get_json()
    assert loan["state"] == "application" and "submit" in loan["actions"] and loan["hexie_case_id"]
    refused = client.post("/loans", json={"applicant_name": "x", "amount": "5", "org_unit": "t01v01"},
                          headers=headers)
    assert refused.status_code == 422  # Hexie refused: the host record is rolled back too
    assert [row["id"] for row in client.get("/loans").get_json()] == [loan["id"]]
    r = client.post(f"/loans/{loan['id']}/actions/submit", json={}, headers=headers)
    assert r.status_code == 200 and r.get_json()["state"] == "eligibility_check"
    assert client.post(f"/loans/{loan['id']}/actions/eligible", json={}, headers=headers).status_code == 403

    # Hexie's screens see the host's signed-in person through the actor_loader
    assert app.extensions["hexie"].actor_loader is not None
    # and its API is mounted under the host's prefix, with Hexie's own tokens
    with app.app_context():  # the host's engine and key (its SECRET_KEY: no HEXIE_SECRET_KEY set)
        token = issue_token("wangmin")
    r = client.get("/hexie/api/v1/tasks?view=available", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200
    assert [t["case_id"] for t in r.get_json()] == [loan["hexie_case_id"]]
    assert client.get("/hexie/api/v1/openapi.json").get_json()["servers"][0]["url"] == "/hexie/api/v1"
