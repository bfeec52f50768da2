"""The import's pass 2 built and written in one process, in a builder process, or with a writer
thread: ``import_cases`` in this process, the ways alternated, a fresh database each time.

    .venv/bin/python bench/bench_import_modes.py --rows 20000 --db postgres --rounds 3 --modes plain,proc

Modes: ``plain`` (one batch after another), ``proc`` (``bulk.BUILD_PROCESS``), ``thread``
(``bulk.PIPELINE``). Prints each round's wall and CPU time (``time.process_time``: this process
only, not the builder's) and the medians. The CSV is ``bench_import.py``'s (generated if missing).
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

from bench_import import generate_csv, prepare
from common import median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="postgres")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--modes", default="plain,proc")
    parser.add_argument("--prefix", default="modes", help="part of the databases' and files' names")
    args = parser.parse_args()
    csv_path = Path(f"/tmp/hexie_bench_elder_{args.prefix}_{args.rows}.csv")
    if not csv_path.exists():
        generate_csv(csv_path, args.rows)
    from hexie.cli import build_engine
    from hexie.workflows import bulk
    from hexie.workflows.access import SYSTEM
    modes = args.modes.split(",")
    seen: dict[str, list[tuple[float, float]]] = {m: [] for m in modes}
    for _ in range(args.rounds):
        for mode in modes:
            url, _, _ = prepare(args.db, "modes", args.prefix)
            os.environ["HEXIE_DATABASE_URL"] = url
            engine = build_engine()
            bulk.PIPELINE, bulk.BUILD_PROCESS = mode == "thread", mode == "proc"
            gc.collect()
            gc.freeze()
            wall, cpu = time.perf_counter(), time.process_time()
            result = bulk.import_cases(engine, SYSTEM, "elder_support", csv_path)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            gc.unfreeze()
            assert result.started == args.rows, result.errors[:3]
            seen[mode].append((wall, cpu))
            print(f"{args.db} {mode}: wall {wall:.2f} s, CPU {cpu:.2f} s (load {os.getloadavg()[0]:.1f})", flush=True)
            engine.session_factory.kw["bind"].dispose()
    for mode in modes:
        print(f"{args.db} {mode}: median wall {median([w for w, _ in seen[mode]]):.2f} s, "
              f"CPU {median([c for _, c in seen[mode]]):.2f} s")


if __name__ == "__main__":
    sys.exit(main())
