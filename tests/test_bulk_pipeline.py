"""The import's pass 2 writes batch N in a thread of its own while batch N+1 is read and checked
(hexie.workflows.bulk._Writer): the same results, errors and events as one batch after another."""
from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hexie.models import Case, ImportRow, ImportRun
from hexie.workflows import bulk
from hexie.workflows.audit import verify_chain
from hexie.workflows.bulk import import_cases

from .engine_helpers import DEFINITIONS, make_env
from .test_bulk import HOUSEHOLD, _households, _write, lose_unit_between_passes


@pytest.fixture
def env(session_factory, monkeypatch):
    monkeypatch.setattr(bulk, "PIPELINE", True)
    return make_env(session_factory, definitions=DEFINITIONS)


def _count(env, what) -> int:
    with env.engine.session_factory() as s:
        return s.scalar(select(func.count()).select_from(what))


def test_events_are_published_in_the_callers_thread_in_order(env, tmp_path: Path):
    seen: list[tuple[str, int, str]] = []
    env.engine.subscribe(lambda e: seen.append((e["event"], e["case_id"], threading.current_thread().name)))
    progress: list[tuple[str, int]] = []
    path = _write(tmp_path / "h.csv", _households(23))
    result = import_cases(env.engine, env.actor("cadre"), "elder_support", path, batch_size=5,
                          progress=lambda phase, n: progress.append((phase, n)))
    assert result.ok and result.started == 23
    assert {thread for _, _, thread in seen} == {threading.current_thread().name}
    started = [case_id for kind, case_id, _ in seen if kind == "case_started"]
    assert len(started) == 23 and started == sorted(started)
    assert [p for p in progress if p[0] == "write"] == [("write", 5)] * 4 + [("write", 3)]
    assert progress.index(("write", 5)) > max(i for i, p in enumerate(progress) if p[0] == "check")
    with env.engine.session_factory() as s:
        assert verify_chain(s) == []
        run = s.scalars(select(ImportRun)).one()
        assert run.finished_at is not None and run.started == 23 and run.last_line == 24
        assert sorted(s.scalars(select(ImportRow.line))) == list(range(2, 25))


def test_a_key_taken_while_a_batch_is_in_flight_stops_at_that_batch(env, tmp_path: Path, monkeypatch):
    """A business key started by someone else between the passes: the batch that holds it is
    refused by the database (in the writer's thread) and the import stops there, naming the
    batch's first row; the batches before it stay, and nothing after it is written."""
    cadre = env.actor("cadre")
    env.service.start_case(cadre, "elder_support", "t01v01", dict(HOUSEHOLD), business_key="HH-12")
    rows = _households(30)
    for i, row in enumerate(rows):
        row["business_key"] = f"HH-{i}"
    path = _write(tmp_path / "keys.csv", rows, header=["org_unit", "business_key", *HOUSEHOLD])
    monkeypatch.setattr(bulk._KeyCheck, "flush", lambda self: [])   # pass 1 does not see it (started meanwhile)
    with pytest.raises(bulk.ImportAborted) as info:
        import_cases(env.engine, cadre, "elder_support", path, batch_size=5)
    # HH-12 is row 14, in the third batch (rows 12-16)
    assert info.value.row == 12 and info.value.started == 10
    assert _count(env, Case) == 1 + 10 and _count(env, ImportRow) == 10


@pytest.mark.parametrize("mode", ["thread", "process", "plain"])
def test_the_same_rows_with_and_without_the_writers_thread(env, tmp_path: Path, monkeypatch, mode):
    """Pass 2 writes pass 1's values (kept in a temporary file, a batch at a time), in order:
    built in a writer's thread, in a builder's process, or one batch after another."""
    monkeypatch.setattr(bulk, "PIPELINE", mode == "thread")
    monkeypatch.setattr(bulk, "BUILD_PROCESS", mode == "process")
    rows = _households(13)
    path = _write(tmp_path / "h.csv", rows)
    result = import_cases(env.engine, env.actor("cadre"), "elder_support", path, batch_size=4)
    assert result.ok and result.started == 13 and result.rows == 13
    with env.engine.session_factory() as s:
        cases = s.scalars(select(Case).order_by(Case.id)).all()
        assert [c.data["household_head"] for c in cases] == [r["household_head"] for r in rows]
        assert cases[0].data["elder_count"] == 2
        assert verify_chain(s) == []


def test_a_bad_row_after_many_good_ones_writes_nothing(env, tmp_path: Path):
    rows = _households(30)
    rows[27]["elder_count"] = "many"
    path = _write(tmp_path / "h.csv", rows)
    result = import_cases(env.engine, env.actor("cadre"), "elder_support", path, batch_size=4)
    assert not result.ok and result.error_rows == 1 and result.errors[0].startswith("row 29: elder_count:")
    assert _count(env, Case) == 0 and _count(env, ImportRun) == 0


def test_a_row_refused_in_pass_two_waits_for_the_batch_in_flight(env, tmp_path: Path, monkeypatch):
    """The batch before the refused row commits before the import stops (``started`` counts it),
    even when the refusal is found while that batch is still being written."""
    rows = _households(12, units=("t01v01",))
    rows[7]["org_unit"] = "t01v02"            # row 9, in the second batch of 5
    path = _write(tmp_path / "h.csv", rows)
    real_write, gate = bulk._write_built, threading.Event()

    def slow_write(*args, **kwargs):   # the first batch is still in flight when row 9 is checked
        gate.wait(5)
        return real_write(*args, **kwargs)

    real_check = bulk.check_start

    def check_and_release(levels, spec, actor, unit, code, *a, **k):
        if unit is None:
            gate.set()
        return real_check(levels, spec, actor, unit, code, *a, **k)
    lose_unit_between_passes(monkeypatch, "t01v02")
    monkeypatch.setattr(bulk, "_write_built", slow_write)
    monkeypatch.setattr(bulk, "check_start", check_and_release)
    with pytest.raises(bulk.ImportAborted) as info:
        import_cases(env.engine, env.actor("cadre"), "elder_support", path, batch_size=5)
    assert info.value.row == 9 and info.value.started == 5 and _count(env, Case) == 5


@pytest.mark.parametrize("mode", ["thread", "process"])
def test_sqlite_ids_taken_meanwhile_are_not_reused(env, tmp_path: Path, monkeypatch, mode):
    """On SQLite a batch built ahead has the ids after the last batch's; when a case was started
    meanwhile by someone else, the writer (under the write lock) builds the batch again with free ids."""
    if env.engine.session_factory.kw["bind"].dialect.name != "sqlite":
        pytest.skip("PostgreSQL takes the ids from its sequences")
    monkeypatch.setattr(bulk, "PIPELINE", mode == "thread")
    cadre = env.actor("cadre")
    real_take = bulk._Ids.take
    started = []

    def take_then_someone_starts_a_case(self, table, n):
        ids = real_take(self, table, n)
        if table is bulk._CASES and len(started) == 1:   # the second batch is being built
            started.append(env.service.start_case(cadre, "elder_support", "t01v01", dict(HOUSEHOLD)))
        elif table is bulk._CASES:
            started.append(None)
        return ids
    monkeypatch.setattr(bulk._Ids, "take", take_then_someone_starts_a_case)
    path = _write(tmp_path / "h.csv", _households(12))
    result = import_cases(env.engine, cadre, "elder_support", path, batch_size=5)
    assert result.ok and result.started == 12
    with env.engine.session_factory() as s:
        assert _count(env, Case) == 13 and len(set(s.scalars(select(Case.id)))) == 13
        assert s.scalar(select(func.count()).select_from(ImportRow)) == 12
        assert verify_chain(s) == []


def test_the_builders_process_builds_what_one_process_builds(env, tmp_path: Path, monkeypatch):
    """The same stored values and the same outbound events, whether pass 2's batches are built in
    the builder's process or in this one (hashes and seals cover the case ids, so they are checked
    by verifying each chain)."""
    monkeypatch.setattr(bulk, "PIPELINE", False)
    from hexie.models import AuditEvent, Task
    env.engine.clock = lambda: __import__("datetime").datetime(2026, 12, 1, 20, 0, 0)
    rows = _households(9)
    stored = {}
    for mode in ("process", "plain"):
        monkeypatch.setattr(bulk, "BUILD_PROCESS", mode == "process")
        seen: list[dict] = []
        env.engine._subscribers[:] = [seen.append]
        path = _write(tmp_path / f"{mode}.csv", [{**r, "household_head": r["household_head"]} for r in rows])
        first = _count(env, Case)
        result = import_cases(env.engine, env.actor("cadre"), "elder_support", path, batch_size=4)
        assert result.ok and result.started == 9
        with env.engine.session_factory() as s:
            cases = s.scalars(select(Case).where(Case.id > 0).order_by(Case.id)).all()[first:]
            offset = cases[0].id
            events = {e.case_id: e for e in s.scalars(select(AuditEvent).where(AuditEvent.case_id >= offset))}
            tasks = s.scalars(select(Task).where(Task.case_id >= offset).order_by(Task.id)).all()
            stored[mode] = (
                [(c.id - offset, c.data, c.subject, c.state, c.org_path, c.event_seq) for c in cases],
                [(e.case_id - offset, e.kind, e.changes, sorted(e.sealed or {}), e.hash_version)
                 for e in events.values()],
                [(t.case_id - offset, t.name, t.status, t.assignee_id, t.due_at) for t in tasks],
                [(e["event"], e["case_id"] - offset, e.get("seq")) for e in seen])
        # the hashes differ only by the case ids they cover: each chain verifies
        with env.engine.session_factory() as s:
            assert verify_chain(s) == []
    assert stored["process"] == stored["plain"]


def test_searchable_fields_get_their_blind_index_in_every_way(env, tmp_path: Path, monkeypatch):
    """dv_complaint's searchable fields (victim_name, victim_id_number): each imported case has
    the blind-index entries start_case writes, however pass 2's batches are built."""
    from hexie.models import CaseLookup
    from hexie.workflows.access import SYSTEM
    from hexie.workflows.protection import lookup_digest
    header = ["org_unit", "channel", "received_at", "incident_description", "victim_name", "victim_id_number"]
    for mode in ("process", "thread", "plain"):
        monkeypatch.setattr(bulk, "PIPELINE", mode == "thread")
        monkeypatch.setattr(bulk, "BUILD_PROCESS", mode == "process")
        rows = [{"org_unit": "t01v01", "channel": "hotline", "received_at": "2026-12-01T09:00:00",
                 "incident_description": "描述", "victim_name": f"{mode}受害人{i}",
                 "victim_id_number": "" if i == 2 else f"11010119900101{i:04d}"} for i in range(5)]
        path = _write(tmp_path / f"dv_{mode}.csv", rows, header=header)
        result = import_cases(env.engine, SYSTEM, "dv_complaint", path, batch_size=2)
        assert result.ok and result.started == 5, result.errors[:3]
        with env.engine.session_factory() as s:
            for row in rows:
                case = s.scalars(select(Case).where(Case.data["victim_name"].as_string() == row["victim_name"])).one()
                lookups = {(l.field, l.digest) for l in s.scalars(select(CaseLookup).where(CaseLookup.case_id == case.id))}
                # as protection.index_case (start_case) writes them, from the stored values
                expected = {(name, digest) for name in ("victim_name", "victim_id_number")
                            if (digest := lookup_digest(case.data.get(name))) is not None}
                assert lookups == expected and (("victim_name", lookup_digest(row["victim_name"])) in lookups), mode
            assert verify_chain(s) == []


def test_the_builder_is_forked_only_when_no_other_thread_could_hold_a_database_lock(env, tmp_path: Path,
                                                                                   monkeypatch):
    """A process forked while another of its threads is inside SQLite (or libpq) inherits that
    thread's lock held: the builder hung on its first connection (CI, 2 Dec). With such a thread
    alive the batches are built here, the same rows; the web's org-tree checker holds a lock
    across every fork and does not count."""
    monkeypatch.setattr(bulk, "PIPELINE", False)
    monkeypatch.setattr(bulk, "BUILD_PROCESS", True)
    started: list[object] = []
    real_start = bulk._Builder.start.__func__
    monkeypatch.setattr(bulk._Builder, "start",
                        classmethod(lambda cls, *a: started.append(real_start(cls, *a)) or started[-1]))
    stop = threading.Event()
    busy = threading.Thread(target=stop.wait, name="a host's request thread", daemon=True)
    busy.start()
    try:
        assert not bulk._fork_is_safe()
        result = import_cases(env.engine, env.actor("cadre"), "elder_support",
                              _write(tmp_path / "a.csv", _households(9)), batch_size=4)
        assert result.ok and result.started == 9 and started == [None]      # built here
    finally:
        stop.set()
        busy.join()
    quiet = threading.Thread(target=stop.wait, name="hexie-org-check", daemon=True)
    quiet.hexie_fork_safe = True
    stop.clear()
    quiet.start()
    try:
        assert bulk._fork_is_safe()
    finally:
        stop.set()
        quiet.join()


def test_an_import_beside_a_thread_busy_in_sqlite_ends(tmp_path: Path):
    """The hang itself, in a process of its own (a hung child would hang this one): a thread
    reads SQLite without pause, and the org-tree checker compares the tree without pause, while
    the import's pass 2 runs with the builder on. It ends, with every row."""
    import subprocess
    import sys
    path = _write(tmp_path / "h.csv", _households(40))
    script = f"""
import sqlite3, threading, sys
from hexie.models import make_engine, make_session_factory, upgrade
from hexie.workflows import bulk
from hexie.web import orgmap
from tests.engine_helpers import DEFINITIONS, make_env
url = "sqlite:///{tmp_path / 'x.db'}"
upgrade(url)
env = make_env(make_session_factory(make_engine(url)), definitions=DEFINITIONS)
bulk.PIPELINE, bulk.BUILD_PROCESS = False, True
def read():
    conn = sqlite3.connect("{tmp_path / 'x.db'}")
    while True:
        conn.execute("SELECT count(*) FROM hexie_cases").fetchall()
def check():
    while True:
        orgmap._used[url] = __import__("time").monotonic()
        orgmap.check_now()
threading.Thread(target=read, daemon=True).start()
checker = threading.Thread(target=check, daemon=True)
checker.hexie_fork_safe = True
checker.start()
result = bulk.import_cases(env.engine, env.actor("cadre"), "elder_support", "{path}", batch_size=4)
print(result.started)
sys.stdout.flush()
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parent.parent, env={**__import__("os").environ,
                                                                         "HEXIE_INSTANCE": str(tmp_path / "i")})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "40"
