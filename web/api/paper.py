"""Paper and spreadsheets through the API (interfaces.md, "Documents and exports"): the case
file and the definition's documents as PDF, the case and task lists and the reports as
``.xlsx``, with a Bearer token.

The same files as the web pages' (:mod:`hexie.web.views.printing`, :mod:`hexie.web.views.exports`),
built by the same functions for the token's person: the same rows, filters and masking, the
same access log of a confidential case. Errors are the API's JSON body (404 for a case she may
not see, as for one that does not exist).
"""
from __future__ import annotations

from typing import Any

from flask import Response, g

from hexie.workflows.errors import NotFound

from ..views import exports, printing
from .blueprint import bp
from .routing import hexie, operation
from .schemas import CaseExportQuery, LedgerListQuery, LedgerSummaryQuery, PrintQuery, ReportQuery, TaskExportQuery

ERR = None
CASE_ID = {"case_id": "integer"}
PDF = "application/pdf"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _as_reader() -> None:
    """The web helpers read the person of the request from ``g``: she is the token's."""
    g.hexie_actor = g.actor


def _check_filters(query: dict[str, Any]) -> None:
    """As the list checks them; the paging of the list's query string is dropped (all pages)."""
    from .views import _check_filters as check
    check(query)
    query.pop("page", None)
    query.pop("per_page", None)


@operation(bp, "/cases/<case_id>/print.pdf", "GET", summary="The case file as PDF / 打印案卷", tag="paper",
           path_params=CASE_ID, query=PrintQuery,
           responses={200: (f"{PDF}: data (masked as for the reader), approvals with names and times, history, "
                            "signature lines", None),
                      404: ("no such case, or not visible to the caller", ERR)})
def print_case(case_id: int, query: dict[str, Any]) -> Response:
    """The case file, as the caller may see the case (a confidential case's print-out is logged)."""
    _as_reader()
    return printing.case_pdf(case_id)


@operation(bp, "/cases/<case_id>/documents/<name>.pdf", "GET", summary="A document of the case / 打印文书",
           tag="paper", path_params={**CASE_ID, "name": "string"}, query=PrintQuery,
           responses={200: (f"{PDF}: the document the definition declares (documents:), filled from the case",
                            None),
                      404: ("no such case or document, or not visible to the caller", ERR)})
def print_document(case_id: int, name: str, query: dict[str, Any]) -> Response:
    """A document declared in the case's definition, filled with the case's values as she may see them."""
    _as_reader()
    return printing.case_document_pdf(case_id, name)


@operation(bp, "/cases.xlsx", "GET", summary="The case list as Excel / 导出案件", tag="paper",
           query=CaseExportQuery,
           responses={200: (f"{XLSX}: every case of GET /cases with these filters (all pages)", None)})
def cases_xlsx(query: dict[str, Any]) -> Response:
    """The rows and filters of ``GET /cases``, masked as for the caller; ``deidentified=1``: case codes."""
    _as_reader()
    _check_filters(query)
    deidentified = query.pop("deidentified")
    return exports.cases_export(g.actor, query, deidentified)


@operation(bp, "/tasks.xlsx", "GET", summary="A task list as Excel / 导出待办", tag="paper",
           query=TaskExportQuery,
           responses={200: (f"{XLSX}: every task of GET /tasks with this view and these filters", None)})
def tasks_xlsx(query: dict[str, Any]) -> Response:
    """The rows and filters of ``GET /tasks`` (``view``, ``sort``, ``process`` …); ``deidentified=1``."""
    _as_reader()
    _check_filters(query)
    view, deidentified = query.pop("view"), query.pop("deidentified")
    return exports.tasks_export(g.actor, view, query, deidentified)


@operation(bp, "/reports/<process>.xlsx", "GET", summary="A report as Excel / 导出统计报表", tag="paper",
           path_params={"process": "string"}, query=ReportQuery,
           responses={200: (f"{XLSX}: the report of GET /reports/{{process}}: by unit and by month", None),
                      404: ("no such process", ERR)})
def report_xlsx(process: str, query: dict[str, Any]) -> Response:
    """``GET /reports/{process}`` as a workbook, with the same small-count suppression."""
    _as_reader()
    if process not in hexie()["engine"].processes:
        raise NotFound("没有这个流程", f"no process {process!r}")
    report = hexie()["queries"].report(g.actor, process, **query)
    return exports.xlsx_response(f"report-{process}-{report['by']}-{exports._stamp()}",
                                 exports.report_sheets(report))


@operation(bp, "/ledger.xlsx", "GET", summary="The ledger as Excel / 导出资金明细", tag="paper",
           query=LedgerListQuery,
           responses={200: (f"{XLSX}: every entry of GET /ledger with these filters (all pages): payments, refunds "
                            "and receipts with voucher, donor and day received", None),
                      400: ("an unknown process or fund", ERR)})
def ledger_xlsx(query: dict[str, Any]) -> Response:
    """The page ``/reports/ledger.xlsx`` for the token's person: the entries she may see."""
    _as_reader()
    _ledger_filters(query)
    return exports.reports_ledger_xlsx()


@operation(bp, "/ledger/summary.xlsx", "GET", summary="Money by fund as Excel / 导出资金统计", tag="paper",
           query=LedgerSummaryQuery,
           responses={200: (f"{XLSX}: GET /ledger/summary's tables (by fund, by town, by month, each with its "
                            "合计 row) and each fund's balance by month, as on /reports/money.xlsx", None),
                      400: ("an unknown process or fund", ERR)})
def ledger_summary_xlsx(query: dict[str, Any]) -> Response:
    """The page ``/reports/money.xlsx`` for the token's person: what an auditor reconciles."""
    _as_reader()
    _ledger_filters(query)
    return exports.reports_money_xlsx()


def _ledger_filters(query: dict[str, Any]) -> None:
    from .views import _check_ledger_filters
    _check_ledger_filters(query)
