"""Data protection on the pages (protection.md): finding a survivor's case by the blind index,
exports of case lists (de-identified on request) and the case file for another agency (an
AES-encrypted zip). The rules are the engine's (:mod:`hexie.workflows.protection`,
:mod:`hexie.workflows.casefile`); these views only ask and answer.
"""
from __future__ import annotations

import csv
import io
import re
from typing import Any, Iterator

from flask import Response, abort, flash, redirect, render_template, request, stream_with_context, url_for

from hexie.workflows.casefile import MIN_PASSWORD, CaseFile, case_file_parts, encrypted_zip
from hexie.workflows.protection import case_code, deidentify, record_export

from ..state import current_actor, hexie_state
from ..i18n import both, label, t
from .blueprint import bp
from .consent import page_read
from .common import case_spec, to_local, unit_names
from .inbox import filter_options, query_filters
from .reports import csv_cell

#: Cases read per query when writing a case list (the most a page may hold).
BATCH = 200


def _flag(name: str) -> bool:
    return (request.values.get(name) or "").lower() in ("1", "true", "yes", "on")


@bp.route("/cases/find", methods=["POST"])
def find_case():
    """The survivor's case by her full name or ID number (POST: the name stays out of URLs and logs)."""
    actor = current_actor()
    value = (request.form.get("lookup") or "").strip()
    if not value:
        return redirect(url_for("hexie.cases"))
    page = hexie_state().queries.cases(actor, lookup=value[:200], per_page=BATCH, read=page_read("search"))
    filters = query_filters()
    return render_template("cases.html", page=page, filters=filters, options=filter_options(actor),
                           unit_names=unit_names(c["org_unit"] for c in page.items), found=page.total)


@bp.route("/cases.csv")
def cases_csv():
    """The cases of the list (its filters, every page) as CSV. Confidential cases carry their code
    as subject; with a programme chosen, its fields too (masked as on the case page; those of a
    confidential programme never carry a name: every sensitive value is the case's code);
    ``deidentified=1``: every sensitive value and the case number become the case's code."""
    actor = current_actor()
    state = hexie_state()
    filters = {k: v for k, v in query_filters().items() if k != "page"}
    deidentified = _flag("deidentified")
    spec = state.engine.processes.get(filters["process"]) if filters.get("process") else None
    fields = list(spec.fields) if spec is not None else []
    exported: list[int] = []

    def generate() -> Iterator[str]:
        head = [both("guard.code") if deidentified else both("col.case"), both("col.process"), both("col.state"),
                both("col.unit"), "created_at", "closed_at", both("col.subject"), *fields]
        yield "\ufeff" + _lines([head])
        number = 1
        while True:
            page = state.queries.cases(actor, **filters, page=number, per_page=BATCH)
            rows = []
            names = unit_names(c["org_unit"] for c in page.items)
            for c in page.items:
                row = [case_code(c["id"]) if deidentified else str(c["id"]), csv_cell(label(
                       state.engine.processes[c["process"]].title) if c["process"] in state.engine.processes
                       else c["process"]), csv_cell(c["state"]), csv_cell(names.get(c["org_unit"], c["org_unit"])),
                       _time(c["created_at"]), _time(c["closed_at"]),
                       csv_cell(case_code(c["id"]) if deidentified or c.get("confidential") else c["subject"])]
                if fields:
                    data = state.queries.case(actor, c["id"], read=page_read("export", "cases.csv"))["data"]
                    if deidentified or spec.confidential:   # a list never carries her name (protection.md)
                        data = deidentify(spec, c["id"], data)
                    row += [csv_cell(_plain(data.get(name))) for name in fields]
                rows.append(row)
                exported.append(c["id"])
            if rows:
                yield _lines(rows)
            if not page.items or number >= page.pages:
                record_export(state.engine, actor, "cases.csv", exported, deidentified)
                return
            number += 1

    name = "cases" + (f"-{filters['process']}" if filters.get("process") else "") + ("-deid" if deidentified else "")
    return Response(stream_with_context(generate()), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{_safe(name)}.csv"',
                             "Cache-Control": "no-store"})


def _case_file(case_id: int, deidentified: bool, what: str) -> CaseFile:
    state = hexie_state()
    actor = current_actor()
    # the 404 of a case that does not exist for her; the export is in the access log (protection.md)
    view = state.queries.case(actor, case_id, read=page_read("export", what))
    history = state.queries.history(actor, case_id)
    return CaseFile(view=view, history=history, spec=case_spec(view), deidentified=deidentified)


@bp.route("/cases/<int:case_id>/export.json")
def case_export_json(case_id: int):
    """The case file as JSON, as she may see it (``deidentified=1``: with the case's code instead)."""
    deidentified = _flag("deidentified")
    case = _case_file(case_id, deidentified, "json")
    name, content = case_file_parts(case)[0]
    record_export(hexie_state().engine, current_actor(), "case.json", [case_id], deidentified)
    return Response(content, mimetype="application/json",
                    headers={"Content-Disposition": f'attachment; filename="case-{_safe(case.code)}.json"',
                             "Cache-Control": "no-store"})


@bp.route("/cases/<int:case_id>/export", methods=["POST"])
def case_export_zip(case_id: int):
    """The case file (JSON, CSV and any other part) in an AES-256 encrypted zip, for another agency."""
    deidentified = _flag("deidentified")
    case = _case_file(case_id, deidentified, "encrypted zip")
    password = request.form.get("password") or ""
    if len(password) < MIN_PASSWORD:
        flash(t("guard.export.short_password"), "error")
        return redirect(url_for("hexie.case", case_id=case_id) + "#case-export")
    content = encrypted_zip(case_file_parts(case), password)
    record_export(hexie_state().engine, current_actor(), "case.zip", [case_id], deidentified)
    return Response(content, mimetype="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="case-{_safe(case.code)}.zip"',
                             "Cache-Control": "no-store"})


def _lines(rows: list[list[str]]) -> str:
    out = io.StringIO()
    csv.writer(out).writerows(rows)
    return out.getvalue()


def _time(value: Any) -> str:
    local = to_local(value)
    return local.strftime("%Y-%m-%d %H:%M") if local else ""


def _plain(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return ";".join(str(v) for v in value)
    return str(value)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name)
