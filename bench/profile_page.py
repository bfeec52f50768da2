"""The inbox page in process: where one request's time goes (Flask test client, no HTTP).

Signs the persona of ``bench_http.py`` in (the busiest town cadre of the province database,
through the real login form) and requests her page ``N`` times, after a warm-up. Prints
the p50/p95 of the request, each statement's share (SQLAlchemy's and the driver-level
path's, with their time at the server and in the client), and with ``--profile`` the
top of a cProfile of the requests.

    .venv/bin/python bench/profile_page.py --full                 # 1,000,000 cases (must exist)
    .venv/bin/python bench/profile_page.py --full --profile 40
    .venv/bin/python bench/profile_page.py --full --persona "county chair" --path "/?view=mine"
"""
from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import time
from collections import defaultdict

from common import median, percentile, pg_url

from bench_http import PASSWORD, SECRET, set_password
from bench_inbox import busiest
from generate import INBOX_DATABASE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the 1,000,000-case database (as bench_http --full)")
    parser.add_argument("--requests", type=int, default=60)
    parser.add_argument("--persona", default="town cadre", choices=("village rep", "town cadre", "county chair"))
    parser.add_argument("--path", default="/?view=available")
    parser.add_argument("--username", help="this person instead of the persona (busiest() takes minutes on a busy machine)")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="print the top N of a cProfile")
    args = parser.parse_args()
    url = pg_url(INBOX_DATABASE)
    os.environ.update({"HEXIE_DATABASE_URL": url, "HEXIE_SECRET_KEY": SECRET,
                       "HEXIE_INSTANCE": "/tmp/hexie_bench_instance"})
    username = args.username or busiest(url)[args.persona]
    set_password(url, username)

    from sqlalchemy import event
    from hexie.models import fast
    from hexie.web import create_app
    app = create_app(config={"WTF_CSRF_ENABLED": False})
    engine = app.extensions["hexie"].engine
    sa_engine = engine.session_factory.kw["bind"]

    client = app.test_client()
    answer = client.post("/login", data={"username": username, "password": PASSWORD, "next": "/"})
    assert answer.status_code == 302, answer.status_code

    # statement timings: SQLAlchemy's (cursor events) and the driver-level path's (one message each)
    timings: dict[str, list[float]] = defaultdict(list)
    started: dict[int, float] = {}

    @event.listens_for(sa_engine, "before_cursor_execute")
    def _before(conn, cursor, statement, parameters, context, executemany):   # noqa: ANN001
        started[id(cursor)] = time.perf_counter()

    @event.listens_for(sa_engine, "after_cursor_execute")
    def _after(conn, cursor, statement, parameters, context, executemany):   # noqa: ANN001
        timings[" ".join(statement.split())[:110]].append((time.perf_counter() - started.pop(id(cursor))) * 1000)

    run_postgres = fast._run_postgres

    def timed_run(conn, items, commit=False):   # noqa: ANN001
        began = time.perf_counter()
        try:
            return run_postgres(conn, items, commit)
        finally:
            key = "fast: " + " | ".join(" ".join(i.form.sql.split())[:100] for i in items)
            timings[key].append((time.perf_counter() - began) * 1000)

    fast._run_postgres = timed_run

    import flask.templating
    render = flask.templating._render

    def timed_render(*a, **kw):   # noqa: ANN002, ANN003
        began = time.perf_counter()
        try:
            return render(*a, **kw)
        finally:
            timings["(template) " + a[1].name].append((time.perf_counter() - began) * 1000)

    flask.templating._render = timed_render

    for _ in range(10):   # warm-up: the kept clauses and statements, the template cache
        assert client.get(args.path).status_code == 200
    timings.clear()
    profiler = cProfile.Profile() if args.profile else None
    took = []
    cpu = time.process_time()
    for _ in range(args.requests):
        began = time.perf_counter()
        if profiler:
            profiler.enable()
        answer = client.get(args.path)
        if profiler:
            profiler.disable()
        took.append((time.perf_counter() - began) * 1000)
        assert answer.status_code == 200
    n = args.requests
    cpu = (time.process_time() - cpu) * 1000 / n
    print(f"{username}: {args.path}, {n} requests in process: p50 {median(took):.1f} ms, "
          f"p95 {percentile(took, 95):.1f} ms, CPU {cpu:.1f} ms per request (this process), {len(answer.data):,} bytes")
    total = 0.0
    for sql, ms in sorted(timings.items(), key=lambda kv: -sum(kv[1])):
        total += sum(ms) if not sql.startswith("(template)") else 0
        print(f"  {len(ms) / n:4.1f}/req  {sum(ms) / n:6.2f} ms/req  {sql}")
    print(f"  statements: {sum(len(v) for k, v in timings.items() if not k.startswith('(')) / n:.1f} per request, {total / n:.2f} ms per request")
    if profiler:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(args.profile)
        print(out.getvalue())
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.profile)
        print(out.getvalue())


if __name__ == "__main__":
    main()
