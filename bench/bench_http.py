"""HTTP: the inbox page and ``GET /api/v1/tasks`` under gunicorn, against a minimal Flask endpoint.

Both apps are served the same way in the same run: ``gunicorn -w 4`` (sync workers) on
127.0.0.1, Hexie (``web:create_app()``) on the province database of bench/generate.py,
the baseline (bench/minimal_app.py: one route returning a small JSON) beside it. The
load generator is a Python client on loopback only, bounded in requests and in time:

* latency: one client, requests one after another (p50, p95; the inbox target is p95
  <= 30 ms through HTTP);
* throughput: 8 client threads, each its own connections, until the request budget or
  the time budget is spent; requests per second against the baseline's, same client.

The persona is the busiest town cadre (as bench_inbox.py picks her); the page is her
``available`` inbox (signed in through the real login form), the API call the same
inbox with a Bearer token.

    .venv/bin/python bench/bench_http.py            # 100,000-case province (generated if missing)
    .venv/bin/python bench/bench_http.py --full     # 1,000,000 cases
"""
from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import subprocess
import threading
import time
import urllib.parse


from common import ROOT, median, percentile, pg_url, table, write_result

from bench_inbox import busiest, existing_cases
from generate import INBOX_DATABASE, generate

HEXIE_PORT, MINIMAL_PORT = 18431, 18432
SECRET = "hexie-bench-secret-key-not-for-production"
PASSWORD = "bench-pass-123"


class Server:
    """A gunicorn with 4 sync workers on 127.0.0.1:port, stopped by ``stop()`` (its own pid only)."""

    def __init__(self, app: str, port: int, env: dict[str, str], workers: int = 4) -> None:
        self.port = port
        self.log = open(f"/tmp/hexie_bench_gunicorn_{port}.log", "w")
        self.proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "gunicorn"), "-w", str(workers), "-b",
                                      f"127.0.0.1:{port}", "--timeout", "60", app],
                                     cwd=ROOT, env={**os.environ, **env}, stdout=self.log, stderr=self.log)
        deadline = time.time() + 90
        while time.time() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/__nothing__")
                conn.getresponse().read()
                return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"gunicorn on {port} exited; see {self.log.name}")
                time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"gunicorn on {port} did not start; see {self.log.name}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


def request(port: int, path: str, headers: dict[str, str], method: str = "GET", body: str | None = None
            ) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def sign_in(port: int, username: str) -> str:
    """The session cookie of ``username`` after the real login form."""
    status, headers, body = request(port, "/login", {})
    cookie = headers.get("set-cookie", "").split(";")[0]
    token = re.search(rb'name="csrf_token" value="([^"]+)"', body).group(1).decode()
    form = urllib.parse.urlencode({"username": username, "password": PASSWORD, "csrf_token": token, "next": "/"})
    status, headers, body = request(port, "/login", {"Cookie": cookie, "Content-Type":
                                                     "application/x-www-form-urlencoded"}, "POST", form)
    if status != 302:
        raise RuntimeError(f"login failed: {status} {body[:300]!r}")
    return headers["set-cookie"].split(";")[0]


def latency(port: int, path: str, headers: dict[str, str], n: int, seconds: float) -> list[float]:
    out, deadline = [], time.time() + seconds
    for _ in range(n):
        if time.time() > deadline:
            break
        began = time.perf_counter()
        status, _, _ = request(port, path, headers)
        out.append((time.perf_counter() - began) * 1000)
        if status != 200:
            raise RuntimeError(f"{path}: HTTP {status}")
    return out


def throughput(port: int, path: str, headers: dict[str, str], threads: int, budget: int, seconds: float) -> dict:
    """Requests per second with ``threads`` clients until ``budget`` requests or ``seconds`` are spent."""
    lock = threading.Lock()
    state = {"left": budget, "done": 0, "errors": 0}
    deadline = time.time() + seconds

    def client() -> None:
        while time.time() < deadline:
            with lock:
                if state["left"] <= 0:
                    return
                state["left"] -= 1
            try:
                status, _, _ = request(port, path, headers)
            except OSError:
                status = 0
            with lock:
                state["done" if status == 200 else "errors"] += 1

    workers = [threading.Thread(target=client) for _ in range(threads)]
    began = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - began
    return {"requests": state["done"], "errors": state["errors"], "seconds": elapsed,
            "per_s": state["done"] / elapsed}


def set_password(url: str, username: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool
    from hexie.workflows.auth import hash_password
    db = create_engine(url, poolclass=NullPool)
    with db.begin() as conn:
        conn.execute(text("UPDATE hexie_users SET password_hash = :h WHERE username = :u"),
                     {"h": hash_password(PASSWORD), "u": username})
    db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="1,000,000 cases (generated if missing)")
    parser.add_argument("--cases", type=int, default=None)
    parser.add_argument("--latency-requests", type=int, default=200)
    parser.add_argument("--requests", type=int, default=3000, help="request budget per throughput run")
    parser.add_argument("--seconds", type=float, default=20, help="time budget per run")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--username", help="this persona instead of the busiest town cadre (finding her scans "
                                           "every open task: minutes on a busy machine)")
    args = parser.parse_args()
    n = args.cases or (1_000_000 if args.full else 100_000)
    url = pg_url(INBOX_DATABASE)
    if existing_cases(url) != n:
        print(f"generating {n:,} cases ...", flush=True)
        generate(n)
    username = args.username or busiest(url)["town cadre"]
    set_password(url, username)

    env = {"HEXIE_DATABASE_URL": url, "HEXIE_SECRET_KEY": SECRET, "HEXIE_INSTANCE": "/tmp/hexie_bench_instance"}
    servers = []
    try:
        servers.append(Server("web:create_app()", HEXIE_PORT, env))
        servers.append(Server("bench.minimal_app:app", MINIMAL_PORT, env))
        cookie = sign_in(HEXIE_PORT, username)
        from hexie.workflows.engine import create_engine
        from hexie.workflows.tokens import issue_token
        token = issue_token(username, engine=create_engine(url), secret=SECRET, origin="cli")
        bearer = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        targets = {
            "inbox page (available)": (HEXIE_PORT, "/?view=available", {"Cookie": cookie}),
            "GET /api/v1/tasks?view=available": (HEXIE_PORT, "/api/v1/tasks?view=available", bearer),
            "minimal Flask endpoint": (MINIMAL_PORT, "/ping", {}),
        }
        for name, (port, path, headers) in targets.items():   # warm every worker
            latency(port, path, headers, 20, 30)
        lat = {name: [] for name in targets}
        thr = {name: [] for name in targets}
        for r in range(args.rounds):      # alternate targets within each round: the same minute
            for name, (port, path, headers) in targets.items():
                lat[name] += latency(port, path, headers, args.latency_requests // args.rounds, args.seconds)
            for name, (port, path, headers) in targets.items():
                thr[name].append(throughput(port, path, headers, args.threads, args.requests, args.seconds))
            print(f"round {r + 1}: " + "  ".join(f"{k.split(' ')[0]} {v[-1]['per_s']:.0f}/s" for k, v in thr.items()),
                  flush=True)
    finally:
        for s in servers:
            s.stop()

    base = median([t["per_s"] for t in thr["minimal Flask endpoint"]])
    results, rows = {}, []
    for name in targets:
        per_s = median([t["per_s"] for t in thr[name]])
        results[name] = {"p50_ms": median(lat[name]), "p95_ms": percentile(lat[name], 95), "requests_per_s": per_s,
                         "ratio_to_minimal": per_s / base, "throughput_runs": thr[name],
                         "errors": sum(t["errors"] for t in thr[name])}
        rows.append([name, results[name]["p50_ms"], results[name]["p95_ms"],
                     "<= 30 ms" if name != "minimal Flask endpoint" else "", per_s, per_s / base])
    print()
    print(table(["target", "p50 ms (1 client)", "p95 ms (1 client)", "target p95",
                 f"req/s ({args.threads} clients)", "ratio to minimal Flask"], rows))
    path = write_result("http", {"cases": n, "persona": username, "gunicorn": "-w 4 (sync)",
                                 "client": f"{args.threads} threads, <= {args.requests} requests and "
                                           f"<= {args.seconds:.0f} s per run", "results": results})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
