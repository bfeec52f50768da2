"""People and org units, one at a time: what the people API (``/api/v1/users``, ``/org-units``)
and the admin pages do.

Every change goes through :func:`hexie.workflows.org.load_org`, so the rules of the org file
hold here too (known roles and levels, no cycles, re-pathing cases on a move, tokens and
sessions revoked on deactivation and on a new password), and each change is an event of the
audit trail's case-less chain, in the same transaction.

Who may do what is decided by :func:`people_rights` alone: administrators read and change
everyone and every unit; managers read the people and units of their area; others nothing.
"""
from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from sqlalchemy import false, or_, select, text
from sqlalchemy.orm import Session

from hexie.models import OrgUnit, RoleAssignment, User

from . import audit
from .access import SYSTEM, Actor, admin_roles, is_admin, manager_roles
from .errors import Conflict, Forbidden, Invalid, NotFound
from .org import OrgFileError, in_subtree, load_org
from .queries import Page, paging
from .spec import RolesSpec

MIN_PASSWORD = 8
#: the advisory lock that keeps two appends to the case-less audit chain apart (PostgreSQL)
CASELESS_CHAIN_LOCK = 4865786901


@dataclass(frozen=True)
class PeopleRights:
    """``admin``: reads and changes every person and unit. ``areas``: the unit paths whose
    people and units she may read (a manager's area); empty for others."""

    admin: bool
    areas: tuple[str, ...] = ()

    @property
    def reads(self) -> bool:
        return self.admin or bool(self.areas)


def people_rights(actor: Actor, roles: RolesSpec | None) -> PeopleRights:
    """The one place that says who administers people (roles.yaml ``admin: true``) and who
    manages an area (``manager: true``)."""
    if is_admin(actor, roles):
        return PeopleRights(True)
    return PeopleRights(False, tuple(sorted(set(actor.paths_for(manager_roles(roles))))))


def record_admin_change(s: Session, actor: Actor, kind: str, changes: Mapping[str, Any] | None = None,
                        comment: str | None = None, at: Any = None) -> None:
    """An administrative change, in the audit trail's case-less chain (same transaction)."""
    if s.get_bind().dialect.name == "postgresql":
        # Two administrators at once must not both append "the next" case-less event.
        s.execute(text(f"SELECT pg_advisory_xact_lock({CASELESS_CHAIN_LOCK})"))
    user = s.get(User, actor.user_id) if actor.user_id is not None else None
    audit.append_event(s, None, kind=kind, actor=user, changes=dict(changes) if changes else None,
                       comment=comment, at=at)


# --- the org file's messages, as field details of the API ------------------------------

_ZH = (("unknown role", "未知岗位"), ("unknown unit", "未知单位"), ("unknown level", "未知层级"),
       ("expected a non-empty text", "应为非空文本"), ("invalid value", "格式不正确"), ("longer than", "过长"),
       ("cycle", "上下级形成循环"), ("is not below", "层级须低于上级单位"), ("expected 'role@unit'", "应为 岗位@单位"),
       ("expected one of", "取值无效"), ("expected true or false", "应为是或否"), ("expected a list", "应为列表"),
       ("path longer", "单位路径过长"), ("duplicate", "重复"))
_WHERE = re.compile(r"^(?:users|units)\[\d+\](?:\.(?P<field>[^:]+))?: (?P<message>.*)$", re.S)


def org_error_details(err: OrgFileError) -> dict[str, str]:
    """``{"roles[0]": "未知单位 / unknown unit 't99'"}`` from an :class:`OrgFileError` of one item."""
    details: dict[str, list[str]] = defaultdict(list)
    for line in err.messages:
        match = _WHERE.match(line)
        field, message = (match["field"] or "_", match["message"]) if match else ("_", line)
        zh = next((z for key, z in _ZH if key in message), "无效")
        details[field].append(f"{zh} / {message}")
        if "[" in field:   # "roles[0]": the list's own name says it too, with the item
            details[field.split("[", 1)[0]].append(f"{zh} / {field}: {message}")
    return {k: "; ".join(v) for k, v in details.items()}


def _invalid(err: OrgFileError) -> Invalid:
    return Invalid("内容有误", "invalid values", org_error_details(err))


# --- the service ---------------------------------------------------------------------------

class People:
    """Users and org units for the API (and any caller holding an :class:`Actor`)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    # -- helpers ----------------------------------------------------------------------
    def _load(self, s: Session, data: Mapping[str, Any]):
        roles = self.engine.registry.roles
        try:
            return load_org(s, data, roles=list(roles.roles), levels=list(roles.levels), now=self.engine.clock())
        except OrgFileError as err:
            raise _invalid(err) from None

    def _rights(self, actor: Actor, change: bool = False) -> PeopleRights:
        rights = people_rights(actor, self.engine.registry.roles)
        if not rights.reads or (change and not rights.admin):
            raise Forbidden("只有管理员可以管理人员和单位" if change else "只有管理员和负责人可以查看人员",
                            "only an administrator may change people and units" if change
                            else "only administrators and managers may read people")
        return rights

    @staticmethod
    def _visible_users(rights: PeopleRights):
        if rights.admin:
            return None
        in_area = or_(*(in_subtree(OrgUnit.path, p) for p in rights.areas)) if rights.areas else false()
        return User.id.in_(select(RoleAssignment.user_id).join(OrgUnit, OrgUnit.id == RoleAssignment.org_unit_id)
                           .where(in_area))

    @staticmethod
    def _visible_units(rights: PeopleRights):
        if rights.admin:
            return None
        return or_(*(in_subtree(OrgUnit.path, p) for p in rights.areas)) if rights.areas else false()

    @staticmethod
    def _roles_of(s: Session, user_ids: Iterable[int]) -> dict[int, list[str]]:
        ids = list(user_ids)
        out: dict[int, list[str]] = defaultdict(list)
        if ids:
            for user_id, role, code in s.execute(
                    select(RoleAssignment.user_id, RoleAssignment.role, OrgUnit.code)
                    .join(OrgUnit, OrgUnit.id == RoleAssignment.org_unit_id)
                    .where(RoleAssignment.user_id.in_(ids)).order_by(RoleAssignment.id)):
                out[user_id].append(f"{role}@{code}")
        return out

    @staticmethod
    def _user_dict(user: User, roles: list[str]) -> dict[str, Any]:
        return {"username": user.username, "name": user.name, "email": user.email, "active": user.active,
                "locale": user.locale if user.locale_chosen else None, "capabilities": list(user.capabilities or []), "roles": roles,
                "created_at": user.created_at}

    def _find_user(self, s: Session, rights: PeopleRights, username: str) -> User:
        stmt = select(User).where(User.username == username)
        visible = self._visible_users(rights)
        if visible is not None:
            stmt = stmt.where(visible)
        user = s.scalars(stmt).first() if username and len(username) <= 80 else None
        if user is None:
            raise NotFound("没有这个用户", f"no user {username!r}")
        return user

    # -- users ----------------------------------------------------------------------------
    def list_users(self, actor: Actor, q: str | None = None, active: bool | None = None,
                   org_unit: str | None = None, role: str | None = None, page: int = 1,
                   per_page: int = 50) -> Page:
        """The people she may read, by username; ``org_unit``: holding a role in its subtree."""
        rights = self._rights(actor)
        page, per_page = paging(page, per_page)
        stmt = select(User)
        visible = self._visible_users(rights)
        if visible is not None:
            stmt = stmt.where(visible)
        if q:
            stmt = stmt.where(or_(User.username.contains(q, autoescape=True), User.name.contains(q, autoescape=True)))
        if active is not None:
            stmt = stmt.where(User.active.is_(active))
        if org_unit or role:
            holders = select(RoleAssignment.user_id).join(OrgUnit, OrgUnit.id == RoleAssignment.org_unit_id)
            if role:
                holders = holders.where(RoleAssignment.role == role)
            if org_unit:
                with self.engine.session_factory() as s:
                    path = s.scalar(select(OrgUnit.path).where(OrgUnit.code == org_unit))
                holders = holders.where(in_subtree(OrgUnit.path, path)) if path else holders.where(false())
            stmt = stmt.where(User.id.in_(holders))
        with self.engine.session_factory() as s:
            total = self.engine.count(s, stmt)
            users = list(s.scalars(stmt.order_by(User.username).offset((page - 1) * per_page).limit(per_page)))
            roles = self._roles_of(s, (u.id for u in users))
            items = [self._user_dict(u, roles[u.id]) for u in users]
        return Page(items, total, page, per_page)

    def get_user(self, actor: Actor, username: str) -> dict[str, Any]:
        rights = self._rights(actor)
        with self.engine.session_factory() as s:
            user = self._find_user(s, rights, username)
            return self._user_dict(user, self._roles_of(s, [user.id])[user.id])

    def create_user(self, actor: Actor, username: str, name: str, roles: list[str] | None = None,
                    email: str | None = None, password: str | None = None, capabilities: list[str] | None = None,
                    locale: str | None = None, active: bool = True) -> dict[str, Any]:
        """A new person (no password: she signs in through the host, or not at all)."""
        self._rights(actor, change=True)
        _check_password(password)
        item: dict[str, Any] = {"username": username, "name": name, "roles": list(roles or []), "active": active}
        for key, value in (("email", email), ("password", password), ("capabilities", capabilities),
                           ("locale", locale)):
            if value is not None:
                item[key] = value
        with self.engine.transaction() as s:
            if s.scalar(select(User.id).where(User.username == username)) is not None:
                raise Conflict("用户名已存在", f"there is already a user {username!r}", {"username": "已存在 / exists"})
            self._load(s, {"users": [item]})
            record_admin_change(s, actor, "user_created", {"username": [None, username], "roles": [None, item["roles"]]},
                                at=self.engine.clock())
        return self.get_user(actor, username)

    def update_user(self, actor: Actor, username: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Change name, email, active, roles (exactly those), capabilities, locale or password.

        Deactivating her (or a new password) revokes her tokens and sessions; her tasks stay
        where they are, to be reassigned. Nobody deactivates herself or drops her own last
        ``admin`` role (409).
        """
        rights = self._rights(actor)
        with self.engine.transaction() as s:
            user = self._find_user(s, rights, username)
            if not rights.admin:
                raise Forbidden("只有管理员可以修改人员", "only an administrator may change people")
            _check_password(changes.get("password"))
            current = self._roles_of(s, [user.id])[user.id]
            if user.username == actor.username:
                if changes.get("active") is False:
                    raise Conflict("不能停用自己", "you cannot deactivate yourself", {"active": "本人 / yourself"})
                admins = admin_roles(self.engine.registry.roles)
                if "roles" in changes and any(r.split("@")[0] in admins for r in current) \
                        and not any(str(r).split("@")[0] in admins for r in changes["roles"] or ()):
                    raise Conflict("不能移除自己最后的管理员岗位", "you cannot drop your own last admin role",
                                   {"roles": "本人 / yourself"})
            item: dict[str, Any] = {"username": user.username, "name": changes.get("name") or user.name}
            for key in ("email", "active", "roles", "capabilities", "locale", "password"):
                if key in changes and not (key in ("active", "locale", "password") and changes[key] is None):
                    item[key] = changes[key]
            before = self._user_dict(user, current)
            self._load(s, {"users": [item]})
            s.refresh(user)
            after = self._user_dict(user, self._roles_of(s, [user.id])[user.id])
            diff = {k: [before[k], after[k]] for k in ("name", "email", "active", "roles", "capabilities", "locale")
                    if before[k] != after[k]}
            if "password" in item:
                diff["password"] = ["***", "***"]
            if diff:
                kind = ("user_deactivated" if diff.get("active") == [True, False] else
                        "user_activated" if diff.get("active") == [False, True] else
                        "password_reset" if set(diff) == {"password"} else "user_updated")
                record_admin_change(s, actor, kind, {"username": [username, username], **diff}, at=self.engine.clock())
        return after

    # -- org units ------------------------------------------------------------------------
    @staticmethod
    def _unit_dict(unit: OrgUnit, parent_code: str | None) -> dict[str, Any]:
        return {"code": unit.code, "name": unit.name, "level": unit.level, "parent": parent_code, "path": unit.path}

    def list_units(self, actor: Actor, page: int = 1, per_page: int = 50) -> Page:
        """The units she may read, in tree order (by path)."""
        rights = self._rights(actor)
        page, per_page = paging(page, per_page)
        stmt = select(OrgUnit)
        visible = self._visible_units(rights)
        if visible is not None:
            stmt = stmt.where(visible)
        with self.engine.session_factory() as s:
            total = self.engine.count(s, stmt)
            units = list(s.scalars(stmt.order_by(OrgUnit.path).offset((page - 1) * per_page).limit(per_page)))
            codes = dict(s.execute(select(OrgUnit.id, OrgUnit.code).where(
                OrgUnit.id.in_([u.parent_id for u in units if u.parent_id is not None]))).all()) if units else {}
            items = [self._unit_dict(u, codes.get(u.parent_id)) for u in units]
        return Page(items, total, page, per_page)

    def get_unit(self, actor: Actor, code: str) -> dict[str, Any]:
        rights = self._rights(actor)
        with self.engine.session_factory() as s:
            stmt = select(OrgUnit).where(OrgUnit.code == code)
            visible = self._visible_units(rights)
            if visible is not None:
                stmt = stmt.where(visible)
            unit = s.scalars(stmt).first() if code and len(code) <= 64 else None
            if unit is None:
                raise NotFound("没有这个单位", f"no org unit {code!r}")
            return self._unit_dict(unit, unit.parent.code if unit.parent is not None else None)

    def create_unit(self, actor: Actor, code: str, name: str, level: str, parent: str | None = None) -> dict[str, Any]:
        self._rights(actor, change=True)
        item = {"code": code, "name": name, "level": level, "parent": parent}
        with self.engine.transaction() as s:
            if s.scalar(select(OrgUnit.id).where(OrgUnit.code == code)) is not None:
                raise Conflict("单位代码已存在", f"there is already a unit {code!r}", {"code": "exists"})
            self._load(s, {"units": [item]})
            record_admin_change(s, actor, "unit_created", {"unit": [None, code], "name": [None, name],
                                                           "parent": [None, parent]}, at=self.engine.clock())
        return self.get_unit(actor, code)

    def update_unit(self, actor: Actor, code: str, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Rename a unit, change its level, or move it under another parent (``parent: null``: a root)."""
        rights = self._rights(actor)
        before = self.get_unit(actor, code)
        if not rights.admin:
            raise Forbidden("只有管理员可以修改单位", "only an administrator may change org units")
        item = {"code": code, "name": changes.get("name") or before["name"],
                "level": changes.get("level") or before["level"],
                "parent": changes["parent"] if "parent" in changes else before["parent"]}
        with self.engine.transaction() as s:
            self._load(s, {"units": [item]})
            diff = {k: [before[k], item[k]] for k in ("name", "level", "parent") if before[k] != item[k]}
            if diff:
                record_admin_change(s, actor, "unit_updated", {"unit": [code, code], **diff}, at=self.engine.clock())
        return self.get_unit(actor, code)


def _check_password(password: str | None) -> None:
    if password is not None and not MIN_PASSWORD <= len(password) <= 200:
        raise Invalid("密码长度不符合要求", f"a password has {MIN_PASSWORD} to 200 characters",
                      {"password": f"{MIN_PASSWORD}–200 个字符 / {MIN_PASSWORD} to 200 characters"})


__all__ = ["People", "PeopleRights", "people_rights", "record_admin_change", "org_error_details",
           "MIN_PASSWORD"]


# --- people a host's actor_loader names ------------------------------------------------------

def known_actor(engine: Any, actor: Actor) -> Actor | None:
    """The person a host's ``actor_loader`` says is signed in, as Hexie knows her (host.md:
    ``engine.actor(username)`` returns a person "loaded from an org file, the people API or the
    host's actor_loader").

    A loader may build the :class:`Actor` itself (``user_id`` None) instead of asking
    ``engine.actor``: the host is the master of who she is and which roles she holds where, so
    her row is made (no password: she signs in to the host) or her name and roles brought in
    line with what the loader says, through :func:`load_org` (the org file's rules) and audited
    in the case-less chain by ``system``. Capabilities (a task's ``requires``) too, when the loader
    names any; an Actor with none keeps those set in Hexie (the people API, the org file). Someone
    Hexie has deactivated is nobody (None). Roles
    or units Hexie does not know are an :class:`Invalid` naming each one.
    """
    if actor.is_system or actor.user_id is not None:
        return actor
    wanted = {(a.role, a.unit_code) for a in actor.assignments}
    with engine.read_session() as s:
        user = s.scalars(select(User).where(User.username == actor.username)).first()
        if user is not None:
            if not user.active:
                return None
            known = engine.actor_for(s, user)
            if {(a.role, a.unit_code) for a in known.assignments} == wanted \
                    and (not actor.name or actor.name == user.name) \
                    and (not actor.capabilities or actor.capabilities == known.capabilities):
                return known
    entry = {"username": actor.username, "name": actor.name or (user.name if user is not None else actor.username),
             "roles": sorted(f"{role}@{code}" for role, code in wanted)}
    if actor.capabilities:      # the loader's, exactly (none named: those kept in Hexie stay)
        entry["capabilities"] = sorted(actor.capabilities)
    roles = engine.registry.roles
    with engine.transaction() as s:
        before = s.scalars(select(User).where(User.username == actor.username)).first()
        was = engine.actor_for(s, before) if before is not None else None
        old_roles = sorted(f"{a.role}@{a.unit_code}" for a in was.assignments) if was is not None else None
        try:
            load_org(s, {"users": [entry]}, roles=list(roles.roles), levels=list(roles.levels), now=engine.clock())
        except OrgFileError as err:
            raise Invalid("登录系统提供的人员信息有误", f"the host's actor_loader gave {actor.username!r} "
                          "roles or units Hexie does not know", org_error_details(err)) from None
        changes = {"username": [None if before is None else actor.username, actor.username],
                   "roles": [old_roles, entry["roles"]]}
        if "capabilities" in entry:
            changes["capabilities"] = [sorted(was.capabilities) if was is not None else None, entry["capabilities"]]
        record_admin_change(s, SYSTEM, "user_created" if before is None else "user_updated", changes,
                            comment="actor_loader", at=engine.clock())
        user = s.scalars(select(User).where(User.username == actor.username)).one()
        return engine.actor_for(s, user)
