"""The org tree and its people: loading the org file, and path helpers for the engine.

Units form a tree (county → towns → villages) stored with a materialized path of
codes, ``/county/t01/t01v01/``: a unit's subtree is every path that starts with its
own, its ancestors are the prefixes of its path. Cases and tasks keep a copy of their
unit's path (``org_path``) so that "everything in my area" is one indexed prefix
search; moving a unit rewrites those copies.

The org file (see interfaces.md)::

    units:
      - {code: county, name: 某县, level: county}
      - {code: t01, name: 城关镇, level: town, parent: county}
    users:
      - {username: wangmin, name: 王敏, password: "s3cret-pass", roles: [town_cadre@t01]}

Loading is declarative and idempotent: each listed unit gets exactly the listed name,
level and parent (no parent: a root); each listed user gets the listed name, and,
when given, password, roles (exactly those), ``active``, ``locale``, ``email`` and
``capabilities`` (a list of words such as ``sign_language``, matched by a task's
``requires:``). Nothing that the file does not list is deleted; with ``prune`` the
users it does not list are deactivated. A user deactivated, or given a new password,
loses her API tokens and sign-in sessions. The whole file is checked before anything
is written.
"""
from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from os import PathLike
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import ColumnElement, select, update
from sqlalchemy.orm import Session, selectinload

from hexie.models import Case, OrgUnit, RoleAssignment, Task, User
from hexie.models.base import PATH_LENGTH

from .auth import UNUSABLE_PASSWORD, hash_password, verify_password

CODE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
USERNAME_RE = re.compile(r"^[^\s@/]+$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
WORD_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")   # a capability: sign_language, lawyer
LOCALES = ("zh", "en")

UNIT_KEYS = {"code", "name", "level", "parent"}
USER_KEYS = {"username", "name", "password", "roles", "active", "locale", "email", "capabilities"}

#: "not given" for a user's optional keys (``None`` there means "clear it")
UNSET: Any = type("Unset", (), {"__repr__": lambda self: "UNSET", "__bool__": lambda self: False})()


class OrgFileError(ValueError):
    """The org file is invalid; ``messages`` names every problem found, by place."""

    def __init__(self, messages: Sequence[str]):
        self.messages = list(messages)
        super().__init__("\n".join(self.messages))


@dataclass
class OrgLoadResult:
    """Codes of the units and usernames of the users that a load created or changed."""

    created_units: list[str] = field(default_factory=list)
    updated_units: list[str] = field(default_factory=list)
    created_users: list[str] = field(default_factory=list)
    updated_users: list[str] = field(default_factory=list)
    #: deactivated because the file no longer lists them (``prune``)
    pruned_users: list[str] = field(default_factory=list)
    #: users whose tokens and sessions were revoked (deactivated, or a new password)
    revoked_users: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created_units or self.updated_units
                    or self.created_users or self.updated_users or self.pruned_users)

    def __str__(self) -> str:
        text = (f"units: {len(self.created_units)} created, {len(self.updated_units)} updated; "
                f"users: {len(self.created_users)} created, {len(self.updated_users)} updated")
        return text + (f", {len(self.pruned_users)} deactivated" if self.pruned_users else "")


# --- path helpers -------------------------------------------------------------------

def unit_path(code: str, parent_path: str | None = None) -> str:
    """The path of a unit with ``code`` under a parent at ``parent_path`` (None: a root)."""
    return f"{parent_path or '/'}{code}/"


def ancestor_paths(path: str) -> list[str]:
    """The paths of a unit and of every ancestor, root first.

    ``'/county/t01/t01v01/'`` → ``['/county/', '/county/t01/', '/county/t01/t01v01/']``.
    """
    codes = [c for c in path.split("/") if c]
    return ["/" + "/".join(codes[:i]) + "/" for i in range(1, len(codes) + 1)]


def town_path(path: str) -> str:
    """The path of the unit one level below the root that ``path`` lies in (its town in a
    county); the root's own path for the root itself. Reports group by it."""
    return unit_at_depth(path, 2)


def unit_at_depth(path: str, depth: int) -> str:
    """The path of ``path``'s ancestor (or itself) ``depth`` levels down from the root
    (1 the county, 2 its town, 3 its village); a unit higher up stands for itself."""
    parts = [p for p in path.split("/") if p]
    return "/" + "/".join(parts[:depth]) + "/"


def in_subtree(column: Any, path: str) -> ColumnElement[bool]:
    """SQL condition: ``column`` (an org path) lies in the subtree at ``path``.

    A prefix LIKE with ``_`` and ``%`` escaped (codes may contain ``_``); it can use
    the path indexes on both databases.
    """
    return column.startswith(path, autoescape=True)


def unit_by_code(session: Session, code: str) -> OrgUnit | None:
    """The unit with ``code``, or None."""
    return session.scalar(select(OrgUnit).where(OrgUnit.code == code))


def parse_role(text: str) -> tuple[str, str] | None:
    """``'town_cadre@t01'`` → ``('town_cadre', 't01')``; None when malformed."""
    role, at, unit = text.partition("@")
    if not at or not role.strip() or not unit.strip() or "@" in unit:
        return None
    return role.strip(), unit.strip()


# --- checking -----------------------------------------------------------------------

@dataclass
class _UnitItem:
    index: int
    code: str
    name: str | None      # None only in a file with errors (never written)
    level: str | None
    parent: str | None


@dataclass
class _UserItem:
    index: int
    username: str
    name: str | None      # None only in a file with errors (never written)
    password: str | None
    roles: list[tuple[str, str]] | None
    active: bool | None
    locale: str | None
    email: Any = UNSET               # UNSET: not given; None: clear it
    capabilities: Any = UNSET        # UNSET: not given; else the list (exactly those)


class _Checker:
    """Collects every problem of an org file (a ``where: what`` message each)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}" if where else message)

    def items(self, data: Mapping[str, Any], key: str) -> list[tuple[int, Mapping[str, Any]]]:
        value = data.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(key, "expected a list")
            return []
        out = []
        for i, item in enumerate(value):
            if isinstance(item, Mapping):
                out.append((i, item))
            else:
                self.error(f"{key}[{i}]", "expected a mapping")
        return out

    def keys(self, where: str, item: Mapping[str, Any], allowed: set[str], required: Iterable[str]) -> bool:
        ok = True
        for k in item:
            if k not in allowed:
                self.error(where, f"unknown key '{k}'")
        for k in required:
            if item.get(k) is None:
                self.error(where, f"missing key '{k}'")
                ok = False
        return ok

    def text(self, where: str, value: Any, max_length: int, pattern: re.Pattern[str] | None = None,
             allow_int: bool = False) -> str | None:
        if allow_int and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not value.strip():
            self.error(where, "expected a non-empty text")
            return None
        value = value.strip()
        if len(value) > max_length:
            self.error(where, f"longer than {max_length} characters")
            return None
        if pattern is not None and not pattern.match(value):
            self.error(where, f"invalid value '{value}'")
            return None
        return value


def _check_units(chk: _Checker, data: Mapping[str, Any]) -> list[_UnitItem]:
    units: list[_UnitItem] = []
    seen: dict[str, int] = {}
    for i, item in chk.items(data, "units"):
        where = f"units[{i}]"
        chk.keys(where, item, UNIT_KEYS, ("code", "name", "level"))
        code = name = level = None
        if item.get("code") is not None:
            code = chk.text(f"{where}.code", item["code"], 64, CODE_RE, allow_int=True)
        if item.get("name") is not None:
            name = chk.text(f"{where}.name", item["name"], 200)
        if item.get("level") is not None:
            level = chk.text(f"{where}.level", item["level"], 32)
        parent = None
        if item.get("parent") is not None:
            parent = chk.text(f"{where}.parent", item["parent"], 64, allow_int=True)
        if code is not None and code in seen:
            chk.error(f"{where}.code", f"duplicate code '{code}' (also units[{seen[code]}])")
            continue
        if code is not None:
            seen[code] = i
        if code:
            # Kept even when incomplete, so that units referring to it are not
            # reported as referring to an unknown one.
            units.append(_UnitItem(i, code, name, level, parent))
    return units


def _check_users(chk: _Checker, data: Mapping[str, Any]
                 ) -> tuple[list[_UserItem], list[tuple[str, str, str]]]:
    """The well-formed users, and (where, role, unit code) of every well-formed role."""
    users: list[_UserItem] = []
    places: list[tuple[str, str, str]] = []
    seen: dict[str, int] = {}
    for i, item in chk.items(data, "users"):
        where = f"users[{i}]"
        chk.keys(where, item, USER_KEYS, ("username", "name"))
        username = name = password = locale = None
        if item.get("username") is not None:
            username = chk.text(f"{where}.username", item["username"], 80, USERNAME_RE, allow_int=True)
        if item.get("name") is not None:
            name = chk.text(f"{where}.name", item["name"], 200)
        if item.get("password") is not None:
            password = item["password"]
            if isinstance(password, (int, float)) and not isinstance(password, bool):
                password = str(password)  # YAML reads `password: 123456` as a number
            if not isinstance(password, str) or not password:
                chk.error(f"{where}.password", "expected a non-empty text")
                password = None
        if item.get("locale") is not None:
            locale = chk.text(f"{where}.locale", item["locale"], 8)
            if locale is not None and locale not in LOCALES:
                chk.error(f"{where}.locale", f"expected one of {', '.join(LOCALES)}")
                locale = None
        email: Any = UNSET
        if "email" in item:
            email = None
            if item["email"] is not None and item["email"] != "":
                email = chk.text(f"{where}.email", item["email"], 254, EMAIL_RE)
        capabilities: Any = UNSET
        if "capabilities" in item:
            raw_caps = item["capabilities"] if item["capabilities"] is not None else []
            if not isinstance(raw_caps, list):
                chk.error(f"{where}.capabilities", "expected a list of words")
            else:
                capabilities = []
                for j, word in enumerate(raw_caps):
                    word = chk.text(f"{where}.capabilities[{j}]", word, 64, WORD_RE)
                    if word is not None and word not in capabilities:
                        capabilities.append(word)
        active = item.get("active")
        if active is not None and not isinstance(active, bool):
            chk.error(f"{where}.active", "expected true or false")
            active = None
        roles: list[tuple[str, str]] | None = None
        if "roles" in item:
            roles = []
            raw = item["roles"] if item["roles"] is not None else []
            if not isinstance(raw, list):
                chk.error(f"{where}.roles", "expected a list of 'role@unit'")
            else:
                for j, text in enumerate(raw):
                    parsed = parse_role(text) if isinstance(text, str) else None
                    if parsed is None:
                        chk.error(f"{where}.roles[{j}]", f"expected 'role@unit', got {text!r}")
                    else:
                        places.append((f"{where}.roles[{j}]", *parsed))
                        if parsed not in roles:
                            roles.append(parsed)
        if username is not None and username in seen:
            chk.error(f"{where}.username", f"duplicate username '{username}' (also users[{seen[username]}])")
            continue
        if username is not None:
            seen[username] = i
        if username:
            users.append(_UserItem(i, username, name, password, roles, active, locale, email, capabilities))
    return users, places


# --- loading ------------------------------------------------------------------------

def load_org(session: Session, data: Mapping[str, Any], roles: Collection[str] | None = None,
             levels: Sequence[str] | None = None, prune: bool = False,
             now: datetime | None = None) -> OrgLoadResult:
    """Create or update org units and users from an org file's content.

    ``roles`` (the known role keys) and ``levels`` (the org levels, top first), when
    given, are checked too. ``prune``: every active user the file does not list is
    deactivated (the file must then have a ``users`` list). A user deactivated, or given a
    new password, loses every API token and sign-in session (:func:`hexie.workflows.tokens.revoke_all`).
    Raises :class:`OrgFileError` listing every problem, and then writes nothing. Flushes,
    but does not commit: the caller owns the transaction.
    """
    chk = _Checker()
    if not isinstance(data, Mapping):
        raise OrgFileError(["expected a mapping with 'units' and 'users'"])
    for key in data:
        if key not in ("units", "users"):
            chk.error("", f"unknown key '{key}'")
    if prune and not isinstance(data.get("users"), list):
        chk.error("users", "--prune needs the list of every user (a file without 'users' would deactivate everyone)")
    file_units = _check_units(chk, data)
    file_users, role_places = _check_users(chk, data)

    # The tree as it will be: the database's units, overridden by the file's.
    existing = {u.code: u for u in session.scalars(select(OrgUnit))}
    by_id = {u.id: u for u in existing.values()}
    parent_of: dict[str, str | None] = {
        code: (by_id[u.parent_id].code if u.parent_id is not None else None)
        for code, u in existing.items()}
    level_of = {code: u.level for code, u in existing.items()}
    for item in file_units:
        parent_of[item.code] = item.parent
        level_of[item.code] = item.level

    rank = {name: i for i, name in enumerate(levels)} if levels is not None else None
    for item in file_units:
        where = f"units[{item.index}]"
        if rank is not None and item.level is not None and item.level not in rank:
            chk.error(f"{where}.level", f"unknown level '{item.level}'")
        if item.parent is None:
            continue
        if item.parent not in parent_of:
            chk.error(f"{where}.parent", f"unknown unit '{item.parent}'")
            continue
        parent_level = level_of[item.parent]
        if rank is not None and item.parent != item.code and item.level in rank \
                and parent_level in rank and rank[item.level] <= rank[parent_level]:
            chk.error(f"{where}.level", f"'{item.level}' is not below its parent's level '{parent_level}'")

    # Cycles (a → b → a), each reported once, at the first unit of the file on it.
    on_reported_cycle: set[str] = set()
    for item in file_units:
        trail = [item.code]
        code = parent_of.get(item.code)
        while code is not None and code in parent_of and code not in trail:
            trail.append(code)
            code = parent_of[code]
        if code is not None and code in trail and not on_reported_cycle.intersection(trail):
            cycle = trail[trail.index(code):] + [code]
            on_reported_cycle.update(cycle)
            chk.error(f"units[{item.index}].parent", "cycle " + " -> ".join(cycle))

    paths: dict[str, str] = {}
    if not chk.errors:
        paths = _paths(parent_of)
        for item in file_units:
            if len(paths[item.code]) > PATH_LENGTH:
                chk.error(f"units[{item.index}]", f"path longer than {PATH_LENGTH} characters")

    for where, role, code in role_places:
        if roles is not None and role not in roles:
            chk.error(where, f"unknown role '{role}'")
        if code not in parent_of:
            chk.error(where, f"unknown unit '{code}'")

    if chk.errors:
        raise OrgFileError(chk.errors)

    result = OrgLoadResult()
    units = _write_units(session, file_units, existing, parent_of, paths, result)
    _write_users(session, file_users, units, result)
    if prune:
        _prune_users(session, {u.username for u in file_users}, result)
    session.flush()
    if result.revoked_users:
        from .tokens import revoke_all
        names = result.revoked_users
        for start in range(0, len(names), 500):
            for user_id in session.scalars(select(User.id).where(User.username.in_(names[start:start + 500]))):
                revoke_all(session, user_id, now)
    return result


def load_org_file(session: Session, path: str | PathLike[str], roles: Collection[str] | None = None,
                  levels: Sequence[str] | None = None, prune: bool = False,
                  now: datetime | None = None) -> OrgLoadResult:
    """:func:`load_org` on a YAML file; a file that does not parse is an :class:`OrgFileError`."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise OrgFileError([f"{path}: {exc}"]) from exc
    return load_org(session, data if data is not None else {}, roles=roles, levels=levels, prune=prune, now=now)


def _prune_users(session: Session, listed: set[str], result: OrgLoadResult) -> None:
    """Deactivate every active user not in ``listed`` (their tasks stay, to be reassigned)."""
    for user in session.scalars(select(User).where(User.active.is_(True)).order_by(User.username)):
        if user.username not in listed:
            user.active = False
            result.pruned_users.append(user.username)
            result.revoked_users.append(user.username)


def _paths(parent_of: Mapping[str, str | None]) -> dict[str, str]:
    """Every unit's path, from the (acyclic) parent map."""
    paths: dict[str, str] = {}
    for start in parent_of:
        chain = []
        code: str | None = start
        while code is not None and code not in paths:
            chain.append(code)
            code = parent_of[code]
        for c in reversed(chain):
            parent = parent_of[c]
            paths[c] = unit_path(c, paths[parent] if parent is not None else None)
    return paths


def _write_units(session: Session, file_units: list[_UnitItem], existing: dict[str, OrgUnit],
                 parent_of: Mapping[str, str | None], paths: Mapping[str, str],
                 result: OrgLoadResult) -> dict[str, OrgUnit]:
    units = dict(existing)
    for item in file_units:
        unit = units.get(item.code)
        if unit is None:
            unit = OrgUnit(code=item.code, name=item.name, level=item.level, path=paths[item.code])
            session.add(unit)
            units[item.code] = unit
            result.created_units.append(item.code)
        elif unit.name != item.name or unit.level != item.level:
            unit.name, unit.level = item.name, item.level
            result.updated_units.append(item.code)
    for item in file_units:
        unit = units[item.code]
        parent = units[item.parent] if item.parent is not None else None
        if unit.parent is not parent:
            unit.parent = parent
            if item.code not in result.updated_units and item.code not in result.created_units:
                result.updated_units.append(item.code)

    # A move re-paths the unit's whole subtree, and the copies kept by cases and tasks.
    moved: list[OrgUnit] = []
    for code, unit in units.items():
        if unit.path != paths[code]:
            unit.path = paths[code]
            moved.append(unit)
            if code not in result.updated_units:
                result.updated_units.append(code)
    if moved:
        session.flush()
        for unit in moved:
            for table in (Case, Task):
                session.execute(update(table).where(table.org_unit_id == unit.id)
                                .values(org_path=unit.path))
    session.flush()  # the users' role assignments need the new units' ids
    return units


def _write_users(session: Session, file_users: list[_UserItem], units: Mapping[str, OrgUnit],
                 result: OrgLoadResult) -> None:
    if not file_users:
        return
    existing: dict[str, User] = {}
    names = [u.username for u in file_users]
    for start in range(0, len(names), 500):
        chunk = names[start:start + 500]
        query = (select(User).where(User.username.in_(chunk))
                 .options(selectinload(User.role_assignments)))
        existing.update((u.username, u) for u in session.scalars(query))

    for item in file_users:
        user = existing.get(item.username)
        if user is None:
            user = User(
                username=item.username, name=item.name,
                password_hash=hash_password(item.password) if item.password else UNUSABLE_PASSWORD,
                active=item.active if item.active is not None else True,
                locale=item.locale or "zh", locale_chosen=item.locale is not None,
                email=item.email or None,
                capabilities=list(item.capabilities) if item.capabilities else None,
                role_assignments=[RoleAssignment(role=r, org_unit=units[c]) for r, c in item.roles or ()],
            )
            session.add(user)
            result.created_users.append(item.username)
            continue

        changed = False
        if user.name != item.name:
            user.name, changed = item.name, True
        if item.active is not None and user.active != item.active:
            user.active, changed = item.active, True
            if not item.active:
                result.revoked_users.append(item.username)
        if item.locale is not None and (user.locale != item.locale or not user.locale_chosen):
            user.locale, user.locale_chosen, changed = item.locale, True, True
        if item.email is not UNSET and user.email != item.email:
            user.email, changed = item.email, True
        if item.capabilities is not UNSET and (user.capabilities or []) != item.capabilities:
            user.capabilities, changed = (list(item.capabilities) or None), True
        # Verify before re-hashing: a fresh salt would change the row on every load.
        if item.password is not None and not verify_password(user.password_hash, item.password):
            user.password_hash, changed = hash_password(item.password), True
            if item.username not in result.revoked_users:
                result.revoked_users.append(item.username)
        if item.roles is not None:
            wanted = {(r, units[c].id) for r, c in item.roles}
            have = {(a.role, a.org_unit_id): a for a in user.role_assignments}
            for key, assignment in have.items():
                if key not in wanted:
                    user.role_assignments.remove(assignment)
                    changed = True
            for role, code in item.roles:
                if (role, units[code].id) not in have:
                    user.role_assignments.append(RoleAssignment(role=role, org_unit=units[code]))
                    changed = True
        if changed:
            result.updated_users.append(item.username)
