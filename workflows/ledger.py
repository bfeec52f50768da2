"""Earmarked funds: what a posting transition writes, the money reports, the reconciliation.

A transition that declares ``ledger: {fund: FIELD, amount: FIELD}`` posts one entry when
it takes effect (:func:`ledger_posting`, called by the service inside the action's
transaction). The posting is written twice on purpose: as a :class:`models.LedgerEntry`
row, which reports add up, and inside the action's hash-chained audit event (under
:data:`LEDGER_KEY`), which nobody can edit unseen. :func:`verify_ledger` checks that the
two agree, so an auditor can reconcile a fund's totals with the audit trail.

Money also comes *into* a fund: a donation or an allocation is a **receipt**
(:func:`record_receipt`, kind ``receipt``, no case), with its donor, the day it arrived and
its voucher number, recorded in the same transaction as an event of the audit trail's
case-less chain (kind ``receipt``), which :func:`verify_ledger` reconciles the same way.
A fund's **balance** is received − paid + refunded (:meth:`LedgerQueries.balances`).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Text, and_, case as when, cast, false, func, or_, select, text
from sqlalchemy.orm import Session

from hexie.models import AuditEvent, Case, LedgerEntry, OrgUnit, User

from . import audit
from .access import Actor, is_admin, viewer_roles, visible_cases_clause
from .engine import Engine
from .org import in_subtree, town_path
from .errors import Forbidden, Invalid, NotFound
from .forms import written_number
from .queries import Page, paging
from .protection import case_code
from .spec import LEDGER_KEY, ProcessSpec, TransitionSpec

ZERO = Decimal("0.00")
#: The kinds of entry: money out (payment), back in from a payee (refund), into the fund (receipt).
KINDS = ("payment", "refund", "receipt")
#: The advisory lock of the case-less audit chain (the same number as people.CASELESS_CHAIN_LOCK).
CASELESS_CHAIN_LOCK = 4865786901
#: The largest amount a Numeric(14, 2) column holds.
MAX_AMOUNT = Decimal("999999999999.99")


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
    posting = {"fund": str(fund), "kind": ledger.kind, "amount": f"{Decimal(str(amount)):.2f}"}
    voucher = data.get(ledger.voucher) if ledger.voucher else None
    if voucher not in (None, ""):
        posting["voucher"] = str(voucher)[:64]      # recorded in the audit event too, and reconciled
    return posting


def fund_field(spec: ProcessSpec) -> str | None:
    """The field naming the fund in ``spec``'s postings (the first posting transition's)."""
    return next((t.ledger.fund for t in spec.transitions if t.ledger is not None), None)


def _signed():
    """Money out of a fund counts positive in "paid"; a refund takes it back; a receipt is not paid."""
    return when((LedgerEntry.kind == "refund", -LedgerEntry.amount), (LedgerEntry.kind == "receipt", 0),
                else_=LedgerEntry.amount)


def _money(value: Any) -> Decimal:
    return Decimal(value or 0).quantize(Decimal("0.01"))


class LedgerQueries:
    """Money by fund, town and month, and the entries themselves: only of cases she may see."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _visible(self, actor: Actor):
        """Entries of cases she may see, and receipts of the funds of programmes she may see there."""
        return or_(and_(LedgerEntry.case_id.isnot(None),
                        visible_cases_clause(actor, self.engine.processes.values(), self.engine.registry.roles)),
                   and_(LedgerEntry.case_id.is_(None), receipts_clause(actor, self.engine)))

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
        base = (select().select_from(LedgerEntry).outerjoin(Case, Case.id == LedgerEntry.case_id)
                .where(LedgerEntry.kind != "receipt", *where))
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

    def balances(self, actor: Actor, *, process: str | None = None, fund: str | None = None,
                 period: str = "month") -> dict[str, Any]:
        """Each fund's balance by period: received − paid + refunded.

        ``period``: ``month`` or ``year``. Receipts count on the day they were received,
        payments and refunds when they were posted. ``{"period", "funds": [{process, fund,
        received, paid, refunded, balance, periods: [{period, received, paid, refunded, change,
        balance}]}], "total": {received, paid, refunded, balance}}``: ``balance`` of a period
        is the fund's balance at its end (every earlier period counted).
        """
        if period not in ("month", "year"):
            raise Invalid("期间只能是月或年", "period must be month or year", {"period": period})
        where = [self._visible(actor)]
        if process:
            where.append(LedgerEntry.process_key == process)
        if fund:
            where.append(LedgerEntry.fund == fund)
        sums: dict[tuple[str, str], dict[str, dict[str, Decimal]]] = {}
        with self.engine.session_factory() as s:
            for column, kinds in ((LedgerEntry.at, ("payment", "refund")), (LedgerEntry.received_on, ("receipt",))):
                year, month = func.extract("year", column), func.extract("month", column)
                keys = [year] if period == "year" else [year, month]
                rows = s.execute(select(LedgerEntry.process_key, LedgerEntry.fund, LedgerEntry.kind, *keys,
                                        func.sum(LedgerEntry.amount))
                                 .select_from(LedgerEntry).outerjoin(Case, Case.id == LedgerEntry.case_id)
                                 .where(LedgerEntry.kind.in_(kinds), *where)
                                 .group_by(LedgerEntry.process_key, LedgerEntry.fund, LedgerEntry.kind, *keys)).all()
                for row in rows:
                    key, fund_key, kind, y = row[0], row[1], row[2], int(row[3])
                    label = f"{y:04d}" if period == "year" else f"{y:04d}-{int(row[4]):02d}"
                    cell = sums.setdefault((key, fund_key), {}).setdefault(
                        label, {"received": ZERO, "paid": ZERO, "refunded": ZERO})
                    name = {"receipt": "received", "payment": "paid", "refund": "refunded"}[kind]
                    cell[name] += _money(row[-1])
        funds = []
        for (key, fund_key), by_period in sorted(sums.items()):
            running = ZERO
            periods = []
            for label, cell in sorted(by_period.items()):
                change = cell["received"] - cell["paid"] + cell["refunded"]
                running += change
                periods.append({"period": label, **cell, "change": change, "balance": running})
            totals = {name: sum((p[name] for p in periods), ZERO) for name in ("received", "paid", "refunded")}
            funds.append({"process": key, "fund": fund_key, **totals, "balance": running, "periods": periods})
        total = {name: sum((f[name] for f in funds), ZERO) for name in ("received", "paid", "refunded", "balance")}
        return {"period": period, "funds": funds, "total": total}

    def entries(self, actor: Actor, *, process: str | None = None, fund: str | None = None,
                kind: str | None = None, page: int = 1, per_page: int = 50) -> Page:
        """The entries she may see, newest first: what an auditor ticks off against vouchers."""
        page, per_page = paging(page, per_page)
        where = [self._visible(actor)]
        if process:
            where.append(LedgerEntry.process_key == process)
        if fund:
            where.append(LedgerEntry.fund == fund)
        if kind:
            where.append(LedgerEntry.kind == kind)
        stmt = (select(LedgerEntry, Case.subject, Case.confidential, Case.state, OrgUnit.code, OrgUnit.name)
                .outerjoin(Case, Case.id == LedgerEntry.case_id).join(OrgUnit, OrgUnit.id == LedgerEntry.org_unit_id)
                .where(*where))
        with self.engine.session_factory() as s:
            total = self.engine.count(s, stmt.with_only_columns(LedgerEntry.id))
            rows = s.execute(stmt.order_by(LedgerEntry.at.desc(), LedgerEntry.id.desc())
                             .offset((page - 1) * per_page).limit(per_page)).all()
        items = [{"id": e.id, "at": e.at, "case_id": e.case_id, "process": e.process_key, "trigger": e.trigger,
                  "fund": e.fund, "kind": e.kind, "amount": _money(e.amount), "audit_seq": e.audit_seq,
                  "org_unit": code, "org_unit_name": unit_name, "state": state,
                  "subject": case_code(e.case_id) if confidential else subject, "voucher": e.voucher,
                  "donor": e.donor, "received_on": e.received_on}
                 for e, subject, confidential, state, code, unit_name in rows]
        return Page(items, total, page, per_page)


def receipts_clause(actor: Actor, engine: Engine):
    """Receipts she may see: those of a programme's funds at units where she may see its cases
    (the programme's viewer roles, held there or above); everyone's for the system and admins."""
    if actor.is_system or is_admin(actor, engine.registry.roles):
        return LedgerEntry.case_id.is_(None)
    clauses = []
    for spec in engine.processes.values():
        for path in sorted(set(actor.paths_for(viewer_roles(spec, engine.registry.roles)))):
            clauses.append(and_(LedgerEntry.process_key == spec.key, in_subtree(LedgerEntry.org_path, path)))
    return or_(*clauses) if clauses else false()


def receipt_roles(spec: ProcessSpec) -> frozenset[str]:
    """Who records money received into a programme's funds: whoever may post its payments
    (the roles of its transitions that declare ``ledger``)."""
    return frozenset(role for t in spec.transitions if t.ledger is not None
                     for source in t.sources for role, _ in spec.transition_roles(t, source))


def may_record_receipt(actor: Actor, engine: Engine, spec: ProcessSpec, org_path: str | None = None) -> bool:
    """She may record receipts of ``spec``'s funds (at ``org_path``, or somewhere)."""
    if actor.is_system or is_admin(actor, engine.registry.roles):
        return True
    roles = receipt_roles(spec)
    if org_path is None:
        return bool(actor.paths_for(roles))
    return actor.holds_any(roles, org_path)


def receipt_processes(actor: Actor, engine: Engine) -> list[ProcessSpec]:
    """The programmes with funds whose receipts she may record."""
    return [spec for _, spec in sorted(engine.processes.items())
            if fund_field(spec) is not None and may_record_receipt(actor, engine, spec)]


def _text_value(data: Mapping[str, Any], name: str, limit: int, errors: dict[str, str], zh: str, en: str) -> str:
    value = data.get(name)
    value = "" if value is None else str(value).strip()
    if not value:
        errors[name] = f"{zh}必填 / {en} is required"
    elif len(value) > limit or "\x00" in value:
        errors[name] = f"{zh}过长（最多 {limit} 字）/ {en} is longer than {limit} characters"
    return value


def check_receipt(engine: Engine, data: Mapping[str, Any]) -> tuple[ProcessSpec, dict[str, Any]]:
    """The receipt ``data`` describes, checked: ``{process, fund, amount, donor, received_on,
    voucher, org_unit}``. Raises :class:`Invalid` with a message per field (nothing written)."""
    errors: dict[str, str] = {}
    process = str(data.get("process") or "")
    spec = engine.processes.get(process)
    if spec is None or fund_field(spec) is None:
        errors["process"] = "没有这个有专项资金的项目 / no programme with earmarked funds has this key"
    fund = str(data.get("fund") or "")
    if spec is not None and fund_field(spec) is not None:
        funds = {key for key, _ in spec.fields[fund_field(spec)].choices}
        if fund not in funds:
            errors["fund"] = f"没有这个资金来源 / unknown fund {fund!r}; one of {', '.join(sorted(funds))}"
    raw = data.get("amount")
    amount = None
    try:
        amount = written_number(raw)
    except (InvalidOperation, ValueError):
        amount = None
        errors["amount"] = "金额请写成数字，如 100000 或 100000.50 / write the amount as digits, e.g. 100000 or 100000.50"
    else:
        if amount <= 0 or amount > MAX_AMOUNT or amount != amount.quantize(Decimal("0.01")):
            errors["amount"] = "金额须为大于 0 的数，最多两位小数 / the amount must be a number above 0 with at most two decimals"
    donor = _text_value(data, "donor", 200, errors, "捐赠或拨款单位", "the donor")
    voucher = _text_value(data, "voucher", 64, errors, "凭证号", "the voucher number")
    day = data.get("received_on")
    received_on = None
    if isinstance(day, datetime):
        received_on = day.date()
    elif isinstance(day, date):
        received_on = day
    else:
        try:
            received_on = date.fromisoformat(str(day or "").strip()[:10])
        except ValueError:
            errors["received_on"] = "到账日期须为 YYYY-MM-DD / the day received must be a date, YYYY-MM-DD"
    if received_on is not None and received_on > engine.today():
        errors["received_on"] = "到账日期不能晚于今天 / the day received cannot be after today"
    code = str(data.get("org_unit") or "").strip()
    if not code:
        errors["org_unit"] = "单位必填 / the unit is required"
    if errors:
        raise Invalid("收款信息有误", "the receipt is not valid", errors)
    return spec, {"process": process, "fund": fund, "amount": amount.quantize(Decimal("0.01")), "donor": donor,
                  "voucher": voucher, "received_on": received_on, "org_unit": code}


def record_receipt(engine: Engine, actor: Actor, data: Mapping[str, Any], session: Session | None = None
                   ) -> dict[str, Any]:
    """Record money received into a fund: one ledger entry of kind ``receipt`` and its audit
    event (case-less chain), in one transaction. Refused (nothing written): invalid data
    (:class:`Invalid`), an unknown unit (:class:`Invalid` on ``org_unit``), a voucher number
    already used for a receipt of the same fund (:class:`Invalid` on ``voucher``), or someone
    who may not record receipts of that programme there (:class:`Forbidden`)."""
    spec, clean = check_receipt(engine, data)
    with engine.transaction(session) as s:
        unit = s.scalars(select(OrgUnit).where(OrgUnit.code == clean["org_unit"])).first()
        if unit is None:
            raise Invalid("收款信息有误", "the receipt is not valid",
                          {"org_unit": f"没有这个单位 / unknown unit {clean['org_unit']!r}"})
        if not may_record_receipt(actor, engine, spec, unit.path):
            raise Forbidden("您无权登记该项目的收款", f"you may not record receipts of {spec.key} at {unit.code}")
        if s.get_bind().dialect.name == "postgresql":
            s.execute(text(f"SELECT pg_advisory_xact_lock({CASELESS_CHAIN_LOCK})"))
        taken = s.scalar(select(LedgerEntry.id).where(
            LedgerEntry.case_id.is_(None), LedgerEntry.process_key == spec.key, LedgerEntry.fund == clean["fund"],
            LedgerEntry.voucher == clean["voucher"]).limit(1))
        if taken is not None:
            raise Invalid("收款信息有误", "the receipt is not valid",
                          {"voucher": f"凭证号 {clean['voucher']} 已登记过（条目 {taken}）/ voucher {clean['voucher']} "
                                      f"is already recorded (entry {taken})"})
        user = s.get(User, actor.user_id) if actor.user_id is not None else None
        posting = {"fund": clean["fund"], "kind": "receipt", "amount": f"{clean['amount']:.2f}",
                   "process": spec.key, "donor": clean["donor"], "voucher": clean["voucher"],
                   "received_on": clean["received_on"].isoformat()}
        now = engine.clock()
        event = audit.append_event(s, None, kind="receipt", actor=user, trigger="receipt",
                                   changes={LEDGER_KEY: [None, posting]}, at=now)
        entry = LedgerEntry(case_id=None, audit_seq=event.seq, process_key=spec.key, trigger="receipt",
                            fund=clean["fund"], kind="receipt", amount=clean["amount"], org_unit_id=unit.id,
                            org_path=unit.path, actor_id=actor.user_id, at=now, voucher=clean["voucher"],
                            donor=clean["donor"], received_on=clean["received_on"])
        s.add(entry)
        s.flush()
        engine.emit(s, "fund_receipt", process=spec.key, fund=clean["fund"], amount=posting["amount"],
                    voucher=clean["voucher"], org_unit=unit.code, entry_id=entry.id)
        return {"id": entry.id, "at": now, "case_id": None, "process": spec.key, "trigger": "receipt",
                "fund": clean["fund"], "kind": "receipt", "amount": clean["amount"], "audit_seq": event.seq,
                "org_unit": unit.code, "org_unit_name": unit.name, "state": None, "subject": None,
                "voucher": clean["voucher"], "donor": clean["donor"], "received_on": clean["received_on"]}


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
               LedgerEntry.kind, LedgerEntry.amount, LedgerEntry.process_key, LedgerEntry.voucher,
               LedgerEntry.donor, LedgerEntry.received_on)).all()}
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
        recorded = _recorded(entry)
        expected_kind = "receipt" if case_id is None else "fired"
        if kind != expected_kind or trigger != entry.trigger or recorded != posted:
            problems.append(f"{_where(case_id, seq)}: 台账条目 {entry.id}（{entry.trigger} {_text(recorded)}）"
                            f"与审计记录（{trigger} {_text(posted)}）不符 / ledger entry {entry.id} says "
                            f"{entry.trigger} {_text(recorded)}, the audit trail says {trigger} {_text(posted)}")
    for (case_id, seq), entry in sorted(entries.items(), key=lambda item: (item[0][0] or 0, item[0][1])):
        recorded = _recorded(entry)
        problems.append(f"{_where(case_id, seq)}: 台账条目 {entry.id}（{_text(recorded)}）在审计记录中没有对应 / "
                        f"ledger entry {entry.id} ({_text(recorded)}) has no posting in the audit trail")
    return problems


def _recorded(entry: Any) -> dict[str, str]:
    """What the audit event of ``entry`` must say: a receipt's event names its programme, donor,
    day and voucher as well."""
    out = {"fund": entry.fund, "kind": entry.kind, "amount": f"{_money(entry.amount):.2f}"}
    if entry.case_id is not None and entry.voucher:
        out["voucher"] = entry.voucher
    if entry.case_id is None:
        out.update(process=entry.process_key, donor=entry.donor or "", voucher=entry.voucher or "",
                   received_on=entry.received_on.isoformat() if entry.received_on else "")
    return out


def _where(case_id: int | None, seq: int) -> str:
    return f"case {case_id} #{seq}" if case_id is not None else f"receipt (events without a case) #{seq}"


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


#: The columns of a receipts register (.xlsx or .csv), the header row's names.
RECEIPT_COLUMNS = ("process", "fund", "amount", "donor", "received_on", "voucher", "org_unit")


def import_receipts(engine: Engine, actor: Actor, path: str, *, max_errors: int = 200) -> tuple[int, list[str]]:
    """Record every receipt of a register (``.xlsx``, first sheet; or ``.csv``), all or none.

    The header names :data:`RECEIPT_COLUMNS`; rows are numbered as the spreadsheet shows them
    (the header is row 1). Every row is checked as :func:`record_receipt` checks one (and a
    voucher number twice in the file is an error of its second row); only if no row has an
    error are they all recorded, in one transaction. Returns (recorded, errors).
    """
    import csv

    from .bulk import is_xlsx, xlsx_rows

    if is_xlsx(path):
        rows = xlsx_rows(path)
    else:
        handle = open(path, newline="", encoding="utf-8-sig")
        rows = csv.reader(handle)
    header = next(rows, None) or []
    errors: list[str] = []
    missing = [c for c in RECEIPT_COLUMNS if c not in header]
    unknown = [c for c in header if c not in RECEIPT_COLUMNS]
    for name in missing:
        errors.append(f"row 1: {name}: 缺少此列 / the column is missing")
    for name in unknown:
        errors.append(f"row 1: {name}: 不是收款登记的列 / not a column of a receipts register")
    if errors:
        return 0, errors
    checked: list[tuple[int, dict[str, Any]]] = []
    vouchers: dict[tuple[str, str, str], int] = {}
    with engine.session_factory() as s:
        units = dict(s.execute(select(OrgUnit.code, OrgUnit.path)).all())
        recorded = {(p, f, v): i for i, p, f, v in s.execute(
            select(LedgerEntry.id, LedgerEntry.process_key, LedgerEntry.fund, LedgerEntry.voucher)
            .where(LedgerEntry.case_id.is_(None)))}
    for number, cells in enumerate(rows, start=2):
        if not any(str(c).strip() for c in cells):
            continue
        data = dict(zip(header, list(cells) + [""] * (len(header) - len(cells))))
        problems: dict[str, str] = {}
        try:
            spec, clean = check_receipt(engine, data)
        except Invalid as err:
            problems.update(err.details)
        else:
            path_of = units.get(clean["org_unit"])
            key = (clean["process"], clean["fund"], clean["voucher"])
            if path_of is None:
                problems["org_unit"] = f"没有这个单位 / unknown unit {clean['org_unit']!r}"
            elif not may_record_receipt(actor, engine, spec, path_of):
                problems["org_unit"] = "您无权在此单位登记该项目的收款 / you may not record its receipts there"
            if key in recorded:
                problems["voucher"] = (f"凭证号 {clean['voucher']} 已登记过（条目 {recorded[key]}）/ voucher "
                                       f"{clean['voucher']} is already recorded (entry {recorded[key]})")
            elif key in vouchers:
                problems["voucher"] = f"与第 {vouchers[key]} 行凭证号重复 / the same voucher as row {vouchers[key]}"
            vouchers.setdefault(key, number)
            checked.append((number, clean))
        for name, message in sorted(problems.items()):
            if len(errors) < max_errors:
                errors.append(f"row {number}: {name}: {message}")
    if errors:
        return 0, errors
    try:
        with engine.transaction() as s:
            for number, clean in checked:
                try:
                    record_receipt(engine, actor, {**clean, "amount": str(clean["amount"])}, session=s)
                except (Invalid, Forbidden) as err:
                    detail = "; ".join(f"{k}: {v}" for k, v in err.details.items()) if err.details else err.message
                    raise _RowRefused(f"row {number}: {detail}") from None
    except _RowRefused as refused:
        return 0, [str(refused)]
    return len(checked), []


class _RowRefused(Exception):
    """A row refused while writing (a voucher recorded meanwhile): the whole file is rolled back."""
