"""External task incidents (``/incidents``): machine steps out of retries, for administrators."""
from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for

from hexie.workflows import external
from hexie.workflows.errors import Conflict, Forbidden, Invalid, NotFound

from ..state import current_actor, hexie_state
from ..i18n import error_text, t
from .blueprint import bp


@bp.route("/incidents")
def incidents():
    """Every open external task that ran out of retries, with its last error."""
    try:
        items = external.incidents(hexie_state().engine, current_actor())
    except Forbidden:
        abort(404)
    return render_template("incidents.html", items=items)


@bp.route("/incidents/<int:task_id>/retries", methods=["POST"])
def incident_retry(task_id: int):
    """Give the task more tries: it is fetched again."""
    try:
        retries = int(request.form.get("retries", "1"))
    except ValueError:
        retries = -1
    try:
        external.set_retries(hexie_state().engine, current_actor(), task_id, retries)
    except (Forbidden, NotFound):
        abort(404)
    except (Conflict, Invalid) as err:
        flash(error_text(err), "error")
    else:
        flash(t("incidents.retried", id=task_id), "success")
    return redirect(url_for("hexie.incidents"))
