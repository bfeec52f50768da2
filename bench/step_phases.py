"""Where a step's time goes: ``WorkflowService.fire`` cut into its phases, wall and CPU time.

``bench_step.py`` says how fast a step is against raw SQL; this says what the difference is
made of. The step's functions are wrapped with timers (about 0.3 µs each, a few per step)
and one round of ``bench/definitions/approval.yaml`` steps runs, with e-mail and one webhook
subscription as in ``bench_step.py``; then the raw-SQL baseline's round, for its wall and CPU
time per step in the same minute. Phases nest (``fire`` holds everything): each line is
that function's own time including what it calls. The *database* lines are the driver's
calls alone (statements: the cursor's ``execute`` and ``fetchall``; PostgreSQL: sending a
message and waiting for its answers; the commit: the driver's ``commit``).

    .venv/bin/python bench/step_phases.py                        # SQLite (FULL), 900 steps
    .venv/bin/python bench/step_phases.py --db postgres
    .venv/bin/python bench/step_phases.py --sqlite-sync OFF      # no fsync: CPU alone
"""
from __future__ import annotations

import argparse
import functools
import sqlite3
import time
from collections import Counter
from typing import Any

from sqlalchemy import event

from common import bench_org, fresh_pg, fresh_sqlite, make_bench_engine, table, write_result

import bench_step

#: (module or class path, attribute): the phases timed, outermost first.
PHASES = [
    ("hexie.workflows.service:WorkflowService", "fire"),
    ("hexie.workflows.service:WorkflowService", "_fire"),
    ("hexie.workflows.service:WorkflowService", "_case_for_update"),
    ("hexie.workflows.service:WorkflowService", "_context"),
    ("hexie.workflows.service:WorkflowService", "_check_task_holder"),
    ("hexie.workflows.machine:CompiledProcess", "select"),
    ("hexie.workflows.machine:CompiledProcess", "fire"),
    ("hexie.workflows.service:WorkflowService", "_leave"),
    ("hexie.workflows.audit", "append_event"),
    ("hexie.workflows.service:WorkflowService", "_enter"),
    ("hexie.workflows.service:WorkflowService", "_open_task"),
    ("hexie.workflows.notifications", "notify"),
    ("hexie.workflows.service", "save_case"),
    ("hexie.workflows.engine:Engine", "_write_outbox"),
    ("hexie.workflows.queries", "can_see"),
    ("sqlalchemy.orm:sessionmaker", "__call__"),
    ("sqlalchemy.orm:Session", "connection"),
    ("sqlalchemy.orm:Session", "commit"),
    ("sqlalchemy.orm:Session", "close"),
]
#: the driver's own commit (the statements are timed by :class:`_TimedCursor` and psycopg's wait)
COMMIT = ("sqlalchemy.engine.default:DefaultDialect", "do_commit", "database: commit")
STATEMENTS = "database: statements"


def _target(path: str) -> Any:
    import importlib
    module, _, cls = path.partition(":")
    found = importlib.import_module(module)
    return getattr(found, cls) if cls else found


class Timers:
    """Wraps each phase with a timer while :meth:`timing` lasts."""

    def __init__(self) -> None:
        self.spent: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self._undo: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str, label: str) -> None:
        fn = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        spent, calls, clock = self.spent, self.calls, time.perf_counter_ns

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                spent[label] += clock() - start
                calls[label] += 1
        self._undo.append((owner, name, fn))
        setattr(owner, name, timed)

    def install(self, kind: str) -> None:
        for path, name in PHASES:
            owner = _target(path)
            self.wrap(owner, name, f"{getattr(owner, '__name__', path)}.{name}")
        self.wrap(_target(COMMIT[0]), COMMIT[1], COMMIT[2])
        if kind == "postgresql":      # every answer from the server is waited for here
            import psycopg
            self.wrap(psycopg.Connection, "wait", STATEMENTS)
        _TimedCursor.timers = self

    def remove(self) -> None:
        for owner, name, fn in reversed(self._undo):
            setattr(owner, name, fn)
        self._undo.clear()
        _TimedCursor.timers = None


class _TimedCursor(sqlite3.Cursor):
    """SQLite: the driver's statements, timed while :class:`Timers` are installed."""

    timers: Timers | None = None

    def _timed(self, call: Any, *args: Any) -> Any:
        timers = _TimedCursor.timers
        if timers is None:
            return call(*args)
        start = time.perf_counter_ns()
        try:
            return call(*args)
        finally:
            timers.spent[STATEMENTS] += time.perf_counter_ns() - start
            timers.calls[STATEMENTS] += 1

    def execute(self, *args: Any) -> Any:
        return self._timed(super().execute, *args)

    def executemany(self, *args: Any) -> Any:
        return self._timed(super().executemany, *args)

    def fetchall(self) -> Any:
        return self._timed(super().fetchall)


class _TimedConnection(sqlite3.Connection):
    def cursor(self, factory: Any = _TimedCursor) -> Any:   # noqa: D102
        return super().cursor(factory)


def measure(kind: str, steps: int, sync: str | None) -> dict[str, Any]:
    url = fresh_sqlite("phases") if kind == "sqlite" else fresh_pg("hexie_bench_phases")
    extra = {"connect_args": {"check_same_thread": False, "factory": _TimedConnection}} if kind == "sqlite" else {}
    engine, service, _ = make_bench_engine(url, org=bench_org(2, 2), **extra)
    subscription = bench_step.outbound_writes(engine)
    bench_step.configure_mail(engine)
    if sync:
        bind = engine.session_factory.kw["bind"]
        event.listen(bind, "connect", lambda dbapi, _: dbapi.execute(f"PRAGMA synchronous={sync}"))
        bind.dispose()
    actors = {name: engine.actor(name).user_id for _, name, _ in bench_step.STEPS}
    bench_step.hexie_round(engine, service, bench_step.start_cases(engine, service, 20))    # warm
    stepper = bench_step.RawStepper(url, sync)
    stepper.recipients, stepper.subscription = bench_step.raw_recipients(engine), subscription
    bench_step.raw_round(stepper, bench_step.raw_cases(engine, bench_step.start_cases(engine, service, 20)), actors)
    per_round = steps // 3
    ids = bench_step.start_cases(engine, service, per_round)
    raw_set = bench_step.raw_cases(engine, bench_step.start_cases(engine, service, per_round))

    timers = Timers()
    timers.install(engine.session_factory.kw["bind"].dialect.name)
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        bench_step.hexie_round(engine, service, ids)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    finally:
        timers.remove()
    raw_cpu, raw_wall = time.process_time(), time.perf_counter()
    bench_step.raw_round(stepper, raw_set, actors)
    raw_cpu, raw_wall = time.process_time() - raw_cpu, time.perf_counter() - raw_wall
    stepper.close()
    engine.session_factory.kw["bind"].dispose()
    n = 3 * per_round
    phases = [{"phase": label, "us_per_step": spent / n / 1000, "calls_per_step": timers.calls[label] / n}
              for label, spent in timers.spent.most_common()]
    database = sum(p["us_per_step"] for p in phases if p["phase"].startswith("database"))
    return {"db": kind, "sqlite_synchronous": sync or ("FULL (default)" if kind == "sqlite" else None),
            "steps": n, "wall_us": wall / n * 1e6, "cpu_us": cpu / n * 1e6, "database_us": database,
            "raw_wall_us": raw_wall / n * 1e6, "raw_cpu_us": raw_cpu / n * 1e6, "phases": phases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument("--steps", type=int, default=900)
    parser.add_argument("--sqlite-sync", choices=("FULL", "NORMAL", "OFF"), default=None,
                        help="SQLite synchronous pragma for both sides (Hexie's default is FULL)")
    args = parser.parse_args()
    results = [measure(kind, args.steps, args.sqlite_sync if kind == "sqlite" else None)
               for kind in (("sqlite", "postgres") if args.db == "both" else (args.db,))]
    for r in results:
        print(f"\n{r['db']} ({r['sqlite_synchronous'] or 'server on loopback'}): a step {r['wall_us']:.0f} µs wall, "
              f"{r['cpu_us']:.0f} µs CPU, of which the database's calls {r['database_us']:.0f} µs; "
              f"raw SQL {r['raw_wall_us']:.0f} µs wall, {r['raw_cpu_us']:.0f} µs CPU (ratio "
              f"{r['raw_wall_us'] / r['wall_us']:.2f})")
        print(table(["phase (includes what it calls)", "µs per step", "calls per step"],
                    [[p["phase"], p["us_per_step"], p["calls_per_step"]] for p in r["phases"]]))
    path = write_result("step_phases", {"results": results})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
