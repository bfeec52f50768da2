"""Excel exports: the case list, the task lists and every report as ``.xlsx``.

Each export takes the same query string as its page and reads through the same queries
(:class:`~hexie.workflows.queries.CaseQueries`, :class:`~hexie.workflows.ledger.LedgerQueries`),
so it has the same rows, filters and masking as what she sees (a confidential case's
subject is empty, as in the list). Lists are read a batch at a time and written by
:mod:`hexie.web.xlsx` in write-only mode: memory stays flat whatever the number of rows.
Headers are in the reader's language (zh first: the default locale).
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from flask import abort, request

from hexie.workflows.consent import Read, record_reads
from hexie.workflows.protection import case_code
from hexie.workflows.queries import TASK_SORTS, TASK_VIEWS

from ..state import current_actor, hexie_state
from ..i18n import label, t
from ..xlsx import all_pages, batches_of_pages, xlsx_response
from .blueprint import bp
from .common import display_names, process_title, role_label, state_label, task_label, to_local, unit_names
from .inbox import query_filters, task_places
from .reports import MoneyFilters, case_report, kind_name, money_filters, report_args, unit_places

BATCH = 200


def local(value: datetime | None) -> datetime | None:
    """A stored time as the office's wall-clock time, without a zone (Excel keeps none)."""
    value = to_local(value)
    return value.replace(tzinfo=None) if value else None


def _stamp() -> str:
    now = to_local(hexie_state().engine.clock())
    return now.strftime("%Y%m%d") if now else ""


# ------------------------------------------------------------------- lists

CASE_COLUMNS = ("xlsx.col.id", "xlsx.col.business_key", "xlsx.col.process", "xlsx.col.state", "xlsx.col.unit_code",
                "xlsx.col.place", "xlsx.col.subject", "xlsx.col.created", "xlsx.col.updated", "xlsx.col.closed")


def deidentified_requested() -> bool:
    """``deidentified=1`` (protection.md): the case number, the business key and the subject of
    every row become the case's stable code."""
    return (request.args.get("deidentified") or "").lower() in ("1", "true", "yes", "on")


def _log_export(actor, case_ids: Iterator[int], what: str) -> None:
    """A confidential case in an exported list is read: its access log says by whom, from where."""
    record_reads(hexie_state().engine, actor, case_ids, Read("export", request.remote_addr, what))


def case_rows(actor, filters: dict[str, Any], deidentified: bool = False) -> Iterator[list[Any]]:
    queries = hexie_state().queries
    args = {k: v for k, v in filters.items() if k not in ("page", "sort")}

    def flush(rows: list[dict[str, Any]]) -> Iterator[list[Any]]:
        names = unit_names(c["org_unit"] for c in rows)
        for c in rows:
            code = case_code(c["id"]) if deidentified or c.get("confidential") else None
            yield [code if deidentified else c["id"], code if deidentified else c["business_key"],
                   process_title(c["process"]), state_label(c["process"], c["state"]),
                   c["org_unit"], names.get(c["org_unit"], c["org_unit"]), code or c["subject"], local(c["created_at"]),
                   local(c["updated_at"]), local(c["closed_at"])]
        _log_export(actor, (c["id"] for c in rows), "cases.xlsx")

    for rows in batches_of_pages(lambda page, per_page: queries.cases(actor, page=page, per_page=per_page, **args),
                                 BATCH):
        yield from flush(rows)


@bp.route("/cases.xlsx")
def cases_xlsx():
    """Every case of the list's filters (all pages), as the list shows them."""
    return cases_export(current_actor(), query_filters(), deidentified_requested())


def cases_export(actor, filters: dict[str, Any], deidentified: bool):
    """The workbook of the case list (also ``GET /api/v1/cases.xlsx``, with the API's filters)."""
    return xlsx_response(f"cases-{_stamp()}" + ("-deid" if deidentified else ""),
                         [(t("nav.cases"), [t(k) for k in CASE_COLUMNS], case_rows(actor, filters, deidentified))])


TASK_COLUMNS = ("xlsx.col.task", "xlsx.col.case", "xlsx.col.process", "xlsx.col.state", "xlsx.col.task_name",
                "xlsx.col.role", "xlsx.col.status", "xlsx.col.assignee", "xlsx.col.due", "xlsx.col.overdue",
                "xlsx.col.priority", "xlsx.col.place", "xlsx.col.subject", "xlsx.col.created")


def task_rows(actor, view: str, filters: dict[str, Any], deidentified: bool = False) -> Iterator[list[Any]]:
    queries = hexie_state().queries
    args = {k: v for k, v in filters.items() if k != "page"}

    def flush(rows: list[dict[str, Any]]) -> Iterator[list[Any]]:
        names = display_names(r["assignee"] for r in rows)
        where = task_places(r["id"] for r in rows)
        for r in rows:
            code = case_code(r["case_id"]) if deidentified else None
            yield [r["id"], code or r["case_id"], process_title(r["process"]), state_label(r["process"], r["state"]),
                   task_label(r["process"], r["state"], r["name"]), role_label(r["role"]), t(f"xlsx.status.{r['status']}"),
                   names.get(r["assignee"], r["assignee"]) if r["assignee"] else "", local(r["due_at"]),
                   t("xlsx.yes") if r["overdue"] else "", r["priority"], where.get(r["id"], r.get("org_unit_name")),
                   code or r.get("subject"), local(r["created_at"])]
        _log_export(actor, (r["case_id"] for r in rows), "tasks.xlsx")

    for rows in batches_of_pages(lambda page, per_page: queries.tasks(actor, view, page=page, per_page=per_page,
                                                                      **args), BATCH):
        yield from flush(rows)


@bp.route("/tasks.xlsx")
def tasks_xlsx():
    """A task list (``view``: mine, available, overdue, escalated; team for managers) with the inbox's
    filters and order, every page of it."""
    actor = current_actor()
    view = request.args.get("view") or "mine"
    if view not in TASK_VIEWS:
        abort(404)
    filters = query_filters()
    filters["sort"] = request.args.get("sort") if request.args.get("sort") in TASK_SORTS else None
    return tasks_export(actor, view, filters, deidentified_requested())


def tasks_export(actor, view: str, filters: dict[str, Any], deidentified: bool):
    """The workbook of a task list (also ``GET /api/v1/tasks.xlsx``, with the API's filters)."""
    return xlsx_response(f"tasks-{view}-{_stamp()}" + ("-deid" if deidentified else ""),
                         [(t(f"xlsx.view.{view}"), [t(k) for k in TASK_COLUMNS],
                           task_rows(actor, view, filters, deidentified))])


# ------------------------------------------------------------------ reports

@bp.route("/reports.xlsx")
def reports_xlsx():
    """The case report of the page's programme and filters: by unit (rates, states, work) and by month."""
    report = case_report(report_args())
    return xlsx_response(f"report-{report['process']}-{report['by']}-{_stamp()}", report_sheets(report))


def report_sheets(report: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]]]]:
    """A case report's sheets (also ``GET /api/v1/reports/{process}.xlsx``): by unit and by month."""
    key = report["process"]
    header = [t(f"report.by.{report['by']}"), *[label(r["label"]) for r in report["rates"]],
              *[state_label(key, st) for st in report["states"]], t("report.all"), t("report.open_tasks"),
              t("report.overdue")]

    def share(pair):
        return round(pair[0] / pair[1], 4) if pair and pair[1] else None

    rows = [[u["name"], *[share(u["rates"][r["name"]]) for r in report["rates"]],
             *[u["counts"].get(st, 0) for st in report["states"]], u["total"], u["open_tasks"], u["overdue"]]
            for u in report["units"]]
    rows.append([t("money.total"), *[share(report["total_rates"][r["name"]]) for r in report["rates"]],
                 *[report["totals"].get(st, 0) for st in report["states"]], report["total"],
                 report["totals"]["open_tasks"], report["totals"]["overdue"]])
    months = [[month, n] for month, n in report["months"]]
    return [(process_title(key), header, rows), (t("report.by_month"), [t("money.month"), t("report.all")], months)]


@bp.route("/reports/money.xlsx")
def reports_money_xlsx():
    """Money by fund, town and month, and each fund's balance by month: the money page's tables."""
    filters = money_filters()
    ledger = hexie_state().ledger
    actor = current_actor()
    summary = ledger.summary(actor, process=filters.process, fund=filters.fund)
    balances = ledger.balances(actor, process=filters.process, fund=filters.fund)
    funds = [[filters.fund_name(f["process"], f["fund"]), process_title(f["process"]), f["entries"], f["paid"],
              f["refunded"], f["net"]] for f in summary["funds"]]
    pairs = summary["funds"]
    towns = [[town["name"], *[town["net"].get((f["process"], f["fund"])) for f in pairs], town["total"]]
             for town in summary["towns"]]
    total = summary["total"]
    if funds:   # the page's 合计 rows: what an auditor ties the sheets to
        funds.append([t("money.total"), None, total["entries"], total["paid"], total["refunded"], total["net"]])
        towns.append([t("money.total"), *[f["net"] for f in pairs], total["net"]])
    months = [[m["month"], m["paid"], m["refunded"], m["net"]] for m in summary["months"]]
    balance_rows = [[filters.fund_name(f["process"], f["fund"]), p["period"], p["received"], p["paid"], p["refunded"],
                     p["change"], p["balance"]] for f in balances["funds"] for p in f["periods"]]
    return xlsx_response(f"money-{_stamp()}", [
        (t("money.by_fund"), [t("money.fund"), t("col.process"), t("money.entries"), t("money.paid"),
                              t("money.refunded"), t("money.net")], funds),
        (t("money.by_town"), [t("money.town"), *[filters.fund_name(f["process"], f["fund"]) for f in pairs],
                              t("money.total")], towns),
        (t("money.by_month"), [t("money.month"), t("money.paid"), t("money.refunded"), t("money.net")], months),
        (t("funds.balances"), [t("money.fund"), t("funds.period"), t("funds.received"), t("money.paid"),
                               t("money.refunded"), t("funds.change"), t("funds.balance")], balance_rows),
    ])


LEDGER_COLUMNS = ("ledger.col.id", "ledger.col.time", "ledger.col.case", "ledger.col.process", "ledger.col.fund_code",
                  "ledger.col.fund", "ledger.col.kind", "ledger.col.amount", "funds.voucher", "funds.donor",
                  "funds.received_on", "ledger.col.unit_code", "ledger.col.place", "ledger.col.subject",
                  "ledger.col.trigger", "ledger.col.audit_seq")


def ledger_rows(actor, filters: MoneyFilters, kind: str | None) -> Iterator[list[Any]]:
    ledger = hexie_state().ledger
    pending: list[dict[str, Any]] = []

    def flush(rows):
        where = unit_places(e["org_unit"] for e in rows)
        for e in rows:
            yield [e["id"], local(e["at"]), e["case_id"], process_title(e["process"]), e["fund"],
                   filters.fund_name(e["process"], e["fund"]), kind_name(e["kind"]), e["amount"], e["voucher"],
                   e["donor"], e["received_on"], e["org_unit"], where.get(e["org_unit"], e["org_unit_name"]),
                   e["subject"], e["trigger"], e["audit_seq"]]

    for entry in all_pages(lambda page, per_page: ledger.entries(actor, process=filters.process, fund=filters.fund,
                                                                 kind=kind, page=page, per_page=per_page), BATCH):
        pending.append(entry)
        if len(pending) == BATCH:
            yield from flush(pending)
            pending = []
    yield from flush(pending)


@bp.route("/reports/ledger.xlsx")
def reports_ledger_xlsx():
    """Every ledger entry of the filters (payments, refunds, receipts) with its voucher number."""
    filters = money_filters()
    kind = request.args.get("kind") if request.args.get("kind") in ("payment", "refund", "receipt") else None
    name = "-".join(p for p in ("ledger", *filters.args().values(), kind or "", _stamp()) if p)
    return xlsx_response(name, [(t("ledger.title"), [t(k) for k in LEDGER_COLUMNS],
                                 ledger_rows(current_actor(), filters, kind))])
