"""Bulk start: one case per row of a CSV or Excel (``.xlsx``) file (``hexie cases import``).

An ``.xlsx`` register is read from its first sheet with python-calamine: the first row is the
header, rows are numbered as Excel shows them, and cells become the text a CSV would hold
(whole numbers without ``.0``, days as ``YYYY-MM-DD``, a time of day as ``YYYY-MM-DDTHH:MM:SS``,
TRUE/FALSE as ``true``/``false``), so both files go through the very same checks. Empty rows
at the end of a sheet are not rows.

The header names the fields of the process's first form, plus ``org_unit`` (the code
of the unit each case is filed at). Every row is checked exactly as
:meth:`hexie.workflows.service.WorkflowService.start_case` checks a start (the same
functions: unit, level and starter rules, the form with its defaults), and every case
is written as ``start_case`` writes it: the case, its "started" audit event (hash
chained, ``seq`` 1), the first state's tasks with their holders, due dates and
escalations, its timers, and the same outbound events.

Two passes, so memory stays flat whatever the file's size:

1. stream the file and check every row, keeping the (capped) error messages and, batch by
   batch in a temporary file, each valid row's values;
2. only if no row had an error, write those batches (pass 1's values: the file is not read,
   nor a row's form checked, twice), each batch a handful of bulk statements in one
   transaction, built (hashed, sealed, bound for the driver) in a worker process of its own
   while this process writes the batch before (:class:`_Builder`, :data:`BUILD_PROCESS`).

Nothing is written when any row is invalid. A batch commits on its own: this is
safe because pass 1 proved every row valid. Each batch also records, in its own
transaction, which rows it turned into which cases (:class:`~hexie.models.ImportRow`: the
row's line number and its ``business_key`` column, if the file has one) and how far the
run got (:class:`~hexie.models.ImportRun`). A run that is killed or aborted part-way can be
resumed (``resume=True``, ``hexie cases import --resume``): the same file (by its content's
hash) carries on after the last committed row, so every row is imported exactly once. Pass 2
checks each row's unit, level and starter rules again (against the org units read afresh; the
importer's roles are those of the ``Actor`` passed in, as for any service call); should a row
turn invalid between the passes (its unit removed meanwhile), the import stops at that batch
with :class:`ImportAborted`, which says how many cases earlier batches had already started.
"""
from __future__ import annotations

import copy
import csv
import hashlib
import pickle
import sys
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, time as dt_time
from operator import itemgetter
from pathlib import Path
from typing import Any, Iterator, NamedTuple

from sqlalchemy import insert, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hexie.models import AuditEvent, Case, CaseLookup, ImportRow, ImportRun, OrgUnit, Task, Timer

from . import audit
from .access import Actor
from .engine import Engine
from .protection import lookup_digest, searchable_fields
from .errors import HexieError, Invalid
from .service import (check_start, first_holder, new_task_values, start_changes, start_values, timer_dues,
                      _subject)
from .spec import ProcessSpec

UNIT_COLUMN = "org_unit"
#: An optional column: the case's business key (unique per process, as for ``start_case``), also
#: recorded with the row (to recognise it on --resume).
KEY_COLUMN = "business_key"
#: Cells of list-valued fields (multichoice, several files) hold their items separated by this.
LIST_SEPARATOR = ";"
#: Error messages kept (the count of rows with errors is always exact).
MAX_ERRORS = 1000
#: True: pass 2 builds each batch (hashes, seals, bound rows) while a thread of its own writes the one
#: before it (:class:`_Writer`); False: one batch after another in the caller's thread. The same rows,
#: errors and events either way. Off: measured slower on the shared 2-core machine (docs/performance.md
#: §4, 1 Dec evening): the threads contend for the GIL, and SQLite's executemany gives it up at every row.
PIPELINE = False
#: Pass 2 builds each batch in a worker process of its own while this one writes the batch before
#: (:class:`_Builder`; where processes can be forked). The same rows, errors and events.
BUILD_PROCESS = True
#: While the writer's thread runs, the interpreter offers the GIL this often (s): the thread
#: wakes from each round trip to the database wanting it back (the default is 0.005).
SWITCH_INTERVAL = 0.0005

_CASES = Case.__table__
_EVENTS = AuditEvent.__table__
_TASKS = Task.__table__
_TIMERS = Timer.__table__


class _Unit(NamedTuple):
    id: int
    code: str
    path: str
    level: str


@dataclass
class ImportResult:
    """How many cases were started, and the errors (``row N: field: message``)."""

    started: int = 0
    errors: list[str] = field(default_factory=list)
    error_rows: int = 0     # rows with at least one error (exact, even past MAX_ERRORS)
    rows: int = 0           # data rows read (not counting those skipped)
    skipped: int = 0        # rows an interrupted run had already imported (resume)
    run_id: int | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


class ImportAborted(Exception):
    """A row turned invalid between the two passes; ``started`` cases were already committed."""

    def __init__(self, row: int, message: str, started: int) -> None:
        super().__init__(f"row {row}: {message} ({started} cases already started)")
        self.row, self.started = row, started


def interrupted_run(engine: Engine, process: str, csv_path: str | Path) -> ImportRun | None:
    """The latest unfinished import of this file's content for ``process``, if any."""
    digest = file_hash(csv_path)
    with engine.session_factory() as s:
        return s.scalars(select(ImportRun).where(ImportRun.process_key == process, ImportRun.file_hash == digest,
                                                 ImportRun.finished_at.is_(None))
                         .order_by(ImportRun.id.desc()).limit(1)).first()


def file_hash(csv_path: str | Path) -> str:
    """SHA-256 of the file's bytes: what makes a resumed file "the same file"."""
    digest = hashlib.sha256()
    with open(csv_path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def import_cases(engine: Engine, actor: Actor, process: str, csv_path: str | Path,
                 batch_size: int = 2000, resume: bool = False,
                 progress: Callable[[str, int], None] | None = None) -> ImportResult:
    """Start one case of ``process`` per row of ``csv_path`` as ``actor``; see the module doc.

    Rows are numbered as a spreadsheet shows them: the header is row 1, the first case
    row 2. ``resume``: carry on the interrupted run of this file (the rows it committed are
    skipped); without one to resume, nothing is imported and the result says so. Returns
    the result; raises NotFound for an unknown process. ``progress(phase, rows)``: told of
    each row checked (phase ``check``) and each batch written (``write``, its row count).
    """
    tell = progress or (lambda phase, n: None)
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    spec, version_id, _ = engine.current(process)
    units = _load_units(engine)
    levels = engine.registry.roles.levels

    result = ImportResult()
    run = interrupted_run(engine, process, csv_path) if resume else None
    if resume and run is None:
        result.errors.append("row 1: file: 没有可续传的导入（此文件未中断过或已全部导入）/ "
                             "nothing to resume: no interrupted import of this file")
        return result
    after, done_keys = (run.last_line, _done_keys(engine, run.id)) if run else (1, set())
    columns = _check_header(spec, csv_path, result)
    if result.errors:
        return result
    truncated = False
    keys = _KeyCheck(engine, spec.key)
    # Pass 1's checked values, a batch at a time, for pass 2 (which then reads neither the file
    # nor each row's form again): memory stays flat, the disk holds the rest.
    spool: Any = tempfile.TemporaryFile(prefix="hexie-import-")
    chunk: list[_Checked] = []
    try:
        for row_no, row in _remaining(_rows(csv_path, spec), after, done_keys, result):
            result.rows += 1
            tell("check", 1)
            problems, values = _checked_row(levels, spec, actor, units, row)
            problems += keys.check(row_no, _business_key(row))
            for row_no_taken in keys.flush() if keys.due() else ():
                result.error_rows += 1
                if len(result.errors) < MAX_ERRORS:
                    result.errors.append(f"row {row_no_taken}: {KEY_COLUMN}: {TAKEN}")
            if problems:
                result.error_rows += 1
                for name, message in problems:
                    if len(result.errors) < MAX_ERRORS:
                        result.errors.append(f"row {row_no}: {name}: {message}")
                    else:
                        truncated = True
                if spool is not None:   # nothing will be written: no need to keep anything
                    spool.close()
                    spool, chunk = None, []
            elif spool is not None:
                chunk.append(_Checked(row_no, _unit_code(row), _business_key(row), values))
                if len(chunk) == batch_size:
                    pickle.dump(chunk, spool, pickle.HIGHEST_PROTOCOL)
                    chunk = []
        for row_no_taken in keys.flush():
            result.error_rows += 1
            if len(result.errors) < MAX_ERRORS:
                result.errors.append(f"row {row_no_taken}: {KEY_COLUMN}: {TAKEN}")
            else:
                truncated = True
        if truncated:
            result.errors.append(f"... {result.error_rows} rows have errors in all / 共 {result.error_rows} 行有误")
        if result.errors or not columns:
            return result
        if chunk:
            pickle.dump(chunk, spool, pickle.HIGHEST_PROTOCOL)
        spool.seek(0)
        _write_checked(engine, spec, version_id, actor, levels, run, csv_path, spool, result, tell,
                       several=result.rows > batch_size)
        return result
    finally:
        if spool is not None:
            spool.close()


class _Checked(NamedTuple):
    """A row as pass 1 checked it: its number, unit code, business key and form values."""
    line: int
    code: str
    key: str | None
    values: dict[str, Any]


def _spooled(spool: Any) -> Iterator[list[_Checked]]:
    while True:
        try:
            yield pickle.load(spool)
        except EOFError:
            return


def _write_checked(engine: Engine, spec: ProcessSpec, version_id: int, actor: Actor, levels, run: ImportRun | None,
                   csv_path: str | Path, spool: Any, result: ImportResult, tell: Callable[[str, int], None],
                   several: bool = True) -> None:
    """Pass 2: pass 1's batches, each checked again against the org units read afresh (unit,
    level and starter rules; the form's values are pass 1's), written one transaction each
    (``several``: more than one batch, so a builder's process has something to overlap)."""
    units = _load_units(engine)   # read again: a unit may have gone since pass 1
    run_id = run.id if run else _new_run(engine, actor, spec.key, csv_path)
    result.run_id = run_id
    ids = _Ids(engine)
    builder = _Builder.start(engine, spec, version_id, actor) if BUILD_PROCESS and several and not PIPELINE \
        else None
    try:
        with _Writer(engine, spec, version_id, actor, run_id, result, tell) as writer:
            ahead = None   # (batch, prepared, its build) of the batch being built in the builder's process
            for batch in _spooled(spool):
                prepared = []
                for row in batch:
                    unit = units.get(row.code)
                    try:
                        check_start(levels, spec, actor, unit, row.code)
                    except HexieError as err:
                        if ahead is not None:   # the batch before this one is written first, as it would be
                            writer.submit(ahead[0], ahead[1], ahead[2].get())
                        writer.wait()   # the batch before this one commits (or fails) first
                        raise ImportAborted(row.line, err.message, result.started) from None
                    prepared.append((unit, row.values))
                keys = [row.key for row in batch]
                if builder is not None:   # built in the builder's process while the batch before it is written
                    _refuse_acting_first_state(spec)
                    building = builder.build(prepared, keys, ids.take(_CASES, len(prepared)),
                                             ids.take(_TASKS, _task_count(spec, prepared)), engine.clock())
                    if ahead is not None:
                        writer.submit(ahead[0], ahead[1], ahead[2].get())
                        writer.wait()
                        ids.seen(writer.written)
                    ahead = (batch, prepared, building)
                    continue
                built = None
                if writer.pool is not None:   # built here while the batch before it is written
                    _refuse_acting_first_state(spec)
                    with engine.session_factory() as read:
                        built = _build_batch(read, writer.writing, ids.dialect, spec, version_id, actor, prepared,
                                             keys, ids.take(_CASES, len(prepared)), lambda n: ids.take(_TASKS, n))
                writer.submit(batch, prepared, built)
                if writer.written is not None:
                    ids.seen(writer.written)
            if ahead is not None:
                writer.submit(ahead[0], ahead[1], ahead[2].get())
            writer.wait()
    finally:
        if builder is not None:
            builder.close()
    with engine.transaction() as s:
        s.execute(update(ImportRun).where(ImportRun.id == run_id).values(finished_at=engine.clock()))


def _task_count(spec: ProcessSpec, prepared: list[tuple[_Unit, dict[str, Any]]]) -> int:
    """How many tasks the batch's cases open (as :func:`_build_batch` opens them)."""
    initial = spec.initial_state
    return 0 if initial.final else sum(len(initial.tasks_to_open(values)) for _unit, values in prepared)


#: What the builder's process builds with: inherited (fork), never pickled.
_BUILDING: dict[str, Any] = {}


class _Builder:
    """One worker process (forked) that builds pass 2's batches (:func:`_build_batch`: hashes,
    seals, JSON, bound rows) while this process writes the batch before: two cores at work
    instead of one. Its ids are taken here beforehand (:class:`_Ids`); it only reads the database
    (a task's first holder), on connections of its own."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    @classmethod
    def start(cls, engine: Engine, spec: ProcessSpec, version_id: int, actor: Actor) -> "_Builder | None":
        import multiprocessing
        if "fork" not in multiprocessing.get_all_start_methods() or not _fork_is_safe():
            return None
        _BUILDING.update(engine=engine, spec=spec, version_id=version_id, actor=actor,
                         dialect=engine.session_factory.kw["bind"].dialect)
        return cls(multiprocessing.get_context("fork").Pool(1, initializer=_builder_started))

    def build(self, prepared: list[tuple[_Unit, dict[str, Any]]], keys: list[str | None], ids: list[int],
              task_ids: list[int], now: datetime) -> Any:
        return self.pool.apply_async(_build_elsewhere, (prepared, keys, ids, task_ids, now))

    def close(self) -> None:
        self.pool.terminate()
        self.pool.join()
        _BUILDING.clear()


def _fork_is_safe() -> bool:
    """Whether this process may fork: no other thread could be inside SQLite or libpq right now
    (a child forked then inherits their locks held and hangs on its first connection; it did in
    CI). Threads that hold a lock of their own across every fork say so (``hexie_fork_safe``:
    the web's org-tree checker); with any other thread alive (a host's request threads, a
    server), the batches are built in this process: the same rows, one core."""
    current = threading.current_thread()
    return all(t is current or getattr(t, "hexie_fork_safe", False) for t in threading.enumerate())


def _builder_started() -> None:
    # the parent's pooled connections are the parent's: this process opens its own
    _BUILDING["engine"].session_factory.kw["bind"].dispose(close=False)


def _build_elsewhere(prepared: list[tuple[_Unit, dict[str, Any]]], keys: list[str | None], ids: list[int],
                     task_ids: list[int], now: datetime) -> "_Built":
    b = _BUILDING

    def tasks(n: int) -> list[int]:
        assert n == len(task_ids), (n, len(task_ids))
        return task_ids
    with b["engine"].session_factory() as read:
        return _build_batch(read, b["engine"], b["dialect"], b["spec"], b["version_id"], b["actor"], prepared,
                            keys, ids, tasks, now)


class _Ids:
    """New ids of cases and tasks for batches built before the batch before them is written.

    PostgreSQL: from the tables' sequences (on a connection of their own: a sequence is not
    transactional, so these numbers are ours whatever happens). SQLite: the numbers after the
    last batch's, as the writer will find them under the write lock if nobody else wrote
    meanwhile; the writer checks, and builds the batch again with the right ones if not."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.session_factory.kw["bind"].dialect
        self.next: dict[str, int] = {}

    def take(self, table: Any, n: int) -> list[int]:
        if self.dialect.name == "sqlite" and table.name in self.next:
            first = self.next[table.name]
        else:
            with self.engine.session_factory() as s:
                taken = _allocate_ids(s.connection(), table, n)
                s.commit()
            if self.dialect.name != "sqlite":
                return taken
            first = taken[0] if taken else 1
        self.next[table.name] = first + n
        return list(range(first, first + n))

    def seen(self, built: "_Built") -> None:
        """The batch as written (built again by the writer, perhaps): later ids come after its."""
        if self.dialect.name == "sqlite":
            for table, taken in ((_CASES, built.ids), (_TASKS, built.task_ids)):
                if taken and table.name in self.next:
                    self.next[table.name] = max(self.next[table.name], taken[-1] + 1)


class _Writer:
    """Pass 2's writes, one batch at a time. With :data:`PIPELINE`, in a thread of their own:
    batch N is written and committed (the driver releases the GIL while the database works:
    PostgreSQL's COPY and COMMIT, SQLite's steps) while the caller checks and builds batch N+1
    (its ids taken beforehand, :class:`_Ids`); without, in the caller's thread, as it submits each.

    At most one batch is in flight, and the batches are written in order, each in its own
    transaction exactly as a one-thread loop writes it: :meth:`wait` returns once the batch
    in flight has committed (``result.started`` and the ``write`` progress then count it) or
    raises what it raised (a business key taken meanwhile: :class:`ImportAborted`). What an
    engine does after a commit (publishing the events to its subscribers, telling the outbox's
    listeners) is done here too, in the caller's thread, batch by batch and in order.
    """

    def __init__(self, engine: Engine, spec: ProcessSpec, version_id: int, actor: Actor, run_id: int,
                 result: ImportResult, tell: Callable[[str, int], None]) -> None:
        self.engine, self.spec, self.version_id, self.actor, self.run_id = engine, spec, version_id, actor, run_id
        self.result, self.tell = result, tell
        self.after_commit: list[tuple[str, Any]] = []
        # the engine as the thread uses it: the same in all but what it does after a commit
        self.writing = copy.copy(engine)
        self.writing._publish = lambda events: self.after_commit.append(("publish", events))
        self.writing._tell_outbox = lambda written: self.after_commit.append(("outbox", written))
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hexie-import") if PIPELINE else None
        self.pending: tuple[Future, list[_Checked]] | None = None
        self.written: _Built | None = None   # the batch last written, when it was built beforehand
        self.interval = sys.getswitchinterval()

    def __enter__(self) -> "_Writer":
        if self.pool is not None:
            sys.setswitchinterval(min(self.interval, SWITCH_INTERVAL))
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            if self.pending is not None:   # an error of the caller's: the batch in flight still ends
                try:
                    self.wait()
                except Exception:   # the caller's own error is the one that propagates
                    pass
        finally:
            if self.pool is not None:
                self.pool.shutdown(wait=True)
                sys.setswitchinterval(self.interval)

    def submit(self, batch: list[_Checked], prepared: list[tuple[_Unit, dict[str, Any]]],
               built: "_Built | None" = None) -> None:
        self.wait()
        if self.pool is not None:
            future = self.pool.submit(self._write, batch, prepared, built)
        else:   # in this thread, now
            future = Future()
            try:
                future.set_result(self._write(batch, prepared, built))
            except Exception as err:
                future.set_exception(err)
        self.pending = (future, batch)

    def _write(self, batch: list[_Checked], prepared: list[tuple[_Unit, dict[str, Any]]],
               built: "_Built | None") -> "_Built | list[int]":
        keys = [row.key for row in batch]
        with self.writing.transaction() as s:
            if built is None:
                ids = _write_batch(s, self.writing, self.spec, self.version_id, self.actor, prepared, keys)
            else:
                conn = s.connection()
                if conn.dialect.name == "sqlite":
                    conn.exec_driver_sql("BEGIN IMMEDIATE")   # the ids are ours till the commit, if still free
                    if _allocate_ids(conn, _CASES, 1) != built.ids[:1] or \
                            (built.task_ids and _allocate_ids(conn, _TASKS, 1) != built.task_ids[:1]):
                        built = _build_batch(s, self.writing, conn.dialect, self.spec, self.version_id, self.actor,
                                             prepared, keys, _allocate_ids(conn, _CASES, len(prepared)),
                                             lambda n: _allocate_ids(conn, _TASKS, n))
                _write_built(s, self.writing, built)
                ids = built.ids
            _record_rows(s, self.run_id, batch, ids)
        return built if built is not None else ids

    def wait(self) -> None:
        if self.pending is None:
            return
        future, batch = self.pending
        self.pending = None
        try:
            done_batch = future.result()
            self.written = done_batch if isinstance(done_batch, _Built) else None
            written = len(done_batch.ids if isinstance(done_batch, _Built) else done_batch)
        except IntegrityError:   # a case with one of its business keys was started meanwhile
            raise ImportAborted(batch[0].line, TAKEN, self.result.started) from None
        finally:
            done, self.after_commit = self.after_commit, []
            for what, value in done:
                (self.engine._publish if what == "publish" else self.engine._tell_outbox)(value)
        self.result.started += written
        self.tell("write", written)


# --- the record of a run ---------------------------------------------------------------------

def _new_run(engine: Engine, actor: Actor, process: str, csv_path: str | Path) -> int:
    with engine.transaction() as s:
        return s.execute(insert(ImportRun).values(
            process_key=process, file_name=str(Path(csv_path).resolve())[:1000], file_hash=file_hash(csv_path),
            actor_id=None if actor.is_system else actor.user_id, last_line=1, started=0,
            started_at=engine.clock()).returning(ImportRun.id)).scalar_one()


def _done_keys(engine: Engine, run_id: int) -> set[str]:
    with engine.session_factory() as s:
        return set(s.scalars(select(ImportRow.business_key).where(ImportRow.run_id == run_id,
                                                                  ImportRow.business_key.isnot(None))))


def _remaining(rows: Iterator[tuple[int, dict[str, Any]]], after: int, done_keys: set[str],
               result: ImportResult) -> Iterator[tuple[int, dict[str, Any]]]:
    """The rows an interrupted run has not imported: after its last committed line, and
    not one whose business key it recorded (``result.skipped`` counts the others)."""
    for row_no, row in rows:
        if row_no <= after or (done_keys and _business_key(row) in done_keys):
            result.skipped += 1
            continue
        yield row_no, row


TAKEN = "该流程已有此业务编号的案件 / a case of this process already has this business key"


class _KeyCheck:
    """Each row's ``business_key`` names one case of the process: not twice in the file, not one
    the process already has (asked of the database a thousand keys at a time)."""

    CHUNK = 1000

    def __init__(self, engine: Engine, process: str) -> None:
        self.engine, self.process = engine, process
        self.seen: dict[str, int] = {}
        self.pending: dict[str, int] = {}

    def check(self, row_no: int, key: str | None) -> list[tuple[str, str]]:
        if key is None:
            return []
        first = self.seen.get(key)
        if first is not None:
            return [(KEY_COLUMN, f"与第 {first} 行重复 / the same as row {first}")]
        self.seen[key] = row_no
        self.pending[key] = row_no
        return []

    def due(self) -> bool:
        return len(self.pending) >= self.CHUNK

    def flush(self) -> list[int]:
        """The rows whose key a case of the process already has (of those checked since the last flush)."""
        if not self.pending:
            return []
        with self.engine.session_factory() as s:
            taken = set(s.scalars(select(Case.business_key).where(Case.process_key == self.process,
                                                                 Case.business_key.in_(list(self.pending)))))
        rows = sorted(row for key, row in self.pending.items() if key in taken)
        self.pending = {}
        return rows


def _business_key(row: dict[str, Any]) -> str | None:
    return (row.get(KEY_COLUMN) or "").strip()[:200] or None


def _record_rows(s: Session, run_id: int, batch: list[_Checked], ids: list[int]) -> None:
    """Which rows became which cases, and how far the run got: in the batch's transaction."""
    conn = s.connection()
    _insert_many(conn, ImportRow.__table__, [{"run_id": run_id, "line": row.line, "case_id": case_id,
                                              "business_key": row.key}
                                             for row, case_id in zip(batch, ids)])
    conn.execute(update(ImportRun).where(ImportRun.id == run_id).values(
        last_line=batch[-1].line, started=ImportRun.started + len(ids)))


# --- reading ------------------------------------------------------------------------------

def _load_units(engine: Engine) -> dict[str, _Unit]:
    """Every org unit by code (one query; a province has some 15,000)."""
    with engine.session_factory() as s:
        return {r.code: _Unit(r.id, r.code, r.path, r.level)
                for r in s.execute(select(OrgUnit.id, OrgUnit.code, OrgUnit.path, OrgUnit.level))}


def is_xlsx(path: str | Path) -> bool:
    """An Excel workbook (by its name: ``.xlsx``, ``.xlsm``)."""
    return Path(path).suffix.lower() in (".xlsx", ".xlsm")


def xlsx_cell(value: Any) -> str:
    """An Excel cell as the text the same cell would be in a CSV file."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == dt_time() else value.isoformat(timespec="seconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dt_time):
        return value.isoformat(timespec="seconds")
    return str(value)


def xlsx_rows(path: str | Path) -> Iterator[list[str]]:
    """The rows of the first sheet as lists of text (trailing empty rows dropped)."""
    from python_calamine import CalamineWorkbook

    book = CalamineWorkbook.from_path(str(path))
    try:
        sheet = book.get_sheet_by_index(0)
        blank = 0
        for row in sheet.iter_rows():
            cells = [xlsx_cell(v) for v in row]
            while cells and cells[-1] == "":
                cells.pop()
            if not cells:
                blank += 1           # an empty row counts only when a row with data follows it
                continue
            for _ in range(blank):
                yield []
            blank = 0
            yield cells
    finally:
        book.close()


def _header_of(path: str | Path) -> list[str] | None:
    if is_xlsx(path):
        return next(xlsx_rows(path), None)
    with open(path, newline="", encoding="utf-8-sig") as f:
        return next(csv.reader(f), None)


def count_rows(path: str | Path) -> int:
    """How many data rows the file has (for a progress bar: a CSV's lines, less the header)."""
    if is_xlsx(path):
        return max(sum(1 for _ in xlsx_rows(path)) - 1, 0)
    with open(path, "rb") as f:
        return max(sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 20), b"")) - 1, 0)


def _check_header(spec: ProcessSpec, csv_path: str | Path, result: ImportResult) -> list[str]:
    """The header's columns; an unknown or missing column is an error of row 1."""
    header = _header_of(csv_path)
    if not header:
        result.errors.append(f"row 1: {UNIT_COLUMN}: 文件为空 / the file has no header")
        return []
    form = {entry.name for task in spec.initial_state.tasks for entry in task.form}
    for name in header:
        if name not in (UNIT_COLUMN, KEY_COLUMN) and name not in form:
            result.errors.append(f"row 1: {name}: 此表单不含该字段 / not a field of this form")
    if UNIT_COLUMN not in header:
        result.errors.append(f"row 1: {UNIT_COLUMN}: 缺少单位列 / the column of unit codes is missing")
    if len(set(header)) != len(header):
        result.errors.append("row 1: header: 列名重复 / a column is named twice")
    return header


def _rows(csv_path: str | Path, spec: ProcessSpec) -> Iterator[tuple[int, dict[str, Any]]]:
    """(row number, cells) of each data row, read lazily; list-valued cells split."""
    listed = {name for name, f in spec.fields.items()
              if f.type == "multichoice" or (f.type == "file" and f.multiple)}
    if is_xlsx(csv_path):
        yield from _split_lists(_xlsx_dicts(csv_path), listed)
        return
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        yield from _split_lists(enumerate(_csv_dicts(f), start=2), listed)


def _csv_dicts(f: Any) -> Iterator[dict[str | None, Any]]:
    """The rows as ``csv.DictReader(f)`` gives them (empty lines skipped, missing cells None, extra
    cells a list under None), without its per-row method calls."""
    reader = csv.reader(f)
    header = next(reader, None)
    if header is None:
        return
    width = len(header)
    for cells in reader:
        if not cells:
            continue
        row: dict[str | None, Any] = dict(zip(header, cells))
        if len(cells) > width:
            row[None] = cells[width:]
        elif len(cells) < width:
            for name in header[len(cells):]:
                row[name] = None
        yield row


def _split_lists(rows, listed: set[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    if not listed:
        yield from rows
        return
    for number, row in rows:
        for name in listed & row.keys():
            cell = row[name]
            if cell:
                row[name] = [item.strip() for item in cell.split(LIST_SEPARATOR) if item.strip()]
        yield number, row


def _xlsx_dicts(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Rows of a sheet as csv.DictReader gives them: missing cells empty, extra cells under None;
    an empty row inside the data is skipped, as csv skips empty lines (its number is kept)."""
    rows = xlsx_rows(path)
    header = next(rows, None) or []
    for number, cells in enumerate(rows, start=2):
        if not cells:
            continue
        row: dict[str | None, Any] = dict(zip(header, cells + [""] * (len(header) - len(cells))))
        if len(cells) > len(header):
            row[None] = cells[len(header):]
        yield number, row


def _unit_code(row: dict[str, Any]) -> str:
    return (row.get(UNIT_COLUMN) or "").strip()


def _form_data(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in (UNIT_COLUMN, KEY_COLUMN) and k is not None}


def _checked_row(levels, spec: ProcessSpec, actor: Actor, units: dict[str, _Unit],
                 row: dict[str, Any]) -> tuple[list[tuple[str, str]], dict[str, Any] | None]:
    """(what is wrong with one row as start_case would refuse it, as (field, message); the
    values start_case would store, when nothing is)."""
    if None in row:  # more cells than the header has columns
        return [("row", "列数多于表头 / more cells than the header has columns")], None
    code = _unit_code(row)
    try:
        check_start(levels, spec, actor, units.get(code), code)
    except HexieError as err:
        return [(UNIT_COLUMN, err.details.get("org_unit") if isinstance(err, Invalid) else err.message)], None
    try:
        values = start_values(spec, _form_data(row))
    except Invalid as err:
        return sorted(err.details.items()), None
    problems = _attachment_errors(spec, values)
    return problems, None if problems else values


def _attachment_errors(spec: ProcessSpec, values: dict[str, Any]) -> list[tuple[str, str]]:
    """An import uploads nothing, so no attachment can be its own: any attachment id is refused
    (one of another case would otherwise be claimed by the new one)."""
    return [(name, "导入不能引用附件，请在立案后上传 / an import cannot name attachments; "
                   "upload the files on the case once it is started")
            for name, value in values.items()
            if name in spec.file_fields and value not in (None, [], "")] if spec.file_fields else []


# --- writing ------------------------------------------------------------------------------

def _write_batch(s: Session, engine: Engine, spec: ProcessSpec, version_id: int, actor: Actor,
                 prepared: list[tuple[_Unit, dict[str, Any]]], keys: list[str | None] | None = None) -> list[int]:
    """Write one batch of valid starts in the caller's transaction: one bulk statement per table.

    Ids are taken up front (:func:`_allocate_ids`), so every row is written once, complete:
    the case with its ``audit_head``, the event whose hash covers the case id, the tasks.
    Returns the new cases' ids, in the order of ``prepared``.
    """
    _refuse_acting_first_state(spec)
    conn = s.connection()
    if conn.dialect.name == "sqlite":
        # Take the write lock now: the ids allocated below stay ours until the commit.
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    ids = _allocate_ids(conn, _CASES, len(prepared))
    built = _build_batch(s, engine, conn.dialect, spec, version_id, actor, prepared, keys, ids,
                         lambda n: _allocate_ids(conn, _TASKS, n))
    _write_built(s, engine, built)
    return ids


def _refuse_acting_first_state(spec: ProcessSpec) -> None:
    initial = spec.initial_state
    if initial.call is not None or spec.auto_triggers(initial.name) or initial.end_when_idle:
        # the engine acts on such a case as soon as it starts: one at a time, through the service
        raise Invalid("该流程的首个环节由系统自动推进，不能批量导入，请逐件立案",
                      f"{spec.key} acts by itself on entering {initial.name} (call, auto, end_when_idle): "
                      "it cannot be imported in bulk; start its cases one by one")


class _Built(NamedTuple):
    """A batch made ready to write: its rows bound for the driver, its outbound events."""
    ids: list[int]
    task_ids: list[int]
    tables: list[tuple[str, list[str], list[tuple[Any, ...]]]]   # (table's name, columns, bound rows), in order
    lookups: list[dict[str, Any]]
    events: list[dict[str, Any]]   # engine.emit's, in order


def _build_batch(s: Session, engine: Engine, dialect: Any, spec: ProcessSpec, version_id: int, actor: Actor,
                 prepared: list[tuple[_Unit, dict[str, Any]]], keys: list[str | None] | None, ids: list[int],
                 task_ids: Callable[[int], list[int]], now: datetime | None = None) -> _Built:
    """The rows of one batch (the cases ``ids``; ``task_ids(n)``: n new task ids), hashed, sealed
    and bound as the columns bind them; ``s`` is only read (the first holder of each task)."""
    now = now if now is not None else engine.clock()
    initial = spec.initial_state
    user_id = None if actor.is_system else actor.user_id
    actor_name = audit.SYSTEM_ACTOR if actor.is_system or actor.user_id is None else actor.username
    seal, key = audit.sealed_fields(spec), audit.audit_key()
    business_keys = dict(zip(ids, keys or [None] * len(ids)))   # each case's business_key column
    emitted: list[dict[str, Any]] = []
    session = _Emitted(emitted)

    # the outbound events of each new case, numbered: case_started, then its tasks' task_created (or case_closed)
    case_rows, events = [], []
    for case_id, (unit, values) in zip(ids, prepared):
        event_count = 1 + (1 if initial.final else len(initial.tasks_to_open(values)))
        # validated values are already JSON-safe: stored and hashed as append_event would
        event = dict(case_id=case_id, seq=1, at=now, actor_id=user_id, actor=actor_name, kind="started",
                     trigger=None, from_state=None, to_state=initial.name, comment=None,
                     changes=start_changes(values), prev_hash=None)
        event["hash"], event["hash_version"], event["sealed"] = audit.hash_event(event, seal, key)
        events.append(event)
        case_rows.append(dict(id=case_id, process_version_id=version_id, process_key=spec.key, state=initial.name,
                              data=values, org_unit_id=unit.id, org_path=unit.path, created_by_id=user_id,
                              owner_id=user_id, created_at=now, updated_at=now, closed_at=now if initial.final else None,
                              subject=_subject(spec, values), confidential=spec.confidential, lock_version=1,
                              audit_head=event["hash"], audit_seq=1, event_seq=event_count,
                              business_key=business_keys[case_id]))
    tables = [_bound(dialect, _CASES, case_rows), _bound(dialect, _EVENTS, events)]
    lookups: list[dict[str, Any]] = []
    if searchable_fields(spec):   # the blind index, written with the cases
        lookups = [{"case_id": case_id, "field": name, "digest": digest}
                   for case_id, (_unit, values) in zip(ids, prepared) for name in searchable_fields(spec)
                   if (digest := lookup_digest(values.get(name))) is not None]
    for case_id, (unit, _values) in zip(ids, prepared):
        engine.emit(session, "case_started", case_id=case_id, seq=1, business_key=business_keys[case_id],
                    process=spec.key, state=initial.name, org_unit=unit.code)
    if initial.final:
        for case_id in ids:
            engine.emit(session, "case_closed", case_id=case_id, seq=2, business_key=business_keys[case_id],
                        process=spec.key, state=initial.name)
        return _Built(ids, [], [t for t in tables if t[2]], lookups, emitted)

    task_rows = []
    for case_id, (unit, values) in zip(ids, prepared):
        for task_spec in initial.tasks_to_open(values):
            row = dict(case_id=case_id, **new_task_values(spec, initial, task_spec, unit.id, unit.path, now),
                       escalated=False, lock_version=1, assignee_id=None)
            if task_spec.consent is not None:   # a new case has no consent yet: it waits (protection.py)
                row.update(status="waiting", due_at=None, escalate_at=None)
                task_rows.append(row)
                continue
            holder = None if initial.interleaved else first_holder(s, engine, case_id, unit.path, task_spec, actor)
            if holder is not None:
                row["status"], row["assignee_id"] = "allocated", holder
            task_rows.append(row)
    new_task_ids: list[int] = []
    if task_rows:
        new_task_ids = task_ids(len(task_rows))
        for task_id, row in zip(new_task_ids, task_rows):
            row["id"] = task_id
        tables.append(_bound(dialect, _TASKS, task_rows))
        seqs = dict.fromkeys(ids, 1)
        for row in task_rows:
            seqs[row["case_id"]] += 1
            engine.emit(session, "task_created", case_id=row["case_id"], seq=seqs[row["case_id"]],
                        business_key=business_keys[row["case_id"]],
                        task_id=row["id"], process=spec.key,
                        state=initial.name, name=row["name"], role=row["role"], assignee_id=row["assignee_id"])
    timer_rows = [dict(case_id=case_id, state=initial.name, trigger=trigger, due_at=due, status="pending",
                       attempts=0)
                  for case_id, (_unit, values) in zip(ids, prepared)
                  for trigger, due in timer_dues(initial, values, now, engine.timezone)]
    if timer_rows:
        tables.append(_bound(dialect, _TIMERS, timer_rows))
    return _Built(ids, new_task_ids, [t for t in tables if t[2]], lookups, emitted)


class _Emitted:
    """What ``engine.emit`` is handed while a batch is built: its events, kept for the batch's transaction."""

    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.info = {"events": events}


def _write_built(s: Session, engine: Engine, built: _Built) -> None:
    """Write a built batch in ``s``'s transaction (its events queued there for the outbox)."""
    conn = s.connection()
    for name, names, values in built.tables:
        _copy_rows(conn, name, names, values)
    if built.lookups:
        conn.execute(insert(CaseLookup.__table__), built.lookups)
    s.info.setdefault("events", []).extend(built.events)


def _insert_many(conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with the same keys) by the driver's bulk path, in the current transaction.

    Values go through the columns' own SQLAlchemy bind processing (JSON serialized
    with the engine's serializer, SQLite datetimes as text ...), so they are stored
    exactly as an ORM insert stores them; what is skipped is SQLAlchemy's per-row
    statement machinery. PostgreSQL: one ``COPY ... FROM STDIN`` per batch and table;
    SQLite: one ``executemany`` of a prepared INSERT.
    """
    if rows:
        _copy_rows(conn, *_bound(conn.dialect, table, rows))


def _bound(dialect: Any, table: Any, rows: list[dict[str, Any]]) -> tuple[str, list[str], list[tuple[Any, ...]]]:
    """(table's name, columns, rows as tuples through the columns' bind processing) of ``rows``."""
    if not rows:
        return table.name, [], []
    names = list(rows[0])
    processed = [(i, p) for i, name in enumerate(names)
                 if (p := table.c[name].type.bind_processor(dialect)) is not None]
    get = itemgetter(*names) if len(names) > 1 else (lambda row: (row[names[0]],))
    values = []
    for row in rows:
        value = get(row)
        if processed:
            value = list(value)
            for i, process in processed:
                value[i] = process(value[i])
            value = tuple(value)
        values.append(value)
    return table.name, names, values


def _copy_rows(conn: Connection, table: str, names: list[str], values: list[tuple[Any, ...]]) -> None:
    if not values:
        return
    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(quote(n) for n in names)
    if conn.dialect.name == "postgresql":
        cursor = conn.connection.driver_connection.cursor()
        sql = f"COPY {quote(table)} ({columns}) FROM STDIN"
        try:
            with cursor.copy(sql) as copy:
                for row in values:
                    copy.write_row(row)
        except conn.dialect.dbapi.IntegrityError as err:   # as SQLAlchemy raises it from executemany
            raise IntegrityError(sql, None, err) from err
    else:
        conn.exec_driver_sql(f"INSERT INTO {quote(table)} ({columns}) VALUES ({', '.join('?' * len(names))})",
                             values)


def _allocate_ids(conn: Connection, table: Any, n: int) -> list[int]:
    """``n`` new ids of ``table`` (cases, tasks), taken before the rows are written.

    PostgreSQL: from the table's sequence (concurrent writers get other numbers).
    SQLite: the numbers after the highest ever used (AUTOINCREMENT keeps it in
    sqlite_sequence); the caller holds the write lock, so nobody else takes them.
    """
    if conn.dialect.name == "postgresql":
        return list(conn.scalars(text(f"SELECT nextval(pg_get_serial_sequence('{table.name}', 'id')) "
                                      "FROM generate_series(1, :n)"), {"n": n}))
    if conn.dialect.name == "sqlite":
        last = conn.scalar(text(
            f"SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = '{table.name}'), 0), "
            f"coalesce((SELECT max(id) FROM {table.name}), 0))"))
        return list(range(last + 1, last + 1 + n))
    raise NotImplementedError(f"bulk import supports PostgreSQL and SQLite, not {conn.dialect.name}")



