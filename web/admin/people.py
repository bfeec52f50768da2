"""Administrators' people and units: users (create, rename, deactivate, password, role@unit) and org units."""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Mapping

from flask import abort, flash, redirect, render_template, request, url_for
from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from hexie.models import Case, OrgUnit, RoleAssignment, Task, User
from hexie.workflows.access import Actor, admin_roles
from hexie.workflows.org import CODE_RE, USERNAME_RE, OrgFileError, load_org
from hexie.workflows.tokens import live_credentials

from .. import i18n
from ..state import current_actor
from ..i18n import label, t
from ..views.common import page_arg
from .common import MIN_PASSWORD, PER_PAGE, _engine, _record, admin_required, bp, local_day

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
