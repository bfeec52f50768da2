"""Managers' pages: the overview, approvals waiting for me (with bulk approval), and the team's work (reassign)."""
from __future__ import annotations

import re
from collections import defaultdict
from typing import Any, Mapping

from flask import abort, flash, redirect, render_template, request, url_for
from sqlalchemy import and_, or_, select, true
from sqlalchemy.orm import Session

from hexie.models import Case, OrgUnit, RoleAssignment, Task, User, Vote
from hexie.workflows.access import Actor, admin_roles, manager_roles, team_tasks_clause, visible_cases_clause
from hexie.workflows.errors import HexieError
from hexie.workflows.org import ancestor_paths
from hexie.workflows.queries import task_row
from hexie.workflows.spec import ProcessSpec

from ..auth import safe_next
from ..state import current_actor, hexie_state
from ..i18n import error_text, label, t
from ..views.common import decision_fields, decision_figures
from .common import OPEN, PER_PAGE, _engine, _flash_error, _names, bp, local_day, manager_required

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
    # what each decision rests on (the loan asked for, the household's income): beside the
    # checkbox, so nothing is approved in bulk unseen; never for a confidential programme
    data: dict[int, dict[str, Any]] = {}
    plain = [item["case_id"] for g in groups if not _engine().processes[g["process"]].confidential
             for item in g["tasks"]]
    if plain:
        with _engine().session_factory() as s:
            data = dict(s.execute(select(Case.id, Case.data).where(Case.id.in_(plain))).all())
    quorums = hexie_state().queries.quorums(actor, {item["case_id"]: g["trigger"] for g in groups if g["trigger"]
                                                    for item in g["tasks"]})
    for g in groups:
        spec = _engine().processes[g["process"]]
        g["figure_labels"] = [] if spec.confidential else \
            [label(spec.fields[n].label, n) for n in decision_fields(spec, g["state"])]
        for item in g["tasks"]:
            item["figures"] = decision_figures(spec, g["state"], data.get(item["case_id"]) or {}) \
                if not spec.confidential else []
            item["quorum"] = quorums.get(item["case_id"], g["quorum"])
            cast = votes.get((item["case_id"], item["state"]), [])
            item["votes"] = [name for _, name in cast]       # people are named, not their usernames
            item["voted"] = any(username == actor.username for username, _ in cast)
        g["all_voting"] = all(item["quorum"] > 1 for item in g["tasks"])
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
        from ..auth import safe_next
        return redirect(safe_next(request.form.get("next"), url_for("admin.approvals")))
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
    from ..auth import safe_next
    return redirect(safe_next(request.form.get("next"), url_for("admin.approvals")))   # back to her inbox


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
    from ..views.inbox import filter_options, query_filters   # the inbox's filters, the same bar
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
    from ..views.common import display_names
    names = display_names(row["assignee"] for row in items)
    for row in items:
        row["unit_name"] = row["org_unit_name"]
        row["assignee_name"] = names.get(row["assignee"], row["assignee"])   # names, not usernames
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
