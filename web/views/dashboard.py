"""The dashboard (``/reports/dashboard``): five charts, each with its table beside it, and the
same tables as JSON (``/reports/dashboard/<figure>.json``) for the charts and for other tools.

The page and the JSON are built by :func:`figure` from :class:`hexie.workflows.dashboard.Dashboard`'s
dictionaries: one table (title, columns, rows) per figure, and a chart description that only
points into that table (which columns are series), so a chart can show nothing the table
does not. Charts are drawn by Apache ECharts, served by the app (``static/vendor/echarts``);
without JavaScript the tables are the page.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

import json

from flask import Response, abort, render_template, request

from hexie.workflows.dashboard import FIGURES, Dashboard

from ..state import current_actor, hexie_state
from ..i18n import label, t
from ..xlsx import xlsx_response
from .blueprint import bp
from .common import money, process_title, state_label
from .reports import money_filters


def _programme() -> str:
    processes = hexie_state().engine.processes
    key = request.args.get("process") or sorted(processes)[0]
    if key not in processes:
        abort(404)
    return key


def figure(name: str, process: str) -> dict[str, Any]:
    """One figure: ``{key, title, tables: [{title, columns, rows, kinds}], chart: {type, stack,
    series: [column index...], horizontal}}``; ``kinds`` says how each column reads (text,
    count, money, percent)."""
    board = Dashboard(hexie_state().engine)
    actor = current_actor()
    if name == "cases":
        data = board.cases(actor, process)
        data["states"] = [st for st in data["states"] if data["totals"][st]]   # steps no case is in: no column
        columns = [t("money.month"), *[state_label(process, st) for st in data["states"]], t("report.all")]
        rows = [[m["month"], *[m["counts"][st] for st in data["states"]], m["total"]] for m in data["months"]]
        kinds = ["text", *["count"] * (len(columns) - 1)]
        return {"key": name, "title": t("dash.cases", process=process_title(process)),
                "tables": [{"title": t("dash.cases", process=process_title(process)), "columns": columns,
                            "rows": rows, "kinds": kinds}],
                "chart": {"type": "bar", "stack": True, "series": list(range(1, len(columns) - 1))}}
    if name == "money":
        data = board.money(actor)
        names = money_filters().fund_name
        columns = [t("money.month"), *[names(p, f) for p, f in data["funds"]], t("money.total")]
        rows = [[m["month"], *[m["net"][f"{p}/{f}"] for p, f in data["funds"]], m["total"]] for m in data["months"]]
        return {"key": name, "title": t("dash.money"),
                "tables": [{"title": t("dash.money"), "columns": columns, "rows": rows,
                            "kinds": ["text", *["money"] * (len(columns) - 1)]}],
                "chart": {"type": "bar", "stack": True, "series": list(range(1, len(columns) - 1))}}
    if name == "signing":
        data = board.signing(actor)
        rate = label(data["rate"]["label"]) if data["rate"] else t("dash.rate")
        columns = [t("report.by.town"), t("dash.signed"), t("dash.households"), rate]
        kinds = ["text", "count", "count", "percent"]
        towns = [[r["name"], r["signed"], r["of"], r["share"]] for r in data["towns"]]
        villages = [[r["name"], r["signed"], r["of"], r["share"]] for r in data["villages"]]
        title = t("dash.signing", process=process_title(data["process"])) if data["process"] else t("dash.rate")
        return {"key": name, "title": title,
                "tables": [{"title": title, "columns": columns, "rows": towns, "kinds": kinds},
                           {"title": t("dash.by_village"), "columns": [t("report.by.village"), *columns[1:]],
                            "rows": villages, "kinds": kinds}],
                "chart": {"type": "bar", "stack": False, "series": [3], "percent": True}}
    if name == "overdue":
        data = board.overdue(actor)
        columns = [t("report.by.town"), t("report.open_tasks"), t("report.overdue")]
        rows = [[r["name"], r["open"], r["overdue"]] for r in data["towns"]]
        return {"key": name, "title": t("dash.overdue"),
                "tables": [{"title": t("dash.overdue"), "columns": columns, "rows": rows,
                            "kinds": ["text", "count", "count"]}],
                "chart": {"type": "bar", "stack": False, "series": [1, 2]}}
    if name == "sla":
        data = board.sla(actor)
        columns = [t("dash.step"), t("dash.done"), t("dash.on_time"), t("dash.share")]
        rows = [[f"{process_title(r['process'])} · {state_label(r['process'], r['state'])}", r["done"], r["on_time"],
                 r["share"]] for r in data["rows"]]
        return {"key": name, "title": t("dash.sla"),
                "tables": [{"title": t("dash.sla"), "columns": columns, "rows": rows,
                            "kinds": ["text", "count", "count", "percent"]}],
                "chart": {"type": "bar", "stack": False, "series": [3], "percent": True, "horizontal": True}}
    abort(404)


def cell_text(value: Any, kind: str) -> str:
    """How the table shows a cell (the JSON has the plain value)."""
    if value is None:
        return "—"
    if kind == "money":
        return money(value)
    if kind == "percent":
        return f"{value:.1f}%"
    return str(value)


def _plain(value: Any) -> Any:
    return f"{value:.2f}" if isinstance(value, Decimal) else value


@bp.route("/reports/dashboard")
def dashboard():
    """The five charts with their tables."""
    process = _programme()
    processes = [(k, label(spec.title)) for k, spec in sorted(hexie_state().engine.processes.items())]
    return render_template("dashboard.html", figures=[figure(name, process) for name in FIGURES],
                           process=process, processes=processes, cell_text=cell_text)


@bp.route("/reports/dashboard/<name>.json")
def dashboard_json(name: str):
    """One figure's tables (and how its chart reads them) as JSON: the numbers of the page's table."""
    if name not in FIGURES:
        abort(404)
    fig = figure(name, _programme())
    for table in fig["tables"]:
        table["rows"] = [[_plain(v) for v in row] for row in table["rows"]]
    return Response(json.dumps(fig, ensure_ascii=False, default=str), mimetype="application/json",
                    headers={"Cache-Control": "no-store"})


@bp.route("/reports/dashboard.xlsx")
def dashboard_xlsx():
    """The dashboard's tables, one sheet each."""
    process = _programme()
    sheets = [(table["title"][:31], table["columns"], table["rows"])
              for name in FIGURES for table in figure(name, process)["tables"]]
    return xlsx_response("dashboard", sheets)
