"""The demo county (`hexie demo`): people in every role, real cases, idempotent loading."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from hexie.models import Attachment, AuditEvent, Case, OrgUnit, RoleAssignment, Task, User, Vote, make_session_factory
from hexie.workflows.audit import verify_chain
from hexie.workflows.auth import verify_password
from hexie.workflows.demo import DEMO_PASSWORD, demo_org, load_demo
from hexie.workflows.engine import Engine
from hexie.workflows.loader import load_definitions_strict
from hexie.workflows.queries import CaseQueries

DEFINITIONS = Path(__file__).resolve().parent.parent / "definitions"
DOCS = Path(__file__).resolve().parent.parent / "docs" / "demo-users.md"


@pytest.fixture
def hexie(engine, tmp_path, monkeypatch) -> Engine:
    """A workflow engine over the test database, its definitions recorded."""
    monkeypatch.setenv("HEXIE_INSTANCE", str(tmp_path / "instance"))  # demo scans go there
    workflow_engine = Engine(make_session_factory(engine), load_definitions_strict(DEFINITIONS))
    workflow_engine.sync_definitions()
    return workflow_engine


def hexie_uploads() -> Path:
    from hexie.workflows.config import instance_dir
    return instance_dir() / "uploads"


def snapshot(hexie: Engine) -> tuple:
    """Everything a second load must leave as it is."""
    with hexie.session_factory() as s:
        return (
            sorted(s.execute(select(OrgUnit.code, OrgUnit.name, OrgUnit.path)).all()),
            sorted(s.execute(select(User.username, User.name, User.password_hash, User.active)).all()),
            sorted(s.execute(select(RoleAssignment.user_id, RoleAssignment.role,
                                    RoleAssignment.org_unit_id)).all()),
            sorted(s.execute(select(Case.id, Case.state, Case.lock_version)).all()),
            s.scalar(select(func.count()).select_from(Task)),
            s.scalar(select(func.count()).select_from(AuditEvent)),
        )


def test_demo_county_people_and_cases(hexie):
    summary = load_demo(hexie, with_cases=True)
    assert "某县" in summary and DEMO_PASSWORD in summary and " / " in summary

    with hexie.session_factory() as s:
        # 14 towns of 3 to 5 villages each.
        towns = s.scalars(select(OrgUnit).where(OrgUnit.level == "town")).all()
        assert len(towns) == 14 and {t.code for t in towns} == {f"t{i:02d}" for i in range(1, 15)}
        for town in towns:
            assert 3 <= len(town.children) <= 5
        # Somebody in every role the definitions know, two county managers for quorums.
        held = dict(s.execute(select(RoleAssignment.role, func.count()).group_by(RoleAssignment.role)).all())
        assert set(held) == set(hexie.registry.roles.roles)
        assert held["county_manager"] == 2 and held["town_chair"] == 14 and held["town_cadre"] >= 14
        # One documented password for all.
        admin = s.scalars(select(User).where(User.username == "admin")).one()
        assert verify_password(admin.password_hash, DEMO_PASSWORD)

        # Cases in every programme, in every kind of place.
        by_process = dict(s.execute(select(Case.process_key, func.count()).group_by(Case.process_key)).all())
        assert set(by_process) == set(hexie.processes)
        assert sum(by_process.values()) >= 30
        states = set(s.execute(select(Case.process_key, Case.state)).all())
        for expected in [("poor_mother_aid", "application"), ("poor_mother_aid", "home_survey"),
                         ("poor_mother_aid", "approval"), ("poor_mother_aid", "awaiting_mid_year_visit"),
                         ("poor_mother_aid", "closed"), ("poor_mother_aid", "rejected"),
                         ("dv_complaint", "referral"), ("dv_complaint", "closed"),
                         ("microloan", "approval"), ("microloan", "repaying"), ("microloan", "rejected"),
                         ("spring_bud", "sponsored"), ("spring_bud", "graduated"), ("spring_bud", "renewal"),
                         ("spring_bud_renewal", "review"), ("mentor_pairing", "paired"),
                         ("elder_support", "archived"), ("elder_support", "unsigned")]:
            assert expected in states, expected
        # Approvals waiting for the second vote, claimed tasks, overdue work.
        assert s.scalar(select(func.count()).select_from(Vote)) >= 2
        assert s.scalar(select(func.count()).select_from(Task).where(
            Task.status == "allocated", Task.state == "home_survey")) >= 1
        assert s.scalar(select(func.count()).select_from(Task).where(
            Task.status.in_(("offered", "allocated")), Task.due_at < hexie.clock())) >= 2
        # Parallel referral tasks really done, rejections with a reason.
        kinds = set(s.scalars(select(AuditEvent.kind)))
        assert {"started", "fired", "claimed", "vote", "task_done", "reassigned", "escalated"} <= kinds
        rejections = s.scalars(select(AuditEvent.comment).where(AuditEvent.trigger == "reject")).all()
        assert rejections and all(rejections)
        # Signed agreements have their (stand-in) scans where uploads are kept.
        keys = s.scalars(select(Attachment.storage_key)).all()
        assert keys and all((hexie_uploads() / key).read_bytes().startswith(b"%PDF") for key in keys)
        # Every history intact.
        assert verify_chain(s) == []

    # The demo people see their work: zhuxi has votes to cast, the police desk a referral.
    queries = CaseQueries(hexie)
    zhuxi = hexie.actor("zhuxi")
    assert queries.tasks(zhuxi, "available", process="poor_mother_aid", state="approval").total >= 1
    assert queries.cases(hexie.actor("chair01")).total >= 1
    assert queries.cases(hexie.actor("rep0101")).total >= 1

    # A second run adds and changes nothing.
    before = snapshot(hexie)
    again = load_demo(hexie, with_cases=True)
    assert snapshot(hexie) == before
    assert "未再添加" in again and "no sample cases were added" in again


def test_demo_without_cases_loads_only_the_org(hexie):
    load_demo(hexie, with_cases=False)
    with hexie.session_factory() as s:
        assert s.scalar(select(func.count()).select_from(Case)) == 0
        assert s.scalar(select(func.count()).select_from(User)) == len(demo_org()["users"])


def test_the_demo_users_page_lists_every_user():
    text = DOCS.read_text(encoding="utf-8")
    assert DEMO_PASSWORD in text
    for user in demo_org()["users"]:
        assert f"`{user['username']}`" in text
        assert user["password"] == DEMO_PASSWORD


def test_the_demo_funds_hold_the_reports_receipts_and_are_never_overdrawn(hexie):
    """The money pages of the demo read as the federation's books: the report's receipts
    (first-round balance brought forward, second round 159,215 yuan, Spring Bud 370,000 yuan a
    year) recorded before the payments, so no fund is overdrawn in any month, and the auditor's
    check passes."""
    from decimal import Decimal

    from hexie.workflows.ledger import LedgerQueries, verify_ledger
    load_demo(hexie, with_cases=True)
    books = LedgerQueries(hexie).balances(hexie.actor("caiwu"))
    funds = {f["fund"]: f for f in books["funds"]}
    assert funds["donations_round2"]["received"] == Decimal("159215.00")
    assert funds["spring_bud_sponsors"]["received"] == Decimal("370000.00")
    assert funds["donations_round1"]["received"] == Decimal("44000.00")      # 366,600 − 277,800 − 44,800
    for fund in funds.values():
        assert all(p["balance"] >= 0 for p in fund["periods"]), fund
    assert books["total"]["received"] == Decimal("573215.00")
    with hexie.session_factory() as s:
        assert verify_ledger(s) == []
