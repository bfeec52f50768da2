"""``{{ hexie_review(record) }}``: the review box a host puts in its own templates (host.md).

The Hexie extension registers :func:`hexie_review` as a Jinja global of the host's app. Given a
record of a :class:`~hexie.workflows.mixin.WorkflowMixin` model (or a case id), it renders the
case's state, its open tasks and who may act on them, one button per action the signed-in
person may fire now (a POST form with the CSRF token; a comment box where the action needs
one) and the last history entries, styled by ``static/hexie-review.css`` (class names all
start with ``hexie-review``, so the host's own styles are not touched).

The buttons post to ``/review/<case_id>/<trigger>`` (blueprint ``hexie_review``), which fires
the action as the signed-in person and goes back to the page the form was on. An action whose
form needs fields the box cannot hold links to Hexie's case page instead.
"""
from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Blueprint, flash, get_flashed_messages, redirect, render_template, request, url_for
from markupsafe import Markup
from sqlalchemy import select

from hexie.models import OrgUnit, RoleAssignment, Task, User

from hexie.workflows.errors import HexieError, NotFound

from . import i18n
from .state import current_actor, hexie_state
from .forms import action_form, comment_rule

bp = Blueprint("hexie_review", __name__)

#: Flash category of the box's own messages (it shows them; the host's flashes are left alone).
FLASH = "hexie_review"
HISTORY = 5



def hexie_review(record: Any, history: int = HISTORY) -> Markup:
    """The review box of ``record`` (a WorkflowMixin record, or a case id) for the signed-in person."""
    case_id = record if isinstance(record, int) else getattr(record, "hexie_case_id", None)
    actor = current_actor()
    context: dict[str, Any] = {"case": None, "hidden": False, "messages": get_flashed_messages(
        with_categories=False, category_filter=[FLASH])}
    if case_id is not None and actor is not None:
        state = hexie_state()
        try:
            case = state.queries.case(actor, case_id)
            events = state.queries.history(actor, case_id)
        except NotFound:
            context["hidden"] = True
        else:
            context.update(case=case, history=list(reversed(events[-history:])),
                           actions=_actions(case), next=request.full_path.rstrip("?"),
                           candidates=_candidates(case))
    elif case_id is not None:
        context["hidden"] = True
    return Markup(render_template("_hexie_review.html", **context))


def _candidates(case: dict[str, Any], most: int = 5) -> dict[int, list[str]]:
    """Task id -> the names of the people who may take it now (an offered task's "who may act")."""
    offered = [task["id"] for task in case["tasks"] if task["assignee"] is None]
    if not offered:
        return {}
    out: dict[int, list[str]] = {}
    with hexie_state().engine.session_factory() as s:
        tasks = s.execute(select(Task.id, Task.role, Task.org_path, Task.at_level).where(Task.id.in_(offered))).all()
        roles = {task.role for task in tasks}
        holders = s.execute(select(RoleAssignment.role, User.name, User.username, OrgUnit.path, OrgUnit.level)
                            .join(User, User.id == RoleAssignment.user_id)
                            .join(OrgUnit, OrgUnit.id == RoleAssignment.org_unit_id)
                            .where(RoleAssignment.role.in_(roles), User.active.is_(True))
                            .order_by(User.username)).all()
        for task in tasks:
            names = sorted({h.name or h.username for h in holders if h.role == task.role
                            and task.org_path.startswith(h.path) and task.at_level in (None, h.level)})
            out[task.id] = names[:most] + (["…"] if len(names) > most else [])
    return out


def _actions(case: dict[str, Any]) -> list[dict[str, Any]]:
    """The buttons: each allowed trigger with its label, comment rule and whether the box can do it."""
    from .views.common import case_spec, trigger_label

    spec = case_spec(case)
    owned = set(case.get("host_fields") or ())
    out = []
    for trigger in case["actions"]:
        needed = [entry.name for entry in action_form(spec, case["state"], trigger)
                  if entry.required and entry.name not in owned and case["data"].get(entry.name) in (None, "", [])]
        out.append({"trigger": trigger, "label": trigger_label(spec.key, trigger, case["state"], spec),
                    "comment": comment_rule(spec, case["state"], trigger), "inline": not needed})
    return out


def _back(default: str) -> str:
    """Where to go after the action: the page the box was on (same site only)."""
    target = request.form.get("next") or ""
    parts = urlsplit(target)
    if not target.startswith("/") or target.startswith("//") or parts.scheme or parts.netloc or "\\" in target:
        return default
    return target


@bp.post("/review/<int:case_id>/<trigger>")
def fire(case_id: int, trigger: str):
    """Fire ``trigger`` from the review box, then back to the host's page."""
    from .auth import unauthenticated
    from .views.common import trigger_label

    actor = current_actor()
    if actor is None:
        return unauthenticated()
    state = hexie_state()
    back = _back(url_for("hexie.case", case_id=case_id))
    comment = (request.form.get("comment") or "").strip() or None
    lock = request.form.get("lock_version", type=int)
    view = state.queries.case(actor, case_id)       # 404 for a case she may not see
    try:
        state.service.fire(actor, case_id, trigger, {}, comment, lock)
    except HexieError as err:
        if isinstance(err, NotFound):
            raise
        flash(i18n.error_text(err), FLASH)
        return redirect(back)
    flash(i18n.t("review.done", action=trigger_label(view["process"], trigger, view["state"])), FLASH)
    return redirect(back)
