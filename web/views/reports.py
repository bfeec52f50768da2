"""Reports: a programme's cases by town and state, and by month opened.

Only the cases she may see are counted (the same Access rules as every list), so a town
chair reports on her town and a county chair on the county.
"""
from __future__ import annotations

from flask import abort, render_template, request

from ..extension import current_actor, hexie_state
from ..i18n import label
from . import bp


@bp.route("/reports")
def reports():
    """One programme's report; the first programme by default."""
    state = hexie_state()
    processes = sorted(state.engine.processes.items())
    key = request.args.get("process") or processes[0][0]
    if key not in state.engine.processes:
        abort(404)
    report = state.queries.report(current_actor(), key)
    return render_template("reports.html", report=report, spec=state.engine.processes[key],
                           processes=[(k, label(spec.title)) for k, spec in processes])
