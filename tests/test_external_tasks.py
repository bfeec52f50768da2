"""External tasks (interfaces.md, "Machine steps"; definitions.md, ``external:``): the language and
its checks, fetch-and-lock and the lock's holder, expiry, retries, incidents, the example worker,
and four workers on PostgreSQL completing each of a few hundred tasks exactly once.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from hexie.models import AuditEvent, Case, ExternalTask, make_engine, make_session_factory
from hexie.workflows import external
from hexie.workflows.engine import Engine
from hexie.workflows.errors import Conflict
from hexie.workflows.loader import load_definitions_strict
from hexie.workflows.org import load_org
from hexie.workflows.service import WorkflowService

from .api_support import DEFINITIONS, PASSWORD, ApiEnv, Clock, error_of, make_app

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "external_worker"
COOP_ROLE = "  credit_cooperative: {label: {zh: 县农村信用社（系统）, en: County credit cooperative (its system)}}\n"
BATCH_ONLY = """
process: batch_check
title: {zh: 批量核查, en: Batch check}
org_level: town
starters: [town_cadre]
fields:
  amount: {type: money, min: 0, default: "100.00"}
  verdict: {type: text}
states:
  - name: check
    task: {external: batch_check, worker_role: credit_cooperative, variables: [amount], retries: 2}
  - name: done
    final: true
transitions:
  - {trigger: checked, source: check, dest: done, form: [verdict]}
"""
ORG = {
    "units": [{"code": "county", "name": "某县", "level": "county"},
              {"code": "t01", "name": "城关镇", "level": "town", "parent": "county"},
              {"code": "t02", "name": "河口镇", "level": "town", "parent": "county"}],
    "users": [{"username": u, "name": u, "password": PASSWORD, "roles": r} for u, r in {
        "cadre1": ["town_cadre@t01"], "chair1": ["town_chair@t01"], "coop": ["credit_cooperative@county"],
        "coop2": ["credit_cooperative@county"], "coop_t02": ["credit_cooperative@t02"],
        "admin": ["admin@county"]}.items()],
}
LOAN = {"applicant_name": "刘春花", "applicant_age": 35, "loan_amount": "20000.00"}


def definitions_with_coop(folder: Path) -> Path:
    """The federation's roles plus the credit cooperative's system, the example and a batch process."""
    folder.mkdir(parents=True, exist_ok=True)
    roles = (DEFINITIONS / "roles.yaml").read_text(encoding="utf-8")
    if "credit_cooperative" not in roles:
        roles = roles.rstrip("\n") + "\n" + COOP_ROLE
    (folder / "roles.yaml").write_text(roles, encoding="utf-8")
    shutil.copy(EXAMPLE / "loan_precheck.yaml", folder / "loan_precheck.yaml")
    (folder / "batch_check.yaml").write_text(BATCH_ONLY, encoding="utf-8")
    return folder


@pytest.fixture
def env(engine, tmp_path) -> ApiEnv:
    clock = Clock()
    hexie_engine = Engine(make_session_factory(engine), load_definitions_strict(definitions_with_coop(tmp_path / "d")),
                          clock=clock)
    hexie_engine.sync_definitions()
    roles = hexie_engine.registry.roles
    with hexie_engine.transaction() as s:
        load_org(s, ORG, roles=list(roles.roles), levels=list(roles.levels))
    app = make_app(hexie_engine)
    state = app.extensions["hexie"]
    return ApiEnv(hexie_engine, app, state["service"], state["queries"], clock)


def _loan_at_check(env: ApiEnv, **data: Any) -> int:
    case_id = env.service.start_case(env.actor("cadre1"), "loan_precheck", "t01", {**LOAN, **data})
    env.service.fire(env.actor("cadre1"), case_id, "submit")
    return case_id


def _fetch(env: ApiEnv, worker: str, user: str = "coop", lock_ms: int = 10_000, max_tasks: int = 10):
    r = env.as_(user).post("/external-tasks/fetch-and-lock", {
        "worker_id": worker, "max_tasks": max_tasks, "topics": [{"name": "credit_check", "lock_duration_ms": lock_ms}]})
    assert r.status_code == 200, r.get_json()
    return r.get_json()


# ---------------------------------------------------------------- the language
def test_the_example_definition_checks_clean(tmp_path: Path) -> None:
    folder = definitions_with_coop(tmp_path)
    done = subprocess.run([sys.executable, "-m", "hexie.cli", "check", str(folder)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("task, where, words", [
    ("{external: credit_check, worker_role: credit_coop}", "worker_role", "credit_cooperative"),
    ("{external: credit_check, worker_role: credit_cooperative, variables: [loan_amout]}", "variables[0]",
     "loan_amount"),
    ("{external: credit_check, role: town_cadre, worker_role: credit_cooperative}", "role", "worker_role"),
    ("{external: credit_check}", "worker_role", "worker_role"),
    ("{role: town_cadre, retries: 2}", "retries", "external"),
    ("{external: credit_check, worker_role: credit_cooperative, retries: -1}", "retries", "retries"),
])
def test_external_task_errors_point_at_their_line_and_column(tmp_path: Path, task: str, where: str,
                                                             words: str) -> None:
    folder = definitions_with_coop(tmp_path)
    text = (EXAMPLE / "loan_precheck.yaml").read_text(encoding="utf-8")
    start = text.index("    task:\n      external: credit_check")
    end = text.index("  - name: approval")
    line = text[:start].count("\n") + 1
    (folder / "loan_precheck.yaml").write_text(text[:start] + f"    task: {task}\n" + text[end:], encoding="utf-8")
    done = subprocess.run([sys.executable, "-m", "hexie.cli", "check", str(folder / "loan_precheck.yaml")],
                          capture_output=True, text=True)
    assert done.returncode == 1, done.stdout
    errors = [l for l in done.stdout.splitlines() if ": error: " in l]
    assert errors, done.stdout
    hit = [l for l in errors if f"states[1].task.{where}" in l or f":{line}:" in l]
    assert hit and any(words in l for l in errors), errors
    assert all(l.split(":")[1] == str(line) for l in hit if f"states[1].task.{where}" in l)


# --------------------------------------------------------------- the endpoints
def test_fetch_lock_complete_with_the_lock_holder_only(env: ApiEnv) -> None:
    case_id = _loan_at_check(env)
    (task,) = _fetch(env, "w1")
    assert task["topic"] == "credit_check" and task["case_id"] == case_id and task["process"] == "loan_precheck"
    assert task["data"] == {"applicant_age": 35, "loan_amount": "20000.00"} and task["retries"] == 3
    assert task["lock_expires_at"].startswith("2026-03-02T09:00:10")
    assert _fetch(env, "w2", "coop2") == []                          # locked to w1
    assert _fetch(env, "w3", "coop_t02") == []                       # not her area
    assert env.as_("cadre1").post("/external-tasks/fetch-and-lock", {  # not her role: nothing to fetch
        "worker_id": "x", "topics": [{"name": "credit_check", "lock_duration_ms": 1000}]}).get_json() == []
    r = env.as_("coop2").post(f"/external-tasks/{task['id']}/complete", {"worker_id": "w2", "trigger": "eligible"})
    assert r.status_code == 409 and error_of(r)["code"] == "conflict"
    assert env.as_("coop2").post(f"/external-tasks/{task['id']}/extend-lock",
                                 {"worker_id": "w2", "new_duration_ms": 1000}).status_code == 409
    assert env.as_("cadre1").post(f"/external-tasks/{task['id']}/complete",
                                  {"worker_id": "w1", "trigger": "eligible"}).status_code == 404
    r = env.as_("coop").post(f"/external-tasks/{task['id']}/extend-lock", {"worker_id": "w1", "new_duration_ms": 60_000})
    assert r.status_code == 200 and r.get_json()["lock_expires_at"].startswith("2026-03-02T09:01:00")
    r = env.as_("coop").post(f"/external-tasks/{task['id']}/complete", {
        "worker_id": "w1", "trigger": "eligible", "data": {"eligibility_notes": "信用良好"}})
    assert r.status_code == 200 and r.get_json()["state"] == "approval"
    assert env.state_of(case_id) == "approval"
    assert env.as_("coop").post(f"/external-tasks/{task['id']}/complete",
                                {"worker_id": "w1", "trigger": "eligible"}).status_code == 409   # closed


def test_an_external_task_she_may_not_take_answers_the_404_of_a_missing_one(env: ApiEnv) -> None:
    """security.md "One 404 for hidden and missing": the same body, and no id in it (it read
    "no external task 7"), whether the task is another's to take, not an external one, or never was."""
    _loan_at_check(env)
    (task,) = _fetch(env, "w1")
    plain = env.open_task(env.service.start_case(env.actor("cadre1"), "loan_precheck", "t01", dict(LOAN)))
    # (plain: her own task, not an external one)
    calls = [("complete", {"worker_id": "w1", "trigger": "eligible"}), ("failure", {"worker_id": "w1", "error": "x", "retries": 1, "retry_timeout_ms": 1000}),
             ("extend-lock", {"worker_id": "w1", "new_duration_ms": 1000}), ("unlock", {"worker_id": "w1"})]
    for verb, body in calls:
        hidden = env.as_("cadre1").post(f"/external-tasks/{task['id']}/{verb}", body)
        other = env.as_("cadre1").post(f"/external-tasks/{plain}/{verb}", body)
        missing = env.as_("cadre1").post(f"/external-tasks/99999/{verb}", body)
        assert hidden.status_code == other.status_code == missing.status_code == 404, verb
        assert hidden.get_data() == other.get_data() == missing.get_data(), verb
        assert not any(ch.isdigit() for ch in hidden.get_data(as_text=True)), hidden.get_data(as_text=True)


def test_an_expired_lock_is_taken_over_and_the_loser_gets_409(env: ApiEnv) -> None:
    case_id = _loan_at_check(env)
    (task,) = _fetch(env, "slow", lock_ms=1000)
    env.clock.advance(seconds=2)
    (again,) = _fetch(env, "fast", "coop2")
    assert again["id"] == task["id"]
    r = env.as_("coop").post(f"/external-tasks/{task['id']}/complete", {"worker_id": "slow", "trigger": "eligible"})
    assert r.status_code == 409
    assert env.as_("coop2").post(f"/external-tasks/{task['id']}/complete",
                                 {"worker_id": "fast", "trigger": "not_eligible"}).status_code == 200
    assert env.state_of(case_id) == "ineligible"


def test_unlock_failure_retries_and_incidents(env: ApiEnv) -> None:
    _loan_at_check(env)
    (task,) = _fetch(env, "w1")
    tid = task["id"]
    assert env.as_("coop").post(f"/external-tasks/{tid}/unlock", {"worker_id": "w1"}).status_code == 200
    (task,) = _fetch(env, "w2", "coop2")
    r = env.as_("coop2").post(f"/external-tasks/{tid}/failure", {
        "worker_id": "w2", "error": "信用社系统维护中", "retries": 1, "retry_timeout_ms": 30_000})
    assert r.status_code == 200 and r.get_json()["retries"] == 1 and not r.get_json()["incident"]
    assert _fetch(env, "w1") == []                                   # waits out the retry timeout
    env.clock.advance(seconds=31)
    (task,) = _fetch(env, "w1")
    r = env.as_("coop").post(f"/external-tasks/{tid}/failure", {"worker_id": "w1", "error": "still down", "retries": 0})
    assert r.status_code == 200 and r.get_json()["incident"]
    env.clock.advance(hours=1)
    assert _fetch(env, "w1") == []                                   # an incident is not fetched
    listed = env.as_("admin").get("/external-tasks/incidents").get_json()
    assert [(i["id"], i["error_message"]) for i in listed] == [(tid, "still down")]
    assert env.as_("coop").get("/external-tasks/incidents").status_code == 403
    assert env.as_("coop").post(f"/external-tasks/{tid}/retries", {"retries": 2}).status_code == 403
    # the incident page, for administrators only
    from .web_helpers import login
    client = env.app.test_client()
    login(client, "admin", PASSWORD)
    page = client.get("/incidents").get_data(as_text=True)
    assert f'id="incident-{tid}"' in page and "still down" in page
    other = env.app.test_client()
    login(other, "cadre1", PASSWORD)
    assert other.get("/incidents").status_code == 404
    assert client.post(f"/incidents/{tid}/retries", data={"retries": "2"}).status_code == 302
    assert env.as_("admin").get("/external-tasks/incidents").get_json() == []
    (task,) = _fetch(env, "w1")
    assert task["retries"] == 2


def test_bad_bodies_are_refused(env: ApiEnv) -> None:
    _loan_at_check(env)
    api = env.as_("coop")
    assert api.post("/external-tasks/fetch-and-lock", {"worker_id": "w"}).status_code == 400
    assert api.post("/external-tasks/fetch-and-lock", {"worker_id": "w", "max_tasks": 0, "topics": [
        {"name": "credit_check", "lock_duration_ms": 1000}]}).status_code == 422
    assert api.post("/external-tasks/fetch-and-lock", {"worker_id": "w", "topics": [
        {"name": "credit_check", "lock_duration_ms": -5}]}).status_code == 422
    assert api.post("/external-tasks/99999/complete", {"worker_id": "w", "trigger": "eligible"}).status_code == 404
    (task,) = _fetch(env, "w")
    r = api.post(f"/external-tasks/{task['id']}/complete", {"worker_id": "w", "trigger": "approve"})
    assert r.status_code in (403, 409) and env.state_of(task["case_id"]) == "credit_check"
    assert api.post(f"/external-tasks/{task['id']}/failure", {"worker_id": "w", "retries": -1}).status_code == 422


def test_the_example_worker_checks_the_cooperatives_loans(env: ApiEnv) -> None:
    sys.path.insert(0, str(EXAMPLE))
    try:
        import credit_check
    finally:
        sys.path.remove(str(EXAMPLE))
    young = _loan_at_check(env)
    old = _loan_at_check(env, applicant_age=70)
    api = env.as_("coop")

    def post(path: str, body: dict[str, Any]) -> tuple[int, Any]:
        r = api.post(path, body)
        return r.status_code, r.get_json()

    assert credit_check.run_once(post, "coop-host-1") == 2
    assert env.state_of(young) == "approval" and env.state_of(old) == "ineligible"
    assert credit_check.run_once(post, "coop-host-1") == 0


# ------------------------------------------------------------- concurrency
def test_four_workers_complete_each_of_hundreds_of_tasks_exactly_once(pg_url: str, tmp_path: Path) -> None:
    sa_engine = make_engine(pg_url, pool_size=8)
    try:
        engine = Engine(make_session_factory(sa_engine), load_definitions_strict(definitions_with_coop(tmp_path)))
        engine.sync_definitions()
        roles = engine.registry.roles
        with engine.transaction() as s:
            load_org(s, ORG, roles=list(roles.roles), levels=list(roles.levels))
        service = WorkflowService(engine)
        cadre = engine.actor("cadre1")
        total = 300
        for _ in range(total):
            service.start_case(cadre, "batch_check", "t01", {})
        completed: Counter = Counter()
        conflicts: list[int] = []
        errors: list[BaseException] = []
        coop = engine.actor("coop")

        def work(name: str) -> None:
            try:
                while True:
                    tasks = external.fetch_and_lock(engine, coop, name, 5, [{"name": "batch_check",
                                                                             "lock_duration_ms": 60_000}])
                    if not tasks:
                        return
                    for task in tasks:
                        try:
                            external.complete(engine, service, coop, task["id"], name, "checked",
                                              {"verdict": name})
                            completed[task["id"]] += 1
                        except Conflict as err:
                            conflicts.append((task["id"], err.message))
            except BaseException as err:  # noqa: BLE001 (reported below)
                errors.append(err)

        threads = [threading.Thread(target=work, args=(f"worker-{n}",)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not errors, errors
        assert conflicts == []
        assert len(completed) == total and set(completed.values()) == {1}
        with engine.session_factory() as s:
            assert s.scalar(select(func.count()).select_from(Case).where(Case.state == "done")) == total
            fired = s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.kind == "fired"))
            assert fired == total
            by_worker = Counter(s.scalars(select(Case.data["verdict"].as_string())))
            assert len(by_worker) >= 2       # the work was shared out
            assert s.scalar(select(func.count()).select_from(ExternalTask)) == total
    finally:
        sa_engine.dispose()
