""""I am away until …": away_until and delegate_to, and handing my open tasks over (for everybody signed in)."""
from __future__ import annotations

from datetime import date

from flask import abort, flash, redirect, render_template, request, url_for
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from hexie.models import OrgUnit, RoleAssignment, Task, User
from hexie.workflows.access import Actor
from hexie.workflows.errors import HexieError
from hexie.workflows.org import ancestor_paths

from ..state import current_actor, hexie_state
from ..i18n import t
from .common import _engine, _record, bp, local_day, local_midnight_after

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
    from ..views.common import to_local
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
