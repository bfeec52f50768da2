"""What every benchmark shares: databases, the bench org, timing, query counting, output.

Every figure a benchmark reports is a ratio against a baseline measured in the same
process within the same minute (this machine is noisy within about 10 %), taken as
the median over several alternating rounds.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python bench/x.py` from the repository
    sys.path.insert(0, str(ROOT))

from sqlalchemy import create_engine, event, text  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

BENCH_DIR = ROOT / "bench"
RESULTS = BENCH_DIR / "results"
BENCH_DEFINITIONS = BENCH_DIR / "definitions"
DEFINITIONS = ROOT / "definitions"

#: The PostgreSQL server; benchmarks create their own databases on it.
PG_SERVER = os.environ.get("HEXIE_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
PG_DATABASE = "hexie_bench"


# --- databases ----------------------------------------------------------------------

def pg_url(database: str = PG_DATABASE) -> str:
    base, _, _ = PG_SERVER.rpartition("/")
    return f"{base}/{database}"


def fresh_pg(database: str = PG_DATABASE, upgrade: bool = True) -> str:
    """Drop and create ``database`` on the bench server, at the schema head; returns its URL."""
    admin = create_engine(PG_SERVER, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        conn.exec_driver_sql(f'CREATE DATABASE "{database}"')
    admin.dispose()
    url = pg_url(database)
    if upgrade:
        from hexie.models import upgrade as upgrade_schema
        upgrade_schema(url)
    return url


def fresh_sqlite(name: str, upgrade: bool = True) -> str:
    """A new SQLite file /tmp/hexie_bench_<name>.db (WAL) at the schema head; returns its URL."""
    path = Path(f"/tmp/hexie_bench_{name}.db")
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    url = f"sqlite:///{path}"
    if upgrade:
        from hexie.models import upgrade as upgrade_schema
        upgrade_schema(url)
    return url


def bench_org(towns: int = 14, villages: int = 10, county: str = "county") -> dict[str, Any]:
    """An org file (as data) of one county: towns x villages, and the people who work there.

    No passwords (nobody signs in during a benchmark; hashing would dominate set-up).
    """
    units = [{"code": county, "name": "某县", "level": "county"}]
    users = [
        {"username": "mgr1", "name": "刘主席", "roles": [f"county_manager@{county}"]},
        {"username": "mgr2", "name": "张副主席", "roles": [f"county_manager@{county}"]},
        {"username": "fin", "name": "钱会计", "roles": [f"finance_officer@{county}"]},
        {"username": "ccadre", "name": "郑干事", "roles": [f"county_cadre@{county}"]},
    ]
    for t in range(1, towns + 1):
        town = f"t{t:02d}"
        units.append({"code": town, "name": f"第{t}镇", "level": "town", "parent": county})
        users.append({"username": f"cadre_{town}", "name": f"{town}干部", "roles": [f"town_cadre@{town}"]})
        users.append({"username": f"chair_{town}", "name": f"{town}主席", "roles": [f"town_chair@{town}"]})
        for v in range(1, villages + 1):
            village = f"{town}v{v:02d}"
            units.append({"code": village, "name": f"{town}第{v}村", "level": "village", "parent": town})
            users.append({"username": f"rep_{village}", "name": f"{village}主任",
                          "roles": [f"village_rep@{village}"]})
    return {"units": units, "users": users}


def make_bench_engine(url: str, definitions: Path = BENCH_DEFINITIONS, org: dict | None = None,
                      **engine_kw: Any):
    """(Engine, WorkflowService, CaseQueries) over ``url`` with the bench org loaded."""
    from hexie.models import make_engine, make_session_factory
    from hexie.workflows.engine import Engine
    from hexie.workflows.loader import load_definitions_strict
    from hexie.workflows.org import load_org
    from hexie.workflows.queries import CaseQueries
    from hexie.workflows.service import WorkflowService

    db = make_engine(url, **engine_kw)
    engine = Engine(make_session_factory(db), load_definitions_strict(definitions))
    engine.sync_definitions()
    if org is not None:
        roles = engine.registry.roles
        with engine.transaction() as s:
            load_org(s, org, roles=list(roles.roles), levels=list(roles.levels))
    return engine, WorkflowService(engine), CaseQueries(engine)


# --- measuring ----------------------------------------------------------------------

class QueryCounter:
    """Counts the SQL statements an SQLAlchemy engine sends (and remembers them), and on
    PostgreSQL the round trips to the server.

    Statements go two ways: through SQLAlchemy (its ``before_cursor_execute`` event) and at the
    driver through :mod:`hexie.models.fast` (its listeners). A round trip is: each statement sent
    through SQLAlchemy, plus the ``BEGIN`` psycopg sends before the first statement of a
    transaction when that goes through SQLAlchemy, plus its ``COMMIT`` when one is still to
    send; and each pipeline of :mod:`hexie.models.fast` (however many statements, ``BEGIN`` and
    ``COMMIT`` it carries).
    """

    def __init__(self, sa_engine) -> None:
        from hexie.models import fast
        self.fast = fast
        self.engine = sa_engine
        self.postgres = sa_engine.dialect.name == "postgresql"
        self.statements: list[str] = []
        self.trips = 0
        self.active = False
        event.listen(sa_engine, "before_cursor_execute", self._on_execute)
        event.listen(sa_engine, "commit", self._on_commit)
        fast.listeners.append(self._on_fast)
        fast.round_trip_listeners.append(self._on_trip)

    def _idle(self, conn) -> bool:
        from psycopg.pq import TransactionStatus
        return conn.connection.dbapi_connection.info.transaction_status == TransactionStatus.IDLE

    def _on_execute(self, conn, cursor, statement, parameters, context, executemany) -> None:
        if self.active:
            self.statements.append(" ".join(statement.split()))
            self.trips += 1 + (1 if self.postgres and self._idle(conn) else 0)

    def _on_commit(self, conn) -> None:
        if self.active and self.postgres and not self._idle(conn):
            self.trips += 1

    def _on_fast(self, sql, params) -> None:
        if self.active:
            self.statements.append("[driver] " + " ".join(sql.split()))

    def _on_trip(self) -> None:
        if self.active:
            self.trips += 1

    @contextmanager
    def counting(self) -> Iterator[list[str]]:
        self.statements = []
        self.trips = 0
        self.active = True
        try:
            yield self.statements
        finally:
            self.active = False

    def close(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._on_execute)
        event.remove(self.engine, "commit", self._on_commit)
        self.fast.listeners.remove(self._on_fast)
        self.fast.round_trip_listeners.remove(self._on_trip)


def rate(fn: Callable[[int], Any], n: int) -> float:
    """Calls of ``fn(i)`` per second over ``n`` calls."""
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - start)


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) by nearest rank."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, int(round(p / 100 * len(ordered) + 0.5)) - 1))
    return ordered[k]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (Linux: ru_maxrss is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mib() -> float:
    """Resident memory now, in MiB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


# --- the machine and the output --------------------------------------------------------

def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
                            "platform": platform.platform()}
    try:
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    import sqlite3

    import sqlalchemy
    info["sqlite"] = sqlite3.sqlite_version
    info["sqlalchemy"] = sqlalchemy.__version__
    try:
        admin = create_engine(PG_SERVER, poolclass=NullPool)
        with admin.connect() as conn:
            info["postgresql"] = conn.scalar(text("SHOW server_version"))
        admin.dispose()
    except Exception as err:  # the SQLite-only figures are still worth having
        info["postgresql"] = f"unavailable: {err.__class__.__name__}"
    return info


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table (numbers right-aligned)."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
        if isinstance(v, int):
            return f"{v:,}"
        return str(v)
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)),
           "  ".join("-" * w for w in widths)]
    for row, raw in zip(cells, rows):
        out.append("  ".join(c.rjust(w) if isinstance(v, (int, float)) else c.ljust(w)
                             for c, w, v in zip(row, widths, raw)))
    return "\n".join(out)


def result_path(filename: str) -> Path:
    """``bench/results/<filename>``, the folder created if this clone has none yet."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    return RESULTS / filename


def write_result(name: str, data: dict[str, Any]) -> Path:
    """Write ``bench/results/<name>.json`` (with the machine and the time) and return its path."""
    path = result_path(f"{name}.json")
    document = {"benchmark": name, "at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "machine": machine(), "argv": sys.argv[1:], **data}
    path.write_text(json.dumps(document, ensure_ascii=False, indent=2, default=str) + "\n")
    return path
