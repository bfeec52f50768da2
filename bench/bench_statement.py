"""What one statement costs through each layer, on SQLite in one transaction (no disk in the way).

The same UPDATE (and a one-row SELECT) run N times through: the bare ``sqlite3`` cursor,
SQLAlchemy's ``exec_driver_sql``, a SQLAlchemy Core statement built once, and the ORM
(load an object, change it, flush), and :mod:`hexie.models.fast` (the statement compiled
once, its parameters put in order by a list, run on the driver's cursor: the service's
write path). The first is the baseline; the ratios say what each
layer adds. This is why the service reads and writes with prebuilt Core statements and
keeps the ORM out of an action's path (docs/performance.md, section 1).

    .venv/bin/python bench/bench_statement.py            # 5,000 statements per layer
    .venv/bin/python bench/bench_statement.py --n 20000
"""
from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from sqlalchemy import Integer, String, bindparam, create_engine, insert, select, update
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from common import median, table, write_result


class _Base(DeclarativeBase):
    pass


class Row(_Base):
    __tablename__ = "t"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    state: Mapped[str] = mapped_column(String(20))
    v: Mapped[int] = mapped_column(Integer)


ROWS = 1000
SQL = "UPDATE t SET state=?, v=v+1 WHERE id=? AND v>=?"


def per_statement(fn, n: int) -> float:
    """µs per call of ``fn(i)`` over ``n`` calls."""
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    return (time.perf_counter() - start) / n * 1e6


def measure(path: Path, n: int) -> dict[str, float]:
    engine = create_engine(f"sqlite:///{path}")
    out: dict[str, float] = {}
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("BEGIN")
    cur = raw.cursor()
    out["sqlite3 cursor (baseline)"] = per_statement(lambda i: cur.execute(SQL, ("a", i % ROWS + 1, 0)), n)
    raw.execute("COMMIT")
    raw.close()
    core_update = (update(Row.__table__).where(Row.__table__.c.id == bindparam("k"), Row.__table__.c.v >= 0)
                   .values(state=bindparam("s"), v=Row.__table__.c.v + 1))
    core_select = select(Row.__table__).where(Row.__table__.c.id == bindparam("k"))
    with engine.begin() as conn:
        out["exec_driver_sql"] = per_statement(
            lambda i: conn.exec_driver_sql(SQL, ("b", i % ROWS + 1, 0)), n)
        out["Core UPDATE, built once"] = per_statement(
            lambda i: conn.execute(core_update, {"k": i % ROWS + 1, "s": "c"}), n)
        out["Core SELECT of a row, built once"] = per_statement(
            lambda i: conn.execute(core_select, {"k": i % ROWS + 1}).first(), n)
        from hexie.models import fast
        fast_update, fast_select = fast.Statement(core_update), fast.Statement(core_select)
        out["hexie.models.fast UPDATE (Core compiled once, driver execute)"] = per_statement(
            lambda i: fast.defer(conn, fast_update, {"k": i % ROWS + 1, "s": "e"}), n)
        out["hexie.models.fast SELECT of a row"] = per_statement(
            lambda i: fast.rows(conn, fast_select, {"k": i % ROWS + 1}), n)
    with Session(engine) as session, session.begin():
        def orm_update(i: int) -> None:
            row = session.get(Row, i % ROWS + 1)
            row.state, row.v = "d", row.v + 1
            session.flush()
        out["ORM get + change + flush"] = per_statement(orm_update, n)
        out["ORM SELECT of an object (populate)"] = per_statement(
            lambda i: session.scalars(select(Row).where(Row.id == i % ROWS + 1)
                                      .execution_options(populate_existing=True)).first(), n)
    engine.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="statements per layer and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "statement.db"
        engine = create_engine(f"sqlite:///{path}")
        _Base.metadata.create_all(engine)
        with engine.begin() as conn:
            conn.execute(insert(Row.__table__), [{"id": i, "state": "a", "v": 0} for i in range(1, ROWS + 1)])
        engine.dispose()
        rounds = [measure(path, args.n) for _ in range(args.rounds)]
    results = {name: median([r[name] for r in rounds]) for name in rounds[0]}
    base = results["sqlite3 cursor (baseline)"]
    print(table(["layer", "µs per statement", "× the bare cursor"],
                [[name, round(us, 1), round(us / base, 1)] for name, us in results.items()]))
    path = write_result("statement", {"n": args.n, "rounds": args.rounds, "us_per_statement": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
