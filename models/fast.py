"""The write path at the driver: Core statements compiled once per dialect, run on the DB-API cursor.

SQLAlchemy Core costs about 13 µs per statement on top of the driver's 1–2 µs (building the
execution context, caching keys, result metadata; ``bench/bench_statement.py``). The service
layer's hot statements (reading and locking the case and its tasks, writing them back, the
audit event, the new task, notifications and outbox rows) go through :class:`Statement`
instead: compiled once per dialect (and per set of inserted columns), their parameters put in
the driver's order by a list built at compile time, SQLAlchemy's own bind and result
processors applied (JSON, dates on SQLite, booleans), executed on the session's own DB-API
connection, inside the session's transaction. Errors are handed to SQLAlchemy's handler, so
they are the usual ``sqlalchemy.exc`` errors and a broken connection invalidates the pool.

**PostgreSQL: fewer round trips.** A write whose answer nobody waits for (:func:`defer`: a
version-checked UPDATE, an INSERT whose id is not needed) is queued, and the queue is sent
together with the next statement that needs an answer (a read, an ``INSERT … RETURNING``), or
with the ``COMMIT`` (:func:`commit`), as one message (see :func:`_run_postgres`): one round
trip for all of it. Before any statement that SQLAlchemy itself sends on the connection the
queue is sent first (an engine event), so statements always run in the order they were
issued. The ``lock_version`` checks of deferred UPDATEs are made by the server (a
data-modifying CTE that fails when no row matched), so they hold even when the COMMIT travels
in the same message: a failed check aborts the transaction and raises the same
:class:`~hexie.workflows.errors.Conflict` the immediate check raised.

**SQLite** has no round trips: everything runs at once (a deferred write is executed when
issued, its row count checked there), only cheaper than through Core.
"""
from __future__ import annotations

import re
from functools import cache
from operator import itemgetter
from types import SimpleNamespace
from dataclasses import dataclass, field
from datetime import datetime as _datetime
from typing import Any, Callable, Iterable, Mapping, Sequence

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session

#: Statements sent to the driver by this module (a list of callables ``fn(sql, params)``:
#: the benchmarks count round trips and statements with it; empty in production).
listeners: list[Callable[[str, Any], None]] = []
#: ``fn()`` called once per round trip to the server (PostgreSQL: each message of this module, each
#: plain statement; SQLite: each statement).
round_trip_listeners: list[Callable[[], None]] = []

#: PostgreSQL: run the statements of this module as prepared statements (``PREPARE`` once per
#: connection, then ``EXECUTE``; see :func:`_prepare_wanted`). Set False where the connections
#: go through a pooler that hands a transaction to any server connection (PgBouncer's
#: transaction mode): SQL-level prepared statements do not survive that.
PREPARE = True
_PENDING = "hexie_fast_pending"
_STALE = re.compile(r"hexie-stale:(\d+):")


class Statement:
    """A Core statement compiled once per dialect and inserted-column set, run at the driver."""

    def __init__(self, stmt: Any, *, checked: bool = False) -> None:
        self.stmt = stmt
        self.checked = checked         # an UPDATE that must match exactly one row
        self._forms: dict[Any, _Form] = {}

    def form(self, dialect: Any, keys: tuple[str, ...] | None) -> "_Form":
        cache_key = (dialect, keys)
        found = self._forms.get(cache_key)
        if found is None:
            found = self._forms[cache_key] = _Form(self.stmt, dialect, keys, self.checked)
        return found


class _Form:
    """One compiled form of a :class:`Statement`: its SQL and how to build its parameters."""

    def __init__(self, stmt: Any, dialect: Any, keys: tuple[str, ...] | None, checked: bool) -> None:
        compiled = stmt.compile(dialect=dialect, column_keys=list(keys) if keys is not None else None)
        expanded: dict[str, Any] = {}
        if compiled.post_compile_params:
            # IN lists fixed in the statement (``status IN ('offered', 'allocated')``) are expanded
            # once, here, as SQLAlchemy does per execution; the caller's parameters stay plain binds
            if any(b.value is None and b.callable is None for b in compiled.post_compile_params):
                raise ValueError("fast.Statement: an IN list must be fixed in the statement")
            dummy = {b.key: None for b in compiled.binds.values() if b.required}
            expanded = compiled.construct_params(dummy, escape_names=False, _no_postcompile=True)
            state = compiled._process_parameters_for_postcompile(expanded, _populate_self=True)
            expanded = dict(state.parameters)
        self.sql = compiled.string
        if checked and dialect.name == "postgresql":
            # the server checks the version: no row matched -> the transaction fails (see module doc)
            # (%(hexie_check)s: the statement's place in its message, to name the failed one)
            self.sql = (f"WITH w AS ({self.sql} RETURNING 1) SELECT CASE WHEN count(*) = 1 THEN 1 "
                        f"ELSE ('hexie-stale:' || %(hexie_check)s::text || ':' || count(*))::int END FROM w")
        self.positional = dialect.paramstyle in ("qmark", "numeric", "format")
        #: PostgreSQL: the SQL cut at its placeholders, for :func:`_render` (None: mogrify it)
        self.template = _template(self.sql) if dialect.name == "postgresql" and not self.positional else None
        #: PostgreSQL: the statement's name and ``PREPARE`` on a connection (:func:`_prepared`); its
        #: parameters in ``$n`` order. ``preparable`` turns False if the server refused it once.
        self.prepare: tuple[bytes, bytes, list[str]] | None = (
            _preparation(self.template) if self.template is not None else None)
        self.preparable = self.prepare is not None
        if self.positional:
            names = list(compiled.positiontup)
        elif expanded:
            names = list(expanded)
        else:
            names = list(dict.fromkeys(compiled.bind_names.values()))
        processors = compiled._bind_processors
        if expanded:
            processors = {**processors, **state.processors}
        if dialect.name == "sqlite":
            processors = {name: _sqlite_datetime(compiled.binds[name].type, dialect, fn)
                          if name in compiled.binds else fn for name, fn in processors.items()}
        prefetch = {c.key: c for c in (*compiled.insert_prefetch, *compiled.update_prefetch)}
        self.binds: list[tuple[str, str, Any, Any, Any, bool]] = []
        for name in names:
            bind = compiled.binds.get(name)
            if bind is None:   # one value of an expanded IN list
                self.binds.append((name, name, expanded[name], processors.get(name), None, False))
                continue
            default = None
            column = prefetch.get(bind.key)
            if column is not None and column.default is not None:
                default = column.default
            literal = bind.callable if bind.callable is not None else bind.value
            self.binds.append((name, bind.key, literal, processors.get(name), default, bind.callable is not None))
        # params(): when the caller names every parameter (the usual case), the values are taken
        # at once and only those with a processor are processed
        self._names = [b[0] for b in self.binds]
        self._take = itemgetter(*[b[1] for b in self.binds]) if len(self.binds) > 1 else None
        self._processed = [(i, b[3]) for i, b in enumerate(self.binds) if b[3] is not None]
        columns = compiled._result_columns or []
        self.keys = [c.keyname for c in columns]
        #: the result columns with a processor, by place
        self._processed_out = [(i, p) for i, c in enumerate(columns)
                               if (p := c.type._cached_result_processor(dialect, None)) is not None]

    def params(self, values: Mapping[str, Any]) -> Any:
        if self._take is not None:
            try:
                taken = list(self._take(values))
            except KeyError:         # a parameter left to its default or literal
                return self._params(values)
            for i, processor in self._processed:
                if taken[i] is not None:
                    taken[i] = processor(taken[i])
            return tuple(taken) if self.positional else dict(zip(self._names, taken))
        return self._params(values)

    def _params(self, values: Mapping[str, Any]) -> Any:
        out: dict[str, Any] | list[Any] = [] if self.positional else {}
        for name, key, literal, processor, default, call in self.binds:
            if key in values:
                value = values[key]
            elif default is not None:
                value = default.arg if default.is_scalar else default.arg(None)
            else:
                value = literal() if call else literal
            if processor is not None and value is not None:
                value = processor(value)
            if self.positional:
                out.append(value)
            else:
                out[name] = value
        return tuple(out) if self.positional else out

    def rows(self, raw_rows: Iterable[Sequence[Any]]) -> list[tuple]:
        processed = self._processed_out
        if not processed:
            return [tuple(r) for r in raw_rows]
        out = []
        for r in raw_rows:
            r = list(r)
            for i, processor in processed:
                r[i] = processor(r[i])
            out.append(tuple(r))
        return out


def _sqlite_datetime(type_: Any, dialect: Any, processor: Any) -> Any:
    """SQLite's text for a ``DateTime`` parameter: SQLAlchemy's own format
    (``YYYY-MM-DD HH:MM:SS.ffffff``, the time zone dropped) from ``datetime.isoformat``, in C,
    instead of a ``%`` format over a dict of seven fields. Anything but a ``datetime`` (a ``date``,
    a string), and a column with a storage format of its own, keep SQLAlchemy's processor."""
    from sqlalchemy.dialects.sqlite import DATETIME
    impl = type_.dialect_impl(dialect)
    if processor is None or type(impl) is not DATETIME or impl._storage_format != DATETIME._storage_format:
        return processor
    iso = _datetime.isoformat

    def process(value: Any) -> Any:
        if type(value) is _datetime:
            return iso(value.replace(tzinfo=None) if value.tzinfo is not None else value, " ", "microseconds")
        return processor(value)
    return process


_PLACEHOLDER = re.compile(r"%%|%\(([^)]+)\)s")


def _template(sql: str) -> tuple[list[bytes], list[str]]:
    """A pyformat statement as the text between its placeholders (UTF-8, ``%%`` read as ``%``) and
    the placeholders' names: the statement with literals is ``chunk0 lit0 chunk1 lit1 …``."""
    chunks, names, text, pos = [], [], [], 0
    for m in _PLACEHOLDER.finditer(sql):
        text.append(sql[pos:m.start()])
        if m.group(1) is None:
            text.append("%")
        else:
            chunks.append("".join(text).encode())
            names.append(m.group(1))
            text = []
        pos = m.end()
    text.append(sql[pos:])
    chunks.append("".join(text).encode())
    return chunks, names


def _render(template: tuple[list[bytes], list[str]], params: Mapping[str, Any], literal: Callable[[Any], bytes]) -> bytes:
    """The statement with its parameters as literals, quoted by psycopg's own ``Transformer.as_literal``:
    the very bytes ``ClientCursor.mogrify`` gives (it calls the same function for each parameter),
    without its per-call parsing of the query (85 → 7 µs for ten parameters, ``tests/test_perf_paths.py``)."""
    chunks, names = template
    out = [chunks[0]]
    for name, chunk in zip(names, chunks[1:]):
        value = params[name]
        out.append(b"NULL" if value is None else literal(value))
        out.append(chunk)
    return b"".join(out)


_NAMES = iter(range(1, 1 << 62))


def _preparation(template: tuple[list[bytes], list[str]]) -> tuple[bytes, bytes, list[str]]:
    """(name, ``PREPARE name AS …`` with ``$n`` placeholders, the parameters' names in ``$n`` order)."""
    chunks, names = template
    order: dict[str, int] = {}
    body = [chunks[0]]
    for name, chunk in zip(names, chunks[1:]):
        number = order.setdefault(name, len(order) + 1)
        body.append(b"$%d" % number)
        body.append(chunk)
    label = b"hexie_fast_%d" % next(_NAMES)
    return label, b"PREPARE " + label + b" AS " + b"".join(body), list(order)


def _execute(form: "_Form", params: Mapping[str, Any], literal: Callable[[Any], bytes]) -> bytes:
    """``EXECUTE name(literal, …)`` of a statement prepared on the connection: the server plans it
    once (after its first executions) instead of parsing and planning the text each time."""
    label, _, order = form.prepare
    if not order:
        return b"EXECUTE " + label
    values = [params[name] for name in order]
    return b"EXECUTE " + label + b"(" + b", ".join(b"NULL" if v is None else literal(v) for v in values) + b")"


@dataclass
class _Prepared:
    """The statements prepared on one server connection, and those to prepare when it is next idle."""

    done: set = field(default_factory=set)
    wanted: dict = field(default_factory=dict)


def _prepared(raw: Any) -> _Prepared | None:
    """What is prepared on ``raw`` (None: statements go as text on this connection). Only on
    the connections of an engine made by :func:`hexie.models.make_engine`; a host's own engine
    gets text.

    psycopg prepares statements of its own (those SQLAlchemy sends five times; the pages'
    read sessions run in autocommit and keep them) and, at a rollback of a transaction, it
    deallocates them all with ``DEALLOCATE ALL`` (its ``PrepareManager.clear``): ours go with
    them. That method is wrapped to forget ours too when it does (they are prepared again when
    next wanted: a refused call costs the next ones on that connection a round trip per
    statement, once). Without it to wrap (another psycopg), nothing is prepared.
    """
    if not PREPARE:
        return None
    manager = getattr(raw, "_prepared", None)
    clear = getattr(manager, "clear", None)
    if clear is None:
        return None
    found = _Prepared()
    done = found.done

    def _clear() -> bool:
        deallocating = clear()      # True: psycopg sends DEALLOCATE ALL next
        if deallocating:
            done.clear()
        return deallocating
    manager.clear = _clear
    return found


def _prepare_wanted(raw: Any, state: _Prepared) -> None:
    """Prepare the statements this connection has sent as text, now that it is idle (outside any
    transaction: a statement the server will not prepare fails alone and is sent as text from
    then on). Prepared statements outlive transactions, rolled back or not, and end with the
    connection; once a statement is prepared it travels as ``EXECUTE`` (see :func:`_run_postgres`)."""
    from psycopg import pq
    wanted, state.wanted = state.wanted, {}
    with raw.lock:
        for label, form in wanted.items():
            _trip()
            result = raw.pgconn.exec_(form.prepare[1])
            if result.status == pq.ExecStatus.COMMAND_OK or result.error_field(
                    pq.DiagnosticField.SQLSTATE) == b"42P05":      # prepared already (ours were forgotten)
                state.done.add(label)
            else:
                form.preparable = False


@dataclass
class _Pending:
    """A statement sent (PostgreSQL: queued) by this module, and, once run, its result."""

    form: _Form
    params: Any
    conflict: Any = None                 # raised when a checked UPDATE matched no row
    wants_rows: bool = False
    rows: list[tuple] | None = None
    rowcount: int = -1
    done: bool = False

    def mappings(self) -> list[dict[str, Any]]:
        return [dict(zip(self.form.keys, r)) for r in (self.rows or [])]

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


@dataclass
class _Queue:
    transaction: Any = None
    items: list[_Pending] = field(default_factory=list)


def _connection(s: Session | Connection) -> Connection:
    """The session's connection (kept in its ``info`` while its transaction lasts: asking the
    session each time costs more than the statement)."""
    if not isinstance(s, Session):
        return s
    conn = s.info.get("hexie_fast_conn")
    if conn is None or conn.closed or not conn.in_transaction() or conn.invalidated:
        conn = s.info["hexie_fast_conn"] = s.connection()
    return conn


def _queue(conn: Connection) -> _Queue:
    """The writes queued in the connection's current transaction (a queue left by a transaction
    that ended is dropped here, whatever ended it)."""
    queue = conn.info.get(_PENDING)
    transaction = conn.get_transaction()
    if queue is None or queue.transaction is not transaction:
        queue = conn.info[_PENDING] = _Queue(transaction=transaction)
    return queue


def _queues(conn: Connection) -> bool:
    """Whether writes may wait on this connection: PostgreSQL, through an engine made by
    :func:`hexie.models.make_engine` (whose events keep the order; a host's own engine runs
    each write at once)."""
    return conn.dialect.name == "postgresql" and getattr(conn.engine.pool, "_hexie_fast", False)


def _pending(stmt: Statement, conn: Connection, values: Mapping[str, Any], *, keys: tuple[str, ...] | None = None,
             conflict: Any = None, wants_rows: bool = False) -> _Pending:
    form = stmt.form(conn.dialect, keys)
    return _Pending(form, form.params(values), conflict, wants_rows)


def _insert_keys(values: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(values)


# ---------------------------------------------------------------------------- running
def _notify(form: _Form, params: Any) -> None:
    for fn in listeners:
        fn(form.sql, params)


def _trip() -> None:
    for fn in round_trip_listeners:
        fn()


def _run_sqlite(conn: Connection, items: list[_Pending]) -> None:
    raw = conn.connection.dbapi_connection
    for item in items:
        cursor = raw.cursor()
        _notify(item.form, item.params)
        _trip()
        try:
            cursor.execute(item.form.sql, item.params)
            item.rows = item.form.rows(cursor.fetchall()) if item.wants_rows or item.form.keys else None
            item.rowcount = cursor.rowcount
        except Exception as err:
            conn._handle_dbapi_exception(err, item.form.sql, item.params, cursor, None)
        finally:
            cursor.close()
        item.done = True
        if item.conflict is not None and item.rowcount != 1:
            raise item.conflict()


def _run_postgres(conn: Connection, items: list[_Pending], commit: bool = False) -> None:
    """Send ``items`` (with BEGIN when the transaction has not begun, and COMMIT) as one message:
    one round trip, one wake-up of the server.

    The statements go as one simple query, their parameters bound on the client by psycopg's
    own quoting (``Transformer.as_literal``, what its ``ClientCursor`` uses; see :func:`_render`).
    psycopg's pipeline mode gives one round trip too, but sends each statement as messages of
    its own: measured on this 2-core machine, that was slower (1 Dec: more CPU per step, 27
    waits for the server's answers instead of 6).
    The server runs the statements one after another; the first that fails ends the message
    and aborts the transaction (what follows it, the COMMIT too, is not run).
    """
    raw = conn.connection.dbapi_connection
    link = conn.info.get("hexie_fast_link")
    if link is None or link.raw is not raw:
        link = conn.info["hexie_fast_link"] = _Link(raw, _prepared(raw) if _queues(conn) else None)
    pg = _psycopg()
    pq = pg.pq
    literal, prepared = link.literal, link.prepared
    parts: list[bytes] = []
    begin = raw.pgconn.transaction_status == pq.TransactionStatus.IDLE
    if begin:
        if prepared is not None and prepared.wanted:
            _prepare_wanted(raw, prepared)
        parts.append(b"BEGIN")
    for index, item in enumerate(items):
        if item.conflict is not None:
            item.params["hexie_check"] = index
        if listeners:
            _notify(item.form, item.params)
        form = item.form
        if prepared is not None and form.preparable:
            if form.prepare[0] in prepared.done:
                parts.append(_execute(form, item.params, literal))
                continue
            prepared.wanted[form.prepare[0]] = form
        if link.utf8 and form.template is not None:
            parts.append(_render(form.template, item.params, literal))
        else:
            parts.append(link.client.mogrify(form.sql, item.params).encode(link.encoding))
    if commit:
        parts.append(b"COMMIT")
    if not parts:
        return
    _trip()
    try:
        with raw.lock:
            raw.pgconn.send_query(b";\n".join(parts))
            results = raw.wait(pg.generators.execute(raw.pgconn))
    except Exception as err:
        conn._handle_dbapi_exception(err, items[0].form.sql if items else "COMMIT",
                                     items[0].params if items else None, None, None)
    answers = results[1:] if begin else results
    for index, result in enumerate(results):
        if result.status == pq.ExecStatus.FATAL_ERROR:
            failed = index - (1 if begin else 0)
            try:
                raise pg.errors.error_from_result(result, encoding=link.encoding)
            except Exception as err:
                stale = _STALE.search(str(err))
                if stale is not None and int(stale.group(1)) < len(items) and items[int(stale.group(1))].conflict:
                    raise items[int(stale.group(1))].conflict() from None   # a version check failed on the server
                item = items[failed] if 0 <= failed < len(items) else None
                conn._handle_dbapi_exception(err, item.form.sql if item else "COMMIT",
                                             item.params if item else None, None, None)
    loader = None
    for item, result in zip(items, answers):
        tuples = result.command_tuples
        item.rowcount = int(tuples or 0) if tuples is not None else -1
        if item.wants_rows or item.form.keys:
            if result.status == pq.ExecStatus.TUPLES_OK:
                if loader is None:
                    loader = pg.Transformer(raw)
                loader.set_pgresult(result)
                item.rows = item.form.rows(loader.load_rows(0, result.ntuples, tuple))
            else:
                item.rows = []
        item.done = True


class _Link:
    """What :func:`_run_postgres` keeps of one server connection (asking psycopg each time costs
    more than the statement: ``Connection.info`` is a new object at every call). The client
    encoding is read once: Hexie never changes it on its connections."""

    def __init__(self, raw: Any, prepared: "_Prepared | None") -> None:
        pg = _psycopg()
        self.raw = raw
        self.client = pg.ClientCursor(raw)
        self.literal = pg.Transformer(raw).as_literal
        self.encoding = raw.info.encoding
        self.utf8 = self.encoding in ("utf-8", "utf8")
        self.prepared = prepared if self.utf8 else None


@cache
def _psycopg() -> SimpleNamespace:
    """The parts of psycopg the PostgreSQL path uses (imported when first needed: SQLite alone
    needs none of them)."""
    from psycopg import ClientCursor, errors, generators, pq
    from psycopg.adapt import Transformer
    return SimpleNamespace(ClientCursor=ClientCursor, errors=errors, generators=generators, pq=pq,
                           Transformer=Transformer)


def _send(conn: Connection, extra: list[_Pending], commit: bool = False) -> None:
    """Send what is queued on ``conn`` followed by ``extra`` (and COMMIT)."""
    queue = _queue(conn)
    items, queue.items = [*queue.items, *extra], []
    if not items and not commit:
        return
    if conn.dialect.name == "postgresql":
        _run_postgres(conn, items, commit)
    else:
        _run_sqlite(conn, items)
        if commit:
            conn.connection.dbapi_connection.commit()


# ---------------------------------------------------------------------------- the API
def defer(s: Session | Connection, stmt: Statement, values: Mapping[str, Any], *,
          conflict: Callable[[], Exception] | None = None, insert: bool = False) -> _Pending:
    """Run a write whose answer nobody waits for: PostgreSQL queues it (sent with the next read,
    RETURNING or COMMIT); SQLite runs it now. ``conflict``: the error when the (checked) UPDATE
    matched no row. ``insert``: compile for the columns ``values`` names."""
    conn = _connection(s)
    item = _pending(stmt, conn, values, keys=_insert_keys(values) if insert else None, conflict=conflict)
    if _queues(conn):
        _queue(conn).items.append(item)
    elif conn.dialect.name == "postgresql":
        _send(conn, [item])
        if item.conflict is not None and item.rowcount != 1:
            raise item.conflict()
    else:
        _run_sqlite(conn, [item])
    return item


def run(s: Session | Connection, stmt: Statement, values: Mapping[str, Any] | None = None, *,
        insert: bool = False) -> _Pending:
    """Run a statement whose answer is needed now (with whatever is queued, in one round trip)."""
    return run_many(s, [(stmt, values or {}, insert)])[0]


def run_many(s: Session | Connection, statements: Sequence[tuple[Statement, Mapping[str, Any], bool]]) -> list[_Pending]:
    """Run several statements, in order, in one round trip on PostgreSQL (after what is queued)."""
    if isinstance(s, Session) and s.autoflush and (s._new or s._deleted or s.identity_map._modified):
        s.flush()   # as a query through the session would: what the ORM holds is written first
    conn = _connection(s)
    items = [_pending(stmt, conn, values, keys=_insert_keys(values) if insert else None, wants_rows=True)
             for stmt, values, insert in statements]
    _send(conn, items)
    return items


def rows(s: Session | Connection, stmt: Statement, values: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The rows of a select, as dicts of column name to value."""
    return run(s, stmt, values).mappings()


def flush(s: Session | Connection) -> None:
    """Send what is queued now (before something else reads the database behind this module)."""
    conn = _connection(s)
    queue = conn.info.get(_PENDING)
    if queue is not None and queue.items and queue.transaction is conn.get_transaction():
        _send(conn, [])


def commit(session: Session) -> None:
    """Commit the session's transaction; on PostgreSQL with what is still queued, in one round trip.

    The ORM's own pending objects are flushed first (their statements send the queue before
    them); the session's ``commit()`` that follows finds the connection's transaction done
    and only ends its own bookkeeping (and runs its events).
    """
    session.flush()
    if not session.in_transaction():
        return
    conn = session.connection()
    if conn.dialect.name != "postgresql" or conn.in_nested_transaction():
        flush(conn)
        return
    queue = conn.info.get(_PENDING)
    if queue is None or not queue.items or queue.transaction is not conn.get_transaction():
        return          # nothing queued: SQLAlchemy's own COMMIT is the same one round trip
    _send(conn, [], commit=True)


def discard(conn: Connection) -> None:
    """Forget what is queued (the transaction, or the savepoint it belonged to, was rolled back)."""
    if conn.invalidated or conn.closed:   # a broken connection: its record's queue goes at checkin
        return
    try:
        queue = conn.info.get(_PENDING)
    except Exception:   # the connection is being invalidated (a disconnect): nothing to keep
        return
    if queue is not None:
        queue.items = []


# ------------------------------------------------------------------ keeping the order
def install(engine: Engine) -> None:
    """Send the queue before any statement SQLAlchemy sends itself, drop it on a rollback."""
    if engine.dialect.name != "postgresql":
        return
    engine.pool._hexie_fast = True

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn, cursor, statement, parameters, context, executemany):   # noqa: ANN001
        queue = conn.info.get(_PENDING)
        if queue is not None and queue.items:
            if statement.lstrip()[:8].upper().startswith("ROLLBACK"):
                queue.items = []      # ROLLBACK TO SAVEPOINT: what was queued since is undone anyway
            else:
                _send(conn, [])

    @event.listens_for(engine, "rollback")
    def _rollback(conn):   # noqa: ANN001
        discard(conn)

    @event.listens_for(engine.pool, "checkin")
    def _checkin(dbapi_connection, record):   # noqa: ANN001
        record.info.pop(_PENDING, None)

    @event.listens_for(engine, "commit")
    def _commit(conn):   # noqa: ANN001
        queue = conn.info.get(_PENDING)
        if queue is not None and queue.items:   # a commit not made through commit(): send first
            _send(conn, [])
