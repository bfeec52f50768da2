"""Benchmark: loading and checking definitions versus plain ``yaml.safe_load``.

Generates 50 distinct process definitions (variations of a realistic 8-state
process) in a temporary folder, then times :func:`hexie.workflows.loader.load_definitions`
over them against a baseline measured in the same run on the same files: reading
them with ``yaml.safe_load`` and nothing else. Each figure is the median of 5 runs.
Prints a table and writes ``bench/results/load.json``.

    .venv/bin/python bench/bench_load.py
"""
from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from common import write_result  # noqa: E402
from hexie.workflows.loader import load_definitions  # noqa: E402

PROCESSES = 50
RUNS = 5

ROLES = """\
levels: [county, town, village]
roles:
  village_rep:     {label: {zh: 村妇代会主任, en: Village representative}}
  town_cadre:      {label: {zh: 镇妇联干部, en: Town cadre}}
  town_chair:      {label: {zh: 镇妇联主席, en: Town chair}}
  county_manager:  {label: {zh: 县妇联主席, en: County chair}}
  finance_officer: {label: {zh: 财务, en: Finance officer}}
  legal_aid:       {label: {zh: 法律援助, en: Legal aid}}
"""

KINDS = ["piglets", "goats", "cash", "seeds", "training", "loan"]


def process_text(n: int) -> str:
    """The n-th variation: its own key, limits, durations, extra fields and a parallel review."""
    extra = "\n".join(f"  note_{n}_{k}: {{type: textarea, label: {{zh: 备注{k}, en: Note {k}}}}}"
                      for k in range(n % 5))
    choices = ", ".join(KINDS[: 2 + n % 5])
    review = ("    tasks:\n"
              "      - {name: survey, role: town_cadre, form: [survey_date, visit_notes], due: %dd}\n"
              "      - {name: legal, role: legal_aid, optional: true, due: P%dD}\n" % (3 + n % 7, 5 + n % 9)
              if n % 2 else
              "    task: {role: town_cadre, form: [survey_date, visit_notes], due: %dd,\n"
              "           escalate: {after: %dd, to: town_chair}, separate_from: [application]}\n"
              % (3 + n % 7, 5 + n % 4))
    return f"""\
process: aid_{n:02d}
title: {{zh: 救助流程{n}, en: Aid process {n}}}
description: {{zh: 基准测试用的流程变体, en: A variation for the benchmark}}
org_level: town
starters: [village_rep, town_chair]

fields:
  applicant_name: {{type: text, required: true, max_length: {40 + n}, label: {{zh: 申请人, en: Applicant}}}}
  id_number:      {{type: text, pattern: '^[0-9]{{17}}[0-9X]$', sensitive: true}}
  household_size: {{type: integer, min: 1, max: {10 + n % 20}}}
  monthly_income: {{type: money, min: 0}}
  aid_kind:       {{type: choice, choices: [{choices}]}}
  approved_amount: {{type: money, min: 0, max: {500 + 10 * n}}}
  survey_date:    {{type: date, required: true}}
  survey_photos:  {{type: file, multiple: true}}
  visit_on:       {{type: date}}
  visit_notes:    {{type: textarea}}
{extra}

states:
  - name: application
    label: {{zh: 申请, en: Application}}
    task: {{role: village_rep, form: [applicant_name, id_number, household_size, monthly_income], due: {1 + n % 4}d}}
  - name: review
    label: {{zh: 调查, en: Review}}
{review}  - name: approval
    task: {{role: county_manager, at: county, due: {2 + n % 5}d, priority: high}}
  - name: disbursement
    task: {{role: finance_officer, form: [{{field: approved_amount, required: true}}, aid_kind]}}
  - name: follow_up
    task: {{role: town_cadre, assign: {{same_as: application}}, form: [visit_notes, visit_on]}}
    timers:
      - {{after: {90 + n}d, trigger: visit_due}}
      - {{at: visit_on, trigger: visit_due}}
  - {{name: closed, final: true}}
  - {{name: rejected, final: true}}
  - {{name: withdrawn, final: true}}

transitions:
  - {{trigger: submit,   source: application, dest: review}}
  - {{trigger: surveyed, source: review, dest: approval}}
  - {{trigger: approve,  source: approval, dest: disbursement, quorum: {1 + n % 3},
     when: "monthly_income / household_size < {400 + 10 * n}"}}
  - {{trigger: reject,   source: approval, dest: rejected, comment: required}}
  - {{trigger: return,   source: approval, dest: review, comment: required}}
  - {{trigger: disburse, source: disbursement, dest: follow_up, form: [survey_photos]}}
  - {{trigger: visit_due, source: follow_up, dest: closed, roles: [system]}}
  - {{trigger: close,    source: follow_up, dest: closed, roles: [town_chair]}}
  - {{trigger: withdraw, source: '*', dest: withdrawn, comment: required, interrupt: true}}
"""


def write_definitions(folder: Path) -> list[Path]:
    (folder / "roles.yaml").write_text(ROLES, encoding="utf-8")
    paths = []
    for n in range(PROCESSES):
        path = folder / f"aid_{n:02d}.yaml"
        path.write_text(process_text(n), encoding="utf-8")
        paths.append(path)
    return paths


def interleaved_runs(actions: dict[str, Callable[[], object]]) -> dict[str, list[float]]:
    """Wall times of ``RUNS`` rounds, each action once per round (after a warm-up).

    Interleaving keeps a passing load on the machine from favouring one side.
    """
    for action in actions.values():
        action()
    times: dict[str, list[float]] = {name: [] for name in actions}
    for _ in range(RUNS):
        for name, action in actions.items():
            start = time.perf_counter()
            action()
            times[name].append(time.perf_counter() - start)
    return times


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="hexie-bench-") as tmp:
        folder = Path(tmp)
        paths = write_definitions(folder) + [folder / "roles.yaml"]

        registry = load_definitions(folder)
        if registry.errors or len(registry.processes) != PROCESSES:
            print("\n".join(map(str, registry.errors)), file=sys.stderr)
            return 1

        def baseline() -> None:
            for path in paths:
                yaml.safe_load(path.read_text(encoding="utf-8"))

        def compose_only() -> None:
            for path in paths:
                yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)

        runs = interleaved_runs({"baseline": baseline, "compose": compose_only,
                                 "ours": lambda: load_definitions(folder)})
    base, composed, ours = (statistics.median(runs[k]) for k in ("baseline", "compose", "ours"))
    files = len(paths)
    rows = [
        ("yaml.safe_load (baseline)", base, 1.0),
        ("yaml.compose (SafeLoader)", composed, composed / base),
        ("load_definitions (ours)", ours, ours / base),
    ]
    print(f"{PROCESSES} processes + roles.yaml ({files} files), median of {RUNS} runs")
    print(f"{'what':<28}{'total ms':>10}{'ms/file':>10}{'ratio':>8}")
    for name, seconds, ratio in rows:
        print(f"{name:<28}{seconds * 1000:>10.1f}{seconds * 1000 / files:>10.2f}{ratio:>8.2f}")

    path = write_result("load", {
        "processes": PROCESSES, "files": files, "runs": RUNS,
        "baseline_seconds": base, "compose_seconds": composed, "ours_seconds": ours,
        "ratio": ours / base, "runs_seconds": runs,
        "pyyaml_libyaml": bool(getattr(yaml, "__with_libyaml__", False)),
    })
    print(f"ratio (ours / baseline): {ours / base:.2f}  -> {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
