"""A province of data on PostgreSQL, for bench_inbox.py: org, people, cases, tasks.

The org tree is a county tree scaled to a province: 100 counties x 14 towns x 8-12
villages (14,000 villages), with a village representative per village, a cadre and a
chair per town, and seven county-level people per county (two managers, a cadre, the
accountant, legal aid, police and court liaisons): 17,500 users. Cases of the five
real programmes (definitions/) are spread over the villages; each has three tasks
(its recent history: completed tasks, then, while it runs, the open task of its
current state, offered or allocated to the person who holds that role there, some
overdue, some escalated). States, roles, levels and escalations come from the real
definitions, so the service layer reads the rows as it reads its own.

Everything is streamed into ``COPY ... FROM STDIN`` (no row list in memory), then the
sequences are set and the tables analysed.

    .venv/bin/python bench/generate.py             # 100,000 cases, 300,000 tasks
    .venv/bin/python bench/generate.py --full      # 1,000,000 cases, 3,000,000 tasks
"""
from __future__ import annotations

import argparse
import json
import random
import time
from datetime import datetime, timedelta
from typing import Iterator

from common import DEFINITIONS, fresh_pg, table

INBOX_DATABASE = "hexie_bench_inbox"
COUNTIES, TOWNS = 100, 14
VILLAGES = (8, 9, 10, 11, 12)          # per town, in turn: 10 on average
COUNTY_PEOPLE = (("mgr1", "county_manager"), ("mgr2", "county_manager"), ("ccadre", "county_cadre"),
                 ("fin", "finance_officer"), ("legal", "legal_aid"), ("police", "police_liaison"),
                 ("court", "court_liaison"))
WEIGHTS = {"elder_support": 40, "spring_bud": 20, "poor_mother_aid": 15, "microloan": 15, "dv_complaint": 10}
NOW = datetime(2026, 3, 2, 9, 0)
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘"


def county_code(c: int) -> str:
    return f"c{c:03d}"


def units() -> Iterator[tuple]:
    """(id, code, name, level, parent_id, path) of every unit, parents first."""
    uid = 0
    for c in range(1, COUNTIES + 1):
        cc = county_code(c)
        uid += 1
        county_id = uid
        yield county_id, cc, f"第{c}县", "county", None, f"/{cc}/"
        for t in range(1, TOWNS + 1):
            tc = f"{cc}t{t:02d}"
            uid += 1
            town_id = uid
            yield town_id, tc, f"{cc}第{t}镇", "town", county_id, f"/{cc}/{tc}/"
            for v in range(1, VILLAGES[(c + t) % len(VILLAGES)] + 1):
                vc = f"{tc}v{v:02d}"
                uid += 1
                yield uid, vc, f"{tc}第{v}村", "village", town_id, f"/{cc}/{tc}/{vc}/"


class Province:
    """The generated org and people, as the case generator needs them."""

    def __init__(self) -> None:
        self.units = list(units())
        self.villages = [u for u in self.units if u[3] == "village"]
        self.users: list[tuple] = []            # (id, username, name)
        self.roles: list[tuple] = []            # (id, user_id, role, org_unit_id)
        self.holder: dict[tuple[str, int], list[int]] = {}   # (role, unit id) -> user ids
        by_id = {u[0]: u for u in self.units}
        self.town_of = {u[0]: u[4] for u in self.units if u[3] == "village"}
        self.county_of = {u[0]: by_id[u[4]][4] for u in self.villages}
        for u in self.units:
            uid, code, _, level = u[:4]
            if level == "county":
                for prefix, role in COUNTY_PEOPLE:
                    self._person(f"{prefix}_{code}", role, uid)
            elif level == "town":
                self._person(f"cadre_{code}", "town_cadre", uid)
                self._person(f"chair_{code}", "town_chair", uid)
            else:
                self._person(f"rep_{code}", "village_rep", uid)

    def _person(self, username: str, role: str, unit_id: int) -> None:
        user_id = len(self.users) + 1
        self.users.append((user_id, username, username))
        self.roles.append((len(self.roles) + 1, user_id, role, unit_id))
        self.holder.setdefault((role, unit_id), []).append(user_id)

    def holder_of(self, role: str, at: str | None, village_id: int, rng: random.Random) -> int | None:
        """Someone holding ``role`` at the village or above (nearest first)."""
        for unit_id in (village_id, self.town_of[village_id], self.county_of[village_id]):
            people = self.holder.get((role, unit_id))
            if people:
                return rng.choice(people)
        return None


def flows(registry) -> dict[str, dict]:
    """Per process: its states with a task (in file order) and its final states."""
    out = {}
    for key, spec in registry.processes.items():
        steps = [(s.name, s.tasks[0]) for s in spec.states if s.tasks and not s.final]
        finals = [s.name for s in spec.states if s.final]
        out[key] = {"spec": spec, "steps": steps, "finals": finals}
    return out


def cases_and_tasks(n: int, province: Province, flow: dict, versions: dict[str, int], seed: int
                    ) -> tuple[Iterator[tuple], list]:
    """Generators of case rows and of task rows (tasks of a case follow its case)."""
    rng = random.Random(seed)
    keys = list(WEIGHTS)
    weights = [WEIGHTS[k] for k in keys]
    task_queue: list[tuple] = []
    state = {"task_id": 0}

    def gen_cases() -> Iterator[tuple]:
        for case_id in range(1, n + 1):
            key = rng.choices(keys, weights)[0]
            f = flow[key]
            steps, spec = f["steps"], f["spec"]
            village = province.villages[rng.randrange(len(province.villages))]
            vid, vcode, _, _, _, path = village
            created = NOW - timedelta(days=rng.randint(0, 720), minutes=rng.randint(0, 1440))
            closed = rng.random() < 0.55
            idx = len(steps) if closed else rng.randrange(len(steps))
            state_name = rng.choice(f["finals"][:2]) if closed else steps[idx][0]
            name = rng.choice(SURNAMES) + rng.choice("秀英桂兰玉梅红霞丽娟淑珍凤英")
            data = {"subject_name": name, "household_size": rng.randint(1, 8), "note": "基准测试数据"}
            subject = "" if spec.confidential else name
            updated = created + timedelta(days=rng.randint(1, 60))
            case_row = (case_id, versions[key], key, state_name, json.dumps(data, ensure_ascii=False), vid, path,
                        None, created, updated, updated if closed else None, subject, spec.confidential, 1)
            # its three tasks: the most recent steps before the current one, then the current one
            history = [steps[(idx - j) % len(steps)] for j in (2, 1)] if idx >= 2 or closed else \
                [steps[0]] * (2 - idx) + steps[:idx]
            for j, (sname, tspec) in enumerate(history):
                done_by = province.holder_of(tspec.role, tspec.at, vid, rng)
                at = created + timedelta(days=j + 1)
                task_queue.append(_task(state, case_id, key, sname, tspec, vid, path, "completed", done_by, at,
                                        completed_at=at + timedelta(hours=5), completed_by=done_by))
            if closed:
                sname, tspec = steps[-1]
                done_by = province.holder_of(tspec.role, tspec.at, vid, rng)
                task_queue.append(_task(state, case_id, key, sname, tspec, vid, path, "completed", done_by,
                                        updated - timedelta(days=1), completed_at=updated, completed_by=done_by))
            else:
                sname, tspec = steps[idx]
                at = NOW - timedelta(days=rng.randint(0, 40), hours=rng.randint(0, 23))
                allocated = rng.random() < 0.6
                holder = province.holder_of(tspec.role, tspec.at, vid, rng) if allocated else None
                escalated = bool(tspec.escalate) and rng.random() < 0.15
                task_queue.append(_task(state, case_id, key, sname, tspec, vid, path,
                                        "allocated" if holder else "offered", holder, at, escalated=escalated))
            yield case_row   # after its tasks are queued: they are written right after its chunk of cases

    def gen_tasks() -> Iterator[tuple]:
        yield from task_queue
        task_queue.clear()

    return gen_cases(), gen_tasks


def _task(state: dict, case_id: int, key: str, sname: str, tspec, vid: int, path: str, status: str,
          assignee: int | None, created: datetime, completed_at: datetime | None = None,
          completed_by: int | None = None, escalated: bool = False) -> tuple:
    state["task_id"] += 1
    due = created + tspec.due if tspec.due else None
    esc_at = (due or created) + tspec.escalate.after if tspec.escalate else None
    return (state["task_id"], case_id, key, sname, tspec.name, tspec.role, tspec.at, vid, path, status, assignee,
            created, due, esc_at, tspec.escalate.to if tspec.escalate else None, escalated, tspec.priority,
            tspec.optional, completed_at, completed_by, 1)


CASE_COLUMNS = ("id, process_version_id, process_key, state, data, org_unit_id, org_path, created_by_id, "
                "created_at, updated_at, closed_at, subject, confidential, lock_version")
TASK_COLUMNS = ("id, case_id, process_key, state, name, role, at_level, org_unit_id, org_path, status, "
                "assignee_id, created_at, due_at, escalate_at, escalate_to, escalated, priority, optional, "
                "completed_at, completed_by_id, lock_version")


def generate(n: int, seed: int = 2026) -> dict:
    """Recreate the inbox database with ``n`` cases (3 tasks each); returns counts and timings."""
    import psycopg
    from hexie.workflows.engine import Engine
    from hexie.workflows.loader import load_definitions_strict
    from hexie.models import make_engine, make_session_factory

    began = time.perf_counter()
    url = fresh_pg(INBOX_DATABASE)
    engine = Engine(make_session_factory(make_engine(url)), load_definitions_strict(DEFINITIONS))
    versions = {k: vid for k, (vid, _) in engine_versions(engine).items()}
    engine.session_factory.kw["bind"].dispose()
    province = Province()
    flow = flows(engine.registry)
    timings = {}
    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        with conn.cursor() as cur:
            t = time.perf_counter()
            _copy(cur, "org_units", "id, code, name, level, parent_id, path", province.units)
            _copy(cur, "users", "id, username, name, password_hash, active, locale, created_at",
                  ((i, u, name, "!", True, "zh", NOW) for i, u, name in province.users))
            _copy(cur, "role_assignments", "id, user_id, role, org_unit_id", province.roles)
            timings["org_s"] = time.perf_counter() - t
            t = time.perf_counter()
            cases, tasks = cases_and_tasks(n, province, flow, versions, seed)
            # cases first (the foreign key), tasks buffered per chunk of cases
            chunk = 50_000
            done = 0
            while done < n:
                rows = []
                for row in cases:
                    rows.append(row)
                    if len(rows) == chunk:
                        break
                _copy(cur, "cases", CASE_COLUMNS, rows)
                _copy(cur, "tasks", TASK_COLUMNS, tasks())
                done += len(rows)
                if not rows:
                    break
            timings["cases_tasks_s"] = time.perf_counter() - t
            for tbl in ("org_units", "users", "role_assignments", "cases", "tasks"):
                cur.execute(f"SELECT setval(pg_get_serial_sequence('hexie_{tbl}', 'id'), "
                            f"(SELECT max(id) FROM hexie_{tbl}))")
        conn.commit()
        conn.autocommit = True
        t = time.perf_counter()
        conn.execute("VACUUM ANALYZE")
        timings["vacuum_analyze_s"] = time.perf_counter() - t
        counts = {tbl: conn.execute(f"SELECT count(*) FROM hexie_{tbl}").fetchone()[0]
                  for tbl in ("org_units", "users", "cases", "tasks")}
        counts["open_tasks"] = conn.execute(
            "SELECT count(*) FROM hexie_tasks WHERE status IN ('offered', 'allocated')").fetchone()[0]
        counts["database_size"] = conn.execute(
            "SELECT pg_size_pretty(pg_database_size(current_database()))").fetchone()[0]
    timings["total_s"] = time.perf_counter() - began
    return {"url": url, "counts": counts, "timings": timings}


def engine_versions(engine) -> dict[str, tuple[int, int]]:
    engine.sync_definitions()
    return {k: engine.current(k)[1:] for k in engine.processes}


def _copy(cur, tbl: str, columns: str, rows) -> None:
    with cur.copy(f"COPY hexie_{tbl} ({columns}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="1,000,000 cases and 3,000,000 tasks")
    parser.add_argument("--cases", type=int, default=None)
    args = parser.parse_args()
    n = args.cases or (1_000_000 if args.full else 100_000)
    out = generate(n)
    print(table(["what", "value"], [[k, v] for k, v in {**out["counts"], **out["timings"]}.items()]))
    print(f"\n{out['url'].split('@')[-1]} ready")


if __name__ == "__main__":
    main()
