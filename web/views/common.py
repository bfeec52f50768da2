"""Helpers shared by the pages: definition labels, dates, units, names, paths."""
from __future__ import annotations

from datetime import datetime, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any, Iterable, Mapping
from urllib.parse import urlsplit

from babel.numbers import format_decimal
from flask import current_app, request
from sqlalchemy import or_, select
from sqlalchemy.orm import aliased

from hexie.models import OrgUnit, ProcessVersion, User
from hexie.workflows.access import Actor
from hexie.workflows.spec import ProcessSpec

from ..state import hexie_state
from ..i18n import babel_locale, get_locale, label, t

MASK = "***"
TOMBSTONE = "[erased]"   # hexie.workflows.audit.TOMBSTONE: a value erased by retention


# ---------------------------------------------------------------- definitions

def process_spec(key: str) -> ProcessSpec | None:
    """The current definition of a process, or None."""
    return hexie_state().engine.processes.get(key)


def case_spec(view: Mapping[str, Any]) -> ProcessSpec:
    """The definition (version) a case runs on."""
    engine = hexie_state().engine
    spec, version_id, version = engine.current(view["process"])
    if view.get("version") in (None, version):
        return spec
    with engine.read_session() as s:
        vid = s.scalar(select(ProcessVersion.id).where(ProcessVersion.key == view["process"],
                                                       ProcessVersion.version == view["version"]))
        return engine.spec_of(s, vid) if vid is not None else spec


def is_confidential(key: str) -> bool:
    spec = process_spec(key)
    return bool(spec and spec.confidential)


def is_voting(key: str, state: str, spec: ProcessSpec | None = None) -> bool:
    """A step decided by several people's votes (a quorum): nobody should take it for herself,
    or it would vanish from the other voters' "available" lists."""
    spec = spec or process_spec(key)
    return bool(spec) and any(t_.quorum > 1 for t_ in spec.transitions_from(state))


def decision_fields(spec: ProcessSpec, state: str) -> list[str]:
    """The case fields a person's decision at ``state`` rests on: those the guards of the
    state's transitions read (the loan asked for, the household's income and size), in the
    definition's field order; files, long texts and sensitive fields are left out. What the
    approvals list and the case page show beside the buttons (docs/working-day.md)."""
    read: set[str] = set()
    for tr in spec.transitions_from(state):
        if tr.system_only or tr.when is None:
            continue
        read |= set(tr.when.names)
    return [name for name, fs in spec.fields.items()
            if name in read and not fs.sensitive and fs.type not in ("file", "textarea")]


def decision_figures(spec: ProcessSpec, state: str, data: Mapping[str, Any]) -> list[dict[str, str]]:
    """``[{name, label, value}]`` of :func:`decision_fields` that the case has a value for."""
    out = []
    for name in decision_fields(spec, state):
        value = (data or {}).get(name)
        if value is None or value == "" or value == [] or value == MASK:
            continue
        out.append({"name": name, "label": label(spec.fields[name].label, name),
                    "value": format_value(spec, name, value)})
    return out


def process_title(key: str) -> str:
    spec = process_spec(key)
    return label(spec.title) if spec else key


def state_label(key: str, state: str | None, spec: ProcessSpec | None = None) -> str:
    if not state:
        return ""
    spec = spec or process_spec(key)
    if spec is not None:
        try:
            return label(spec.state(state).label)
        except KeyError:
            pass
    return state


def task_label(key: str, state: str, name: str, spec: ProcessSpec | None = None) -> str:
    spec = spec or process_spec(key)
    if spec is not None:
        try:
            st = spec.state(state)
        except KeyError:
            return name
        task = st.task(name)
        if task is None or not st.parallel:
            return label(st.label)
        # parallel work items without a label of their own are named by their role
        return label(task.label) if task.label.zh != task.name else role_label(task.role)
    return name


def trigger_label(key: str, trigger: str | None, state: str | None = None,
                  spec: ProcessSpec | None = None) -> str:
    if not trigger:
        return ""
    spec = spec or process_spec(key)
    if spec is not None:
        for t_ in spec.transitions:
            if t_.trigger == trigger and (state is None or state in t_.sources):
                return label(t_.label)
        for t_ in spec.transitions:
            if t_.trigger == trigger:
                return label(t_.label)
    return trigger


def role_label(role: str | None) -> str:
    if not role:
        return ""
    spec = hexie_state().engine.registry.roles.roles.get(role)
    return label(spec.label) if spec else role


def kind_label(kind: str) -> str:
    key = f"kind.{kind}"
    text = t(key)
    return kind if text == key else text


# ---------------------------------------------------------------------- times

def local_zone() -> tzinfo:
    """The office's time zone: ``HEXIE_TIMEZONE`` of the app (default Asia/Shanghai)."""
    from hexie.workflows.engine import local_timezone
    return local_timezone(current_app.config.get("HEXIE_TIMEZONE"))


def to_local(value: datetime | None) -> datetime | None:
    """A stored (naive UTC) time in the office's time zone."""
    if value is None:
        return None
    return value.replace(tzinfo=timezone.utc).astimezone(local_zone())


def fmt_dt(value: datetime | None) -> str:
    """A stored time as the office reads it (ISO order in both languages: 2026-03-02 09:00).

    What Babel's ``format_datetime(local, "yyyy-MM-dd HH:mm")`` writes in either locale (those
    fields are numbers in every locale, the calendar Gregorian), written directly: Babel took
    0.03–0.09 ms a date (cProfile), and an inbox page shows 25 (docs/performance.md section 3)."""
    local = to_local(value)
    return f"{local.year:04d}-{local.month:02d}-{local.day:02d} {local.hour:02d}:{local.minute:02d}" if local else ""


def fmt_date(value: datetime | None) -> str:
    """The day of :func:`fmt_dt` (Babel's ``yyyy-MM-dd``, written directly)."""
    local = to_local(value)
    return f"{local.year:04d}-{local.month:02d}-{local.day:02d}" if local else ""


def due_hint(value: datetime | None) -> str:
    """"due tomorrow" / "2 days late", by calendar day in the office's time zone.

    Something due at 09:00 tomorrow is due tomorrow whatever the hour now, and a date
    seven calendar days away is "in 7 days" (not six whole 24-hour periods). Within
    today: hours late, or "due today".
    """
    if value is None:
        return ""
    now = hexie_state().engine.clock()
    days = (to_local(value).date() - to_local(now).date()).days
    if days == 0:
        if value < now:
            hours = int((now - value).total_seconds() // 3600)
            return t("due.late_hours", n=hours) if hours > 1 else t("due.late_hour")
        return t("due.today")
    if days == 1:
        return t("due.tomorrow")
    if days > 1:
        return t("due.in_days", n=days)
    return t("due.late_day") if days == -1 else t("due.late_days", n=-days)


# --------------------------------------------------------------------- values

def money(value: Any) -> str:
    """Yuan with two decimals and the locale's grouping, by Babel: ¥1,200.00; a refund's minus
    before the sign (-¥200.00), as Chinese accounts write it."""
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return str(value)
    if not amount.is_finite():
        return str(value)
    sign = "-" if amount < 0 else ""
    return sign + "¥" + format_decimal(abs(amount), "#,##0.00", locale=babel_locale())


def format_value(spec: ProcessSpec, name: str, value: Any, names: Mapping[str, str] | None = None,
                 units: Mapping[str, str] | None = None) -> str:
    """A stored field value as people read it (choice labels, yes/no, money, names)."""
    if value is None or value == "" or value == []:
        return t("none")
    if value == MASK:
        return "●●●●"
    if value == TOMBSTONE:   # erased by retention (protection.md)
        return t("guard.erased")
    fs = spec.fields.get(name)
    if fs is None:
        return str(value)
    if fs.type == "boolean":
        return t("yes") if value else t("no")
    if fs.type == "money":
        return money(value)
    if fs.type == "choice":
        return label(dict(fs.choices).get(value), str(value))
    if fs.type == "multichoice":
        items = value if isinstance(value, (list, tuple)) else [value]
        sep = ", " if get_locale() == "en" else "、"
        return sep.join(label(dict(fs.choices).get(v), str(v)) for v in items)
    if fs.type == "datetime":
        return str(value).replace("T", " ")[:16]
    if fs.type == "user" and names:
        return f"{names[value]}（{value}）" if value in names and names[value] != value else str(value)
    if fs.type == "org_unit" and units:
        return units.get(value, str(value))
    if fs.type == "file":
        return ""
    return str(value)


# ---------------------------------------------------------------- people, units

def display_names(usernames: Iterable[str | None]) -> dict[str, str]:
    """username -> name, in one query."""
    wanted = sorted({u for u in usernames if u})
    if not wanted:
        return {}
    with hexie_state().engine.read_session() as s:
        return dict(s.execute(select(User.username, User.name).where(User.username.in_(wanted))).all())


def unit_names(codes: Iterable[str]) -> dict[str, str]:
    """unit code -> name, in one query."""
    wanted = sorted(set(codes))
    if not wanted:
        return {}
    with hexie_state().engine.read_session() as s:
        return dict(s.execute(select(OrgUnit.code, OrgUnit.name).where(OrgUnit.code.in_(wanted))).all())


def unit_path(code: str) -> str | None:
    with hexie_state().engine.read_session() as s:
        return s.scalar(select(OrgUnit.path).where(OrgUnit.code == code))


def units_in_area(actor: Actor, roles: Iterable[tuple[str, str | None]] | None = None,
                  lowest_rank: int | None = None, limit: int = 2000) -> list[OrgUnit]:
    """Units in the subtrees where ``actor`` holds one of ``roles`` (all her roles by default).

    ``lowest_rank``: only units at that level rank or below (0 is the county).
    """
    if roles is None:
        paths = {a.unit_path for a in actor.assignments}
    else:
        wanted = list(roles)
        paths = {a.unit_path for a in actor.assignments
                 if any(a.role == r and (at is None or a.level == at) for r, at in wanted)}
    if not paths:
        return []
    levels = hexie_state().engine.registry.roles.levels
    with hexie_state().engine.read_session() as s:
        stmt = select(OrgUnit).where(or_(*(OrgUnit.path.startswith(p, autoescape=True) for p in sorted(paths))))
        units = list(s.scalars(stmt.order_by(OrgUnit.path).limit(limit)))
    if lowest_rank is not None:
        units = [u for u in units if u.level not in levels or levels.index(u.level) >= lowest_rank]
    return units


def indent(unit: OrgUnit) -> str:
    """A unit's name indented by its depth, for select lists."""
    depth = max(unit.path.count("/") - 2, 0)
    return "\u3000" * depth + unit.name


# ----------------------------------------------------------------------- paths

def same_site_path(url: str | None) -> str | None:
    """The path (and query) of ``url`` when it points to this site, else None."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme and parts.netloc != request.host:
        return None
    if not parts.path.startswith("/") or parts.path.startswith("//"):
        return None
    return parts.path + (f"?{parts.query}" if parts.query else "")


def template_helpers() -> dict[str, Any]:
    """Functions every template may call."""
    return {
        "process_title": process_title, "is_confidential": is_confidential, "is_voting": is_voting, "state_label": state_label, "task_label": task_label,
        "trigger_label": trigger_label, "role_label": role_label, "kind_label": kind_label,
        "fmt_dt": fmt_dt, "fmt_date": fmt_date, "due_hint": due_hint, "money": money,
        "unread_notifications": unread_notifications,
        "request_key": new_request_key,
    }


def unread_notifications() -> int:
    """The bell's number: her unread in-app notifications (once per request)."""
    from flask import g

    from hexie.workflows.notifications import unread_count
    from ..state import current_actor
    if "hexie_unread" not in g:
        actor = current_actor()
        g.hexie_unread = unread_count(hexie_state().engine, actor) if actor is not None and actor.user_id else 0
    return g.hexie_unread


def new_request_key() -> str:
    """A fresh key for one action form: the same form sent twice (a retry after a database
    blip, a second click) is answered once (WorkflowService.fire ``request_key``)."""
    import secrets
    return secrets.token_urlsafe(18)


def request_key_of(value: str | None) -> str | None:
    """A request key as the client sent it, if it is one (at most 100 printable ASCII characters)."""
    if value and len(value) <= 100 and value.isascii() and value.isprintable():
        return value
    return None


def places(key: Any, where: Any, join: tuple[Any, Any] | None = None) -> dict[Any, str]:
    """``key`` -> where its unit is, as people say it: "城关镇 东村" for a village, the name otherwise.

    ``key`` is the column to map by (``OrgUnit.code``, or ``Task.id`` with ``join=(Task, on)``),
    ``where`` selects the rows; one query.
    """
    parent = aliased(OrgUnit)
    stmt = select(key, OrgUnit.name, OrgUnit.level, parent.name)
    if join is not None:
        stmt = stmt.select_from(join[0]).join(OrgUnit, join[1])
    with hexie_state().engine.read_session() as s:
        rows = s.execute(stmt.outerjoin(parent, parent.id == OrgUnit.parent_id).where(where)).all()
    lowest = (hexie_state().engine.registry.roles.levels or ("",))[-1]
    return {k: f"{town} {name}" if level == lowest and town else name for k, name, level, town in rows}


def page_arg() -> int:
    """The ``page`` of the query string: a whole number from 1 (nonsense reads as 1)."""
    try:
        return max(1, min(int(request.args.get("page", 1)), 100_000))
    except ValueError:
        return 1

