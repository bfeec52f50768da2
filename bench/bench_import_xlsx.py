"""Bulk start from Excel: 138,316 elder-support households through ``hexie cases import FILE.xlsx``.

The same seeded register as ``bench_import.py`` (one county: 14 towns x 10 villages), written
once as CSV and once as an .xlsx workbook (openpyxl, write-only; numbers as numbers, as a
village keeps them). The real command runs in a subprocess on each, on a fresh database each
time, and reports wall time and peak RSS (``os.wait4``).

Baseline (same run): the same rows imported from the CSV file by the same command. The ratio is
CSV time / xlsx time (1.0: reading Excel costs nothing extra). The file reading alone is timed
too (python-calamine over the workbook vs the csv module over the CSV, the two passes' worth),
to show where the difference lies.

    .venv/bin/python bench/bench_import_xlsx.py                # 138,316 rows, SQLite (a few minutes)
    .venv/bin/python bench/bench_import_xlsx.py --rows 20000 --db postgres
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

from bench_import import HOUSEHOLDS, check, generate_csv, prepare, run_import
from common import ROOT, median, table, write_result



def write_xlsx(csv_path: Path, xlsx_path: Path) -> Path:
    """The CSV's rows as a workbook (write-only: streamed), whole numbers typed as numbers."""
    from openpyxl import Workbook
    book = Workbook(write_only=True)
    sheet = book.create_sheet("登记表")
    with open(csv_path, newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.reader(f)):
            sheet.append(row if i == 0 else [int(v) if v.isdigit() and len(v) < 6 else v for v in row])
    book.save(xlsx_path)
    return xlsx_path


def read_seconds(path: Path) -> float:
    """Seconds to read every row twice (the import's two passes), without checking or writing."""
    from hexie.workflows.bulk import xlsx_rows
    began = time.perf_counter()
    for _ in range(2):
        if path.suffix == ".xlsx":
            n = sum(1 for _ in xlsx_rows(path))
        else:
            with open(path, newline="", encoding="utf-8-sig") as f:
                n = sum(1 for _ in csv.DictReader(f))
    assert n > 0
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=HOUSEHOLDS)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--repeats", type=int, default=1, help="imports of each file (median)")
    args = parser.parse_args()

    csv_path = Path(f"/tmp/hexie_bench_elder_{args.rows}.csv")
    xlsx_path = csv_path.with_suffix(".xlsx")
    began = time.perf_counter()
    if not (csv_path.exists() and xlsx_path.exists() and xlsx_path.stat().st_mtime >= csv_path.stat().st_mtime):
        generate_csv(csv_path, args.rows)      # seeded: the same file every run, so a kept one is reused
        write_xlsx(csv_path, xlsx_path)
    print(f"generated {csv_path.name} ({csv_path.stat().st_size / 2**20:.1f} MiB) and {xlsx_path.name} "
          f"({xlsx_path.stat().st_size / 2**20:.1f} MiB), {args.rows:,} rows, in {time.perf_counter() - began:.1f} s",
          flush=True)
    reading = {"csv": read_seconds(csv_path), "xlsx": read_seconds(xlsx_path)}
    print(f"reading twice: csv {reading['csv']:.1f} s, xlsx {reading['xlsx']:.1f} s", flush=True)

    runs: dict[str, list[dict]] = {"csv": [], "xlsx": []}
    for r in range(args.repeats):
        for kind, path in (("csv", csv_path), ("xlsx", xlsx_path)):
            url, _, _ = prepare(args.db, f"{kind}{r}")
            run = run_import(url, path, args.batch)
            runs[kind].append(run)
            check(url, args.rows, verify=False)
            print(f"[{args.db}] {kind}: {run['seconds']:.1f} s, peak RSS {run['peak_rss_mib']:.0f} MiB "
                  f"({run['output']})", flush=True)
    csv_s, xlsx_s = median([r["seconds"] for r in runs["csv"]]), median([r["seconds"] for r in runs["xlsx"]])
    result = {"rows": args.rows, "db": args.db, "batch": args.batch, "csv_seconds": csv_s, "xlsx_seconds": xlsx_s,
              "ratio": csv_s / xlsx_s, "xlsx_rows_per_s": args.rows / xlsx_s,
              "csv_peak_rss_mib": max(r["peak_rss_mib"] for r in runs["csv"]),
              "xlsx_peak_rss_mib": max(r["peak_rss_mib"] for r in runs["xlsx"]),
              "read_twice_seconds": reading, "runs": runs}
    print()
    print(table(["database", "rows", "csv import s (baseline)", "xlsx import s", "ratio csv/xlsx", "xlsx rows/s",
                 "peak RSS csv MiB", "peak RSS xlsx MiB", "read x2 csv s", "read x2 xlsx s"],
                [[args.db, args.rows, csv_s, xlsx_s, result["ratio"], result["xlsx_rows_per_s"],
                  result["csv_peak_rss_mib"], result["xlsx_peak_rss_mib"], reading["csv"], reading["xlsx"]]]))
    path = write_result("import_xlsx", {"csv": str(csv_path), "xlsx": str(xlsx_path), "result": result})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    sys.exit(main())
