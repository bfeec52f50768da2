"""Earmarked funds: what a posting transition writes, the money reports, the reconciliation.

A transition that declares ``ledger: {fund: FIELD, amount: FIELD}`` posts one entry when
it takes effect (:func:`ledger_posting`, called by the service inside the action's
transaction). The posting is written twice on purpose: as a :class:`models.LedgerEntry`
row, which reports add up, and inside the action's hash-chained audit event (under
:data:`LEDGER_KEY`), which nobody can edit unseen. :func:`verify_ledger` checks that the
two agree, so an auditor can reconcile a fund's totals with the audit trail.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from sqlalchemy import Text, case as when, cast, func, select
from sqlalchemy.orm import Session

from hexie.models import AuditEvent, Case, LedgerEntry, OrgUnit

from .access import Actor, visible_cases_clause
from .engine import Engine
from .org import town_path
from .errors import Invalid
from .queries import Page, paging
from .protection import case_code
from .spec import LEDGER_KEY, ProcessSpec, TransitionSpec

ZERO = Decimal("0.00")


def ledger_posting(transition: TransitionSpec, data: Mapping[str, Any]) -> dict[str, str] | None:
    """What ``transition`` posts to its fund's ledger with the case's ``data``, or None.

    Refused (nothing written) without a fund or with an amount that is not above zero.
    The amount travels as a string with two decimals, as everywhere in the audit trail.
    """
    ledger = transition.ledger
    if ledger is None:
        return None
    errors = {}
    fund, amount = data.get(ledger.fund), data.get(ledger.amount)
    if not fund:
        errors[ledger.fund] = "记账需要资金来源 / the fund is required to post to the ledger"
    if amount is None or Decimal(str(amount)) <= 0:
        errors[ledger.amount] = "记账金额必须大于 0 / the amount to post must be above 0"
    if errors:
        raise Invalid("记账信息不完整", "the ledger posting is incomplete", errors)
    return {"fund": str(fund), "kind": ledger.kind, "amount": f"{Decimal(str(amount)):.2f}"}


def fund_field(spec: ProcessSpec) -> str | None:
    """The field naming the fund in ``spec``'s postings (the first posting transition's)."""
    return next((t.ledger.fund for t in spec.transitions if t.ledger is not None), None)


def _signed():
    """Money out of a fund counts positive in "paid"; a refund takes it back."""
    return when((LedgerEntry.kind == "refund", -LedgerEntry.amount), else_=LedgerEntry.amount)


def _money(value: Any) -> Decimal:
    return Decimal(value or 0).quantize(Decimal("0.01"))


class LedgerQueries:
    """Money by fund, town and month, and the entries themselves: only of cases she may see."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _visible(self, actor: Actor):
        return visible_cases_clause(actor, self.engine.processes.values(), self.engine.registry.roles)

    def summary(self, actor: Actor, *, process: str | None = None, fund: str | None = None) -> dict[str, Any]:
        """Totals per fund, per town and fund, and per month.

        ``{"funds": [{process, fund, entries, paid, refunded, net}], "towns": [{code, name,
        net: {(process, fund): amount}, total}], "months": [{month, paid, refunded, net}],
        "total": {entries, paid, refunded, net}}``; amounts are Decimal with two places.
        Grouped in the database: a few hundred rows whatever the number of entries.
        """
        where = [self._visible(actor)]
        if process:
            where.append(LedgerEntry.process_key == process)
        if fund:
            where.append(LedgerEntry.fund == fund)
        paid = func.sum(when((LedgerEntry.kind == "payment", LedgerEntry.amount), else_=0))
        refunded = func.sum(when((LedgerEntry.kind == "refund", LedgerEntry.amount), else_=0))
        base = select().select_from(LedgerEntry).join(Case, Case.id == LedgerEntry.case_id).where(*where)
        year, month = func.extract("year", LedgerEntry.at), func.extract("month", LedgerEntry.at)
        with self.engine.session_factory() as s:
            by_fund = s.execute(base.add_columns(LedgerEntry.process_key, LedgerEntry.fund, func.count(), paid, refunded)
                                .group_by(LedgerEntry.process_key, LedgerEntry.fund)
                                .order_by(LedgerEntry.process_key, LedgerEntry.fund)).all()
            by_unit = s.execute(base.add_columns(LedgerEntry.org_path, LedgerEntry.process_key, LedgerEntry.fund,
                                                 func.sum(_signed()))
                                .group_by(LedgerEntry.org_path, LedgerEntry.process_key, LedgerEntry.fund)).all()
            by_month = s.execute(base.add_columns(year, month, paid, refunded)
                                 .group_by(year, month).order_by(year, month)).all()
            towns: dict[str, dict[tuple[str, str], Decimal]] = {}
            for path, key, fund_key, net in by_unit:
                town = town_path(path)
                sums = towns.setdefault(town, {})
                sums[(key, fund_key)] = sums.get((key, fund_key), ZERO) + _money(net)
            names = dict(s.execute(select(OrgUnit.path, OrgUnit.name).where(OrgUnit.path.in_(list(towns)))).all())
        funds = [{"process": key, "fund": fund_key, "entries": n, "paid": _money(p), "refunded": _money(r),
                  "net": _money(p) - _money(r)} for key, fund_key, n, p, r in by_fund]
        return {
            "funds": funds,
            "towns": [{"code": path.rstrip("/").rsplit("/", 1)[-1], "name": names.get(path, path), "net": sums,
                       "total": sum(sums.values(), ZERO)} for path, sums in sorted(towns.items())],
            "months": [{"month": f"{int(y):04d}-{int(m):02d}", "paid": _money(p), "refunded": _money(r),
                        "net": _money(p) - _money(r)} for y, m, p, r in by_month],
            "total": {"entries": sum(f["entries"] for f in funds), "paid": sum((f["paid"] for f in funds), ZERO),
                      "refunded": sum((f["refunded"] for f in funds), ZERO), "net": sum((f["net"] for f in funds), ZERO)},
        }

    def entries(self, actor: Actor, *, process: str | None = None, fund: str | None = None, page: int = 1,
                per_page: int = 50) -> Page:
        """The entries she may see, newest first: what an auditor ticks off against vouchers."""
        page, per_page = paging(page, per_page)
        where = [self._visible(actor)]
        if process:
            where.append(LedgerEntry.process_key == process)
        if fund:
            where.append(LedgerEntry.fund == fund)
        stmt = (select(LedgerEntry, Case.subject, Case.confidential, Case.state, OrgUnit.code, OrgUnit.name)
                .join(Case, Case.id == LedgerEntry.case_id).join(OrgUnit, OrgUnit.id == LedgerEntry.org_unit_id)
                .where(*where))
        with self.engine.session_factory() as s:
            total = self.engine.count(s, stmt.with_only_columns(LedgerEntry.id))
            rows = s.execute(stmt.order_by(LedgerEntry.at.desc(), LedgerEntry.id.desc())
                             .offset((page - 1) * per_page).limit(per_page)).all()
        items = [{"id": e.id, "at": e.at, "case_id": e.case_id, "process": e.process_key, "trigger": e.trigger,
                  "fund": e.fund, "kind": e.kind, "amount": _money(e.amount), "audit_seq": e.audit_seq,
                  "org_unit": code, "org_unit_name": unit_name, "state": state,
                  "subject": case_code(e.case_id) if confidential else subject}
                 for e, subject, confidential, state, code, unit_name in rows]
        return Page(items, total, page, per_page)


def verify_ledger(session: Session, *, batch_size: int = 1000) -> list[str]:
    """Reconcile the ledger with the audit trail; returns the differences found.

    Every entry must match the posting recorded in its action's audit event (same case
    and ``seq``, same trigger, fund, kind and amount), and every posting in the audit
    trail must have its entry. Together with :func:`hexie.workflows.audit.verify_chain` (the
    events themselves untouched) this shows that the fund totals are the ones the
    recorded actions produced.
    """
    problems: list[str] = []
    entries = {(e.case_id, e.audit_seq): e for e in session.execute(
        select(LedgerEntry.id, LedgerEntry.case_id, LedgerEntry.audit_seq, LedgerEntry.trigger, LedgerEntry.fund,
               LedgerEntry.kind, LedgerEntry.amount)).all()}
    postings = session.execute(
        select(AuditEvent.case_id, AuditEvent.seq, AuditEvent.kind, AuditEvent.trigger, AuditEvent.changes)
        .where(cast(AuditEvent.changes, Text).like(f'%"{LEDGER_KEY}"%'))
        .order_by(AuditEvent.case_id, AuditEvent.seq).execution_options(yield_per=batch_size))
    for case_id, seq, kind, trigger, changes in postings:
        posted = _posted(changes)
        if posted is None:
            continue
        entry = entries.pop((case_id, seq), None)
        if entry is None:
            problems.append(f"{_where(case_id, seq)}: 审计记录有记账（{_text(posted)}），台账中没有 / "
                            f"the audit trail posted {_text(posted)}, the ledger has no entry for it")
            continue
        recorded = {"fund": entry.fund, "kind": entry.kind, "amount": f"{_money(entry.amount):.2f}"}
        if kind != "fired" or trigger != entry.trigger or recorded != posted:
            problems.append(f"{_where(case_id, seq)}: 台账条目 {entry.id}（{entry.trigger} {_text(recorded)}）"
                            f"与审计记录（{trigger} {_text(posted)}）不符 / ledger entry {entry.id} says "
                            f"{entry.trigger} {_text(recorded)}, the audit trail says {trigger} {_text(posted)}")
    for (case_id, seq), entry in sorted(entries.items()):
        recorded = {"fund": entry.fund, "kind": entry.kind, "amount": f"{_money(entry.amount):.2f}"}
        problems.append(f"{_where(case_id, seq)}: 台账条目 {entry.id}（{_text(recorded)}）在审计记录中没有对应 / "
                        f"ledger entry {entry.id} ({_text(recorded)}) has no posting in the audit trail")
    return problems


def _where(case_id: int, seq: int) -> str:
    return f"case {case_id} #{seq}"


def _text(posting: Mapping[str, Any]) -> str:
    return f"{posting.get('kind')} {posting.get('amount')} {posting.get('fund')}"


def _posted(changes: Any) -> dict[str, str] | None:
    """The posting an event's ``changes`` recorded, as written by the service."""
    pair = changes.get(LEDGER_KEY) if isinstance(changes, dict) else None
    posted = pair[1] if isinstance(pair, list) and len(pair) == 2 else None
    return posted if isinstance(posted, dict) else None


def fund_labels(specs: Iterable[ProcessSpec]) -> dict[tuple[str, str], Any]:
    """``(process, fund) -> label`` of every fund the definitions can post to, in their order."""
    out = {}
    for spec in specs:
        name = fund_field(spec)
        if name is not None:
            out.update(((spec.key, key), text) for key, text in spec.fields[name].choices)
    return out
