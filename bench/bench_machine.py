"""``transitions``: a Machine built per case against the shared compiled machine.

What the architecture avoids (architecture.md: "never build a transitions.Machine per
case or per request"). For each real process definition in definitions/, in the same
run:

* **per case**: build a ``transitions.Machine`` with the process's states and
  transitions for one case object, then fire one trigger on it;
* **shared**: fire the same trigger through ``hexie.workflows.machine.compile_process(spec)``,
  the one machine all cases of a version share (built once, outside the timing).

Time per case is the median over rounds; memory per case is measured with
``tracemalloc`` as the bytes still allocated per case after building and firing for
1,000 cases that are kept alive (as a server holding them for a request would).

    .venv/bin/python bench/bench_machine.py          # 2,000 cases x 5 rounds per process
    .venv/bin/python bench/bench_machine.py --full   # 20,000 cases x 9 rounds
"""
from __future__ import annotations

import argparse
import gc
import time
import tracemalloc
from datetime import date

from common import DEFINITIONS, median, table, write_result

from transitions import Machine

from hexie.workflows.access import Actor, Assignment
from hexie.workflows.loader import load_definitions_strict
from hexie.workflows.machine import FireContext, compile_process


class CaseModel:
    """What a per-case machine is bound to."""

    def __init__(self, state: str) -> None:
        self.state = state


def first_move(spec):
    """(state, trigger) of the process's first transition out of its initial state."""
    initial = spec.initial_state.name
    for t in spec.transitions:
        if initial in t.sources and t.when is None:
            return initial, t.trigger
    t = next(t for t in spec.transitions if initial in t.sources)
    return initial, t.trigger


def per_case_machine(spec, state: str, trigger: str) -> CaseModel:
    """Build a Machine for one case and fire one trigger on it (conditions as plain callables)."""
    model = CaseModel(state)
    machine = Machine(model=model, states=[s.name for s in spec.states], initial=state,
                      auto_transitions=False, send_event=True)
    for t in spec.transitions:
        for source in t.sources:
            machine.add_transition(t.trigger, source, t.dest, conditions=[lambda event: True])
    getattr(model, trigger)()
    model.machine = machine  # the case keeps its machine, as an object-per-case design would
    return model


def shared_machine(compiled, ctx, state: str, trigger: str) -> str:
    return compiled.fire(state, trigger, ctx)


def context(spec) -> FireContext:
    roles = {r for t in spec.transitions for r in (t.roles or ())} | {
        task.role for s in spec.states for task in s.tasks}
    actor = Actor("bench", 1, tuple(Assignment(r, "county", "/county/", lvl)
                                    for r in sorted(roles) for lvl in ("county", "town", "village")))
    return FireContext.for_case(spec, {}, actor, "/county/t01/t01v01/", None, date(2026, 3, 2))


def memory_per_case(fn, n: int) -> float:
    """Bytes per case still allocated after ``fn()`` ran ``n`` times, results kept alive."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = [fn() for _ in range(n)]
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del kept
    return (after - before) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--cases", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    n = args.cases or (20_000 if args.full else 2_000)
    rounds = args.rounds or (9 if args.full else 5)

    registry = load_definitions_strict(DEFINITIONS)
    results, rows = {}, []
    for key, spec in sorted(registry.processes.items()):
        state, trigger = first_move(spec)
        compiled = compile_process(spec)
        ctx = context(spec)
        if compiled.select(state, trigger, ctx).transition is None:
            raise SystemExit(f"{key}: {trigger} from {state} is not allowed in the bench context")
        per, shared = [], []
        for _ in range(rounds):  # alternate, so both see the same machine state
            start = time.perf_counter()
            for _ in range(n):
                per_case_machine(spec, state, trigger)
            per.append((time.perf_counter() - start) / n)
            start = time.perf_counter()
            for _ in range(n):
                shared_machine(compiled, ctx, state, trigger)
            shared.append((time.perf_counter() - start) / n)
        mem_per = memory_per_case(lambda: per_case_machine(spec, state, trigger), min(n, 1000))
        mem_shared = memory_per_case(lambda: shared_machine(compiled, ctx, state, trigger), min(n, 1000))
        r = {"states": len(spec.states), "transitions": sum(len(t.sources) for t in spec.transitions),
             "move": f"{state} --{trigger}-->", "per_case_us": median(per) * 1e6, "shared_us": median(shared) * 1e6,
             "per_case_bytes": mem_per, "shared_bytes": mem_shared}
        r["time_ratio"] = r["per_case_us"] / r["shared_us"]
        results[key] = r
        rows.append([key, r["states"], r["transitions"], r["shared_us"], r["per_case_us"], r["time_ratio"],
                     r["shared_bytes"] / 1024, r["per_case_bytes"] / 1024])
    print(table(["process", "states", "transitions", "shared fire µs", "per-case build+fire µs",
                 "per-case / shared", "shared KiB/case", "per-case KiB/case"], rows))
    path = write_result("machine", {"cases": n, "rounds": rounds, "results": results})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
