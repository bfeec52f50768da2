"""Markdown tables of docs/performance.md from the latest bench/results/*.json.

    .venv/bin/python bench/report.py            # prints every section's table
    .venv/bin/python bench/report.py --fill docs/performance.md   # replaces the placeholders
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import RESULTS


def load(name: str) -> dict | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def md(headers, rows) -> str:
    def cell(v):
        if isinstance(v, float):
            return f"{v:,.2f}" if abs(v) < 10 else f"{v:,.0f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(out)


def ok(value: float, target: float, higher: bool = True) -> str:
    good = value >= target if higher else value <= target
    return "met" if good else "**not met**"


def step_sections(d: dict) -> dict[str, str]:
    rows, statements = [], ""
    for name, r in d["results"].items():
        target = 0.5 if name.startswith("sqlite") else 0.6
        label = {"sqlite_full": "SQLite, synchronous=FULL (Hexie's)", "sqlite_normal": "SQLite, synchronous=NORMAL",
                 "postgres": "PostgreSQL"}[name]
        rows.append([label, "1 thread", f"raw SQL {r['raw_steps_per_s']:,.0f} steps/s", r["hexie_steps_per_s"],
                     r["ratio"], f"≥ {target} — {ok(r['ratio'], target)}"])
        if "ratio_no_pre_ping" in r:
            rows.append([label, "1 thread, what if: no pool pre-ping", "same", r["hexie_no_pre_ping_steps_per_s"],
                         r["ratio_no_pre_ping"], ""])
        t = r.get("threads")
        if t:
            rows.append([label, f"{t['threads']} threads", f"raw SQL {t['raw']:,.0f} steps/s", t["hexie"],
                         t["hexie_vs_raw"], ""])
            if "pgbench" in t:
                rows.append([label, f"{t['threads']} threads", f"pgbench -c 4 -j 2: {t['pgbench']:,.0f} TPS",
                             t["hexie"], t["hexie_vs_pgbench"], f"≥ 0.4 — {ok(t['hexie_vs_pgbench'], 0.4)}"])
            if "hexie_processes" in t:
                rows.append([label, f"{t['threads']} processes", f"raw SQL {t['raw_processes']:,.0f} steps/s",
                             t["hexie_processes"], t["processes_vs_raw"], ""])
                if "pgbench" in t:
                    rows.append([label, f"{t['threads']} processes", f"pgbench -c 4 -j 2: {t['pgbench']:,.0f} TPS",
                                 t["hexie_processes"], t["processes_vs_pgbench"],
                                 f"≥ 0.4 — {ok(t['processes_vs_pgbench'], 0.4)}"])
        if not statements:
            q = r["queries_per_step"]
            statements = "\n".join(f"{i}. `{s[:110]}…`" if len(s) > 110 else f"{i}. `{s}`"
                                   for i, s in enumerate(q["reviewed"]["statements"], 1))
    table = md(["database", "load", "baseline", "Hexie steps/s", "ratio", "target"], rows)
    any_r = next(iter(d["results"].values()))
    per = ", ".join(f"{k} {v['count']}" for k, v in any_r["queries_per_step"].items())
    return {"STEP_TABLE": table + f"\n\nStatements per step (SQLAlchemy event listener): {per}; "
                                  f"{any_r['steps_per_round']:,} steps per round, medians of "
                                  f"{len(any_r['rounds'])} rounds.",
            "STEP_STATEMENTS": "The statements of `reviewed` (PostgreSQL adds the pool's ping, `BEGIN` "
                               "and `COMMIT`):\n\n" + statements}


def peer_section(d: dict) -> str:
    rows = [[k, r["spiff_steps_per_s"], r["hexie_steps_per_s"], r["ratio"], f"≥ 1.5 — {ok(r['ratio'], 1.5)}",
             r.get("raw_ratio", "—"), r["spiff_bare_step_us"], r["spiff_json_bytes"]] for k, r in d["results"].items()]
    return md(["database", "SpiffWorkflow steps/s", "Hexie steps/s", "Hexie / SpiffWorkflow", "target",
               "raw SQL of Hexie's writes / SpiffWorkflow (the ceiling)",
               "SpiffWorkflow bare step µs (no database)", "workflow JSON bytes"], rows)


def inbox_sections(d: dict) -> dict[str, str]:
    rows = []
    for key, r in d.items():
        if not isinstance(r, dict) or "hexie_p95_ms" not in r:
            continue
        persona, call = key.split(": ")
        rows.append([persona, call, r["rows"], r["statements"], r["hexie_p50_ms"], r["hexie_p95_ms"],
                     r["raw_p50_ms"], r["raw_p95_ms"], r["ratio_p95"], f"≤ 15 ms — {ok(r['hexie_p95_ms'], 15, False)}"])
    table = md(["persona", "call", "rows (total / cases in turn)", "statements", "Hexie p50 ms", "Hexie p95 ms",
                "raw SQL p50 ms", "raw SQL p95 ms", "Hexie / raw (p95)", "target"], rows)
    personas = ", ".join(f"{k}: `{v}`" for k, v in d["personas"].items())
    return {"INBOX_TABLE": f"{d['cases']:,} cases; personas ({personas}); 200 calls each.\n\n" + table}


def import_section(d: dict) -> str:
    rows = [[k, r["rows"], r["raw_seconds"], r["hexie_seconds"], r["ratio"],
             f"≤ 30 s — {ok(r['hexie_seconds'], 30, False)}", r["rows_per_s"], r["peak_rss_mib"],
             f"{r['small_peak_rss_mib']:.0f} MiB at {r['small_rows']:,} rows"] for k, r in d["results"].items()]
    return md(["database", "rows", "raw driver s", "`hexie cases import` s (wall, whole command)",
               "raw / Hexie", "target", "rows/s", "peak RSS MiB", "peak RSS, a tenth of the file"], rows)


def http_section(d: dict) -> str:
    rows = []
    for name, r in d["results"].items():
        target = "" if name.startswith("minimal") else f"≤ 30 ms — {ok(r['p95_ms'], 30, False)}"
        rows.append([name, r["p50_ms"], r["p95_ms"], target, r["requests_per_s"], r["ratio_to_minimal"],
                     r["errors"]])
    return md(["target", "p50 ms (1 client)", "p95 ms (1 client)", "p95 target", "req/s (8 clients)",
               "ratio to minimal Flask", "errors"], rows)


def machine_section(d: dict) -> str:
    rows = [[k, r["states"], r["transitions"], r["shared_us"], r["per_case_us"], r["time_ratio"],
             r["shared_bytes"] / 1024, r["per_case_bytes"] / 1024] for k, r in d["results"].items()]
    return md(["process", "states", "transitions", "shared machine: fire µs", "machine per case: build + fire µs",
               "per case / shared", "shared KiB per case", "per case KiB per case"], rows) + \
        f"\n\n{d['cases']:,} cases per round, medians of {d['rounds']} rounds."


def sections() -> dict[str, str]:
    out: dict[str, str] = {}
    if (d := load("step")):
        out.update(step_sections(d))
    if (d := load("peer")):
        out["PEER_TABLE"] = peer_section(d)
    if (d := load("inbox")):
        out.update(inbox_sections(d))
    if (d := load("import")):
        out["IMPORT_TABLE"] = import_section(d)
    if (d := load("http")):
        out["HTTP_TABLE"] = http_section(d)
    if (d := load("machine")):
        out["MACHINE_TABLE"] = machine_section(d)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fill", type=Path, help="replace the PLACEHOLDERS of this markdown file")
    args = parser.parse_args()
    found = sections()
    if args.fill:
        text = args.fill.read_text()
        for key, value in found.items():
            text = text.replace(key, value)
        args.fill.write_text(text)
    else:
        for key, value in found.items():
            print(f"## {key}\n\n{value}\n")


if __name__ == "__main__":
    main()
