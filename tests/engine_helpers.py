"""Shared set-up for engine tests: a workflow Engine on a test database, a test org, a clock."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from models import AuditEvent, Case, Task, Timer, Vote
from workflows.engine import Engine
from workflows.loader import load_definitions_strict
from workflows.org import load_org_file
from workflows.queries import CaseQueries
from workflows.service import WorkflowService

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
