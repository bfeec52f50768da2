"""Against a peer: the same approval process in SpiffWorkflow 3 (BPMN), persisted as JSON.

bench/approval.bpmn is bench/definitions/approval.yaml in BPMN: the same three
steps per case (application submitted, review with notes, approval through the
gateway's guard ``amount <= 2000``), roles as lanes. A persistent BPMN engine keeps
each running workflow as its serialized JSON, so each SpiffWorkflow step, in one
transaction on the same database and the same SQLAlchemy engine as Hexie:

1. ``SELECT`` the workflow's JSON ``FOR UPDATE`` (the row lock a concurrent engine needs);
2. ``BpmnWorkflowSerializer.deserialize_json``;
3. find the ready user task, check its lane against the actor's role, set the form
   data, ``run()`` it and ``do_engine_steps()`` (gateway conditions are evaluated);
4. ``serialize_json`` and ``UPDATE`` the row; commit.

Hexie's step is ``WorkflowService.fire`` (bench_step.py), on the same database, in
alternating rounds; the ratio is Hexie steps/s over SpiffWorkflow steps/s (median of
the per-round ratios). SpiffWorkflow's bare step (no database) is reported too, and, in the
same rounds, the raw-SQL baseline of bench_step.py (Hexie's writes through the bare driver, no
engine at all): ``raw / Spiff`` is the most any engine making Hexie's rows could reach.

    .venv/bin/python bench/bench_peer.py            # a few minutes
    .venv/bin/python bench/bench_peer.py --full
"""
from __future__ import annotations

import argparse
import time


from common import BENCH_DIR, bench_org, fresh_pg, fresh_sqlite, make_bench_engine, median, table, write_result

from sqlalchemy import Column, DateTime, Integer, MetaData, Table, Text, select, update

from bench_step import (APPLICATION, STEPS, RawStepper, hexie_round, outbound_writes, raw_cases, raw_recipients,
                        raw_round, start_cases)

from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnParser
from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.util.task import TaskState

BPMN = BENCH_DIR / "approval.bpmn"
metadata = MetaData()
workflows = Table("spiff_workflows", metadata,
                  Column("id", Integer, primary_key=True),
                  Column("serialization", Text, nullable=False),
                  Column("updated_at", DateTime))

#: (expected user task, role of its lane, form data) of the three steps, as in bench_step.STEPS.
SPIFF_STEPS = (("application", "village_rep", {}),
               ("review", "town_cadre", {"review_notes": "情况属实，同意上报"}),
               ("approval_task", "county_manager", {"decision": "approve"}))


class Spiff:
    """SpiffWorkflow with its workflows kept as JSON rows."""

    def __init__(self, engine) -> None:
        parser = BpmnParser()
        parser.add_bpmn_file(str(BPMN))
        self.spec = parser.get_spec("approval")
        self.serializer = BpmnWorkflowSerializer()
        self.engine = engine                   # workflows.engine.Engine: its session factory and clock
        metadata.create_all(engine.session_factory.kw["bind"])

    def start(self, n: int) -> list[int]:
        ids = []
        with self.engine.session_factory() as s:
            for _ in range(n):
                wf = BpmnWorkflow(self.spec)
                wf.do_engine_steps()
                wf.get_next_task(state=TaskState.READY, manual=True).data.update(APPLICATION)
                ids.append(s.execute(workflows.insert().values(serialization=self.serializer.serialize_json(wf),
                                                               updated_at=self.engine.clock())
                                     .returning(workflows.c.id)).scalar_one())
            s.commit()
        return ids

    def step(self, wf_id: int, roles: frozenset[str], expected: str, data: dict) -> None:
        with self.engine.session_factory() as s:
            text = s.execute(select(workflows.c.serialization).where(workflows.c.id == wf_id)
                             .with_for_update()).scalar_one()
            wf = self.serializer.deserialize_json(text)
            task = wf.get_next_task(state=TaskState.READY, manual=True)
            if task is None or task.task_spec.name != expected:
                raise RuntimeError(f"workflow {wf_id}: expected {expected}, found {task and task.task_spec.name}")
            if task.task_spec.lane not in roles:
                raise PermissionError(f"{task.task_spec.lane} task")
            task.data.update(data)
            task.run()
            wf.do_engine_steps()
            s.execute(update(workflows).where(workflows.c.id == wf_id)
                      .values(serialization=self.serializer.serialize_json(wf), updated_at=self.engine.clock()))
            s.commit()

    def bare_step_us(self, n: int) -> float:
        """Microseconds per step without a database: deserialize, run, serialize."""
        wf = BpmnWorkflow(self.spec)
        wf.do_engine_steps()
        wf.get_next_task(state=TaskState.READY, manual=True).data.update(APPLICATION)
        start_json = self.serializer.serialize_json(wf)
        began = time.perf_counter()
        for _ in range(n):
            text = start_json
            for expected, _role, data in SPIFF_STEPS:
                wf = self.serializer.deserialize_json(text)
                task = wf.get_next_task(state=TaskState.READY, manual=True)
                task.data.update(data)
                task.run()
                wf.do_engine_steps()
                text = self.serializer.serialize_json(wf)
        return (time.perf_counter() - began) / (3 * n) * 1e6


def spiff_round(spiff: Spiff, ids: list[int]) -> float:
    roles = {name: frozenset([role]) for _, role, _ in SPIFF_STEPS for name in [role]}
    began = time.perf_counter()
    for expected, role, data in SPIFF_STEPS:
        for wf_id in ids:
            spiff.step(wf_id, roles[role], expected, data)
    return 3 * len(ids) / (time.perf_counter() - began)


def bench_db(kind: str, args) -> dict:
    url = fresh_sqlite("peer") if kind == "sqlite" else fresh_pg("hexie_bench_peer")
    engine, service, _ = make_bench_engine(url, org=bench_org(2, 2))
    subscription = outbound_writes(engine)    # Hexie's step with what it writes besides the case: notifications, outbox rows
    spiff = Spiff(engine)
    per_round = args.steps // 3
    actors = {name: engine.actor(name).user_id for _, name, _ in STEPS}
    stepper = RawStepper(url)
    stepper.recipients, stepper.subscription = raw_recipients(engine), subscription
    hexie_round(engine, service, start_cases(engine, service, 20))   # warm-up
    spiff_round(spiff, spiff.start(20))
    raw_round(stepper, raw_cases(engine, start_cases(engine, service, 20)), actors)
    print(f"[{kind}] preparing {3 * args.rounds * per_round:,} cases ...", flush=True)
    hexie_sets = [start_cases(engine, service, per_round) for _ in range(args.rounds)]
    spiff_sets = [spiff.start(per_round) for _ in range(args.rounds)]
    raw_sets = [raw_cases(engine, start_cases(engine, service, per_round)) for _ in range(args.rounds)]
    rounds = []
    for r in range(args.rounds):
        sp = spiff_round(spiff, spiff_sets[r])
        hx = hexie_round(engine, service, hexie_sets[r])
        raw = raw_round(stepper, raw_sets[r], actors)
        rounds.append({"spiff": sp, "hexie": hx, "raw": raw, "ratio": hx / sp, "raw_ratio": raw / sp})
        print(f"[{kind}] round {r + 1}: spiff {sp:,.0f}/s  hexie {hx:,.0f}/s  ratio {hx / sp:.2f}"
              f"  (raw SQL {raw:,.0f}/s: {raw / sp:.2f} of Spiff)", flush=True)
    stepper.close()
    with engine.session_factory() as s:
        size = len(s.execute(select(workflows.c.serialization).limit(1)).scalar_one())
    result = {"steps_per_round": 3 * per_round, "rounds": rounds,
              "spiff_steps_per_s": median([r["spiff"] for r in rounds]),
              "hexie_steps_per_s": median([r["hexie"] for r in rounds]),
              "ratio": median([r["ratio"] for r in rounds]),
              "raw_steps_per_s": median([r["raw"] for r in rounds]),
              "raw_ratio": median([r["raw_ratio"] for r in rounds]),
              "spiff_bare_step_us": spiff.bare_step_us(200), "spiff_json_bytes": size}
    engine.session_factory.kw["bind"].dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="9 rounds of 3,000 steps")
    parser.add_argument("--db", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--steps", type=int, default=None, help="steps per round (default 600; --full 3000)")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 5; --full 9)")
    args = parser.parse_args()
    args.steps = args.steps or (3000 if args.full else 600)
    args.rounds = args.rounds or (9 if args.full else 5)
    results = {}
    for kind in (("sqlite", "postgres") if args.db == "both" else (args.db,)):
        results[kind] = bench_db(kind, args)
    import SpiffWorkflow
    print()
    print(table(["database", "SpiffWorkflow steps/s", "Hexie steps/s", "Hexie / Spiff", "target",
                 "raw SQL of Hexie's writes / Spiff", "Spiff bare step µs", "Spiff JSON bytes"],
                [[k, r["spiff_steps_per_s"], r["hexie_steps_per_s"], r["ratio"], ">= 1.5", r["raw_ratio"],
                  r["spiff_bare_step_us"], r["spiff_json_bytes"]] for k, r in results.items()]))
    path = write_result("peer", {"spiffworkflow": getattr(SpiffWorkflow, "__version__", "3.x"),
                                 "bpmn": str(BPMN.relative_to(BENCH_DIR.parent)), "results": results})
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
