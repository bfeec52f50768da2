"""The dashboard's figures: five tables, each drawn as a chart by the page and served as JSON.

Every figure counts only what she may see (the Access rules of every list: cases through
:func:`~hexie.workflows.access.visible_cases_clause`, money through the ledger's rules), and
is grouped in the database: a few hundred rows whatever the number of cases.

- ``cases``: cases by the month they were opened and the state they are in now (one programme);
- ``money``: money paid out net of refunds, by fund and month posted;
- ``signing``: a programme's rate (elder support's 签约率) by town, and by village;
- ``overdue``: open and overdue work by town;
- ``sla``: of the tasks done that had a due date, the share done by then, by programme and step.

The page's tables and the JSON endpoints are built from the same dictionaries, so their
numbers cannot differ.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import and_, func, select

from hexie.models import Case, LedgerEntry, OrgUnit, Task

from .access import Actor, visible_cases_clause
from .engine import Engine
from .ledger import LedgerQueries, ZERO, _money, _signed
from .org import unit_at_depth
from .protection import SUPPRESSED, THRESHOLD, suppress_report
from .queries import CaseQueries, OPEN

FIGURES = ("cases", "money", "signing", "overdue", "sla")


def _month(column):
    return func.extract("year", column), func.extract("month", column)


def _label(y, m) -> str:
    return f"{int(y):04d}-{int(m):02d}"


class Dashboard:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _visible(self, actor: Actor, process: str | None = None):
        specs = [self.engine.processes[process]] if process else list(self.engine.processes.values())
        return visible_cases_clause(actor, specs, self.engine.registry.roles)

    def cases(self, actor: Actor, process: str) -> dict[str, Any]:
        """``{"process", "states": [state...], "months": [{"month", "counts": {state: n}, "total"}], "totals"}``."""
        spec = self.engine.current(process)[0]
        y, m = _month(Case.created_at)
        with self.engine.session_factory() as s:
            rows = s.execute(select(y, m, Case.state, func.count()).where(Case.process_key == process,
                                                                           self._visible(actor, process))
                             .group_by(y, m, Case.state)).all()
        months: dict[str, dict[str, int]] = {}
        for year, month, state, n in rows:
            counts = months.setdefault(_label(year, month), {})
            counts[state] = counts.get(state, 0) + n
        states = [st.name for st in spec.states]
        totals = {st: sum(c.get(st, 0) for c in months.values()) for st in states}
        out = {"process": process, "states": states,
               "months": [{"month": k, "counts": {st: c.get(st, 0) for st in states}, "total": sum(c.values())}
                          for k, c in sorted(months.items())],
               "totals": totals, "total": sum(totals.values())}
        return _suppressed_grid(out) if spec.confidential else out

    def money(self, actor: Actor) -> dict[str, Any]:
        """``{"funds": [[process, fund]...], "months": [{"month", "net": {"process/fund": amount}, "total"}]}``:
        paid − refunded per fund and month posted (receipts are the balances' business)."""
        y, m = _month(LedgerEntry.at)
        visible = LedgerQueries(self.engine)._visible(actor)
        with self.engine.session_factory() as s:
            rows = s.execute(select(y, m, LedgerEntry.process_key, LedgerEntry.fund, func.sum(_signed()))
                             .select_from(LedgerEntry).outerjoin(Case, Case.id == LedgerEntry.case_id)
                             .where(LedgerEntry.kind != "receipt", visible)
                             .group_by(y, m, LedgerEntry.process_key, LedgerEntry.fund)).all()
        funds = sorted({(p, f) for _, _, p, f, _ in rows})
        months: dict[str, dict[str, Decimal]] = {}
        for year, month, p, f, net in rows:
            months.setdefault(_label(year, month), {})[f"{p}/{f}"] = _money(net)
        return {"funds": [list(pair) for pair in funds],
                "months": [{"month": k, "net": {f"{p}/{f}": v.get(f"{p}/{f}", ZERO) for p, f in funds},
                            "total": sum(v.values(), ZERO)} for k, v in sorted(months.items())]}

    def signing(self, actor: Actor, process: str | None = None) -> dict[str, Any]:
        """The first ``rates`` of ``process`` (default: the first programme that declares one) by town
        and by village: ``{"process", "rate": {name, label}, "towns": [{code, name, signed, of, share}],
        "villages": [...], "total": {signed, of, share}}``; ``share`` in percent with one decimal."""
        specs = [spec for _, spec in sorted(self.engine.processes.items()) if spec.rates]
        spec = self.engine.processes.get(process) if process else (specs[0] if specs else None)
        if spec is None or not spec.rates:
            return {"process": process, "rate": None, "towns": [], "villages": [], "total": None}
        rate = spec.rates[0]
        queries = CaseQueries(self.engine)

        def rows(by: str) -> list[dict[str, Any]]:
            report = queries.report(actor, spec.key, by=by)
            return [{"code": u["code"], "name": u["name"], "signed": u["rates"][rate.name][0],
                     "of": u["rates"][rate.name][1], "share": _share(*u["rates"][rate.name])} for u in report["units"]]

        towns = rows("town")
        signed, of = sum(r["signed"] for r in towns), sum(r["of"] for r in towns)
        return {"process": spec.key, "rate": {"name": rate.name, "label": rate.label}, "towns": towns,
                "villages": rows("village"), "total": {"signed": signed, "of": of, "share": _share(signed, of)}}

    def overdue(self, actor: Actor) -> dict[str, Any]:
        """Open and overdue tasks by town (every programme she may see but the confidential ones:
        a town's count would tell a complaint is there, protection.md; their overdue work is in the
        inboxes and their own suppressed report): ``{"towns": [{code, name, open, overdue}],
        "total": {open, overdue}}``."""
        now = self.engine.clock()
        with self.engine.session_factory() as s:
            rows = s.execute(select(Task.org_path, func.count(), func.count().filter(Task.due_at < now))
                             .join(Case, Case.id == Task.case_id)
                             .where(Task.status.in_(OPEN), Case.confidential.is_(False), self._visible(actor))
                             .group_by(Task.org_path)).all()
            towns: dict[str, list[int]] = {}
            for path, n, late in rows:
                sums = towns.setdefault(unit_at_depth(path, 2), [0, 0])
                sums[0] += n
                sums[1] += late
            names = dict(s.execute(select(OrgUnit.path, OrgUnit.name).where(OrgUnit.path.in_(list(towns)))).all())
        out = [{"code": path.rstrip("/").rsplit("/", 1)[-1], "name": names.get(path, path), "open": n, "overdue": late}
               for path, (n, late) in sorted(towns.items())]
        return {"towns": out, "total": {"open": sum(r["open"] for r in out), "overdue": sum(r["overdue"] for r in out)}}

    def sla(self, actor: Actor) -> dict[str, Any]:
        """Of the completed tasks that had a due date, how many were done by it, by programme and
        step: ``{"rows": [{process, state, done, on_time, share}], "total": {done, on_time, share}}``."""
        with self.engine.session_factory() as s:
            rows = s.execute(select(Task.process_key, Task.state, func.count(),
                                    func.count().filter(Task.completed_at <= Task.due_at))
                             .join(Case, Case.id == Task.case_id)
                             .where(Task.status == "completed", Task.due_at.isnot(None),
                                    Task.completed_at.isnot(None), self._visible(actor))
                             .group_by(Task.process_key, Task.state)
                             .order_by(Task.process_key, Task.state)).all()
        out = []
        for process, state, done, on_time in rows:
            spec = self.engine.processes.get(process)
            if spec is not None and spec.confidential and min(done, on_time) < THRESHOLD:
                # a confidential programme's small counts read "<5" and stay out of the total,
                # which therefore cannot give them back (protection.md)
                out.append({"process": process, "state": state, "done": SUPPRESSED, "on_time": SUPPRESSED,
                            "share": None})
                continue
            out.append({"process": process, "state": state, "done": done, "on_time": on_time,
                        "share": _share(on_time, done)})
        shown = [r for r in out if r["done"] != SUPPRESSED]
        done, on_time = sum(r["done"] for r in shown), sum(r["on_time"] for r in shown)
        return {"rows": out, "total": {"done": done, "on_time": on_time, "share": _share(on_time, done)}}


def _suppressed_grid(data: dict[str, Any]) -> dict[str, Any]:
    """The months-by-states grid of a confidential programme with its small counts (and any sum that
    would give one back) read ``<5``: the reports' suppression, months standing for units."""
    report = {"states": data["states"], "months": [], "total": data["total"],
              "totals": {**data["totals"], "open_tasks": 0, "overdue": 0}, "total_rates": {},
              "units": [{"counts": m["counts"], "total": m["total"], "open_tasks": 0, "overdue": 0, "rates": {}}
                        for m in data["months"]]}
    hidden = suppress_report(report)
    return {**data, "months": [{"month": m["month"], "counts": u["counts"], "total": u["total"]}
                               for m, u in zip(data["months"], hidden["units"])],
            "totals": {st: hidden["totals"][st] for st in data["states"]}, "total": hidden["total"],
            "suppressed": True}


def _share(n: int, of: int) -> float | None:
    return round(100 * n / of, 1) if of else None
