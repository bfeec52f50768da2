"""Concurrency guarantees, proven on PostgreSQL with real parallel connections."""
from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, insert, select

from hexie.models import AuditEvent, Case, Timer, make_engine, make_session_factory
from hexie.workflows.errors import Conflict, HexieError

from .engine_helpers import make_env
from .test_engine import APPLICATION, _task, _to_approval


@pytest.fixture
def env(pg_url):
    """The engine on PostgreSQL with a real connection pool (parallel connections)."""
    db = make_engine(pg_url)
    yield make_env(make_session_factory(db))
    db.dispose()


def _race(n, fn):
    """Run ``fn(i)`` in ``n`` threads released at the same instant; return outcomes."""
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()
        try:
            return ("ok", fn(i))
        except HexieError as err:
            return (type(err).__name__, err.message)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(run, range(n)))


def test_eight_threads_one_action_one_success(env):
    rep = env.actor("rep")
    case_id = env.service.start_case(rep, "aid", "t01v01", APPLICATION)
    outcomes = _race(8, lambda i: env.service.fire(rep, case_id, "submit"))
    kinds = Counter(kind for kind, _ in outcomes)
    assert kinds == {"ok": 1, "Conflict": 7}, outcomes
    with env.engine.session_factory() as s:
        fired = s.scalar(select(func.count()).select_from(AuditEvent).where(
            AuditEvent.case_id == case_id, AuditEvent.trigger == "submit"))
    assert fired == 1
    assert len(_task(env, case_id)) == 1


def test_eight_threads_with_lock_version(env):
    rep = env.actor("rep")
    case_id = env.service.start_case(rep, "aid", "t01v01", APPLICATION)
    version = env.queries.case(rep, case_id)["lock_version"]
    outcomes = _race(8, lambda i: env.service.fire(rep, case_id, "submit", lock_version=version))
    assert Counter(k for k, _ in outcomes) == {"ok": 1, "Conflict": 7}


def test_quorum_two_with_four_parallel_voters(env):
    case_id = _to_approval(env)
    voters = [env.actor(f"mgr{i}") for i in range(1, 5)]
    outcomes = _race(4, lambda i: env.service.fire(voters[i], case_id, "approve"))
    results = [r for k, r in outcomes if k == "ok"]
    assert sorted(r["outcome"] for r in results) == ["moved", "voted"], outcomes
    assert Counter(k for k, _ in outcomes)["Conflict"] == 2
    history = env.queries.history(voters[0], case_id)
    approvals = [e for e in history if e["trigger"] == "approve"]
    assert [e["kind"] for e in approvals] == ["vote", "fired"]
    assert len({e["actor"] for e in approvals}) == 2
    assert env.queries.case(voters[0], case_id)["state"] == "disbursement"


def test_three_workers_fire_each_of_1000_timers_once(env):
    rep = env.actor("rep")
    template = env.service.start_case(rep, "aid", "t01v01", APPLICATION)
    now = env.clock()
    with env.engine.transaction() as s:
        proto = s.get(Case, template)
        rows = [dict(process_version_id=proto.process_version_id, process_key="aid", state="follow_up",
                     data=proto.data, org_unit_id=proto.org_unit_id, org_path=proto.org_path,
                     created_at=now, updated_at=now, subject="x", confidential=False, lock_version=1)
                for _ in range(1000)]
        ids = list(s.scalars(insert(Case).returning(Case.id), rows))
        s.execute(insert(Timer), [dict(case_id=i, state="follow_up", trigger="visit_due",
                                       due_at=now - timedelta(minutes=1), status="pending") for i in ids])
    outcomes = _race(3, lambda i: env.service.run_due_timers(limit=2000))
    assert sum(r for _, r in outcomes) == 1000, outcomes
    with env.engine.session_factory() as s:
        statuses = Counter(s.scalars(select(Timer.status).where(Timer.due_at <= now)))
        assert statuses == {"fired": 1000}
        per_case = Counter(s.scalars(select(AuditEvent.case_id).where(AuditEvent.trigger == "visit_due")))
        assert len(per_case) == 1000 and set(per_case.values()) == {1}
        assert s.scalar(select(func.count()).select_from(Timer).where(Timer.status == "pending")) == 1000


def test_conflict_is_typed(env):
    rep = env.actor("rep")
    case_id = env.service.start_case(rep, "aid", "t01v01", APPLICATION)
    env.service.fire(rep, case_id, "submit")
    try:
        env.service.fire(rep, case_id, "submit")
    except Conflict as err:
        assert err.status == 409
    else:
        raise AssertionError("second submit should conflict")
