"""Shared set-up for engine tests: a workflow Engine on a test database, a test org, a clock."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from hexie.models import AuditEvent, Case, Task, Timer, Vote
from hexie.workflows.engine import Engine
from hexie.workflows.loader import load_definitions_strict
from hexie.workflows.org import load_org_file
from hexie.workflows.queries import CaseQueries
from hexie.workflows.service import WorkflowService

FIXTURES = Path(__file__).parent / "fixtures" / "engine"
DEFINITIONS = Path(__file__).resolve().parent.parent / "definitions"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kw) -> None:
        self.now += timedelta(**kw)


@dataclass
class Env:
    engine: Engine
    service: WorkflowService
    queries: CaseQueries
    clock: Clock

    def actor(self, username: str):
        return self.engine.actor(username)

    def snapshot(self) -> tuple:
        """Everything a refused call must leave unchanged."""
        with self.engine.session_factory() as s:
            cases = s.execute(select(Case.id, Case.state, Case.data, Case.lock_version).order_by(Case.id)).all()
            tasks = s.execute(select(Task.id, Task.status, Task.assignee_id).order_by(Task.id)).all()
            return (tuple(map(tuple, cases)), tuple(map(tuple, tasks)),
                    s.scalar(select(func.count()).select_from(AuditEvent)),
                    s.scalar(select(func.count()).select_from(Vote)),
                    s.scalar(select(func.count()).select_from(Timer)))


def make_env(session_factory, definitions: Path = FIXTURES, org_file: Path = FIXTURES.parent / "engine_org.yaml",
             start: datetime = datetime(2026, 3, 2, 9, 0)) -> Env:
    clock = Clock(start)
    engine = Engine(session_factory, load_definitions_strict(definitions), clock=clock)
    engine.sync_definitions()
    roles = engine.registry.roles
    with engine.transaction() as s:
        load_org_file(s, org_file, roles=list(roles.roles), levels=list(roles.levels))
    return Env(engine, WorkflowService(engine), CaseQueries(engine), clock)


def env_with(session_factory, folder: Path, **definitions: str) -> Env:
    """An Env on the test roles and org, running the given definitions (process key -> YAML)."""
    import shutil
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(FIXTURES / "roles.yaml", folder / "roles.yaml")
    for key, text in definitions.items():
        (folder / f"{key}.yaml").write_text(text, encoding="utf-8")
    return make_env(session_factory, definitions=folder)


# A Spring Bud pupil of 东村 (t01v01), nominated, verified, approved, matched and paid for
# one school year: the engine, web and API ledger tests each name their own people.
SPRING_BUD_NOMINATION = {"student_name": "李小红", "birth_date": "2014-09-01", "school": "城关中心小学",
                         "grade": "primary_5", "class_name": "春蕾班", "guardian_name": "李大山",
                         "family_hardships": ["low_income"], "nomination_reason": "家庭困难"}


def spring_bud_to_disbursement(service, actor, people: dict[str, str]) -> int:
    """``people``: rep, cadre, manager, matcher -> usernames; ``actor(username)`` -> an Actor."""
    case_id = service.start_case(actor(people["rep"]), "spring_bud", "t01v01", dict(SPRING_BUD_NOMINATION))
    service.fire(actor(people["rep"]), case_id, "nominate")
    service.fire(actor(people["cadre"]), case_id, "verified", {"household_size": 3, "household_annual_income": "5400",
                                                               "verification_notes": "情况属实"})
    service.fire(actor(people["manager"]), case_id, "approve")
    service.fire(actor(people["matcher"]), case_id, "matched", {"sponsor_name": "县建设银行", "sponsor_kind": "enterprise",
                                                                "annual_grant": "1200"})
    return case_id


def pay_spring_bud(service, actor, finance: str, case_id: int, amount: str = "1200", year: str = "2026-2027"):
    return service.fire(actor(finance), case_id, "disburse", {
        "fund": "spring_bud_sponsors", "school_year": year, "disbursed_amount": amount,
        "disbursed_on": "2026-03-20", "voucher_number": "CL-2026-007"})

