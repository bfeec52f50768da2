"""Inbox latency at province scale: the ``mine`` and ``available`` inboxes and the case page.

On the database bench/generate.py builds (100 counties, 14,000 villages, 17,500
people; 100,000 cases by default, 1,000,000 with ``--full``, three tasks each), for a
village representative, a town cadre and a county chair (each the busiest of her
kind), it times at the service layer:

* ``CaseQueries.tasks(actor, "mine")`` and ``tasks(actor, "available")`` (first page of 50);
* ``CaseQueries.case(actor, id)`` for the cases of her inbox, in turn.

Baseline (same run, interleaved): the very SQL statements each call sent (captured with
an SQLAlchemy event listener, parameters included), replayed through the bare psycopg
driver: what the database alone costs. The ratio is Hexie p95 / baseline p95. The
statements' ``EXPLAIN (ANALYZE, BUFFERS)`` plans are written to
bench/results/inbox_plans.txt.

    .venv/bin/python bench/bench_inbox.py            # generates 100,000 cases if needed
    .venv/bin/python bench/bench_inbox.py --full     # 1,000,000 cases (generation ~5 min)
"""
from __future__ import annotations

import argparse
import time
from typing import Any, Callable

from common import DEFINITIONS, RESULTS, result_path, median, percentile, pg_url, table, write_result

from sqlalchemy import create_engine, event, text
from sqlalchemy.pool import NullPool

from generate import INBOX_DATABASE, generate

PERSONAS = {
    "village rep": ("village_rep", "rep_"),
    "town cadre": ("town_cadre", "cadre_"),
    "county chair": ("county_manager", "mgr1_"),
}


def existing_cases(url: str) -> int | None:
    try:
        db = create_engine(url, poolclass=NullPool)
        with db.connect() as conn:
            n = conn.scalar(text("SELECT count(*) FROM hexie_cases"))
        db.dispose()
        return n
    except Exception:
        return None


def busiest(url: str) -> dict[str, str]:
    """The username of the busiest village rep, town cadre and county chair."""
    db = create_engine(url, poolclass=NullPool)
    out = {}
    with db.connect() as conn:
        for persona, (role, prefix) in PERSONAS.items():
            level = {"village_rep": "village", "town_cadre": "town", "county_manager": "county"}[role]
            code = conn.scalar(text(
                "SELECT u.code FROM hexie_org_units u JOIN hexie_tasks t ON t.org_path LIKE u.path || '%' "
                "WHERE u.level = :level AND t.status IN ('offered', 'allocated') AND t.role = :role "
                "GROUP BY u.code ORDER BY count(*) DESC, u.code LIMIT 1"), {"level": level, "role": role})
            out[persona] = prefix + code
    db.dispose()
    return out


class Capture:
    """The statements (with parameters) an SQLAlchemy engine sends while ``on``."""

    def __init__(self, sa_engine) -> None:
        self.on = False
        self.statements: list[tuple[str, Any]] = []
        event.listen(sa_engine, "before_cursor_execute", self._seen)

    def _seen(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if self.on:
            self.statements.append((statement, parameters))

    def record(self, fn: Callable[[], Any]) -> list[tuple[str, Any]]:
        self.statements, self.on = [], True
        try:
            fn()
        finally:
            self.on = False
        return self.statements


def timed(fn: Callable[[], Any]) -> float:
    began = time.perf_counter()
    fn()
    return (time.perf_counter() - began) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="1,000,000 cases, 3,000,000 tasks")
    parser.add_argument("--cases", type=int, default=None)
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--repeats", type=int, default=200, help="calls per query and persona")
    args = parser.parse_args()
    n = args.cases or (1_000_000 if args.full else 100_000)
    url = pg_url(INBOX_DATABASE)
    generated = None
    if args.regenerate or existing_cases(url) != n:
        print(f"generating {n:,} cases ...", flush=True)
        generated = generate(n)
        print(f"generated in {generated['timings']['total_s']:.0f} s: {generated['counts']}", flush=True)

    import psycopg
    from hexie.models import make_engine, make_session_factory
    from hexie.workflows.engine import Engine
    from hexie.workflows.loader import load_definitions_strict
    from hexie.workflows.queries import CaseQueries

    engine = Engine(make_session_factory(make_engine(url)), load_definitions_strict(DEFINITIONS))
    engine.sync_definitions()
    queries = CaseQueries(engine)
    capture = Capture(engine.session_factory.kw["bind"])
    raw = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True)

    def replay(statements):
        def run():
            with raw.cursor() as cur:
                for sql, params in statements:
                    cur.execute(sql, params)
                    cur.fetchall()
        return run

    people = busiest(url)
    results: dict[str, Any] = {"cases": n, "personas": people}
    rows, plans = [], []
    for persona, username in people.items():
        actor = engine.actor(username)
        mine = queries.tasks(actor, "mine")
        available = queries.tasks(actor, "available")
        case_ids = [t["case_id"] for t in mine.items + available.items] or [1]
        calls = {
            "tasks(mine)": (lambda: queries.tasks(actor, "mine"), None),
            "tasks(available)": (lambda: queries.tasks(actor, "available"), None),
        }
        sizes = {"tasks(mine)": mine.total, "tasks(available)": available.total}
        for name, (fn, _) in calls.items():
            statements = capture.record(fn)
            hexie, base = [], []
            for _ in range(5):
                fn(), replay(statements)()       # warm both
            for _ in range(args.repeats):       # interleaved: the same minute, the same cache
                hexie.append(timed(fn))
                base.append(timed(replay(statements)))
            rows.append(_row(persona, username, name, sizes[name], hexie, base, len(statements)))
            results[f"{persona}: {name}"] = rows[-1][-1]
            plans.append((persona, name, statements))
        # the case page, over the cases of her inbox in turn
        hexie, base = [], []
        page_statements = None
        for i in range(args.repeats + 5):
            cid = case_ids[i % len(case_ids)]
            statements = capture.record(lambda: queries.case(actor, cid))
            if i < 5:
                continue
            hexie.append(timed(lambda: queries.case(actor, cid)))
            base.append(timed(replay(statements)))
            page_statements = page_statements or statements
        rows.append(_row(persona, username, "case()", len(case_ids), hexie, base, len(page_statements)))
        results[f"{persona}: case()"] = rows[-1][-1]
        plans.append((persona, "case()", page_statements))

    path = result_path("inbox_plans.txt")
    with raw.cursor() as cur, open(path, "w") as out:
        for persona, name, statements in plans:
            for sql, params in statements:
                cur.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql, params)
                plan = "\n".join(r[0] for r in cur.fetchall())
                out.write(f"-- {persona} ({people[persona]}): {name}\n{_inline(cur, sql, params)}\n{plan}\n\n")
    raw.close()
    engine.session_factory.kw["bind"].dispose()

    print()
    print(table(["persona", "user", "call", "rows", "statements", "hexie p50 ms", "hexie p95 ms", "raw SQL p95 ms",
                 "hexie/raw p95", "target p95"], [r[:-1] for r in rows]))
    out = write_result("inbox", {**results, "generated": generated, "plans": str(path.relative_to(RESULTS.parent.parent))})
    print(f"\nplans in {path}\nwrote {out}")


def _row(persona, username, name, size, hexie, base, nstatements):
    summary = {"rows": size, "statements": nstatements, "hexie_p50_ms": median(hexie),
               "hexie_p95_ms": percentile(hexie, 95), "raw_p50_ms": median(base), "raw_p95_ms": percentile(base, 95)}
    summary["ratio_p95"] = summary["hexie_p95_ms"] / summary["raw_p95_ms"]
    return [persona, username, name, size, nstatements, summary["hexie_p50_ms"], summary["hexie_p95_ms"],
            summary["raw_p95_ms"], summary["ratio_p95"], "<= 15 ms", summary]


def _inline(cur, sql: str, params) -> str:
    """The statement with its parameters, for reading."""
    try:
        return cur.mogrify(sql, params)
    except Exception:
        return f"{sql}\n-- {params}"


if __name__ == "__main__":
    main()
