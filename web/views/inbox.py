"""The inbox (``/``): my tasks, tasks I may take, overdue and escalated work; the case list."""
from __future__ import annotations

from typing import Any

from urllib.parse import parse_qsl, urlencode

from flask import current_app, flash, redirect, render_template, request, url_for

from hexie.models import OrgUnit, Task

from hexie.workflows.errors import BadRequest, HexieError
from hexie.workflows.saved_views import SavedViews
from hexie.workflows.queries import TASK_SORTS, TASK_VIEWS

from ..state import current_actor, hexie_state, nav_counts
from ..i18n import error_text, get_locale, label, t
from ..orgmap import org_map
from .blueprint import bp
from .common import display_names, fmt_date, indent, page_arg, places, unit_names

#: The inbox's tabs: her own views of the task list. The managers' "team" view has its own
#: page (admin "team work"), so it is no tab here.
INBOX_VIEWS = tuple(v for v in TASK_VIEWS if v != "team")

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
    """Programmes, their steps and the units of her area, for the filter bar.

    Built once per (the definitions, the org tree as this process read it, her areas, the
    language) and kept on the engine: a publish makes a new registry, an org change a new
    tree (:mod:`hexie.web.orgmap`), a change of her roles other areas, so none of them can
    show a stale bar. The caller must not change what it returns.
    """
    engine = hexie_state().engine
    tree = org_map(engine)
    paths = frozenset(a.unit_path for a in actor.assignments)
    key = (id(engine.registry), tree.version, paths, get_locale())
    kept = engine.__dict__.get("_hexie_filter_options")
    if kept is None or kept[0] is not engine.registry or kept[1] is not tree:
        kept = engine.__dict__["_hexie_filter_options"] = (engine.registry, tree, {})
    options = kept[2].get(key)
    if options is None:
        if len(kept[2]) >= FILTER_CACHE_SIZE:
            kept[2].clear()
        options = kept[2][key] = _build_filter_options(engine, tree, paths)
    return options


#: How many people's filter bars an engine keeps (then it starts afresh).
FILTER_CACHE_SIZE = 4096


def _build_filter_options(engine, tree, paths) -> dict[str, Any]:
    processes = [(key, label(spec.title)) for key, spec in sorted(engine.processes.items())]
    states: dict[str, list[tuple[str, str]]] = {
        key: [(s.name, label(s.label)) for s in spec.states] for key, spec in engine.processes.items()}
    units = tree.in_area(paths)   # as units_in_area(actor): her subtrees, by path, at most 2000
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
    if kind == "cases":
        args.pop("sort", None)        # cases come newest first
    try:
        if kind == "cases":
            return queries.cases(actor, **args)
        return queries.tasks(actor, kind, **args)
    except BadRequest:
        filters["org_unit"] = None
        args["org_unit"] = None
        return queries.cases(actor, **args) if kind == "cases" else queries.tasks(actor, kind, **args)


def row_places(rows) -> dict[int, str]:
    """task id -> the name of its unit (with its town for a village), from the org tree this
    process keeps (:mod:`hexie.web.orgmap`); a unit it does not know yet is asked of the database."""
    engine = hexie_state().engine
    tree = org_map(engine)
    lowest = (engine.registry.roles.levels or ("",))[-1]
    found, missing = {}, []
    for row in rows:
        place = tree.place(row.get("org_unit_id"), lowest)
        if place is None:
            missing.append(row["id"])
        else:
            found[row["id"]] = place
    if missing:
        found.update(task_places(missing))
    return found


def task_places(task_ids) -> dict[int, str]:
    """task id -> the name of its case's unit (with its town for a village), in one query."""
    ids = list(task_ids)
    return places(Task.id, Task.id.in_(ids), join=(Task, OrgUnit.id == Task.org_unit_id)) if ids else {}


@bp.route("/")
def inbox():
    """The task inbox, one tab per view."""
    actor = current_actor()
    view = request.args.get("view")
    if view not in INBOX_VIEWS:
        # The first thing she sees is work she can do: hers, else what waits for her role
        # (a county chair's approvals are offered to her, not allocated).
        counts = nav_counts()
        view = "available" if not counts["mine"] and counts["available"] else "mine"
    filters = query_filters()
    filters["sort"] = request.args.get("sort") if request.args.get("sort") in TASK_SORTS else None
    page = _query(view, actor, filters)
    saved = [dict(v, href=_inbox_href(v["query"])) for v in SavedViews(hexie_state().engine).list(actor)] \
        if actor.user_id is not None else []
    here = urlencode([(k, v) for k, v in (("view", view), ("sort", filters.get("sort")),
                                          ("process", filters.get("process")), ("state", filters.get("state")),
                                          ("org_unit", filters.get("org_unit")), ("search", filters.get("search"))) if v])
    return render_template("inbox.html", view=view, views=INBOX_VIEWS, page=page, filters=filters, sorts=TASK_SORTS,
                           saved_views=saved, current_query=here,
                           xlsx_href=url_for("hexie.tasks_xlsx", **{**request.args.to_dict(), "view": view}),
                           votes=_votable(actor, page.items) if view == "available" and "admin" in current_app.blueprints else {},
                           options=filter_options(actor), places=row_places(page.items),
                           names=display_names(t["assignee"] for t in page.items) if view in ("overdue", "escalated") else {})


def _votable(actor, rows) -> dict[int, str]:
    """task id -> ``CASE:TRIGGER`` for the sign-offs on this page she may still vote on: the
    inbox's boxes for approving several at once (the approvals page's bulk form)."""
    from hexie.models import Vote
    from sqlalchemy import select
    from .common import process_spec
    wanted = {}
    for row in rows:
        spec = process_spec(row["process"])
        if spec is None or row.get("kind") == "consult" or row.get("suspended"):
            continue
        yes = [t_ for t_ in spec.transitions_from(row["state"]) if t_.quorum > 1 and not t_.system_only]
        if yes:
            wanted[row["id"]] = (row["case_id"], row["state"], yes[0].trigger)
    if not wanted or actor.user_id is None:
        return {}
    with hexie_state().engine.session_factory() as s:
        voted = set(s.execute(select(Vote.case_id, Vote.state).where(
            Vote.user_id == actor.user_id, Vote.case_id.in_([c for c, _, _ in wanted.values()]))).all())
    return {tid: f"{case_id}:{trigger}" for tid, (case_id, state, trigger) in wanted.items()
            if (case_id, state) not in voted}


#: The inbox's own names for two of GET /tasks's keys (a saved view keeps the API's).
_PAGE_KEYS = {"org_unit": "unit", "search": "q"}


def _inbox_href(query: str) -> str:
    pairs = [(_PAGE_KEYS.get(k, k), v) for k, v in parse_qsl(query)]
    if any(k == "view" and v == "upcoming" for k, v in pairs):
        return url_for("hexie.upcoming", **{k: v for k, v in pairs if k == "days"})
    return url_for("hexie.inbox") + "?" + urlencode(pairs)


@bp.route("/views", methods=["POST"])
def save_view():
    """Keep the inbox as it is now (tab, order, filters) under a name."""
    actor = current_actor()
    try:
        SavedViews(hexie_state().engine).create(actor, request.form.get("name", ""), request.form.get("query", ""))
    except HexieError as err:
        flash(error_text(err), "error")
    else:
        flash(t("views.saved", name=request.form.get("name", "").strip()), "success")
    return redirect(_inbox_href(request.form.get("query", "")))


@bp.route("/views/<int:view_id>/delete", methods=["POST"])
def delete_view(view_id: int):
    try:
        SavedViews(hexie_state().engine).delete(current_actor(), view_id)
    except HexieError as err:
        flash(error_text(err), "error")
    return redirect(url_for("hexie.inbox"))


@bp.route("/upcoming")
def upcoming():
    """The visits and renewals that timers will open for her in the next days, day by day."""
    actor = current_actor()
    days = request.args.get("days", type=int)
    days = days if days in (7, 30, 90, 180) else 30
    page = hexie_state().queries.upcoming(actor, days, page=page_arg(), per_page=200)
    by_day: dict[str, list[dict[str, Any]]] = {}
    for row in page.items:
        by_day.setdefault(fmt_date(row["due_at"]), []).append(row)
    return render_template("upcoming.html", days=days, by_day=by_day, page=page,
                           names=display_names(r["assignee"] for r in page.items))


@bp.route("/cases")
def cases():
    """Every case she may see, newest first, with the same filters."""
    actor = current_actor()
    filters = query_filters()
    page = _query("cases", actor, filters)
    return render_template("cases.html", page=page, filters=filters, options=filter_options(actor),
                           unit_names=unit_names(c["org_unit"] for c in page.items))
