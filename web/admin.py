"""Manager and administrator pages, mounted at ``/admin``.

For managers (roles marked ``manager: true`` in roles.yaml: the federation's county leaders,
town chairs and administrators):

* ``/admin/`` — a start page with what waits for them;
* ``/admin/approvals`` — approvals waiting for me: tasks of states that need a
  county leader (or a town chair) or several votes, with the votes cast so far;
* ``/admin/tasks`` and ``/admin/tasks/<id>/reassign`` — the open work of my area, and
  giving a task to someone else who may take it (``WorkflowService.reassign``).

For everybody signed in: ``/admin/away`` — "I am away until …": sets ``away_until`` and
``delegate_to`` (new work then goes to the colleague) and hands my open tasks over with
``WorkflowService.delegate``.

For administrators (roles marked ``admin: true``): process definitions (list, read with line numbers,
edit in the browser with a server-side check that shows every diagnostic at its line and a
live diagram, publish as a new version), users (create, rename, deactivate, reset the
password, role assignments ``role@unit``) and org units (create, rename, move). People and
units change only through :func:`hexie.workflows.org.load_org`, so the rules of the org file
(known roles and levels, no cycles, re-pathing cases on a move) hold here too. Each
administrative change is recorded in the audit trail's case-less chain.

Every page checks the role (403 otherwise), every POST carries the CSRF token (the app's
CSRFProtect), and every text a person typed is escaped by the templates. Texts are Chinese
first, English second, through :func:`hexie.web.i18n.t` (its ``admin.*`` keys are in the catalogs, web/translations).
"""
from __future__ import annotations

import os
import re
from collections import defaultdict
from datetime import date, datetime, time, timedelta, timezone
from functools import wraps
from pathlib import Path
from typing import Any, Iterable, Mapping

from flask import (Blueprint, abort, flash, jsonify, redirect, render_template, request,
                   send_from_directory, url_for)
from markupsafe import Markup, escape
from sqlalchemy import and_, func, or_, select, true
from sqlalchemy.orm import Session

from hexie.models import Case, OrgUnit, ProcessVersion, RoleAssignment, Task, User, Vote
from hexie.workflows import audit
from hexie.workflows.access import Actor, admin_roles, manager_roles, team_tasks_clause, visible_cases_clause
from hexie.workflows.errors import HexieError
from hexie.workflows.loader import load_process_text
from hexie.workflows.org import CODE_RE, USERNAME_RE, OrgFileError, ancestor_paths, load_org
from hexie.workflows.people import record_admin_change
from hexie.workflows.tokens import live_credentials
from hexie.workflows.queries import task_row
from hexie.workflows.spec import Diagnostic, ProcessSpec

from . import i18n
from .auth import safe_next, unauthenticated
from .extension import current_actor, hexie_state
from .i18n import error_text, label, t
from .views.common import page_arg

_WEB = Path(__file__).resolve().parent
ASSETS = _WEB / "templates" / "admin"

bp = Blueprint("admin", __name__, template_folder=str(_WEB / "templates"))

OPEN = ("offered", "allocated")
MIN_PASSWORD = 8
MAX_SOURCE = 200_000          # characters of YAML accepted by the editor
PER_PAGE = 25

# --------------------------------------------------------------------------- texts



# -------------------------------------------------------------------- access

ASSET_ENDPOINTS = {"admin.asset"}


@bp.before_request
def _signed_in():
    """Every admin page needs a signed-in person; the role checks are per page."""
    if request.endpoint in ASSET_ENDPOINTS:
        return None
    if current_actor() is None:
        return unauthenticated()
    if request.method == "POST" and any("\x00" in v for v in request.form.values()):
        abort(400)  # databases refuse NUL characters
    return None


def _require(roles: Iterable[str], message_key: str) -> Actor:
    actor = current_actor()
    if actor is None or not actor.all_roles & set(roles):
        abort(403, description=t(message_key))
    return actor


def admin_required(view):
    """Only holders of a role marked ``admin: true`` in roles.yaml (403 for everyone else)."""
    @wraps(view)
    def wrapped(*args, **kwargs):
        _require(admin_roles(_engine().registry.roles), "admin.forbidden")
        return view(*args, **kwargs)
    return wrapped


def manager_required(view):
    """Only holders of a role marked ``manager: true`` in roles.yaml (403 for everyone else)."""
    @wraps(view)
    def wrapped(*args, **kwargs):
        _require(manager_roles(_engine().registry.roles), "admin.forbidden.manager")
        return view(*args, **kwargs)
    return wrapped


@bp.route("/assets/<any('admin.js', 'admin.css'):name>")
def asset(name: str):
    """The editor's script and the admin pages' styles (same origin: the CSP allows them)."""
    mimetype = "text/javascript" if name.endswith(".js") else "text/css"
    response = send_from_directory(ASSETS, name, mimetype=mimetype, max_age=3600)
    return response


@bp.context_processor
def _admin_context() -> dict[str, Any]:
    actor = current_actor()
    roles = actor.all_roles if actor is not None else frozenset()
    flags = _engine().registry.roles
    return {"is_admin": bool(roles & admin_roles(flags)), "is_manager": bool(roles & manager_roles(flags)),
            "admin_asset": lambda name: url_for("admin.asset", name=name)}


# -------------------------------------------------------------------- helpers

def _engine():
    return hexie_state().engine


def _flash_error(err: HexieError) -> None:
    flash(error_text(err) + _details_text(err.details), "error")


def _details_text(details: Mapping[str, Any] | None) -> str:
    if not details:
        return ""
    parts = [f"{k}: {i18n.detail_text(v)}" for k, v in details.items() if not isinstance(v, (list, dict))]
    return ("（" + "；".join(parts) + "）") if parts else ""


def _record(s: Session, actor: Actor, kind: str, changes: Mapping[str, Any] | None = None,
            comment: str | None = None) -> None:
    """An administrative change, in the audit trail's case-less chain (same transaction)."""
    record_admin_change(s, actor, kind, changes, comment, at=_engine().clock())


def local_midnight_after(day: date) -> datetime:
    """The end of ``day`` in the office's time zone, as naive UTC (how times are stored)."""
    from .views.common import local_zone
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=local_zone())
    return end.astimezone(timezone.utc).replace(tzinfo=None)


def local_day(moment: datetime | None) -> str:
    """The (inclusive) last day of an ``away_until`` stored as the midnight after it."""
    if moment is None:
        return ""
    from .views.common import to_local
    return (to_local(moment) - timedelta(seconds=1)).date().isoformat()


def _names(s: Session, ids: Iterable[int | None]) -> dict[int, tuple[str, str]]:
    wanted = sorted({i for i in ids if i is not None})
    if not wanted:
        return {}
    return {i: (u, n) for i, u, n in s.execute(select(User.id, User.username, User.name)
                                              .where(User.id.in_(wanted)))}


# ====================================================================== overview

@bp.route("/")
@manager_required
def index():
    """What waits for a manager, and (for administrators) the administration pages."""
    actor = current_actor()
    approvals = sum(group["total"] for group in _approval_groups(actor, per_page=1))
    open_total, overdue_total = _team_counts(actor)
    with _engine().session_factory() as s:
        me = s.get(User, actor.user_id) if actor.user_id is not None else None
        delegate = s.get(User, me.delegate_to_id) if me is not None and me.delegate_to_id else None
        away = (local_day(me.away_until), delegate.name if delegate else "") \
            if me is not None and me.away_until and me.away_until > _engine().clock() else None
    return render_template("admin/index.html", approvals=approvals, open_total=open_total,
                           overdue_total=overdue_total, away=away)


# ===================================================================== approvals

def approval_states(processes: Mapping[str, ProcessSpec], actor: Actor) -> list[tuple[str, str, int]]:
    """(process, state, quorum) of the states whose work is a sign-off this person may give."""
    out = []
    mine = actor.all_roles
    flags = _engine().registry.roles
    approvers, admin = manager_roles(flags), bool(mine & admin_roles(flags))
    for key, spec in sorted(processes.items()):
        for st in spec.states:
            if st.final or not st.tasks:
                continue
            quorum = max((t_.quorum for t_ in spec.transitions_from(st.name)), default=1)
            roles = {task.role for task in st.tasks}
            if (quorum > 1 or roles & approvers) and (roles & mine or admin):
                out.append((key, st.name, quorum))
    return out


def approve_trigger(spec: ProcessSpec, state: str) -> str | None:
    """The action that says "yes" at a sign-off: the vote, else the first that moves on without a comment."""
    out = [t_ for t_ in spec.transitions_from(state) if not t_.system_only and not t_.interrupt]
    voted = [t_ for t_ in out if t_.quorum > 1]
    plain = [t_ for t_ in out if t_.comment != "required" and not spec.state(t_.dest).final]
    chosen = (voted or plain or [None])[0]
    return chosen.trigger if chosen is not None else None


def _approval_groups(actor: Actor, per_page: int = 50) -> list[dict[str, Any]]:
    """Per (process, state): tasks allocated to me or offered to me, through CaseQueries."""
    queries = hexie_state().queries
    groups = []
    for key, state, quorum in approval_states(_engine().processes, actor):
        items, total = [], 0
        for view in ("mine", "available"):
            page = queries.tasks(actor, view, process=key, state=state, per_page=per_page)
            items += page.items
            total += page.total
        if total:
            spec = _engine().processes[key]
            trigger = approve_trigger(spec, state)
            groups.append({"process": key, "state": state, "quorum": quorum, "tasks": items, "total": total,
                           "trigger": trigger,
                           "trigger_label": label(next(t_.label for t_ in spec.transitions_from(state, trigger)))
                           if trigger else None})
    return groups


@bp.route("/approvals")
@manager_required
def approvals():
    """Approvals waiting for me, grouped by programme and step, with the votes cast."""
    actor = current_actor()
    groups = _approval_groups(actor)
    case_ids = [item["case_id"] for g in groups for item in g["tasks"]]
    votes: dict[tuple[int, str], list[str]] = defaultdict(list)
    if case_ids:
        with _engine().session_factory() as s:
            rows = s.execute(select(Vote.case_id, Vote.state, User.username, User.name)
                             .join(User, User.id == Vote.user_id)
                             .where(Vote.case_id.in_(case_ids)).order_by(Vote.id))
            for case_id, state, username, name in rows:
                votes[(case_id, state)].append((username, name))
    for g in groups:
        for item in g["tasks"]:
            cast = votes.get((item["case_id"], item["state"]), [])
            item["votes"] = [name for _, name in cast]       # people are named, not their usernames
            item["voted"] = any(username == actor.username for username, _ in cast)
    return render_template("admin/approvals.html", groups=groups)


@bp.route("/approvals/bulk", methods=["POST"])
@manager_required
def approvals_bulk():
    """One "yes" with one comment on several cases: each vote its own audited action.

    A case that refuses (moved on, already voted, a guard) is reported with its reason;
    the others go through (OCA's tier validation and Odoo's approvals do the same).
    """
    actor = current_actor()
    service = hexie_state().service
    comment = (request.form.get("comment") or "").strip() or None
    picked = [v for v in request.form.getlist("case") if re.fullmatch(r"\d{1,18}:[a-z][a-z0-9_]{0,63}", v)]
    if not picked:
        flash(t("admin.approvals.none_picked"), "error")
        return redirect(url_for("admin.approvals"))
    done, refused = [], []
    for value in picked:
        case_id, trigger = int(value.split(":")[0]), value.split(":")[1]
        try:
            service.fire(actor, case_id, trigger, {}, comment)
        except HexieError as err:
            refused.append(t("admin.approvals.refused", id=case_id, reason=error_text(err)))
            continue
        done.append(case_id)
    if done:
        flash(t("admin.approvals.bulk_done", n=len(done), ids="、".join(f"#{i}" for i in done)), "success")
    for message in refused:
        flash(message, "error")
    return redirect(url_for("admin.approvals"))


# ====================================================================== team work

def _team_filter(actor: Actor):
    """Open tasks under a unit where she is a manager, of cases she may see."""
    return and_(Task.status.in_(OPEN), team_tasks_clause(actor, _engine().registry.roles),
                visible_cases_clause(actor, _engine().processes.values(), _engine().registry.roles))


def _team_counts(actor: Actor) -> tuple[int, int]:
    queries = hexie_state().queries
    return (queries.tasks(actor, "team", per_page=1).total,
            queries.tasks(actor, "team", overdue_only=True, per_page=1).total)


@bp.route("/tasks")
@manager_required
def tasks():
    """Every open task of my area (cases I may see), soonest due first, with a reassign link."""
    from .views.inbox import filter_options, query_filters   # the inbox's filters, the same bar
    actor = current_actor()
    filters = dict(query_filters(), overdue=request.args.get("overdue") == "1")
    page = filters["page"]
    try:
        result = hexie_state().queries.tasks(actor, "team", process=filters["process"], state=filters["state"],
                                             org_unit=filters["org_unit"], search=filters["search"],
                                             overdue_only=filters["overdue"], page=page, per_page=PER_PAGE)
    except HexieError:  # an unknown unit in the filter: nothing matches
        result = None
    items = result.items if result else []
    for row in items:
        row["unit_name"] = row["org_unit_name"]
    total = result.total if result else 0
    pages = max(1, -(-total // PER_PAGE))
    return render_template("admin/tasks.html", items=items, total=total, page=page, pages=pages,
                           filters=filters, options=filter_options(actor))


def eligible_people(s: Session, task: Task) -> list[dict[str, Any]]:
    """Active people who may take ``task``: its role (and ``at`` level) at its unit or above,
    or its escalation role once escalated."""
    paths = ancestor_paths(task.org_path)
    conditions = [and_(RoleAssignment.role == task.role, OrgUnit.path.in_(paths),
                       OrgUnit.level == task.at_level if task.at_level else true())]
    if task.escalated and task.escalate_to:
        conditions.append(and_(RoleAssignment.role == task.escalate_to, OrgUnit.path.in_(paths)))
    rows = s.execute(select(User.id, User.username, User.name, RoleAssignment.role, OrgUnit.name)
                     .join(RoleAssignment, RoleAssignment.user_id == User.id)
                     .join(OrgUnit, OrgUnit.id == RoleAssignment.org_unit_id)
                     .where(or_(*conditions), User.active.is_(True))
                     .order_by(User.username))
    people: dict[str, dict[str, Any]] = {}
    for user_id, username, name, role, unit_name in rows:
        if user_id == task.assignee_id:
            continue
        person = people.setdefault(username, {"username": username, "name": name, "holds": []})
        person["holds"].append((role, unit_name))
    return list(people.values())


def _task_in_my_area(s: Session, actor: Actor, task_id: int) -> tuple[Task, Case]:
    """An open task of a case she may see, in her area as a manager; 404 otherwise."""
    row = s.execute(select(Task, Case).join(Case, Case.id == Task.case_id)
                    .where(Task.id == task_id, _team_filter(actor))).first()
    if row is None:
        abort(404)
    return row[0], row[1]


@bp.route("/tasks/<int:task_id>/reassign", methods=["GET", "POST"])
@manager_required
def reassign(task_id: int):
    """Give an open task to someone else who may take it (the service checks everything again)."""
    actor = current_actor()
    state = hexie_state()
    back = safe_next(request.values.get("next"), url_for("admin.tasks"))
    status = 200
    if request.method == "POST":
        to = (request.form.get("to") or "").strip()
        if not to:
            flash(t("admin.reassign.choose"), "error")
            status = 422
        else:
            try:
                state.service.reassign(actor, task_id, to)
            except HexieError as err:
                _flash_error(err)
                status = err.status
            else:
                with state.engine.session_factory() as s:
                    name = s.scalar(select(User.name).where(User.username == to)) or to
                flash(t("admin.reassign.done", name=name), "success")
                return redirect(back)
    with state.engine.session_factory() as s:
        task, case = _task_in_my_area(s, actor, task_id)
        candidates = eligible_people(s, task)
        current = _names(s, [task.assignee_id]).get(task.assignee_id)
        row = task_row(task, {}, state.engine.clock())
        row.update(subject=None if case.confidential else case.subject, confidential=case.confidential)
    return render_template("admin/reassign.html", task=row, candidates=candidates, current=current,
                           next_url=back), status


# =========================================================================== away

def _colleagues(s: Session, actor: Actor) -> list[tuple[str, str]]:
    """Active people holding one of her roles around her units (above or below them)."""
    conditions = []
    for a in actor.assignments:
        conditions.append(and_(RoleAssignment.role == a.role,
                               or_(OrgUnit.path.in_(ancestor_paths(a.unit_path)),
                                   OrgUnit.path.startswith(a.unit_path, autoescape=True))))
    if not conditions:
        return []
    rows = s.execute(select(User.username, User.name).join(RoleAssignment, RoleAssignment.user_id == User.id)
                     .join(OrgUnit, OrgUnit.id == RoleAssignment.org_unit_id)
                     .where(or_(*conditions), User.active.is_(True), User.id != actor.user_id)
                     .distinct().order_by(User.username))
    return [(u, n) for u, n in rows]


def _my_open_tasks(s: Session, actor: Actor) -> list[int]:
    return list(s.scalars(select(Task.id).where(Task.assignee_id == actor.user_id,
                                                Task.status == "allocated").order_by(Task.id)))


@bp.route("/away", methods=["GET", "POST"])
def away():
    """Mark myself away until a day, name a delegate, and hand my open tasks over."""
    actor = current_actor()
    state = hexie_state()
    engine = state.engine
    if actor.user_id is None:
        abort(403)
    status = 200
    form = {"until": "", "delegate": "", "handover": True}
    if request.method == "POST" and request.form.get("action") == "back":
        with engine.transaction() as s:
            me = s.get(User, actor.user_id)
            me.away_until, me.delegate_to_id = None, None
            _record(s, actor, "away_ended", {"user": [actor.username, actor.username]})
        flash(t("admin.away.cleared"), "success")
        return redirect(url_for("admin.away"))
    if request.method == "POST":
        form = {"until": (request.form.get("until") or "").strip(),
                "delegate": (request.form.get("delegate") or "").strip(),
                "handover": request.form.get("handover") == "1"}
        today = _local_today()
        try:
            until = date.fromisoformat(form["until"])
        except ValueError:
            until = None
        errors = []
        if until is None or until < today:
            errors.append(t("admin.away.bad_date"))
        with engine.session_factory() as s:
            delegate = s.scalars(select(User).where(User.username == form["delegate"])).first()
            delegate_ok = delegate is not None and delegate.active and delegate.id != actor.user_id
            delegate_name = delegate.name if delegate is not None else ""
            delegate_id = delegate.id if delegate is not None else None
        if not delegate_ok:
            errors.append(t("admin.away.bad_delegate"))
        if errors:
            for message in errors:
                flash(message, "error")
            status = 422
        else:
            with engine.transaction() as s:
                me = s.get(User, actor.user_id)
                me.away_until = local_midnight_after(until)
                me.delegate_to_id = delegate_id
                _record(s, actor, "away_set", {"away_until": [None, until.isoformat()],
                                               "delegate_to": [None, form["delegate"]]})
            flash(t("admin.away.saved", until=until.isoformat(), name=delegate_name), "success")
            if form["handover"]:
                moved, failed = _hand_over(actor, form["delegate"])
                if moved:
                    flash(t("admin.away.moved", n=moved), "success")
                if failed:
                    flash(t("admin.away.failed", n=len(failed), ids="、".join(f"#{i}" for i in failed)), "warning")
            return redirect(url_for("admin.away"))
    with engine.session_factory() as s:
        me = s.get(User, actor.user_id)
        current = None
        if me.away_until and me.away_until > engine.clock():
            delegate = s.get(User, me.delegate_to_id) if me.delegate_to_id else None
            current = {"until": local_day(me.away_until), "name": delegate.name if delegate else "",
                       "username": delegate.username if delegate else ""}
            form["delegate"] = form["delegate"] or current["username"]
        colleagues = _colleagues(s, actor)
        held = len(_my_open_tasks(s, actor))
    return render_template("admin/away.html", current=current, colleagues=colleagues, held=held,
                           form=form, today=_local_today().isoformat()), status


def _local_today() -> date:
    from .views.common import to_local
    return to_local(_engine().clock()).date()


def _hand_over(actor: Actor, to_username: str) -> tuple[int, list[int]]:
    """Delegate each task I hold to ``to_username``; returns (moved, ids that could not move)."""
    service = hexie_state().service
    with _engine().session_factory() as s:
        ids = _my_open_tasks(s, actor)
    moved, failed = 0, []
    for task_id in ids:
        try:
            service.delegate(actor, task_id, to_username)
            moved += 1
        except HexieError:
            failed.append(task_id)
    return moved, failed


# ===================================================================== processes

def _version_rows(s: Session, key: str) -> list[dict[str, Any]]:
    counts = dict(s.execute(select(Case.process_version_id, func.count()).where(Case.process_key == key)
                            .group_by(Case.process_version_id)).all())
    open_counts = dict(s.execute(select(Case.process_version_id, func.count())
                                 .where(Case.process_key == key, Case.closed_at.is_(None))
                                 .group_by(Case.process_version_id)).all())
    rows = s.execute(select(ProcessVersion.id, ProcessVersion.version, ProcessVersion.created_at,
                            ProcessVersion.content_hash).where(ProcessVersion.key == key)
                     .order_by(ProcessVersion.version.desc())).all()
    return [{"id": i, "version": v, "created_at": at, "hash": h[:12], "cases": counts.get(i, 0),
             "open": open_counts.get(i, 0)} for i, v, at, h in rows]


def _writable(path: str) -> bool:
    return bool(path) and os.path.isfile(path) and os.access(path, os.W_OK)


@bp.route("/processes")
@admin_required
def processes():
    """Every process definition with its current version and the cases on each."""
    engine = _engine()
    rows = []
    with engine.session_factory() as s:
        versions = dict(s.execute(select(ProcessVersion.key, func.count()).group_by(ProcessVersion.key)).all())
        open_cases = dict(s.execute(select(Case.process_key, func.count()).where(Case.closed_at.is_(None))
                                    .group_by(Case.process_key)).all())
    for key, spec in sorted(engine.processes.items()):
        try:
            _, _, version = engine.current(key)
        except HexieError:
            version = None
        rows.append({"key": key, "title": label(spec.title), "version": version,
                     "versions": versions.get(key, 0), "open": open_cases.get(key, 0),
                     "file": os.path.basename(spec.path or ""), "writable": _writable(spec.path)})
    return render_template("admin/processes.html", rows=rows)


def _spec_or_404(key: str) -> ProcessSpec:
    spec = _engine().processes.get(key)
    if spec is None:
        abort(404)
    return spec


@bp.route("/processes/<key>")
@admin_required
def process(key: str):
    """A definition's source with line numbers, its map and its versions (``?version=N``)."""
    engine = _engine()
    spec = _spec_or_404(key)
    _, _, current_version = engine.current(key)
    shown_version = request.args.get("version", type=int) or current_version
    source, shown = spec.source_text, spec
    with engine.session_factory() as s:
        versions = _version_rows(s, key)
        if shown_version != current_version:
            row = next((v for v in versions if v["version"] == shown_version), None)
            if row is None:
                abort(404)
            shown = engine.spec_of(s, row["id"])
            source = shown.source_text
    from .diagram import render_svg
    highlight = {request.args.get("line", type=int)} - {None}
    return render_template("admin/process.html", key=key, spec=spec, title=label(spec.title),
                           lines=numbered_source(source, highlight=highlight),
                           diagram=render_svg(shown, None, i18n.get_locale()),
                           versions=versions, current_version=current_version, shown_version=shown_version,
                           path=spec.path, writable=_writable(spec.path))


def check_source(key: str, source: str) -> tuple[ProcessSpec | None, list[Diagnostic]]:
    """Load an edited definition the way the engine will (same file name, same roles)."""
    engine = _engine()
    current = engine.processes.get(key)
    filename = current.path if current is not None and current.path else f"{key}.yaml"
    spec, diagnostics = load_process_text(source, filename, engine.registry.roles)
    if spec is not None and spec.key != key:
        diagnostics = list(diagnostics) + [Diagnostic(filename, 1, 1, "error", t("admin.edit.key_changed", process=key),
                                                      "process")]
        spec = None
    return spec, diagnostics


def _diagnostic_dicts(diagnostics: Iterable[Diagnostic]) -> list[dict[str, Any]]:
    return [{"line": d.line, "column": d.column, "severity": d.severity, "message": i18n.detail_text(d.message),
             "path": d.path} for d in diagnostics]


@bp.route("/processes/<key>/edit", methods=["GET", "POST"])
@admin_required
def edit_process(key: str):
    """Edit a definition's YAML; check it; publish it as a new version when it has no errors."""
    engine = _engine()
    spec = _spec_or_404(key)
    _, _, current_version = engine.current(key)
    source = spec.source_text
    base_version = current_version
    diagnostics: list[Diagnostic] | None = None
    preview = spec
    status = 200
    if request.method == "POST":
        source = (request.form.get("source") or "").replace("\r\n", "\n")
        base_version = request.form.get("base_version", type=int) or current_version
        if len(source) > MAX_SOURCE:
            abort(413)
        checked, diagnostics = check_source(key, source)
        preview = checked or spec
        errors = [d for d in diagnostics if d.severity == "error"]
        if errors:
            status = 422
        elif request.form.get("action") == "publish":
            if base_version != current_version:
                flash(t("admin.edit.stale", version=current_version), "error")
                status = 409
            else:
                return _publish(key, checked, current_version)
    from .diagram import render_svg
    error_lines = {d.line for d in diagnostics or () if d.severity == "error"}
    return render_template(
        "admin/edit.html", key=key, title=label(spec.title), source=source, base_version=base_version,
        current_version=current_version, diagnostics=_diagnostic_dicts(diagnostics) if diagnostics is not None else None,
        error_count=sum(1 for d in diagnostics or () if d.severity == "error"),
        warning_count=sum(1 for d in diagnostics or () if d.severity == "warning"),
        lines=numbered_source(source, highlight=error_lines, notes=_notes(diagnostics or ())),
        line_count=max(1, source.count("\n") + 1), error_lines=error_lines,
        diagram=render_svg(preview, None, i18n.get_locale()), path=spec.path, writable=_writable(spec.path),
    ), status


def _publish(key: str, spec: ProcessSpec, current_version: int):
    """Make the checked spec current (a new version), write the file back, and go to its page."""
    engine = _engine()
    actor = current_actor()
    old_path = engine.processes[key].path
    spec_title = label(spec.title)
    version = engine.publish(spec)
    if version == current_version:
        flash(t("admin.edit.unchanged", version=version), "info")
        return redirect(url_for("admin.process", key=key))
    with engine.transaction() as s:
        _record(s, actor, "process_published", {"process": [key, key], "version": [current_version, version]})
    flash(t("admin.edit.published", title=spec_title, version=version), "success")
    if _writable(old_path):
        # Written after publishing: the database holds the version either way, and the next
        # start reads the file (an older file would come back as yet another version).
        Path(old_path).write_text(spec.source_text, encoding="utf-8")
        flash(t("admin.edit.written", path=os.path.basename(old_path)), "info")
    else:
        flash(t("admin.process.readonly_file", path=old_path or f"{key}.yaml"), "warning")
    return redirect(url_for("admin.process", key=key))


@bp.route("/processes/<key>/check", methods=["POST"])
@admin_required
def check_process(key: str):
    """JSON for the editor's live preview: ``{ok, errors, warnings, diagnostics, svg}``.

    The request body is JSON ``{"source": "..."}``, with the CSRF token in the
    ``X-CSRFToken`` header. ``svg`` is the map of the checked text, or null with errors.
    """
    _spec_or_404(key)
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict) or not isinstance(payload.get("source"), str):
        return jsonify({"error": {"code": "bad_request", "message": t("error.400")}}), 400
    source = payload["source"].replace("\r\n", "\n")
    if len(source) > MAX_SOURCE:
        return jsonify({"error": {"code": "too_large", "message": t("admin.edit.too_long")}}), 413
    spec, diagnostics = check_source(key, source)
    from .diagram import render_svg
    errors = sum(1 for d in diagnostics if d.severity == "error")
    return jsonify({
        "ok": errors == 0, "errors": errors, "warnings": len(diagnostics) - errors,
        "summary": t("admin.edit.ok") if not errors else t("admin.edit.errors", n=errors),
        "diagnostics": [dict(d, where=t("admin.edit.line", line=d["line"], column=d["column"]),
                             severity_text=t(f"admin.severity.{d['severity']}"))
                        for d in _diagnostic_dicts(diagnostics)],
        "svg": str(render_svg(spec, None, i18n.get_locale())) if spec is not None else None,
    })


# ---------------------------------------------------------- YAML with line numbers

_KEY = re.compile(r"^(\s*(?:-\s+)?)([A-Za-z_][\w.-]*|'[^']*'|\"[^\"]*\")(\s*:)(?=\s|$)")
_SCALAR = re.compile(r"('[^']*'|\"(?:[^\"\\]|\\.)*\"|(?<![\w.-])(?:true|false|null|True|False|~|-?\d+(?:\.\d+)?)(?![\w.-]))")


def _comment_start(line: str) -> int:
    """Where a ``#`` comment starts outside quotes (``-1``: none)."""
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return i
    return -1


def _highlight_value(part: str) -> Markup:
    out, last = [], 0
    for match in _SCALAR.finditer(part):
        out.append(escape(part[last:match.start()]))
        kind = "str" if match.group(0)[0] in "'\"" else "lit"
        out.append(Markup('<span class="y-{}">{}</span>').format(kind, match.group(0)))
        last = match.end()
    out.append(escape(part[last:]))
    return Markup("").join(out)


def highlight_yaml_line(line: str) -> Markup:
    """One line of YAML as escaped HTML with spans for keys, comments, strings and literals."""
    cut = _comment_start(line)
    body, comment = (line, "") if cut < 0 else (line[:cut], line[cut:])
    match = _KEY.match(body)
    if match:
        html = (escape(match.group(1)) + Markup('<span class="y-key">{}</span>').format(match.group(2))
                + escape(match.group(3)) + _highlight_value(body[match.end():]))
    else:
        html = _highlight_value(body)
    if comment:
        html += Markup('<span class="y-comment">{}</span>').format(comment)
    return html


def numbered_source(source: str, highlight: Iterable[int] = (), notes: Mapping[int, list[dict]] | None = None
                    ) -> list[dict[str, Any]]:
    """The lines of a source for display: number, highlighted HTML, marked or not, notes."""
    marked = set(highlight)
    notes = notes or {}
    return [{"number": n, "html": highlight_yaml_line(line), "marked": n in marked, "notes": notes.get(n, [])}
            for n, line in enumerate(source.split("\n"), 1)]


def _notes(diagnostics: Iterable[Diagnostic]) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for d in _diagnostic_dicts(diagnostics):
        out[d["line"]].append(d)
    return out


# ========================================================================= users

def _roles_spec():
    return _engine().registry.roles


def _role_options() -> list[tuple[str, str]]:
    return [(key, f"{label(r.label)}（{key}）") for key, r in _roles_spec().roles.items()]


def _unit_options(s: Session) -> list[tuple[str, str, str]]:
    rows = s.execute(select(OrgUnit.code, OrgUnit.name, OrgUnit.path, OrgUnit.level).order_by(OrgUnit.path)).all()
    return [(code, "\u3000" * max(path.count("/") - 2, 0) + name, level) for code, name, path, level in rows]


def _load_org(s: Session, data: Mapping[str, Any]):
    roles = _roles_spec()
    return load_org(s, data, roles=list(roles.roles), levels=list(roles.levels))


def _org_error(err: OrgFileError) -> None:
    flash(t("admin.org_error", message="；".join(err.messages)), "error")


@bp.route("/users", methods=["GET", "POST"])
@admin_required
def users():
    """Users (search, paged) and the form that creates one, with a first role."""
    actor = current_actor()
    engine = _engine()
    status = 200
    form = {"username": "", "name": "", "locale": "zh", "role": "", "unit": ""}
    if request.method == "POST":
        form = {k: (request.form.get(k) or "").strip() for k in ("username", "name", "locale", "role", "unit")}
        password, password2 = request.form.get("password") or "", request.form.get("password2") or ""
        errors = _user_form_errors(form, password, password2, new=True)
        if not errors:
            with engine.session_factory() as s:
                if s.scalar(select(User.id).where(User.username == form["username"])) is not None:
                    errors.append(t("admin.user.exists"))
        if not errors:
            item: dict[str, Any] = {"username": form["username"], "name": form["name"], "password": password,
                                    "locale": form["locale"] if form["locale"] in i18n.LOCALES else "zh",
                                    "roles": [f"{form['role']}@{form['unit']}"] if form["role"] and form["unit"] else []}
            try:
                with engine.transaction() as s:
                    _load_org(s, {"users": [item]})
                    _record(s, actor, "user_created", {"username": [None, form["username"]],
                                                       "roles": [None, item["roles"]]})
            except OrgFileError as err:
                _org_error(err)
                status = 422
            else:
                flash(t("admin.users.created", username=form["username"]), "success")
                return redirect(url_for("admin.user", username=form["username"]))
        else:
            for message in errors:
                flash(message, "error")
            status = 422
    search = (request.args.get("q") or "").strip()[:80]
    page = page_arg()
    with engine.session_factory() as s:
        stmt = select(User)
        if search:
            stmt = stmt.where(or_(User.username.contains(search, autoescape=True),
                                  User.name.contains(search, autoescape=True)))
        total = engine.count(s, stmt)
        people = list(s.scalars(stmt.order_by(User.username).offset((page - 1) * PER_PAGE).limit(PER_PAGE)))
        roles = defaultdict(list)
        if people:
            for user_id, role, code, name in s.execute(
                    select(RoleAssignment.user_id, RoleAssignment.role, OrgUnit.code, OrgUnit.name)
                    .join(OrgUnit, OrgUnit.id == RoleAssignment.org_unit_id)
                    .where(RoleAssignment.user_id.in_([u.id for u in people]))
                    .order_by(RoleAssignment.role)):
                roles[user_id].append({"role": role, "code": code, "unit": name})
        rows = [{"username": u.username, "name": u.name, "active": u.active, "roles": roles[u.id]} for u in people]
        units = _unit_options(s)
    return render_template("admin/users.html", rows=rows, total=total, page=page,
                           pages=max(1, -(-total // PER_PAGE)), search=search, form=form,
                           role_options=_role_options(), unit_options=units, min_password=MIN_PASSWORD), status


def _user_form_errors(form: Mapping[str, str], password: str | None, password2: str | None,
                      new: bool) -> list[str]:
    errors = []
    if new and (not form.get("username") or len(form["username"]) > 80 or not USERNAME_RE.match(form["username"])):
        errors.append(t("admin.user.bad_username"))
    if not form.get("name") or len(form["name"]) > 200:
        errors.append(t("admin.user.bad_name"))
    if password is not None and (len(password) < MIN_PASSWORD or password != password2 or len(password) > 200):
        errors.append(t("admin.user.bad_password", n=MIN_PASSWORD))
    if new and bool(form.get("role")) != bool(form.get("unit")):
        errors.append(t("admin.user.bad_role"))
    return errors


def _user_or_404(s: Session, username: str) -> User:
    user = s.scalars(select(User).where(User.username == username)).first()
    if user is None:
        abort(404)
    return user


def _role_texts(s: Session, user: User) -> list[str]:
    rows = s.execute(select(RoleAssignment.role, OrgUnit.code).join(OrgUnit, OrgUnit.id == RoleAssignment.org_unit_id)
                     .where(RoleAssignment.user_id == user.id).order_by(RoleAssignment.id)).all()
    return [f"{role}@{code}" for role, code in rows]


@bp.route("/users/<username>", methods=["GET", "POST"])
@admin_required
def user(username: str):
    """One user: name and language, active or not, password reset, role assignments."""
    actor = current_actor()
    engine = _engine()
    status = 200
    if request.method == "POST":
        status = _user_action(actor, username, request.form.get("action") or "")
        if status is None:
            return redirect(url_for("admin.user", username=username))
    with engine.session_factory() as s:
        person = _user_or_404(s, username)
        assignments = s.execute(select(RoleAssignment.role, OrgUnit.code, OrgUnit.name)
                                .join(OrgUnit, OrgUnit.id == RoleAssignment.org_unit_id)
                                .where(RoleAssignment.user_id == person.id).order_by(RoleAssignment.id)).all()
        delegate = s.get(User, person.delegate_to_id) if person.delegate_to_id else None
        away = None
        if person.away_until and person.away_until > engine.clock():
            away = {"until": local_day(person.away_until), "name": delegate.name if delegate else ""}
        held = s.scalar(select(func.count()).select_from(Task).where(
            Task.assignee_id == person.id, Task.status == "allocated")) or 0
        info = {"username": person.username, "name": person.name, "active": person.active,
                "locale": person.locale, "created_at": person.created_at, "email": person.email,
                "capabilities": person.capabilities or [], "signed_in": len(live_credentials(s, person.id))}
        units = _unit_options(s)
    return render_template("admin/user.html", person=info, assignments=assignments, away=away, held=held,
                           role_options=_role_options(), unit_options=units, min_password=MIN_PASSWORD,
                           is_self=username == actor.username), status


def _user_action(actor: Actor, username: str, action: str) -> int | None:
    """One change to a user through load_org; flashes the outcome; an HTTP status when refused."""
    engine = _engine()
    form = request.form
    with engine.session_factory() as s:
        person = _user_or_404(s, username)
        item: dict[str, Any] = {"username": person.username, "name": person.name}
        roles = _role_texts(s, person)
    changes: dict[str, Any] = {"username": [username, username]}
    kind, message = "user_updated", t("admin.users.saved")
    if action == "save":
        name = (form.get("name") or "").strip()
        locale = form.get("locale") if form.get("locale") in i18n.LOCALES else "zh"
        errors = _user_form_errors({"name": name}, None, None, new=False)
        if errors:
            flash(errors[0], "error")
            return 422
        changes.update(name=[item["name"], name], locale=[None, locale])
        item.update(name=name, locale=locale)
    elif action in ("deactivate", "activate"):
        if action == "deactivate" and username == actor.username:
            flash(t("admin.user.self"), "error")
            return 409
        item["active"] = action == "activate"
        changes["active"] = [not item["active"], item["active"]]
        message = t("admin.user.activated" if item["active"] else "admin.user.deactivated", username=username)
    elif action == "password":
        password, password2 = form.get("password") or "", form.get("password2") or ""
        errors = _user_form_errors({"name": item["name"]}, password, password2, new=False)
        if errors:
            flash(errors[0], "error")
            return 422
        item["password"] = password
        kind, message = "password_reset", t("admin.user.reset_done")
    elif action == "add_role":
        role, unit = (form.get("role") or "").strip(), (form.get("unit") or "").strip()
        if not role or not unit:
            flash(t("admin.user.bad_role"), "error")
            return 422
        text_ = f"{role}@{unit}"
        item["roles"] = roles + ([text_] if text_ not in roles else [])
        kind, message = "roles_changed", t("admin.user.role_added", role=text_)
        changes["roles"] = [roles, item["roles"]]
    elif action == "remove_role":
        text_ = (form.get("assignment") or "").strip()
        admins = admin_roles(_engine().registry.roles)
        if username == actor.username and text_.partition("@")[0] in admins \
                and sum(1 for r in roles if r.partition("@")[0] in admins) <= 1:
            flash(t("admin.user.self"), "error")
            return 409
        item["roles"] = [r for r in roles if r != text_]
        kind, message = "roles_changed", t("admin.user.role_removed", role=text_)
        changes["roles"] = [roles, item["roles"]]
    else:
        abort(400)
    try:
        with engine.transaction() as s:
            _load_org(s, {"users": [item]})
            _record(s, actor, kind, changes)
    except OrgFileError as err:
        _org_error(err)
        return 422
    flash(message, "success")
    return None


# ========================================================================= units

def _unit_counts(s: Session) -> tuple[dict[int, int], dict[str, int]]:
    people = dict(s.execute(select(RoleAssignment.org_unit_id, func.count(func.distinct(RoleAssignment.user_id)))
                            .group_by(RoleAssignment.org_unit_id)).all())
    cases = dict(s.execute(select(OrgUnit.code, func.count()).join(Case, Case.org_unit_id == OrgUnit.id)
                           .group_by(OrgUnit.code)).all())
    return people, cases


@bp.route("/units", methods=["GET", "POST"])
@admin_required
def units():
    """The org tree, and the form that adds a unit under another."""
    actor = current_actor()
    engine = _engine()
    levels = list(_roles_spec().levels)
    status = 200
    form = {"code": "", "name": "", "level": levels[-1] if levels else "", "parent": ""}
    if request.method == "POST":
        form = {k: (request.form.get(k) or "").strip() for k in ("code", "name", "level", "parent")}
        errors = []
        if not form["code"] or len(form["code"]) > 64 or not CODE_RE.match(form["code"]):
            errors.append(t("admin.units.bad_code"))
        if not form["name"] or len(form["name"]) > 200:
            errors.append(t("admin.user.bad_name"))
        with engine.session_factory() as s:
            if s.scalar(select(OrgUnit.id).where(OrgUnit.code == form["code"])) is not None:
                errors.append(t("admin.units.exists"))
        if not errors:
            item = {"code": form["code"], "name": form["name"], "level": form["level"],
                    "parent": form["parent"] or None}
            try:
                with engine.transaction() as s:
                    _load_org(s, {"units": [item]})
                    _record(s, actor, "unit_created", {"unit": [None, form["code"]], "name": [None, form["name"]],
                                                       "parent": [None, item["parent"]]})
            except OrgFileError as err:
                _org_error(err)
                status = 422
            else:
                flash(t("admin.units.created", name=form["name"]), "success")
                return redirect(url_for("admin.units"))
        else:
            for message in errors:
                flash(message, "error")
            status = 422
    with engine.session_factory() as s:
        rows = s.execute(select(OrgUnit.id, OrgUnit.code, OrgUnit.name, OrgUnit.level, OrgUnit.path)
                         .order_by(OrgUnit.path)).all()
        people, cases = _unit_counts(s)
        options = _unit_options(s)
    tree = [{"code": code, "name": name, "level": level, "depth": max(path.count("/") - 2, 0),
             "people": people.get(unit_id, 0), "cases": cases.get(code, 0)}
            for unit_id, code, name, level, path in rows]
    return render_template("admin/units.html", tree=tree, form=form, levels=levels, unit_options=options), status


@bp.route("/units/<code>", methods=["GET", "POST"])
@admin_required
def unit(code: str):
    """Rename a unit or move it under another parent (its subtree, cases and tasks follow)."""
    actor = current_actor()
    engine = _engine()
    status = 200
    with engine.session_factory() as s:
        row = s.scalars(select(OrgUnit).where(OrgUnit.code == code)).first()
        if row is None:
            abort(404)
        current = {"code": row.code, "name": row.name, "level": row.level,
                   "parent": row.parent.code if row.parent is not None else "", "path": row.path}
        options = [o for o in _unit_options(s) if o[0] != code]
        below = {c for c, in s.execute(select(OrgUnit.code).where(OrgUnit.path.startswith(row.path, autoescape=True)))}
    options = [o for o in options if o[0] not in below]  # no cycles on offer
    form = dict(current)
    if request.method == "POST":
        form.update(name=(request.form.get("name") or "").strip(), parent=(request.form.get("parent") or "").strip())
        if not form["name"] or len(form["name"]) > 200:
            flash(t("admin.user.bad_name"), "error")
            status = 422
        else:
            item = {"code": code, "name": form["name"], "level": current["level"], "parent": form["parent"] or None}
            try:
                with engine.transaction() as s:
                    _load_org(s, {"units": [item]})
                    _record(s, actor, "unit_updated", {"unit": [code, code], "name": [current["name"], form["name"]],
                                                       "parent": [current["parent"] or None, item["parent"]]})
            except OrgFileError as err:
                _org_error(err)
                status = 422
            else:
                flash(t("admin.units.saved", name=form["name"]), "success")
                return redirect(url_for("admin.units"))
    return render_template("admin/unit.html", unit=current, form=form, unit_options=options), status
