"""Bulk start: 138,316 elder-support households through ``hexie cases import``.

Generates a realistic CSV (one county: 14 towns x 10 villages, names, addresses,
phones, ages, children, living arrangements; seeded, so the same file every run),
then runs the real command in a subprocess on PostgreSQL and on SQLite and reports its
wall time and peak RSS (``os.wait4``). A tenth of the file is imported too: a flat
peak RSS whatever the row count shows that the import streams.

Baseline (same run): the same rows written with the bare DB-API driver, by its
fastest bulk path, in batches of the same size (``COPY FROM STDIN`` on PostgreSQL,
``executemany`` on SQLite): case, audit event and task per row, values computed in
Python from the CSV, no validation, no hashing, no rules. The ratio is baseline
time / Hexie time (1.0 would be as fast as the raw writes).

    .venv/bin/python bench/bench_import.py            # 138,316 rows (about three minutes)
    .venv/bin/python bench/bench_import.py --rows 20000
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

from common import ROOT, bench_org, fresh_pg, fresh_sqlite, make_bench_engine, median, table, write_result, DEFINITIONS

HOUSEHOLDS = 138_316
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈"
GIVEN = "秀英桂兰玉兰德厚建国志强春华明亮淑珍永福金凤红梅海燕丽娟文军国庆翠花长生宝山福贵兰英招娣根生"
ARRANGEMENTS = (("with_children", 55), ("rotating", 25), ("alone", 17), ("institution", 3))
HEADER = ["org_unit", "household_head", "household_address", "phone", "elder_names", "elder_count",
          "youngest_elder_age", "children_count", "children_names", "living_arrangement"]


def _name(rng: random.Random, surname: str | None = None) -> str:
    given = "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))
    return (surname or rng.choice(SURNAMES)) + given


def generate_csv(path: Path, rows: int, towns: int = 14, villages: int = 10, seed: int = 138316) -> Path:
    """Write ``rows`` households spread over the county's villages (streamed, seeded)."""
    rng = random.Random(seed)
    codes = [f"t{t:02d}v{v:02d}" for t in range(1, towns + 1) for v in range(1, villages + 1)]
    choices, weights = zip(*ARRANGEMENTS)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        for i in range(rows):
            surname = rng.choice(SURNAMES)
            head = _name(rng, surname)
            elders = 2 if rng.random() < 0.7 else 1
            elder_names = head if elders == 1 else f"{head}、{_name(rng)}"
            children = rng.choice((1, 2, 2, 3, 3, 3, 4, 4, 5, 6))
            kids = "、".join(f"{_name(rng, surname)}（1{rng.randint(3, 9)}{rng.randint(0, 999_999_999):09d}）"
                            for _ in range(children))
            phone = f"1{rng.randint(3, 9)}{rng.randint(0, 999_999_999):09d}" if rng.random() < 0.8 else ""
            writer.writerow([codes[i % len(codes)], head, f"{codes[i % len(codes)]}村{rng.randint(1, 12)}组"
                             f"{rng.randint(1, 120)}号", phone, elder_names, elders, rng.randint(60, 96),
                             children, kids, rng.choices(choices, weights)[0]])
    return path


def run_import(url: str, csv_path: Path, batch: int) -> dict:
    """``hexie cases import`` in a subprocess, reaped with ``os.wait4`` for its own peak RSS (MiB)."""
    env = {**os.environ, "HEXIE_DATABASE_URL": url}
    log = csv_path.with_suffix(".log")
    began = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "hexie"), "cases", "import", "elder_support",
                                 str(csv_path), "--batch", str(batch)], env=env, cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - began
    proc.returncode = os.waitstatus_to_exitcode(status)
    text = log.read_text().strip()
    if proc.returncode != 0:
        raise RuntimeError(f"import failed ({proc.returncode}): {text[-2000:]}")
    return {"seconds": wall, "peak_rss_mib": usage.ru_maxrss / 1024, "output": text.splitlines()[-1]}


# --- the raw baseline --------------------------------------------------------------------

def raw_import(url: str, csv_path: Path, batch: int, version_id: int, units: dict[str, tuple[int, str]]) -> float:
    """Seconds to write the same case, event and task rows with the bare driver (COPY / executemany)."""
    sqlite = url.startswith("sqlite")
    if sqlite:
        conn = sqlite3.connect(url.removeprefix("sqlite:///"))
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        p = "?"
        first = (conn.execute("SELECT coalesce(max(id), 0) FROM hexie_cases").fetchone()[0]) + 1
    else:
        import psycopg
        conn = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
        p = "%s"
        first = conn.execute("SELECT coalesce(max(id), 0) FROM hexie_cases").fetchone()[0] + 1
    case_sql = ("INSERT INTO hexie_cases (id, process_version_id, process_key, state, data, org_unit_id, org_path, "
                "created_at, updated_at, subject, confidential, lock_version, audit_head) VALUES "
                f"({', '.join([p] * 13)})")
    event_sql = ("INSERT INTO hexie_audit_events (case_id, seq, at, actor, kind, to_state, changes, hash) VALUES "
                 f"({', '.join([p] * 8)})")
    task_sql = ("INSERT INTO hexie_tasks (case_id, process_key, state, name, role, org_unit_id, org_path, status, "
                "created_at, due_at, priority, optional, escalated, lock_version) VALUES "
                f"({', '.join([p] * 14)})")
    began = time.perf_counter()
    now = datetime.utcnow()
    due = now + timedelta(days=7)
    case_id = first
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        done = False
        while not done:
            cases, events, tasks = [], [], []
            for row in reader:
                unit_id, path = units[row.pop("org_unit")]
                data = json.dumps(row, ensure_ascii=False)
                cases.append((case_id, version_id, "elder_support", "registration", data, unit_id, path, now, now,
                              row["household_head"], False, 1, "0" * 64))
                events.append((case_id, 1, now, "system", "started", "registration", data, "0" * 64))
                tasks.append((case_id, "elder_support", "registration", "registration", "village_rep", unit_id,
                              path, "offered", now, due, "normal", False, False, 1))
                case_id += 1
                if len(cases) == batch:
                    break
            else:
                done = True
            if cases:
                cur = conn.cursor()
                if sqlite:
                    cur.executemany(case_sql, cases)
                    cur.executemany(event_sql, events)
                    cur.executemany(task_sql, tasks)
                else:  # COPY: the fastest way the driver has
                    for sql, rows in ((case_sql, cases), (event_sql, events), (task_sql, tasks)):
                        with cur.copy(sql.split(" VALUES")[0].replace("INSERT INTO", "COPY") + " FROM STDIN") as cp:
                            for r in rows:
                                cp.write_row(r)
                conn.commit()
    seconds = time.perf_counter() - began
    if not sqlite:
        conn.execute("SELECT setval(pg_get_serial_sequence('hexie_cases', 'id'), (SELECT max(id) FROM hexie_cases))")
        conn.commit()
    conn.close()
    return seconds


def prepare(kind: str, tag: str, prefix: str = "") -> tuple[str, int, dict[str, tuple[int, str]]]:
    """A fresh database with the county loaded: (url, elder_support version id, units).

    ``prefix`` (``--prefix``): part of the databases' names, so that two sessions on one server
    do not drop each other's (``hexie_bench_import_<prefix>_<tag>``, ``/tmp/hexie_bench_import_...``)."""
    from sqlalchemy import select
    from hexie.models import OrgUnit
    tag = f"{prefix}_{tag}" if prefix else tag
    url = fresh_sqlite(f"import_{tag}") if kind == "sqlite" else fresh_pg(f"hexie_bench_import_{tag}")
    engine, _, _ = make_bench_engine(url, definitions=DEFINITIONS, org=bench_org(14, 10))
    _, version_id, _ = engine.current("elder_support")
    with engine.session_factory() as s:
        units = {code: (uid, path) for code, uid, path in s.execute(select(OrgUnit.code, OrgUnit.id, OrgUnit.path))}
    engine.session_factory.kw["bind"].dispose()
    return url, version_id, units


def check(url: str, rows: int, verify: bool) -> dict:
    """Counts after the import, and (optionally) the whole audit chain verified."""
    from sqlalchemy import func, select
    from hexie.models import AuditEvent, Case, Task, make_engine, make_session_factory
    from hexie.workflows.audit import verify_chain
    db = make_engine(url)
    with make_session_factory(db)() as s:
        counts = {"cases": s.scalar(select(func.count()).select_from(Case)),
                  "tasks": s.scalar(select(func.count()).select_from(Task)),
                  "audit_events": s.scalar(select(func.count()).select_from(AuditEvent))}
        assert counts == {"cases": rows, "tasks": rows, "audit_events": rows}, counts
        if verify:
            began = time.perf_counter()
            problems = verify_chain(s)
            counts["verify_chain_problems"] = len(problems)
            counts["verify_chain_seconds"] = time.perf_counter() - began
    db.dispose()
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=HOUSEHOLDS)
    parser.add_argument("--full", action="store_true", help="the full 138,316 rows (the default already)")
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--repeats", type=int, default=1, help="imports per database (median)")
    parser.add_argument("--verify", action="store_true", help="also verify the whole audit chain afterwards")
    parser.add_argument("--prefix", default="", help="part of the databases' and files' names (e.g. your branch), "
                        "so that runs of two sessions do not collide")
    args = parser.parse_args()
    rows = HOUSEHOLDS if args.full else args.rows

    stem = f"/tmp/hexie_bench_elder_{args.prefix}_" if args.prefix else "/tmp/hexie_bench_elder_"
    csv_path = Path(f"{stem}{rows}.csv")
    small_rows = max(1, rows // 10)
    small_path = Path(f"{stem}{small_rows}.csv")
    began = time.perf_counter()
    generate_csv(csv_path, rows)
    generate_csv(small_path, small_rows)
    print(f"generated {csv_path} ({rows:,} rows, {csv_path.stat().st_size / 2**20:.1f} MiB) "
          f"in {time.perf_counter() - began:.1f} s", flush=True)

    results = {}
    kinds = ("postgres", "sqlite") if args.db == "both" else (args.db,)
    for kind in kinds:
        runs, raws = [], []
        for r in range(args.repeats):
            url, version_id, units = prepare(kind, "raw", args.prefix)
            raws.append(raw_import(url, csv_path, args.batch, version_id, units))
            url, _, _ = prepare(kind, "hexie", args.prefix)
            run = run_import(url, csv_path, args.batch)
            runs.append(run)
            print(f"[{kind}] raw {raws[-1]:.1f} s  hexie {run['seconds']:.1f} s  peak RSS {run['peak_rss_mib']:.0f} MiB"
                  f"  ({run['output']})", flush=True)
        counts = check(url, rows, args.verify)
        small_url, _, _ = prepare(kind, "small", args.prefix)
        small = run_import(small_url, small_path, args.batch)
        hexie_s = median([r["seconds"] for r in runs])
        raw_s = median(raws)
        results[kind] = {"rows": rows, "batch": args.batch, "hexie_seconds": hexie_s, "raw_seconds": raw_s,
                         "ratio": raw_s / hexie_s, "rows_per_s": rows / hexie_s,
                         "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
                         "small_rows": small_rows, "small_seconds": small["seconds"],
                         "small_peak_rss_mib": small["peak_rss_mib"], "runs": runs, "raw_runs": raws,
                         "after": counts}
        print(f"[{kind}] {small_rows:,} rows: {small['seconds']:.1f} s, peak RSS {small['peak_rss_mib']:.0f} MiB",
              flush=True)

    print()
    print(table(["database", "rows", "raw driver s", "hexie import s", "ratio", "target", "rows/s",
                 "peak RSS MiB", f"peak RSS at {small_rows:,} rows"],
                [[k, r["rows"], r["raw_seconds"], r["hexie_seconds"], r["ratio"], "<= 30 s", r["rows_per_s"],
                  r["peak_rss_mib"], r["small_peak_rss_mib"]] for k, r in results.items()]))
    path = write_result("import", {"csv": str(csv_path), "results": results})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    sys.exit(main())
