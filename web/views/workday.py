"""The working day on the case page: hand a case over, hold and resume it (or a task), write a
note with @mentions, consult a colleague and answer a consult.

Each POST calls one service method and goes back to the case page with what happened (or why
not) as a message; the page (:mod:`.case`) shows the forms to those who may use them.
"""
from __future__ import annotations

from typing import Any

from flask import flash, redirect, request, url_for
from sqlalchemy import or_, select

from hexie.models import OrgUnit, RoleAssignment, User
from hexie.workflows.errors import Conflict, Forbidden, HexieError, Invalid
from hexie.workflows.org import ancestor_paths
from hexie.workflows.workday import parse_until

from ..state import current_actor, hexie_state
from ..i18n import error_text, t
from .blueprint import bp


def people_around(spec: Any, path: str | None, roles: Any = None) -> list[tuple[str, str]]:
    """(username, name) of the active people holding one of ``roles`` (default: every role the
    process names) at the case's unit, above it or below it: those the pickers offer."""
    if path is None:
        return []
    wanted = sorted(roles if roles is not None else spec.roles_named())
    if not wanted:
        return []
    near = or_(OrgUnit.path.in_(ancestor_paths(path)), OrgUnit.path.startswith(path, autoescape=True))
    with hexie_state().engine.session_factory() as s:
        rows = s.execute(select(User.username, User.name).join(RoleAssignment, RoleAssignment.user_id == User.id)
                         .join(OrgUnit, OrgUnit.id == RoleAssignment.org_unit_id)
                         .where(near, RoleAssignment.role.in_(wanted), User.active.is_(True))
                         .distinct().order_by(User.name).limit(500)).all()
    return [(u, n) for u, n in rows]


def _back(case_id: int, anchor: str | None = None):
    return redirect(url_for("hexie.case", case_id=case_id) + (f"#{anchor}" if anchor else ""))


def _call(case_id: int, done_text: str, call, anchor: str | None = None):
    try:
        call()
    except (Conflict, Forbidden, Invalid) as err:
        flash(error_text(err) + _details(err), "error")
    else:
        flash({"text": done_text, "case_id": case_id}, "success")
    return _back(case_id, anchor)


def _details(err: HexieError) -> str:
    """The people a refused mention names (the rest of a refusal's details repeat its message)."""
    names = (getattr(err, "details", None) or {}).get("mentions")
    return f"（{names}）" if isinstance(names, str) and names else ""


def _case_id() -> int:
    try:
        return int(request.form.get("case_id", ""))
    except ValueError:
        from hexie.workflows.errors import not_found
        raise not_found() from None


@bp.route("/cases/<int:case_id>/owner", methods=["POST"])
def hand_over_case(case_id: int):
    """The owner (or a manager) hands the case to a colleague."""
    to = (request.form.get("to") or "").strip()
    service = hexie_state().service
    return _call(case_id, t("workday.handed_over"),
                 lambda: service.hand_over_case(current_actor(), case_id, to, request.form.get("comment")))


@bp.route("/cases/<int:case_id>/suspend", methods=["POST"])
def suspend_case(case_id: int):
    """Hold the case, with a reason and optionally the last day of the hold."""
    state = hexie_state()

    def call():
        until = parse_until(request.form.get("until") or None, state.engine.timezone)
        state.service.suspend_case(current_actor(), case_id, request.form.get("comment"), until)
    return _call(case_id, t("workday.suspended"), call)


@bp.route("/cases/<int:case_id>/resume", methods=["POST"])
def resume_case(case_id: int):
    service = hexie_state().service
    return _call(case_id, t("workday.resumed"),
                 lambda: service.resume_case(current_actor(), case_id, request.form.get("comment")))


@bp.route("/tasks/<int:task_id>/suspend", methods=["POST"])
def suspend_task(task_id: int):
    case_id, service = _case_id(), hexie_state().service
    return _call(case_id, t("workday.task_suspended"),
                 lambda: service.suspend_task(current_actor(), task_id, request.form.get("comment")), f"task-{task_id}")


@bp.route("/tasks/<int:task_id>/resume", methods=["POST"])
def resume_task(task_id: int):
    case_id, service = _case_id(), hexie_state().service
    return _call(case_id, t("workday.task_resumed"),
                 lambda: service.resume_task(current_actor(), task_id), f"task-{task_id}")


@bp.route("/cases/<int:case_id>/notes", methods=["POST"])
def add_note(case_id: int):
    """A note in the history; the people picked (and every @username in the text) are told."""
    service = hexie_state().service
    mentions = [m for m in request.form.getlist("mentions") if m]
    return _call(case_id, t("workday.noted"),
                 lambda: service.add_note(current_actor(), case_id, request.form.get("text") or "", mentions),
                 "h-history")


@bp.route("/tasks/<int:task_id>/consult", methods=["POST"])
def consult(task_id: int):
    case_id, service = _case_id(), hexie_state().service
    to = (request.form.get("to") or "").strip()
    return _call(case_id, t("workday.consulted"),
                 lambda: service.consult(current_actor(), task_id, to, request.form.get("comment")), f"task-{task_id}")


@bp.route("/tasks/<int:task_id>/answer", methods=["POST"])
def answer(task_id: int):
    """Answer a consult asked of me."""
    case_id, service = _case_id(), hexie_state().service
    return _call(case_id, t("workday.answered"),
                 lambda: service.done(current_actor(), task_id, comment=request.form.get("comment")))
