"""The inbox (``/``): my tasks, tasks I may take, overdue and escalated work; the case list."""
from __future__ import annotations

from typing import Any

from flask import current_app, render_template, request

from hexie.models import OrgUnit, Task

from hexie.workflows.errors import BadRequest
from hexie.workflows.queries import TASK_VIEWS

#: The inbox's tabs: her own views of the task list. The managers' "team" view has its own
#: page (admin "team work"), so it is no tab here.
INBOX_VIEWS = tuple(v for v in TASK_VIEWS if v != "team")

from ..extension import current_actor, hexie_state
from ..i18n import label
from . import bp
from .common import display_names, indent, page_arg, places, unit_names, units_in_area

#: Above this many units in her area, the area filter lists only the upper levels.
MAX_UNIT_OPTIONS = 80


def query_filters() -> dict[str, Any]:
    """The filter values of the query string, cleaned."""
    args = request.args
    processes = hexie_state().engine.processes
    process = args.get("process") or None
    if process not in processes:
        process = None
    state = args.get("state") or None
    if state and process and state not in {s.name for s in processes[process].states}:
        state = None
    search = (args.get("q") or "").strip()[:100] or None
    return {"process": process, "state": state, "org_unit": args.get("unit") or None,
            "search": search, "page": page_arg()}


def filter_options(actor) -> dict[str, Any]:
    """Programmes, their steps and the units of her area, for the filter bar."""
    engine = hexie_state().engine
    processes = [(key, label(spec.title)) for key, spec in sorted(engine.processes.items())]
    states: dict[str, list[tuple[str, str]]] = {
        key: [(s.name, label(s.label)) for s in spec.states] for key, spec in engine.processes.items()}
    units = units_in_area(actor)
    if len(units) > MAX_UNIT_OPTIONS:
        levels = engine.registry.roles.levels
        lowest = levels[-1] if levels else None
        units = [u for u in units if u.level != lowest]
    return {"processes": processes, "states": states,
            "units": [(u.code, indent(u)) for u in units]}


def _query(kind: str, actor, filters: dict[str, Any]):
    """A page of tasks (or cases) with the filters; an unknown unit filter is simply dropped."""
    queries = hexie_state().queries
    per_page = current_app.config.get("HEXIE_PER_PAGE", 25)
    args = dict(filters, per_page=per_page)
    try:
        if kind == "cases":
            return queries.cases(actor, **args)
        return queries.tasks(actor, kind, **args)
    except BadRequest:
        filters["org_unit"] = None
        args["org_unit"] = None
        return queries.cases(actor, **args) if kind == "cases" else queries.tasks(actor, kind, **args)


def task_places(task_ids) -> dict[int, str]:
    """task id -> the name of its case's unit (with its town for a village), in one query."""
    ids = list(task_ids)
    return places(Task.id, Task.id.in_(ids), join=(Task, OrgUnit.id == Task.org_unit_id)) if ids else {}


@bp.route("/")
def inbox():
    """The task inbox, one tab per view."""
    actor = current_actor()
    view = request.args.get("view", "mine")
    if view not in INBOX_VIEWS:
        view = "mine"
    filters = query_filters()
    page = _query(view, actor, filters)
    return render_template("inbox.html", view=view, views=INBOX_VIEWS, page=page, filters=filters,
                           options=filter_options(actor), places=task_places(t["id"] for t in page.items),
                           names=display_names(t["assignee"] for t in page.items) if view in ("overdue", "escalated") else {})


@bp.route("/cases")
def cases():
    """Every case she may see, newest first, with the same filters."""
    actor = current_actor()
    filters = query_filters()
    page = _query("cases", actor, filters)
    return render_template("cases.html", page=page, filters=filters, options=filter_options(actor),
                           unit_names=unit_names(c["org_unit"] for c in page.items))
