"""Reports: a programme's cases by town and state, and by month opened; money by fund.

Only the cases she may see are counted (the same Access rules as every list), so a town
chair reports on her town and a county chair on the county. The money pages read the
ledger through :class:`hexie.workflows.ledger.LedgerQueries` (``hexie_state().ledger``), which
applies those rules too: totals per fund, town and month, the entries themselves, and
the entries as a CSV file an auditor ticks off against the vouchers.
"""
from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from flask import Response, abort, current_app, render_template, request, stream_with_context

from hexie.models import OrgUnit
from hexie.workflows.ledger import fund_labels, fund_field

from ..state import current_actor, hexie_state
from ..i18n import both, label, t
from .blueprint import bp
from .common import indent, page_arg, places, process_title, to_local, units_in_area

#: Entries read per query when writing the CSV file (the most a page may hold).
CSV_BATCH = 200
#: A cell starting with one of these is a formula to a spreadsheet: it gets a leading quote.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class ReportArgs:
    """The report's query string, checked: programme, grouping, unit, days."""

    process: str
    by: str
    within: str | None
    since: date | None
    until: date | None
    problem: str | None
    units: list[tuple[str, str]]

    def args(self) -> dict[str, str]:
        """As query-string arguments (the xlsx link keeps the page's filters)."""
        pairs = (("process", self.process), ("by", self.by), ("within", self.within),
                 ("since", self.since.isoformat() if self.since else None),
                 ("until", self.until.isoformat() if self.until else None))
        return {k: v for k, v in pairs if v}


def report_args() -> ReportArgs:
    """An unknown programme is a 404; a malformed day or a unit outside her area is dropped."""
    state = hexie_state()
    processes = sorted(state.engine.processes.items())
    key = request.args.get("process") or processes[0][0]
    if key not in state.engine.processes:
        abort(404)
    by = request.args.get("by") if request.args.get("by") in ("town", "village") else "town"
    within = request.args.get("within") or None
    since, until, problem = _day("since"), _day("until"), None
    if since and until and since > until:
        since, until, problem = None, None, t("report.bad_range")
    units = [(u.code, indent(u)) for u in units_in_area(current_actor()) if u.level != _lowest_level()]
    if within not in {code for code, _ in units}:
        within = None
    return ReportArgs(key, by, within, since, until, problem, units)


def case_report(args: ReportArgs) -> dict[str, Any]:
    return hexie_state().queries.report(current_actor(), args.process, by=args.by, within=args.within,
                                        since=args.since, until=args.until)


@bp.route("/reports")
def reports():
    """One programme's report; the first programme by default."""
    state = hexie_state()
    args = report_args()
    report = case_report(args)
    return render_template("reports.html", report=report, spec=state.engine.processes[args.process],
                           processes=[(k, label(spec.title)) for k, spec in sorted(state.engine.processes.items())],
                           units=args.units, within=args.within, since=args.since, until=args.until,
                           problem=args.problem, query=args.args())


@bp.route("/reports.csv")
def reports_csv():
    """The report as shown (same filters, same suppression), as CSV: one row per unit and a total
    row, then the months. Over a confidential process the small counts read ``<5`` here too."""
    state = hexie_state()
    key = request.args.get("process") or sorted(state.engine.processes)[0]
    if key not in state.engine.processes:
        abort(404)
    actor = current_actor()
    by = request.args.get("by") if request.args.get("by") in ("town", "village") else "town"
    within = request.args.get("within") or None
    if within not in {u.code for u in units_in_area(actor)}:
        within = None
    since, until = _day("since"), _day("until")
    if since and until and since > until:
        since = until = None
    report = state.queries.report(actor, key, by=by, within=within, since=since, until=until)
    rows = report_rows(report)
    stamp = to_local(state.engine.clock())
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", f"report-{key}-{stamp.strftime('%Y%m%d') if stamp else ''}")
    return Response("\ufeff" + _csv_lines(rows), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}.csv"', "Cache-Control": "no-store"})


def report_rows(report: dict[str, Any]) -> list[list[str]]:
    """A report as spreadsheet rows (headers in both languages; suppressed counts as ``<5``)."""
    from .common import state_label
    rates = report["rates"]
    header = [both(f"report.by.{report['by']}"), *(label(r["label"]) for r in rates),
              *(csv_cell(state_label(report["process"], st)) for st in report["states"]),
              both("report.all"), both("report.open_tasks"), both("report.overdue")]

    def rate(pair: list[Any]) -> str:
        return f"{pair[0]}/{pair[1]}"

    rows = [header]
    for unit in report["units"]:
        rows.append([csv_cell(unit["name"]), *(rate(unit["rates"][r["name"]]) for r in rates),
                     *(str(unit["counts"].get(st, 0)) for st in report["states"]),
                     str(unit["total"]), str(unit["open_tasks"]), str(unit["overdue"])])
    totals = report["totals"]
    rows.append([both("report.all"), *(rate(report["total_rates"][r["name"]]) for r in rates),
                 *(str(totals.get(st, 0)) for st in report["states"]),
                 str(report["total"]), str(totals["open_tasks"]), str(totals["overdue"])])
    rows.append([])
    rows.append([both("report.month"), both("report.opened")])
    rows.extend([month, str(n)] for month, n in report["months"])
    return rows


def _day(name: str) -> date | None:
    """A date of the query string; a malformed one is ignored (the field shows empty)."""
    try:
        return date.fromisoformat(request.args.get(name) or "")
    except ValueError:
        return None


def _lowest_level() -> str | None:
    levels = hexie_state().engine.registry.roles.levels
    return levels[-1] if levels else None


# ------------------------------------------------------------------------ money

@dataclass
class MoneyFilters:
    """The programme and fund of the query string, checked against the definitions."""

    process: str | None
    fund: str | None
    #: (process, fund) -> the fund's name in the current language, every fund the definitions post to
    fund_names: dict[tuple[str, str], str] = field(default_factory=dict)
    #: (key, title) of the programmes that post to a fund (and the chosen one)
    processes: list[tuple[str, str]] = field(default_factory=list)
    #: (programme title, [(fund, name)]) for the fund filter: the chosen programme's only, when one is chosen
    fund_groups: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)

    def args(self) -> dict[str, str]:
        """The filters as query-string arguments (for links between the money pages)."""
        return {k: v for k, v in (("process", self.process), ("fund", self.fund)) if v}

    def fund_name(self, process: str, fund: str) -> str:
        return self.fund_names.get((process, fund), fund)


def money_filters() -> MoneyFilters:
    """An unknown programme is a page that does not exist (404, as on ``/reports``); a fund that
    is not one of the chosen programme's is dropped (the programme was changed in the form)."""
    processes = hexie_state().engine.processes
    process = request.args.get("process") or None
    if process is not None and process not in processes:
        abort(404)
    specs = [spec for _, spec in sorted(processes.items())]
    names = {pair: label(text, pair[1]) for pair, text in fund_labels(specs).items()}
    posting = [(spec.key, label(spec.title)) for spec in specs if fund_field(spec) is not None or spec.key == process]
    groups = [(title, [(f, name) for (p, f), name in names.items() if p == key])
              for key, title in posting if process in (None, key)]
    fund = request.args.get("fund") or None
    if fund is not None and not any(f == fund for _, funds in groups for f, _ in funds):
        fund = None
    return MoneyFilters(process, fund, names, posting, [g for g in groups if g[1]])


def unit_places(codes: Iterable[str]) -> dict[str, str]:
    """unit code -> where it is as people say it (see :func:`common.places`)."""
    wanted = sorted(set(codes))
    return places(OrgUnit.code, OrgUnit.code.in_(wanted)) if wanted else {}


@bp.route("/reports/money")
def reports_money():
    """Money by fund: totals per fund, net per town and fund, and per month posted."""
    filters = money_filters()
    summary = hexie_state().ledger.summary(current_actor(), process=filters.process, fund=filters.fund)
    return render_template("money.html", view="summary", summary=summary, filters=filters)


@bp.route("/reports/ledger")
def reports_ledger():
    """The ledger entries she may see, newest first, a page at a time."""
    filters = money_filters()
    per_page = min(int(current_app.config.get("HEXIE_PER_PAGE", 25)), 200)
    page = hexie_state().ledger.entries(current_actor(), process=filters.process, fund=filters.fund,
                                        page=page_arg(), per_page=per_page)
    return render_template("money.html", view="entries", page=page, filters=filters, ledger_kind=kind_name,
                           places=unit_places(e["org_unit"] for e in page.items))


def kind_name(kind: str) -> str:
    """支出 / 退回 (payment / refund)."""
    key = f"ledger.kind.{kind}"
    text = t(key)
    return kind if text == key else text


def csv_cell(value: Any) -> str:
    """Text for a spreadsheet: what would start a formula there is quoted, so it stays text."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


CSV_COLUMNS = ("ledger.col.id", "ledger.col.time", "ledger.col.case", "ledger.col.process", "ledger.col.fund_code",
               "ledger.col.fund", "ledger.col.kind", "ledger.col.amount", "ledger.col.unit_code",
               "ledger.col.place", "ledger.col.subject", "ledger.col.trigger", "ledger.col.audit_seq",
               "funds.voucher", "funds.donor", "funds.received_on")   # the last three: added at the end


def _csv_row(entry: dict[str, Any], filters: MoneyFilters, places: dict[str, str]) -> list[str]:
    at = to_local(entry["at"])
    amount: Decimal = entry["amount"]
    return [str(entry["id"]), at.strftime("%Y-%m-%d %H:%M:%S") if at else "",
            str(entry["case_id"]) if entry["case_id"] is not None else "",   # a receipt has no case
            csv_cell(process_title(entry["process"])), csv_cell(entry["fund"]),
            csv_cell(filters.fund_name(entry["process"], entry["fund"])), csv_cell(kind_name(entry["kind"])),
            f"{amount:.2f}", csv_cell(entry["org_unit"]),
            csv_cell(places.get(entry["org_unit"], entry["org_unit_name"])), csv_cell(entry["subject"]),
            csv_cell(entry["trigger"]), str(entry["audit_seq"]), csv_cell(entry.get("voucher")),
            csv_cell(entry.get("donor")), str(entry.get("received_on") or "")]


def _csv_lines(rows: Iterable[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


@bp.route("/reports/ledger.csv")
def reports_ledger_csv():
    """Every entry matching the filters (not one page) as CSV, streamed a batch at a time.

    UTF-8 with a byte-order mark (so Excel reads the Chinese), one header row in both
    languages, amounts as plain decimals, formula-like text neutralized.
    """
    actor, filters = current_actor(), money_filters()
    ledger = hexie_state().ledger

    def generate() -> Iterator[str]:
        yield "\ufeff" + _csv_lines([[both(key) for key in CSV_COLUMNS]])
        seen: set[int] = set()
        number = 1
        while True:
            page = ledger.entries(actor, process=filters.process, fund=filters.fund, page=number, per_page=CSV_BATCH)
            # Entries posted meanwhile push older ones down a page: skip what was already written.
            fresh = [e for e in page.items if e["id"] not in seen]
            seen.update(e["id"] for e in fresh)
            if fresh:
                places = unit_places(e["org_unit"] for e in fresh)
                yield _csv_lines(_csv_row(e, filters, places) for e in fresh)
            if not page.items or number >= page.pages:
                return
            number += 1

    stamp = to_local(hexie_state().engine.clock())
    parts = ["ledger", *filters.args().values(), stamp.strftime("%Y%m%d") if stamp else ""]
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", "-".join(p for p in parts if p))
    return Response(stream_with_context(generate()), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}.csv"',
                             "Cache-Control": "no-store"})
