"""The example host (examples/host_app), an ordinary Flask ERP with Hexie mounted in it (host.md).

Its own top-level ``models.py``, ``users``/``tasks``/``cases``/``alembic_version`` tables and
Alembic history in the same database as Hexie's ``hexie_*`` tables, its own login and pages; a
purchase request approved by the department head, and by finance above 5000, driven through the
host's pages (Flask test client, CSRF on), the mixin and Hexie's API, on SQLite and PostgreSQL.
"""
from __future__ import annotations

import re
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, inspect, select, text

from hexie.models import AuditEvent, Case as HexieCase, make_engine
from hexie.workflows.errors import Conflict, Invalid, WorkflowLocked
from hexie.workflows.tokens import issue_token

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "host_app"
SECRET = "host-test-secret-0123456789"


def _example():
    """The example's modules, imported as the example runs them: ``models`` is top-level."""
    if str(EXAMPLE) not in sys.path:
        sys.path.insert(0, str(EXAMPLE))
    sys.modules.pop("app", None)
    import app as host_app  # noqa: PLC0415
    import models  # noqa: PLC0415
    return host_app, models


@pytest.fixture
def host(empty_db_url):
    host_app, models = _example()
    app = host_app.create_app(empty_db_url, {"TESTING": True, "SECRET_KEY": SECRET})
    yield app, models
    app.extensions["host_db_engine"].dispose()
    with app.extensions["hexie"].engine.session_factory() as s:
        s.get_bind().dispose()


def _csrf(page: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def _sign_in(client, username: str) -> None:
    page = client.get("/login").get_data(as_text=True)
    r = client.post("/login", data={"username": username, "password": f"{username}-pass-1", "csrf_token": _csrf(page)})
    assert r.status_code == 302, r.get_data(as_text=True)


def _case(app, pr_id: int):
    Sessions = app.extensions["host_sessions"]
    engine = app.extensions["hexie"].engine
    with Sessions() as db, engine.session_factory() as s:
        case_id = db.execute(text("SELECT hexie_case_id FROM purchase_requests WHERE id = :i"), {"i": pr_id}).scalar()
        return s.get(HexieCase, case_id)


def _actor(app, username):
    return app.extensions["hexie"].engine.actor(username)


def test_the_host_keeps_its_own_models_tables_and_alembic_in_the_same_database(host, empty_db_url):
    app, models = host
    assert Path(models.__file__).parent == EXAMPLE            # the host's models.py, not hexie.models
    import hexie.models
    assert hexie.models.__name__ == "hexie.models" and hexie.models is not models
    engine = make_engine(empty_db_url)
    try:
        names = set(inspect(engine).get_table_names())
        assert {"users", "tasks", "cases", "purchase_requests", "alembic_version",
                "hexie_cases", "hexie_users", "hexie_alembic_version"} <= names
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "h001"
            assert conn.execute(text("SELECT count(*) FROM users")).scalar() == 5
            assert conn.execute(text("SELECT count(*) FROM hexie_users")).scalar() == 5
    finally:
        engine.dispose()


def test_a_host_rollback_leaves_no_case_and_no_event(host):
    app, models = host
    engine = app.extensions["hexie"].engine
    published = []
    engine.subscribe(published.append)
    alice = _actor(app, "alice")
    Sessions = app.extensions["host_sessions"]
    with Sessions() as db:
        pr = models.PurchaseRequest(title="笔记本电脑", amount=Decimal("8000.00"), department="it", requester_id=1)
        db.add(pr)
        case_id = pr.start_workflow(alice, "it", session=db)
        assert case_id and pr.hexie_case_id == case_id and published == []
        db.rollback()
    with engine.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(HexieCase)) == 0
        assert s.scalar(select(func.count()).select_from(AuditEvent)) == 0
    assert published == []
    with Sessions() as db:
        assert db.scalar(select(func.count()).select_from(models.PurchaseRequest)) == 0

        # the same, committed: record and case together, the events after the commit
        pr = models.PurchaseRequest(title="笔记本电脑", amount=Decimal("8000.00"), department="it", requester_id=1)
        db.add(pr)
        case_id = pr.start_workflow(alice, "it", session=db)
        pr.fire_workflow(alice, "submit", session=db)
        assert published == []
        db.commit()
    kinds = [e["event"] for e in published]
    assert kinds[:2] == ["case_started", "task_created"] and "state_changed" in kinds
    assert {e["business_key"] for e in published} == {f"PR-{pr.id}"}
    case = _case(app, pr.id)
    assert case.id == case_id and case.state == "head_review" and case.business_key == f"PR-{pr.id}"
    assert case.data["amount"] == "8000.00" and case.host_fields == ["amount", "title"]

    # a refused call writes nothing of Hexie's and keeps the host's own pending work
    with Sessions() as db:
        other = models.PurchaseRequest(title="纸张", amount=Decimal("-5"), department="it", requester_id=1)
        db.add(other)
        with pytest.raises(Invalid):
            other.start_workflow(alice, "it", session=db)
        assert other.hexie_case_id is None
        db.commit()
        assert db.get(models.PurchaseRequest, other.id) is not None
    with engine.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(HexieCase)) == 1

        # a second case with the same business key is a conflict
    with Sessions() as db:
        twin = models.PurchaseRequest(title="x", amount=Decimal("1"), department="it", requester_id=1)
        db.add(twin)
        with pytest.raises(Conflict) as refused:
            twin.start_workflow(alice, "it", session=db, business_key=f"PR-{pr.id}")
        assert "PR-" in refused.value.zh and "already exists" in refused.value.en
        db.rollback()


def test_a_mapped_field_is_locked_while_under_review(host):
    app, models = host
    alice = _actor(app, "alice")
    Sessions = app.extensions["host_sessions"]
    with Sessions() as db:
        pr = models.PurchaseRequest(title="显示器", amount=Decimal("800.00"), department="it", requester_id=1)
        db.add(pr)
        pr.start_workflow(alice, "it", session=db)
        db.commit()
        pr.amount = Decimal("900.00")          # draft is host_editable: fine
        db.flush()
        assert pr.sync_workflow(alice, session=db) == {"amount": ["800.00", "900.00"]}
        pr.fire_workflow(alice, "submit", session=db)
        db.commit()
    with Sessions() as db:
        pr = db.get(models.PurchaseRequest, pr.id)
        pr.amount = Decimal("100.00")
        with pytest.raises(WorkflowLocked) as locked:
            db.flush()
        assert locked.value.details["fields"] == ["amount"] and locked.value.status == 409
        db.rollback()
        pr = db.get(models.PurchaseRequest, pr.id)
        pr.department = "ops"                   # not a mapped attribute: free
        db.commit()
    # an action joined to a session that has written nothing yet is rolled back with it too
    pr_id = pr.id
    with Sessions() as db:
        pr = db.get(models.PurchaseRequest, pr_id)
        pr.fire_workflow(_actor(app, "bob"), "return", comment="再议", session=db)
        db.rollback()
    case = _case(app, pr_id)
    assert case.state == "head_review" and case.data["amount"] == "900.00"
    with app.extensions["hexie"].engine.session_factory() as s:
        synced = s.scalars(select(AuditEvent).where(AuditEvent.case_id == case.id, AuditEvent.kind == "synced")).one()
        assert synced.actor == "alice" and synced.changes == {"amount": ["800.00", "900.00"]}


def test_a_purchase_request_through_the_host_pages_the_review_box_and_the_api(host):
    app, models = host
    client = app.test_client()
    assert client.get("/").status_code == 302                      # the host's own login
    _sign_in(client, "alice")
    page = client.get("/requests/new").get_data(as_text=True)
    r = client.post("/requests/new", data={"title": "投影仪", "amount": "800", "submit": "1", "csrf_token": _csrf(page)})
    assert r.status_code == 302, r.get_data(as_text=True)
    pr_id = int(r.headers["Location"].rsplit("/", 1)[1])
    assert _case(app, pr_id).state == "head_review"

    # under review: the host's own form refuses to change the amount (WorkflowLocked)
    page = client.get(f"/requests/{pr_id}").get_data(as_text=True)
    assert 'class="hexie-review"' in page and "hexie-review.css" in page and "部门负责人审批" in page
    r = client.post(f"/requests/{pr_id}", data={"title": "投影仪", "amount": "9000", "csrf_token": _csrf(page)})
    assert r.status_code == 409 and "under review" in r.get_data(as_text=True)
    assert _case(app, pr_id).data["amount"] == "800.00"

    # the department head returns it from the review box on the host's page (comment required)
    bob = app.test_client()
    _sign_in(bob, "bob")
    page = bob.get(f"/requests/{pr_id}").get_data(as_text=True)
    assert "可办理：Bob 王" in page                                     # who may act on the open task
    buttons = re.findall(r'action="(/hexie/review/\d+/(\w+))"', page)
    assert {b for _, b in buttons} == {"approve", "return", "reject"}
    assert page.count('name="comment" rows="2" required') == 2          # return and reject
    return_url = dict((b, u) for u, b in buttons)["return"]
    r = bob.post(return_url, data={"csrf_token": _csrf(page), "next": f"/requests/{pr_id}", "comment": ""})
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/requests/{pr_id}")
    assert "意见" in bob.get(f"/requests/{pr_id}").get_data(as_text=True)   # the refusal, in the box
    assert _case(app, pr_id).state == "head_review"
    assert bob.post(return_url, data={"next": f"/requests/{pr_id}", "comment": "请补充报价"}).status_code == 400  # no CSRF
    r = bob.post(return_url, data={"csrf_token": _csrf(page), "next": "//evil.example/x", "comment": "请补充报价"})
    assert r.status_code == 302 and "evil" not in r.headers["Location"]
    assert _case(app, pr_id).state == "revision"

    # revised: the amount is synced into the case, which now takes the finance branch
    page = client.get(f"/requests/{pr_id}").get_data(as_text=True)
    r = client.post(f"/requests/{pr_id}", data={"title": "投影仪", "amount": "9999.00", "submit": "1",
                                               "csrf_token": _csrf(page)})
    assert r.status_code == 302, r.get_data(as_text=True)
    case = _case(app, pr_id)
    assert case.state == "head_review" and case.data["amount"] == "9999.00"
    page = bob.get(f"/requests/{pr_id}").get_data(as_text=True)
    approve = dict((b, u) for u, b in re.findall(r'action="(/hexie/review/\d+/(\w+))"', page))["approve"]
    assert bob.post(approve, data={"csrf_token": _csrf(page), "next": f"/requests/{pr_id}"}).status_code == 302
    assert _case(app, pr_id).state == "finance_review"

    # finance rejects it with a comment
    carol = app.test_client()
    _sign_in(carol, "carol")
    page = carol.get(f"/requests/{pr_id}").get_data(as_text=True)
    reject = dict((b, u) for u, b in re.findall(r'action="(/hexie/review/\d+/(\w+))"', page))["reject"]
    carol.post(reject, data={"csrf_token": _csrf(page), "next": f"/requests/{pr_id}", "comment": "预算不足"})
    case = _case(app, pr_id)
    assert case.state == "rejected" and case.closed_at is not None
    page = carol.get(f"/requests/{pr_id}").get_data(as_text=True)
    assert "预算不足" in page and "已驳回" in page
    with carol.session_transaction() as cookie:        # the box speaks the person's language
        cookie["lang"] = "en"
    page = carol.get(f"/requests/{pr_id}").get_data(as_text=True)
    assert "Rejected" in page and "Latest history" in page and "已驳回" not in page
    with app.extensions["host_sessions"]() as db:
        assert db.get(models.PurchaseRequest, pr_id).amount == Decimal("9999.00")   # host and case agree

    # Hexie's API: the business key, the host's fields refused, the host-only start
    with app.app_context():                  # a token for the host's user, signed with the host's key
        token = issue_token("bob")
    auth = {"Authorization": f"Bearer {token}"}
    r = client.get(f"/hexie/api/v1/cases?business_key=PR-{pr_id}", headers=auth)
    assert r.status_code == 200 and [c["business_key"] for c in r.get_json()] == [f"PR-{pr_id}"]
    assert client.get("/hexie/api/v1/cases?business_key=PR-999", headers=auth).get_json() == []
    detail = client.get(f"/hexie/api/v1/cases/{case.id}", headers=auth).get_json()
    assert detail["business_key"] == f"PR-{pr_id}" and detail["host_fields"] == ["amount", "title"]
    r = client.post("/hexie/api/v1/cases", json={"process": "purchase_request", "org_unit": "it",
                                                  "data": {"title": "x", "amount": "1"}}, headers=auth)
    assert r.status_code == 403


def test_hexie_forms_never_edit_the_hosts_fields(host):
    app, models = host
    alice = _actor(app, "alice")
    with app.extensions["host_sessions"]() as db:
        pr = models.PurchaseRequest(title="椅子", amount=Decimal("300.00"), department="it", requester_id=1)
        db.add(pr)
        case_id = pr.start_workflow(alice, "it", session=db)
        db.commit()
    client = app.test_client()
    with app.app_context():
        auth = {"Authorization": f"Bearer {issue_token('alice')}"}
    r = client.post(f"/hexie/api/v1/cases/{case_id}/actions/submit", json={"data": {"amount": "99999.00"}},
                    headers=auth)
    assert r.status_code == 422 and "amount" in r.get_json()["error"]["details"]
    assert _case(app, pr.id).state == "draft" and _case(app, pr.id).data["amount"] == "300.00"
    # /start does not offer a process only the host starts
    _sign_in(client, "alice")
    assert "purchase_request" not in client.get("/hexie/start").get_data(as_text=True)


def test_hexies_case_page_offers_no_input_for_the_hosts_fields(empty_db_url, tmp_path):
    """A definition whose draft form lists the mapped fields: Hexie's page leaves them out."""
    import shutil
    host_app, models = _example()
    shutil.copy(EXAMPLE / "definitions" / "roles.yaml", tmp_path)
    text = (EXAMPLE / "definitions" / "purchase_request.yaml").read_text(encoding="utf-8")
    (tmp_path / "purchase_request.yaml").write_text(
        text.replace("task: {role: requester}", "task: {role: requester, form: [title, amount, budget_code]}", 1),
        encoding="utf-8")
    app = host_app.create_app(empty_db_url, {"TESTING": True, "SECRET_KEY": SECRET, "WTF_CSRF_ENABLED": False},
                              definitions=tmp_path)
    try:
        alice = _actor(app, "alice")
        with app.extensions["host_sessions"]() as db:
            pr = models.PurchaseRequest(title="白板", amount=Decimal("120.00"), department="it", requester_id=1)
            db.add(pr)
            case_id = pr.start_workflow(alice, "it", session=db)
            db.commit()
        client = app.test_client()
        _sign_in(client, "alice")
        page = client.get(f"/hexie/cases/{case_id}").get_data(as_text=True)
        assert re.search(r'name="[^"]*budget_code"', page)                # an ordinary field: an input
        assert not re.search(r'name="[^"]*-amount"', page) and not re.search(r'name="[^"]*-title"', page)
        assert "120.00" in page                                              # shown, read-only
        r = client.post(f"/hexie/cases/{case_id}/actions/submit",
                        data={"a-submit-amount": "99999", "a-submit-budget_code": "IT-01"})
        assert r.status_code in (302, 303)
        case = _case(app, pr.id)
        assert case.state == "head_review" and case.data["amount"] == "120.00" and case.data["budget_code"] == "IT-01"
    finally:
        app.extensions["host_db_engine"].dispose()
