"""Step cost: one action through the service layer against the same writes in raw SQL.

A *step* is ``WorkflowService.fire``: load and lock the case, check the actor's roles,
the task holder and the guard, validate the form, move the compiled machine, write
the audit event (hash-chained), close the old task and open the next one, commit.
The *baseline* does the same writes with the database driver alone, in one
transaction: UPDATE the case with its version check, INSERT the audit event, UPDATE the old task, INSERT the new task.

Each case of ``bench/definitions/approval.yaml`` gives three such steps (submit,
reviewed, approve). Rounds alternate baseline and Hexie on fresh cases of the same
tables; the ratio is the median of the per-round ratios. On PostgreSQL it also runs
four threads of each, and ``pgbench -c 4 -j 2`` on its own database, in the same run.

    .venv/bin/python bench/bench_step.py            # a few minutes
    .venv/bin/python bench/bench_step.py --full     # more rounds and steps
    .venv/bin/python bench/bench_step.py --profile  # also a cProfile of the Hexie step
"""
from __future__ import annotations

import argparse
import cProfile
import hashlib
import io
import json
import pstats
import re
import shutil
import sqlite3
import subprocess
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from common import (RESULTS, result_path, PG_SERVER, QueryCounter, bench_org, fresh_pg, fresh_sqlite, make_bench_engine,
                    median, table, write_result)

from sqlalchemy import event, select

APPLICATION = {"applicant_name": "李秀英", "id_number": "11010519491231002X", "amount": "800"}
#: (trigger, actor, form) of the three measured steps of one case, in order.
STEPS = (("submit", "rep_t01v01", None),
         ("reviewed", "cadre_t01", {"review_notes": "情况属实，同意上报"}),
         ("approve", "mgr1", None))
#: What the raw baseline writes for each step: (from, to, next task role, at level, due, escalation).
RAW_MOVES = (("application", "review", "town_cadre", None, timedelta(days=7), (timedelta(days=2), "town_chair")),
             ("review", "approval", "county_manager", "county", timedelta(days=5), None),
             ("approval", "archiving", "town_chair", None, timedelta(days=14), None))


# --- preparing cases ---------------------------------------------------------------

def start_cases(engine, service, n: int) -> list[int]:
    """``n`` new approval cases at village t01v01, in their first state."""
    rep = engine.actor("rep_t01v01")
    return [service.start_case(rep, "approval", "t01v01", APPLICATION) for _ in range(n)]


@dataclass
class RawCase:
    """What the baseline keeps in memory about one case between its steps."""

    id: int
    lock: int
    seq: int
    head: str
    task_id: int
    task_lock: int
    org_unit_id: int
    org_path: str
    step: int = 0


def raw_cases(engine, ids: list[int]) -> list[RawCase]:
    from hexie.models import AuditEvent, Case, Task
    out = []
    with engine.session_factory() as s:
        for cid in ids:
            case = s.get(Case, cid)
            task = s.scalars(select(Task).where(Task.case_id == cid, Task.status == "allocated")).one()
            seq = s.scalar(select(AuditEvent.seq).where(AuditEvent.case_id == cid).order_by(AuditEvent.seq.desc()))
            out.append(RawCase(cid, case.lock_version, seq, case.audit_head, task.id, task.lock_version,
                               case.org_unit_id, case.org_path))
    return out


def outbound_writes(engine) -> int:
    """What a real installation writes with each step besides the case: e-mail configured
    (notifications then get an outbox row each), every bench person with an address, and one
    webhook subscription to every event. Returns the subscription's id."""
    from hexie.models import User, WebhookSubscription
    configure_mail(engine)
    with engine.transaction() as s:
        for user in s.scalars(select(User)):
            user.email = f"{user.username}@example.org"
        sub = WebhookSubscription(url="http://127.0.0.1:9/hook", secret="bench-secret", events=None, active=True)
        s.add(sub)
        s.flush()
        engine.bench_subscription = sub.id
    return engine.bench_subscription


def configure_mail(engine) -> None:
    """E-mail configured: each notification gets an outbox row (nothing is sent by the bench)."""
    from hexie.workflows import channels
    channels.configure(engine, {"HEXIE_SMTP_URL": "smtp://127.0.0.1:2525", "HEXIE_MAIL_FROM": "hexie@example.org"})


def raw_recipients(engine) -> dict[int, list[tuple[int, str]]]:
    """For each measured step (0, 1, 2): the people told of its new task, as Hexie finds them."""
    from hexie.workflows.notifications import holders
    out = {}
    with engine.session_factory() as s:
        for k, (_, _, role, at, _, _) in enumerate(RAW_MOVES):
            ids = holders(s, role, "/county/t01/t01v01/", at)
            out[k] = [(i, f"u{i}@example.org") for i in ids]
    return out


# --- the raw baseline -------------------------------------------------------------------

class RawStepper:
    """The four writes of a step through the bare DB-API driver, one transaction each."""

    def __init__(self, url: str, synchronous: str | None = None) -> None:
        self.sqlite = url.startswith("sqlite")
        if self.sqlite:
            self.conn = sqlite3.connect(url.removeprefix("sqlite:///"), check_same_thread=False)
            for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=5000"):
                self.conn.execute(f"PRAGMA {pragma}")
            if synchronous:
                self.conn.execute(f"PRAGMA synchronous={synchronous}")
            self.p = "?"
        else:
            import psycopg
            self.conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
            self.p = "%s"
        p = self.p
        self.update_case = (f"UPDATE hexie_cases SET state={p}, data={p}, updated_at={p}, lock_version={p}, audit_head={p} "
                            f"WHERE id={p} AND lock_version={p}")
        self.update_case_nodata = (f"UPDATE hexie_cases SET state={p}, updated_at={p}, lock_version={p}, audit_head={p} "
                                   f"WHERE id={p} AND lock_version={p}")
        self.insert_event = ("INSERT INTO hexie_audit_events (case_id, seq, at, actor_id, actor, kind, \"trigger\", "
                             "from_state, to_state, comment, changes, prev_hash, hash) VALUES "
                             f"({', '.join([p] * 13)})")
        self.update_task = (f"UPDATE hexie_tasks SET status='completed', completed_at={p}, completed_by_id={p}, "
                            f"lock_version={p} WHERE id={p} AND lock_version={p}")
        self.insert_task = ("INSERT INTO hexie_tasks (case_id, process_key, state, name, role, at_level, org_unit_id, "
                            "org_path, status, created_at, due_at, escalate_at, escalate_to, escalated, priority, "
                            f"optional, lock_version) VALUES ({', '.join([p] * 17)}) RETURNING id")
        self.insert_notification = ("INSERT INTO hexie_notifications (user_id, kind, case_id, task_id, text_zh, "
                                    f"text_en, link, in_app, created_at) VALUES ({', '.join([p] * 9)}) RETURNING id")
        self.insert_outbox = ("INSERT INTO hexie_outbox (kind, channel, event, payload, status, digest, attempts, "
                              "next_attempt_at, created_at, subscription_id, notification_id, recipient_id, case_id, seq) "
                              f"VALUES ({', '.join([p] * 14)})")
        #: step -> [(user id, e-mail)] told of the new task; the webhook subscription's id (set by the caller)
        self.recipients: dict[int, list[tuple[int, str]]] = {}
        self.subscription: int | None = None

    def step(self, c: RawCase, actor_id: int, actor: str, data: dict | None) -> None:
        src, dest, role, at, due, esc = RAW_MOVES[c.step]
        trigger = STEPS[c.step][0]
        now = datetime.utcnow()
        changes = {k: [None, v] for k, v in data.items()} if data else None
        digest = hashlib.sha256(json.dumps(
            [c.head, c.id, c.seq + 1, now.isoformat(), actor, "fired", trigger, src, dest, None, changes],
            sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        cur = self.conn.cursor()
        if data:
            cur.execute(self.update_case, (dest, json.dumps({**APPLICATION, **data}, ensure_ascii=False), now,
                                           c.lock + 1, digest, c.id, c.lock))
        else:
            cur.execute(self.update_case_nodata, (dest, now, c.lock + 1, digest, c.id, c.lock))
        if cur.rowcount != 1:
            raise RuntimeError("stale case")
        cur.execute(self.insert_event, (c.id, c.seq + 1, now, actor_id, actor, "fired", trigger, src, dest, None,
                                        json.dumps(changes, ensure_ascii=False) if changes else None, c.head, digest))
        cur.execute(self.update_task, (now, actor_id, c.task_lock + 1, c.task_id, c.task_lock))
        if cur.rowcount != 1:
            raise RuntimeError("stale task")
        cur.execute(self.insert_task, (c.id, "approval", dest, dest, role, at, c.org_unit_id, c.org_path, "offered",
                                       now, now + due, (now + due + esc[0]) if esc else None,
                                       esc[1] if esc else None, False, "normal", False, 1))
        new_task = cur.fetchone()[0]
        # what Hexie writes with a step since the outbox: a notification (and its e-mail) per
        # person the new task is offered to, and a webhook row per event for the subscription
        text = f"新的待办：案件 #{c.id} · {dest}"
        for user_id, email in self.recipients.get(c.step, ()):
            cur.execute(self.insert_notification, (user_id, "task_offered", c.id, new_task, text, text,
                                                   f"/cases/{c.id}#task-{new_task}", True, now))
            notification = cur.fetchone()[0]
            cur.execute(self.insert_outbox, ("notification", "email", "task_offered", json.dumps(
                {"kind": "task_offered", "zh": text, "en": text, "to": email, "case_id": c.id, "task_id": new_task},
                ensure_ascii=False), "pending", False, 0, now, now, None, notification, user_id, c.id, None))
        if self.subscription is not None:
            for seq, kind in ((1, "state_changed"), (2, "task_created")):
                cur.execute(self.insert_outbox, ("webhook", "webhook", kind, json.dumps(
                    {"event": kind, "case_id": c.id, "to_state": dest, "task_id": new_task}),
                    "pending", False, 0, now, now, self.subscription, None, None, c.id, c.seq + seq))
        self.conn.commit()
        c.lock, c.seq, c.head, c.task_id, c.task_lock, c.step = c.lock + 1, c.seq + 1, digest, new_task, 1, c.step + 1

    def close(self) -> None:
        self.conn.close()


def raw_round(stepper: RawStepper, cases: list[RawCase], actors: dict[str, int]) -> float:
    """Steps per second of the baseline over three steps of each case."""
    names = [(a, actors[a], d) for _, a, d in STEPS]
    start = time.perf_counter()
    for k in range(3):
        actor, actor_id, data = names[k]
        for c in cases:
            stepper.step(c, actor_id, actor, data)
    return 3 * len(cases) / (time.perf_counter() - start)


def hexie_round(engine, service, ids: list[int]) -> float:
    """Steps per second of ``WorkflowService.fire`` over three steps of each case."""
    actors = [(trigger, engine.actor(name), data) for trigger, name, data in STEPS]
    start = time.perf_counter()
    for trigger, actor, data in actors:
        for cid in ids:
            service.fire(actor, cid, trigger, data)
    return 3 * len(ids) / (time.perf_counter() - start)


def threaded(n: int, work: Callable[[int], float]) -> float:
    """Run ``work(i)`` (returns steps done) in ``n`` threads at once; steps per second overall."""
    done = [0] * n
    barrier = threading.Barrier(n + 1)

    def run(i: int) -> None:
        barrier.wait()
        done[i] = work(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    barrier.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return sum(done) / (time.perf_counter() - start)


def _process_main(kind: str, url: str, payload: Any, actors: dict[str, int], setup: Any, barrier: Any,
                  extra: tuple) -> None:
    """One worker process of :func:`in_processes`: its own engine (pool) or driver connection."""
    if kind == "hexie":
        from hexie.models import make_engine, make_session_factory
        from hexie.workflows.engine import Engine
        from hexie.workflows.loader import load_definitions_strict
        from hexie.workflows.service import WorkflowService
        from common import BENCH_DEFINITIONS
        with setup:    # one at a time: the definitions are synced (a no-op, here) in a transaction each
            engine = Engine(make_session_factory(make_engine(url)), load_definitions_strict(BENCH_DEFINITIONS))
            engine.sync_definitions()
            engine.bench_subscription = extra[0]
            configure_mail(engine)
            service = WorkflowService(engine)
        warm, cases = payload
        hexie_round(engine, service, warm)      # statements compiled and prepared, the machine built
        barrier.wait()
        hexie_round(engine, service, cases)
    else:
        stepper = RawStepper(url)
        stepper.recipients, stepper.subscription = extra
        barrier.wait()
        raw_round(stepper, payload, actors)
        stepper.close()
    barrier.wait()


def in_processes(kind: str, url: str, payloads: list, actors: dict[str, int], extra: tuple) -> float:
    """Steps per second of ``len(payloads)`` worker processes at once (``kind`` "hexie" or "raw"),
    each over its own cases: how Hexie scales on one machine (gunicorn workers, ``hexie worker``),
    one interpreter lock each."""
    import multiprocessing
    ctx = multiprocessing.get_context("spawn")
    barrier, setup = ctx.Barrier(len(payloads) + 1), ctx.Lock()
    procs = [ctx.Process(target=_process_main, args=(kind, url, p, actors, setup, barrier, extra))
             for p in payloads]
    for proc in procs:
        proc.start()
    barrier.wait(timeout=300)
    start = time.perf_counter()
    barrier.wait(timeout=900)
    elapsed = time.perf_counter() - start
    for proc in procs:
        proc.join()
        if proc.exitcode:
            raise RuntimeError(f"a {kind} worker process failed ({proc.exitcode})")
    steps = sum(3 * len(p[1] if kind == "hexie" else p) for p in payloads)
    return steps / elapsed


def profile_layers(stats: pstats.Stats) -> dict[str, float]:
    """Own (not cumulative) time of a profile by layer, in percent."""
    layers = {"database driver (sqlite3 / psycopg, the server's answers included)": 0.0,
              "SQLAlchemy": 0.0, "hexie.models.fast (the driver-level path)": 0.0,
              "Hexie's rules (workflows/)": 0.0, "transitions (the compiled machine)": 0.0,
              "json, hmac, hashlib": 0.0, "other": 0.0}
    total = 0.0
    for (filename, _, name), (_, _, own, _, _) in stats.stats.items():
        total += own
        if "psycopg" in filename or "sqlite3" in filename or name in (
                "<method 'execute' of 'sqlite3.Cursor' objects>", "<method 'commit' of 'sqlite3.Connection' objects>",
                "<method 'fetchall' of 'sqlite3.Cursor' objects>", "<method 'cursor' of 'sqlite3.Connection' objects>"):
            layers["database driver (sqlite3 / psycopg, the server's answers included)"] += own
        elif "sqlalchemy" in filename:
            layers["SQLAlchemy"] += own
        elif filename.endswith("models/fast.py"):
            layers["hexie.models.fast (the driver-level path)"] += own
        elif "/workflows/" in filename or "/models/" in filename:
            layers["Hexie's rules (workflows/)"] += own
        elif "transitions" in filename:
            layers["transitions (the compiled machine)"] += own
        elif "json" in filename or "hmac" in filename or "hashlib" in filename or "sha256" in name:
            layers["json, hmac, hashlib"] += own
        else:
            layers["other"] += own
    return {k: round(100 * v / total, 1) for k, v in layers.items()} if total else layers


# --- pgbench --------------------------------------------------------------------------

def pgbench_bin() -> str | None:
    return shutil.which("pgbench") or next((str(p) for p in Path("/usr/lib/postgresql").glob("*/bin/pgbench")), None)


def pgbench_init(scale: int) -> dict[str, str] | None:
    binary = pgbench_bin()
    if binary is None:
        return None
    fresh_pg("hexie_bench_pgbench", upgrade=False)
    host, port = re.search(r"@([^:/]+):?(\d+)?/", PG_SERVER).groups()
    conn = {"bin": binary, "host": host, "port": port or "5432", "user": "postgres", "db": "hexie_bench_pgbench"}
    subprocess.run([binary, "-i", "-q", "-s", str(scale), "-h", conn["host"], "-p", conn["port"], "-U", conn["user"],
                    conn["db"]], check=True, capture_output=True)
    return conn


def pgbench_tps(conn: dict[str, str], seconds: int) -> float:
    out = subprocess.run([conn["bin"], "-n", "-c", "4", "-j", "2", "-T", str(seconds), "-h", conn["host"],
                          "-p", conn["port"], "-U", conn["user"], conn["db"]],
                         check=True, capture_output=True, text=True).stdout
    return float(re.search(r"tps = ([0-9.]+)", out).group(1))


# --- one database ------------------------------------------------------------------------

def query_counts(engine, service) -> dict[str, Any]:
    """The SQL statements of each measured step (one case, after a warm-up)."""
    counter = QueryCounter(engine.session_factory.kw["bind"])
    cid = start_cases(engine, service, 1)[0]
    out = {}
    try:
        for trigger, name, data in STEPS:
            actor = engine.actor(name)
            with counter.counting() as statements:
                service.fire(actor, cid, trigger, data)
            out[trigger] = {"count": len(statements), "round_trips": counter.trips if counter.postgres else None,
                            "statements": [s[:160] for s in statements]}
    finally:
        counter.close()
    return out


def bench_db(kind: str, args) -> dict[str, Any]:
    sync = args.sqlite_sync if kind == "sqlite" else None
    url = fresh_sqlite("step") if kind == "sqlite" else fresh_pg()
    engine_kw: dict[str, Any] = {}
    if kind == "postgres":
        engine_kw["pool_size"] = 8
    engine, service, _ = make_bench_engine(url, org=bench_org(2, 2), **engine_kw)
    subscription = outbound_writes(engine)
    if sync:
        event.listen(engine.session_factory.kw["bind"], "connect",
                     lambda dbapi, _: dbapi.execute(f"PRAGMA synchronous={sync}"))
        engine.session_factory.kw["bind"].dispose()
    actors = {name: engine.actor(name).user_id for _, name, _ in STEPS}
    per_round = args.steps // 3
    recipients = raw_recipients(engine)

    # warm-up: caches, compiled statements, the machine
    warm = start_cases(engine, service, 20)
    hexie_round(engine, service, warm)
    stepper = RawStepper(url, sync)
    stepper.recipients, stepper.subscription = recipients, subscription
    raw_round(stepper, raw_cases(engine, start_cases(engine, service, 20)), actors)

    # what if: the same engine with the pool's ping before each checkout (Hexie's default until issue 16)
    if args.what_if:
        nping, nping_service, _ = make_bench_engine(url, pool_pre_ping=True, **engine_kw)
        outbound_writes(nping)
        if sync:
            event.listen(nping.session_factory.kw["bind"], "connect",
                         lambda dbapi, _: dbapi.execute(f"PRAGMA synchronous={sync}"))
        hexie_round(nping, nping_service, start_cases(nping, nping_service, 20))
    print(f"[{kind}] preparing {(3 if args.what_if else 2) * args.rounds * per_round:,} cases ...", flush=True)
    hexie_ids = [start_cases(engine, service, per_round) for _ in range(args.rounds)]
    raw_sets = [raw_cases(engine, start_cases(engine, service, per_round)) for _ in range(args.rounds)]
    nping_ids = [start_cases(nping, nping_service, per_round) for _ in range(args.rounds)] if args.what_if else []
    rounds = []
    for r in range(args.rounds):
        raw = raw_round(stepper, raw_sets[r], actors)
        hexie = hexie_round(engine, service, hexie_ids[r])
        rounds.append({"raw": raw, "hexie": hexie, "ratio": hexie / raw})
        if args.what_if:
            rounds[-1]["hexie_no_pre_ping"] = hexie_round(nping, nping_service, nping_ids[r])
            rounds[-1]["ratio_no_pre_ping"] = rounds[-1]["hexie_no_pre_ping"] / raw
        print(f"[{kind}] round {r + 1}: raw {raw:,.0f}/s  hexie {hexie:,.0f}/s  ratio {hexie / raw:.2f}"
              + (f"  (with pre-ping {rounds[-1]['hexie_no_pre_ping']:,.0f}/s)" if args.what_if else ""), flush=True)
    result: dict[str, Any] = {
        "url": url.split("@")[-1], "sqlite_synchronous": sync or ("FULL (default)" if kind == "sqlite" else None),
        "steps_per_round": 3 * per_round, "rounds": rounds,
        "raw_steps_per_s": median([r["raw"] for r in rounds]),
        "hexie_steps_per_s": median([r["hexie"] for r in rounds]),
        "ratio": median([r["ratio"] for r in rounds]),
        "queries_per_step": query_counts(engine, service),
        # the baseline's: BEGIN (psycopg sends it on its own), 4 writes, a notification and its e-mail
        # row per person told, 2 webhook rows, COMMIT
        "raw_round_trips": " / ".join(str(2 + 4 + 2 * len(recipients[k]) + 2) for k in range(3))
        if kind == "postgres" else "",
    }
    if args.what_if:
        result["hexie_no_pre_ping_steps_per_s"] = median([r["hexie_no_pre_ping"] for r in rounds])
        result["ratio_no_pre_ping"] = median([r["ratio_no_pre_ping"] for r in rounds])
        nping.session_factory.kw["bind"].dispose()

    if args.profile:
        ids = start_cases(engine, service, per_round)
        profile = cProfile.Profile()
        profile.enable()
        hexie_round(engine, service, ids)
        profile.disable()
        text = io.StringIO()
        stats = pstats.Stats(profile, stream=text)
        layers = profile_layers(stats)
        result["profile_layers"] = layers
        text.write("Own time by layer (% of the profiled round):\n")
        for name, share in layers.items():
            text.write(f"  {share:5.1f} %  {name}\n")
        text.write("\n")
        stats.sort_stats("tottime").print_stats(30)
        stats.sort_stats("cumulative").print_stats(40)
        path = result_path(f"step_profile_{kind}{'_' + sync.lower() if sync else ''}.txt")
        path.write_text(text.getvalue())
        result["profile"] = str(path.relative_to(RESULTS.parent.parent))
        print(f"[{kind}] profile: " + ", ".join(f"{k} {v:.0f} %" for k, v in layers.items()), flush=True)

    if kind == "postgres" and args.threads:
        result["threads"] = bench_threads(url, engine, service, actors, args)
    stepper.close()
    engine.session_factory.kw["bind"].dispose()
    return result


def bench_threads(url: str, engine, service, actors, args) -> dict[str, Any]:
    n = args.threads
    per_thread = args.thread_steps // 3
    conn = None if args.no_pgbench else pgbench_init(args.pgbench_scale)
    print(f"[postgres x{n}] preparing {2 * args.thread_rounds * n * per_thread:,} cases ...", flush=True)
    hexie_sets = [[start_cases(engine, service, per_thread) for _ in range(n)] for _ in range(args.thread_rounds)]
    raw_sets = [[raw_cases(engine, start_cases(engine, service, per_thread)) for _ in range(n)]
                for _ in range(args.thread_rounds)]
    # the same in as many processes as threads (--processes)
    m = args.processes
    proc_hexie = [[(start_cases(engine, service, 10), start_cases(engine, service, per_thread)) for _ in range(m)]
                  for _ in range(args.thread_rounds)]
    proc_raw = [[raw_cases(engine, start_cases(engine, service, per_thread)) for _ in range(m)]
                for _ in range(args.thread_rounds)]
    steppers = [RawStepper(url) for _ in range(n)]
    for s in steppers:
        s.recipients, s.subscription = raw_recipients(engine), engine.bench_subscription
    rounds = []
    for r in range(args.thread_rounds):
        row: dict[str, Any] = {}
        if conn:
            row["pgbench"] = pgbench_tps(conn, args.pgbench_seconds)
        row["raw"] = threaded(n, lambda i: (raw_round(steppers[i], raw_sets[r][i], actors), 3 * per_thread)[1])
        row["hexie"] = threaded(n, lambda i: (hexie_round(engine, service, hexie_sets[r][i]), 3 * per_thread)[1])
        row["hexie_vs_raw"] = row["hexie"] / row["raw"]
        if conn:
            row["hexie_vs_pgbench"] = row["hexie"] / row["pgbench"]
            row["raw_vs_pgbench"] = row["raw"] / row["pgbench"]
        if args.processes:
            row["raw_processes"] = in_processes("raw", url, proc_raw[r], actors,
                                                (raw_recipients(engine), engine.bench_subscription))
            row["hexie_processes"] = in_processes("hexie", url, proc_hexie[r], actors, (engine.bench_subscription,))
            row["processes_vs_raw"] = row["hexie_processes"] / row["raw_processes"]
            if conn:
                row["processes_vs_pgbench"] = row["hexie_processes"] / row["pgbench"]
        rounds.append(row)
        print(f"[postgres x{n}] round {r + 1}: " + "  ".join(
            f"{k} {v:,.2f}" if "vs" in k else f"{k} {v:,.0f}/s" for k, v in row.items()), flush=True)
    for s in steppers:
        s.close()
    out: dict[str, Any] = {"threads": n, "steps_per_thread_round": 3 * per_thread, "rounds": rounds}
    for key in rounds[0]:
        out[key] = median([r[key] for r in rounds])
    if conn:
        out["pgbench_command"] = f"pgbench -n -c 4 -j 2 -T {args.pgbench_seconds} (scale {args.pgbench_scale})"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="9 rounds of 3,000 steps; 5 threaded rounds")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--steps", type=int, default=None, help="steps per round (default 900; --full 3000)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 5; --full 9)")
    parser.add_argument("--sqlite-sync", choices=("FULL", "NORMAL", "both"), default="both",
                        help="SQLite synchronous pragma for both sides (Hexie's default is FULL)")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--processes", type=int, default=4,
                        help="PostgreSQL: also this many worker processes at once, each with its own pool (0: not)")
    parser.add_argument("--thread-steps", type=int, default=None, help="steps per thread per round")
    parser.add_argument("--thread-rounds", type=int, default=None)
    parser.add_argument("--pgbench-seconds", type=int, default=10)
    parser.add_argument("--pgbench-scale", type=int, default=10)
    parser.add_argument("--no-pgbench", action="store_true")
    parser.add_argument("--profile", action="store_true", help="write a cProfile of one Hexie round per database")
    parser.add_argument("--what-if", action="store_true",
                        help="also time Hexie with pool_pre_ping on (one round trip more per transaction)")
    args = parser.parse_args()
    args.steps = args.steps or (3000 if args.full else 900)
    args.rounds = args.rounds or (9 if args.full else 5)
    args.thread_steps = args.thread_steps or (3000 if args.full else 1500)
    args.thread_rounds = args.thread_rounds or (5 if args.full else 3)

    results: dict[str, Any] = {}
    if args.db in ("sqlite", "both"):
        for sync in (("FULL", "NORMAL") if args.sqlite_sync == "both" else (args.sqlite_sync,)):
            a = argparse.Namespace(**{**vars(args), "sqlite_sync": None if sync == "FULL" else sync})
            results[f"sqlite_{sync.lower()}"] = bench_db("sqlite", a)
    if args.db in ("postgres", "both"):
        results["postgres"] = bench_db("postgres", args)

    rows = []
    targets = {"sqlite": 0.5, "postgres": 0.6}
    for name, r in results.items():
        target = targets["sqlite" if name.startswith("sqlite") else "postgres"]
        q = r["queries_per_step"]
        rows.append([name, "1 thread", f"raw SQL {r['raw_steps_per_s']:,.0f}/s", r["hexie_steps_per_s"],
                     r["ratio"], f">= {target}", " / ".join(str(q[s]["count"]) for s in q),
                     " / ".join(str(q[s]["round_trips"]) for s in q) if q["submit"]["round_trips"] else "-",
                     r.get("raw_round_trips", "")])
        if "ratio_no_pre_ping" in r:
            rows.append([name, "1 thread, what if: pool pre-ping on", "", r["hexie_no_pre_ping_steps_per_s"],
                         r["ratio_no_pre_ping"], "", "", "", ""])
        t = r.get("threads")
        if t:
            rows.append([name, f"{t['threads']} threads", f"raw SQL {t['raw']:,.0f}/s", t["hexie"],
                         t["hexie_vs_raw"], "", "", "", ""])
            if "pgbench" in t:
                rows.append([name, f"{t['threads']} threads", f"pgbench {t['pgbench']:,.0f} TPS", t["hexie"],
                             t["hexie_vs_pgbench"], ">= 0.4", "", "", ""])
            if "hexie_processes" in t:
                rows.append([name, f"{args.processes} processes", f"raw SQL {t['raw_processes']:,.0f}/s",
                             t["hexie_processes"], t["processes_vs_raw"], "", "", "", ""])
                if "pgbench" in t:
                    rows.append([name, f"{args.processes} processes", f"pgbench {t['pgbench']:,.0f} TPS",
                                 t["hexie_processes"], t["processes_vs_pgbench"], ">= 0.4", "", "", ""])
    print()
    print(table(["database", "load", "baseline", "hexie steps/s", "ratio", "target",
                 "statements/step (submit / reviewed / approve)", "round trips/step", "raw round trips/step"], rows))
    path = write_result("step", {"results": results})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
