import sqlite3, time, os
from sqlalchemy import create_engine, text, Table, Column, Integer, String, MetaData, update, bindparam, select, insert
p = "/tmp/micro.db"
if os.path.exists(p): os.remove(p)
md = MetaData()
t = Table("t", md, Column("id", Integer, primary_key=True), Column("state", String(20)), Column("v", Integer))
eng = create_engine(f"sqlite:///{p}")
md.create_all(eng)
with eng.begin() as c:
    c.execute(insert(t), [{"id": i, "state": "a", "v": 0} for i in range(1, 1001)])
N = 5000
# raw
raw = sqlite3.connect(p, isolation_level=None)
cur = raw.cursor()
cur.execute("BEGIN")
t0 = time.perf_counter()
for i in range(N):
    cur.execute("UPDATE t SET state=?, v=v+1 WHERE id=? AND v>=?", ("b", i % 1000 + 1, 0))
t_raw = (time.perf_counter() - t0) / N
cur.execute("COMMIT")
raw.close()
stmt = update(t).where(t.c.id == bindparam("k"), t.c.v >= bindparam("m")).values(state=bindparam("s"), v=t.c.v + 1)
with eng.begin() as c:
    t0 = time.perf_counter()
    for i in range(N):
        c.execute(stmt, {"k": i % 1000 + 1, "m": 0, "s": "c"})
    t_core = (time.perf_counter() - t0) / N
with eng.begin() as c:
    t0 = time.perf_counter()
    for i in range(N):
        c.exec_driver_sql("UPDATE t SET state=?, v=v+1 WHERE id=? AND v>=?", ("d", i % 1000 + 1, 0))
    t_drv = (time.perf_counter() - t0) / N
with eng.begin() as c:
    dbapi = c.connection.dbapi_connection
    cur = dbapi.cursor()
    t0 = time.perf_counter()
    for i in range(N):
        cur.execute("UPDATE t SET state=?, v=v+1 WHERE id=? AND v>=?", ("e", i % 1000 + 1, 0))
    t_dbapi = (time.perf_counter() - t0) / N
sel = select(t).where(t.c.id == bindparam("k"))
with eng.begin() as c:
    t0 = time.perf_counter()
    for i in range(N):
        c.execute(sel, {"k": i % 1000 + 1}).first()
    t_sel = (time.perf_counter() - t0) / N
print(f"raw {t_raw*1e6:.1f}us  core {t_core*1e6:.1f}us  driver_sql {t_drv*1e6:.1f}us  dbapi-in-SA {t_dbapi*1e6:.1f}us  core select {t_sel*1e6:.1f}us")
