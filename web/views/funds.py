"""Funds as an auditor sees them: what each fund received, paid and holds (``/reports/funds``),
and the receipts: recorded one at a time by the form, or a register of them from an .xlsx file.

Reads and writes go through :mod:`hexie.workflows.ledger` (``record_receipt``,
``import_receipts``, ``LedgerQueries.balances``), which decide who may record what.
"""
from __future__ import annotations

import os
import tempfile

from flask import flash, redirect, render_template, request, url_for

from hexie.workflows.errors import Forbidden, Invalid
from hexie.workflows.ledger import import_receipts, receipt_processes, record_receipt

from ..state import current_actor, hexie_state
from ..i18n import error_text, label, t
from .blueprint import bp
from .common import page_arg, units_in_area, indent
from .reports import money_filters, unit_places

RECEIPT_FIELDS = ("process", "fund", "amount", "donor", "received_on", "voucher", "org_unit")
RECEIPT_LABELS = {"process": "money.fund", "fund": "money.fund", "amount": "funds.amount", "donor": "funds.donor",
                  "received_on": "funds.received_on", "voucher": "funds.voucher", "org_unit": "col.unit"}


def _page(form: dict[str, str] | None = None, errors: dict[str, str] | None = None, status: int = 200,
          import_errors: list[str] | None = None):
    actor = current_actor()
    state = hexie_state()
    filters = money_filters()
    period = request.args.get("period") if request.args.get("period") in ("month", "year") else "month"
    balances = state.ledger.balances(actor, process=filters.process, fund=filters.fund, period=period)
    receipts = state.ledger.entries(actor, process=filters.process, fund=filters.fund, kind="receipt",
                                    page=page_arg(), per_page=25)
    specs = receipt_processes(actor, state.engine)
    units = [(u.code, indent(u)) for u in units_in_area(actor) if u.level != state.engine.registry.roles.levels[-1]] \
        if specs else []
    # a refusal is said at the top too, each field a link to it: the forms are at the page's end,
    # screens below where the answer opens (on a phone, five thousand pixels)
    errors = errors or {}
    error_fields = [{"id": f"r-{name}", "label": t(RECEIPT_LABELS[name]), "message": errors[name]}
                    for name in RECEIPT_FIELDS if errors.get(name)]
    if import_errors:
        error_fields.append({"id": "receipts-import", "label": t("funds.import"), "message": import_errors[0]
                             + (f" (+{len(import_errors) - 1})" if len(import_errors) > 1 else "")})
    return render_template("funds.html", filters=filters, balances=balances, receipts=receipts, period=period,
                           error_fields=error_fields,
                           may_record=bool(specs), record_funds=[(spec.key, label(spec.title),
                                                                   [(f, n) for (p, f), n in filters.fund_names.items()
                                                                    if p == spec.key]) for spec in specs],
                           units=units, form=form or {}, errors=errors, import_errors=import_errors or [],
                           places=unit_places(e["org_unit"] for e in receipts.items)), status


@bp.route("/reports/funds")
def funds():
    """Each fund's balance by month (or year), and the receipts."""
    return _page()


@bp.route("/reports/funds/receipts", methods=["POST"])
def record_receipt_page():
    """One receipt from the form; a refusal shows the form again with each message by its field."""
    form = {name: (request.form.get(name) or "").strip() for name in RECEIPT_FIELDS}
    if ":" in form["fund"]:                     # the form's choice is "programme:fund"
        form["process"], form["fund"] = form["fund"].split(":", 1)
    try:
        entry = record_receipt(hexie_state().engine, current_actor(), form)
    except Invalid as err:
        return _page(form, {k: str(v) for k, v in err.details.items()}, 422)
    except Forbidden as err:
        flash(error_text(err), "error")
        return _page(form, {}, 403)
    flash(t("funds.recorded", voucher=entry["voucher"]), "success")
    return redirect(url_for("hexie.funds"))


@bp.route("/reports/funds/receipts/import", methods=["POST"])
def import_receipts_page():
    """A register of receipts (.xlsx): all rows recorded, or none and the rows' errors shown."""
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        return _page(import_errors=[t("funds.import_nofile")], status=422)
    suffix = ".xlsx" if upload.filename.lower().endswith((".xlsx", ".xlsm")) else ".csv"
    handle, path = tempfile.mkstemp(suffix=suffix, prefix="hexie-receipts-")
    try:
        with os.fdopen(handle, "wb") as out:
            upload.save(out)
        try:
            count, errors = import_receipts(hexie_state().engine, current_actor(), path)
        except Exception:   # not a workbook at all
            count, errors = 0, [t("funds.import_unreadable")]
    finally:
        os.unlink(path)
    if errors:
        return _page(import_errors=errors, status=422)
    flash(t("funds.imported", n=count), "success")
    return redirect(url_for("hexie.funds"))
