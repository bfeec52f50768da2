"""Notifications: telling people that work arrived, is due, was escalated, or that a case closed.

A notification is written in the transaction of the action that causes it (:func:`notify`):
one ``hexie_notifications`` row per person (her notification centre, when she keeps the
``in_app`` channel for that kind) and one outbox row per other channel she chose
(e-mail, WeCom, ...; :mod:`hexie.workflows.channels` sends them after the commit). Only
people who may see the case are told (the Access rules of :mod:`hexie.workflows.access`,
through :func:`hexie.workflows.queries.can_see`); the person acting is not told of her own
action. The text of a confidential case names no one: it calls the case by its code.

Kinds (interfaces.md): ``task_offered``, ``task_allocated``, ``task_returned`` (a case sent
back to a step it was at before: the reopened task's people), ``task_escalated``,
``due_soon``, ``overdue`` (the worker's :func:`notify_due`), ``mention``, ``consult``
(:func:`notify` for the features that produce them), ``case_closed`` (the case's owner and
the people who worked it).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone, tzinfo
from types import SimpleNamespace
from typing import Any, Iterable, Mapping

from sqlalchemy import and_, bindparam, exists, func, insert, or_, select, text, update
from sqlalchemy.orm import Session

from hexie.models import Notification, NotificationPreference, OrgUnit, RoleAssignment, Task, User, fast

from . import outbox
from .access import Actor, Assignment, may_take
from .errors import Invalid, NotFound
from .org import ancestor_paths

KINDS = ("task_offered", "task_allocated", "task_returned", "task_escalated", "due_soon", "overdue", "mention",
         "consult", "case_closed", "referral_declined")
IN_APP, EMAIL = "in_app", "email"
DEFAULT_CHANNELS = (IN_APP, EMAIL)
DUE_SOON = timedelta(days=1)            # due_soon: this long before a task's due date
MAX_RECIPIENTS = 200                    # a role held by more people than this is told no further
_DIGEST = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])$")
_EMAIL = re.compile(r"^[^@\s<>\"']{1,64}@[A-Za-z0-9.-]{1,253}$")

_NOTIFICATIONS = Notification.__table__
_INSERT_NOTIFICATION = insert(_NOTIFICATIONS)
_INSERT_NOTIFICATIONS = insert(_NOTIFICATIONS).returning(_NOTIFICATIONS.c.id, sort_by_parameter_order=True)
_F_INSERT_NOTIFICATION = fast.Statement(insert(_NOTIFICATIONS))
_F_INSERT_NOTIFICATION_ID = fast.Statement(insert(_NOTIFICATIONS).returning(_NOTIFICATIONS.c.id))

#: kind -> (zh, en) with {case}, {task}, {who}, {due}, {note}
TEXTS: dict[str, tuple[str, str]] = {
    "task_offered": ("新的待办：{case} · {task}", "New work you may take: {task} · {case}"),
    "task_allocated": ("任务已交给您办理：{case} · {task}", "A task was given to you: {task} · {case}"),
    "task_returned": ("案件退回修改：{case} · {task}", "Sent back for revision: {task} · {case}"),
    "task_escalated": ("任务逾期已上报给您：{case} · {task}", "An overdue task was escalated to you: {task} · {case}"),
    "due_soon": ("任务即将到期（{due}）：{case} · {task}", "Task due soon ({due}): {task} · {case}"),
    "overdue": ("任务已逾期（{due}）：{case} · {task}", "Task overdue (since {due}): {task} · {case}"),
    "mention": ("{who} 在案件中提到了您：{case}{note}", "{who} mentioned you on {case}{note}"),
    "consult": ("{who} 请您提供意见：{case}{note}", "{who} asks for your advice on {case}{note}"),
    "case_closed": ("案件已办结：{case}（{state}）", "Case closed: {case} ({state})"),
    "referral_declined": ("{who} 拒绝了转介，工作退回给您：{case} · {task}{note}",
                          "{who} declined the referral; the work is back with you: {task} · {case}{note}"),
}
KIND_LABELS: dict[str, tuple[str, str]] = {
    "task_offered": ("可领取的新任务", "New work to take"),
    "task_allocated": ("交给我的任务", "Work given to me"),
    "task_returned": ("退回修改", "Sent back for revision"),
    "task_escalated": ("逾期上报", "Escalations"),
    "due_soon": ("即将到期", "Due soon"),
    "overdue": ("已逾期", "Overdue"),
    "mention": ("提到我", "Mentions"),
    "consult": ("征求意见", "Consultations"),
    "case_closed": ("案件办结", "Cases closed"),
    "referral_declined": ("转介被拒绝", "Referrals declined"),
}


# ------------------------------------------------------------------ settings
def next_digest(digest: str, now: datetime, zone: tzinfo) -> datetime:
    """The next moment (naive UTC, after ``now``) when the office's clock (``zone``: the engine's
    ``timezone``, ``HEXIE_TIMEZONE``) shows ``digest`` (HH:MM)."""
    hour, minute = map(int, digest.split(":"))
    local_now = now.replace(tzinfo=timezone.utc).astimezone(zone)
    moment = datetime.combine(local_now.date(), time(hour, minute), zone)
    if moment <= local_now:
        moment = datetime.combine(local_now.date() + timedelta(days=1), time(hour, minute), zone)
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


@dataclass
class Preferences:
    """How one person wants to be told (``GET/PUT /me/preferences``)."""

    email: str | None = None
    channels: dict[str, list[str]] = field(default_factory=dict)
    digest: str | None = None

    def channels_for(self, kind: str) -> list[str]:
        return list(self.channels.get(kind, DEFAULT_CHANNELS))

    def view(self) -> dict[str, Any]:
        return {"email": self.email, "channels": {k: self.channels_for(k) for k in KINDS}, "digest": self.digest}


_USERS = User.__table__
#: what a notification needs of a person (her address too, where the people records carry one)
_PERSON = [c for c in (_USERS.c.id, _USERS.c.username, _USERS.c.name, _USERS.c.locale, _USERS.c.get("email"),
                                _USERS.c.get("capabilities"))
           if c is not None]
_PREFS = NotificationPreference.__table__


def _people(s: Session, ids: list[int]) -> dict[int, Any]:
    """Active people by id, as plain rows."""
    return {r.id: r for r in s.connection().execute(
        select(*_PERSON).where(_USERS.c.id.in_(ids), _USERS.c.active.is_(True)))}


# What :func:`notify` reads of the people it tells, at the driver (:mod:`hexie.models.fast`), in one
# round trip on PostgreSQL: statements for n people (n bound parameters, built once per n).
_BY_COUNT: dict[tuple[str, int], fast.Statement] = {}
_RA, _OU = RoleAssignment.__table__, OrgUnit.__table__


def _for(kind: str, n: int) -> fast.Statement:
    found = _BY_COUNT.get((kind, n))
    if found is None:
        ids = [bindparam(f"u{i}") for i in range(n)]
        if kind == "people":   # with her preferences, where she set any
            stmt = (select(*_PERSON, *[c.label(f"pref_{c.name}") for c in _PREFS.c])
                    .outerjoin(_PREFS, _PREFS.c.user_id == _USERS.c.id)
                    .where(_USERS.c.id.in_(ids), _USERS.c.active.is_(True)))
        elif kind == "roles":
            stmt = (select(_RA.c.user_id, _RA.c.role, _OU.c.code, _OU.c.path, _OU.c.level)
                    .join(_OU, _OU.c.id == _RA.c.org_unit_id).where(_RA.c.user_id.in_(ids)))
        else:   # kind "holders": n ancestor paths
            paths = [bindparam(f"p{i}") for i in range(n)]
            stmt = (select(_USERS.c.id).join(_RA, _RA.c.user_id == _USERS.c.id).join(_OU, _OU.c.id == _RA.c.org_unit_id)
                    .where(_RA.c.role == bindparam("role"), _OU.c.path.in_(paths), _USERS.c.active.is_(True),
                           or_(bindparam("level", type_=_OU.c.level.type).is_(None), _OU.c.level == bindparam("level")))
                    .distinct().order_by(_USERS.c.id).limit(MAX_RECIPIENTS))
        found = _BY_COUNT[(kind, n)] = fast.Statement(stmt)
    return found


_NEXT_IDS: dict[str, fast.Statement] = {}


def _next_ids(table: str) -> fast.Statement:
    """PostgreSQL: ``n`` new ids of ``table``'s sequence (numbers left unused are gaps, as after a rollback)."""
    found = _NEXT_IDS.get(table)
    if found is None:
        found = _NEXT_IDS[table] = fast.Statement(text(
            f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM generate_series(1, :n)")
            .bindparams(bindparam("n")).columns())
    return found


def holders_query(role: str | None, org_path: str, at_level: str | None = None) -> tuple[Any, dict, bool] | None:
    """:func:`holders` as a statement for :func:`hexie.models.fast.run_many` (None: nobody to ask for)."""
    if not role:
        return None
    paths = ancestor_paths(org_path)
    return (_for("holders", len(paths)), {"role": role, "level": at_level or None,
                                          **{f"p{i}": p for i, p in enumerate(paths)}}, False)


# What :func:`notify` reads of everyone a task is offered to, with the holders as a subquery (one
# statement fewer, and the reads can travel with the new task's INSERT: :func:`offered_reads`).
_OFFERED: dict[tuple[str, int], fast.Statement] = {}


def _offered(kind: str, n: int) -> fast.Statement:
    """The statement ``kind`` ("people", "roles", or a table name: its next ids, one per person
    told, times ``:k``) over the holders of ``:role`` at ``n`` ancestor paths, but ``:skip``."""
    found = _OFFERED.get((kind, n))
    if found is None:
        held = _for("holders", n).stmt.subquery()
        skip = bindparam("skip")
        if kind == "people":
            stmt = (select(*_PERSON, *[c.label(f"pref_{c.name}") for c in _PREFS.c])
                    .outerjoin(_PREFS, _PREFS.c.user_id == _USERS.c.id)
                    .where(_USERS.c.id.in_(select(held.c.id)), _USERS.c.id != skip, _USERS.c.active.is_(True))
                    .order_by(_USERS.c.id))
        elif kind == "roles":
            stmt = (select(_RA.c.user_id, _RA.c.role, _OU.c.code, _OU.c.path, _OU.c.level)
                    .join(_OU, _OU.c.id == _RA.c.org_unit_id)
                    .where(_RA.c.user_id.in_(select(held.c.id)), _RA.c.user_id != skip))
        else:   # PostgreSQL: ids of table ``kind``, as many as the rows notify() may write
            told = select(func.count()).select_from(held).where(held.c.id != skip).scalar_subquery()
            stmt = (select(func.nextval(func.pg_get_serial_sequence(kind, "id")))
                    .select_from(func.generate_series(1, told * bindparam("k"))))
        found = _OFFERED[(kind, n)] = fast.Statement(stmt)
    return found


def offered_reads(s: Session, engine: Any, role: str | None, org_path: str, at_level: str | None,
                  actor: Actor | None) -> list[tuple[Any, dict, bool]] | None:
    """What :func:`notify` reads to tell everyone a task of ``role`` at ``org_path`` is offered
    to (:func:`task_people`), as statements for :func:`hexie.models.fast.run_many`: the caller
    sends them with its own (the new task's INSERT) and hands the answers to ``notify(read=…)``.
    The same people, in the same order, as ``notify(task_people(…))`` (None: no role, nobody)."""
    from .channels import writable_channels
    query = holders_query(role, org_path, at_level)
    if query is None:
        return None
    n = len(query[1]) - 2
    params = {**query[1], "skip": actor.user_id if actor is not None and not actor.is_system and actor.user_id else 0}
    reads = [(_offered("people", n), params, False), (_offered("roles", n), params, False)]
    if s.get_bind().dialect.name == "postgresql":
        reads.append((_offered(_NOTIFICATIONS.name, n), {**params, "k": 1}, False))
        outside = writable_channels(engine)
        if outside:
            reads.append((_offered(outbox.OUTBOX.name, n), {**params, "k": len(outside)}, False))
    return reads


def _preferences(s: Session, users: Iterable[Any], rows: Iterable[Any] | None = None) -> dict[int, Preferences]:
    users = list(users)
    if rows is None:
        rows = s.connection().execute(select(_PREFS).where(_PREFS.c.user_id.in_([u.id for u in users]))) \
            if users else ()
    rows = {p.user_id: p for p in rows}
    out = {}
    for user in users:
        row = rows.get(user.id)
        default_email = getattr(user, "email", None)   # the people API's address, where there is one
        out[user.id] = Preferences(email=(row.email if row and row.email else default_email),
                                   channels=dict(row.channels or {}) if row else {},
                                   digest=row.digest if row else None)
    return out


def get_preferences(engine: Any, actor: Actor) -> dict[str, Any]:
    """The caller's preferences (defaults where she set none)."""
    with engine.read_session() as s:
        user = _me(s, actor)
        return _preferences(s, [user])[user.id].view()


def set_preferences(engine: Any, actor: Actor, body: Mapping[str, Any]) -> dict[str, Any]:
    """Replace what ``body`` names of the caller's preferences; every error is named (422)."""
    from .channels import channel_names
    errors: dict[str, str] = {}
    known = channel_names()
    with engine.session_factory() as s, s.begin():
        user = _me(s, actor)
        current = _preferences(s, [user])[user.id]
        email, channels, digest = current.email, dict(current.channels), current.digest
        if "email" in body:
            email = (body["email"] or "").strip() or None
            if email is not None and not _EMAIL.match(email):
                errors["email"] = "电子邮件地址无效 / not an e-mail address"
        if "channels" in body:
            given = body["channels"]
            if not isinstance(given, Mapping):
                errors["channels"] = "应为对象 / must be an object"
            else:
                for kind, names in given.items():
                    if kind not in KINDS:
                        errors[f"channels.{kind}"] = f"未知的通知类别 / unknown kind (one of {', '.join(KINDS)})"
                    elif not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                        errors[f"channels.{kind}"] = "应为渠道列表 / must be a list of channels"
                    elif set(names) - set(known):
                        errors[f"channels.{kind}"] = (f"未知的渠道 / unknown channel "
                                                      f"{', '.join(sorted(set(names) - set(known)))}")
                    else:
                        channels[kind] = list(dict.fromkeys(names))
        if "digest" in body:
            digest = body["digest"] or None
            if digest is not None and (not isinstance(digest, str) or not _DIGEST.match(digest)):
                errors["digest"] = "应为 HH:MM 或 null / must be HH:MM or null"
        if errors:
            raise Invalid("通知设置有误", "the preferences have errors", errors)
        row = s.get(NotificationPreference, user.id)
        if row is None:
            row = NotificationPreference(user_id=user.id)
            s.add(row)
        row.email, row.channels, row.digest, row.updated_at = email, channels, digest, engine.clock()
        return Preferences(email, channels, digest).view()


def _me(s: Session, actor: Actor) -> User:
    user = s.get(User, actor.user_id) if actor.user_id else None
    if user is None:
        raise NotFound("没有这个用户", "no such user")
    return user


# ------------------------------------------------------------------- writing
def case_code(case: Any) -> str:
    """How a notification names a case: its business key, else its number."""
    return str(getattr(case, "business_key", None) or f"#{case.id}")


def _case_texts(spec: Any, case: Any) -> tuple[str, str]:
    code = case_code(case)
    zh, en = f"{spec.title.zh} {code}", f"{spec.title.en} {code}"
    if not case.confidential and not spec.confidential and getattr(case, "subject", None):
        zh, en = f"{zh}（{case.subject}）", f"{en} ({case.subject})"
    return zh, en


def _task_texts(spec: Any, task: Any) -> tuple[str, str]:
    if task is None:
        return "", ""
    try:
        state = spec.state(task.state)
        label = state.task(task.name).label if len(state.tasks) > 1 else state.label
        return label.zh, label.en
    except (KeyError, AttributeError, StopIteration, ValueError):
        return task.name, task.name


def link_of(case_id: int | None, task_id: int | None = None) -> str | None:
    """The path of the case page (the task's place on it): the e-mail's link adds the site's address."""
    if case_id is None:
        return None
    return f"/cases/{case_id}" + (f"#task-{task_id}" if task_id else "")


def _actors(s: Session, users: Iterable[Any], rows: Iterable[Any] | None = None) -> dict[int, Actor]:
    users = {u.id: u for u in users}
    if rows is None:
        rows = s.execute(select(RoleAssignment.user_id, RoleAssignment.role, OrgUnit.code, OrgUnit.path,
                                OrgUnit.level).join(OrgUnit, OrgUnit.id == RoleAssignment.org_unit_id)
                         .where(RoleAssignment.user_id.in_(list(users)))).all() if users else []
    held: dict[int, list[Assignment]] = {uid: [] for uid in users}
    for uid, role, code, path, level in rows:
        if uid in held:
            held[uid].append(Assignment(role, code, path, level))
    return {uid: Actor(username=u.username, user_id=u.id, name=u.name, locale=u.locale or "zh",
                       assignments=tuple(held[uid]), capabilities=frozenset(getattr(u, "capabilities", None) or ()))
            for uid, u in users.items()}


def holders(s: Session, role: str | None, org_path: str, at_level: str | None = None) -> list[int]:
    """Active people holding ``role`` at the unit ``org_path`` or above (at that level, with ``at_level``)."""
    query = holders_query(role, org_path, at_level or None)
    if query is None:
        return []
    return [row[0] for row in fast.run(s, query[0], query[1]).rows]


def task_people(s: Session, task: Any) -> list[int]:
    """Who a task concerns: its holder, else everyone it is offered to."""
    if getattr(task, "assignee_id", None):
        return [task.assignee_id]
    return holders(s, task.role, task.org_path, task.at_level)


def notify(s: Session, engine: Any, kind: str, user_ids: Iterable[int | None], case: Any, *,
           task: Any = None, actor: Actor | None = None, note: str | None = None,
           state: str | None = None, read: list[Any] | None = None) -> list[int]:
    """Tell these people about ``case`` (and ``task``) in the caller's transaction; returns the notification ids.

    ``case`` is the case row (record); ``actor`` the person acting (never told of her own
    action); ``note`` a short text for mentions and consultations (left out on a
    confidential case). Those who may not see the case are skipped. ``read``: instead of
    ``user_ids``, the answers to :func:`offered_reads` (everyone a task is offered to).
    """
    from .channels import writable_channels
    from .queries import can_see
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r}")
    outside = writable_channels(engine)
    postgres = s.get_bind().dialect.name == "postgresql"
    if read is None:
        skip = actor.user_id if actor is not None and not actor.is_system else None
        wanted = [u for u in dict.fromkeys(user_ids) if u is not None and u != skip]
        if not wanted:
            return []
        # the people, their roles and preferences (and, on PostgreSQL, the ids of the rows to write:
        # then the rows travel with the transaction's next round trip): one round trip
        ids = {f"u{i}": u for i, u in enumerate(wanted)}
        n = len(wanted)
        reads = [(_for("people", n), ids, False), (_for("roles", n), ids, False)]
        if postgres:
            reads.append((_next_ids(_NOTIFICATIONS.name), {"n": n}, False))
            if outside:
                reads.append((_next_ids(outbox.OUTBOX.name), {"n": n * len(outside)}, False))
        results = fast.run_many(s, reads)
        people = results[0].mappings()
    else:
        results = read
        people = results[0].mappings()
        wanted = [r["id"] for r in people]
    users = {r["id"]: SimpleNamespace(**{k: v for k, v in r.items() if not k.startswith("pref_")}) for r in people}
    if not users:
        return []
    actors = _actors(s, users.values(), results[1].rows)
    prefs = _preferences(s, users.values(), [SimpleNamespace(**{k[5:]: v for k, v in r.items() if k.startswith("pref_")})
                                             for r in people if r["pref_user_id"] is not None])
    new_ids = ([r[0] for r in results[2].rows], [r[0] for r in results[3].rows] if outside else []) \
        if postgres else None
    spec = engine.spec_of(s, case.process_version_id)
    now = engine.clock()
    confidential = bool(case.confidential or spec.confidential)
    case_zh, case_en = _case_texts(spec, case)
    task_zh, task_en = _task_texts(spec, task)
    due = getattr(task, "due_at", None)
    due_text = _local_text(due, engine.timezone) if due else ""
    who = (actor.name or actor.username) if actor is not None and not actor.is_system else "系统"
    note_zh = note_en = ""
    if note and not confidential:
        short = note.strip().replace("\n", " ")[:80]
        note_zh, note_en = f"：{short}", f": {short}"
    state_zh = state_en = state or ""
    if state:
        try:
            label = spec.state(state).label
            state_zh, state_en = label.zh, label.en
        except (KeyError, AttributeError, ValueError):
            pass
    zh_t, en_t = TEXTS[kind]
    zh = zh_t.format(case=case_zh, task=task_zh, due=due_text, who=who, note=note_zh, state=state_zh)
    en = en_t.format(case=case_en, task=task_en, due=due_text, who=who if who != "系统" else "The system",
                     note=note_en, state=state_en)
    link = link_of(case.id, getattr(task, "id", None))
    task_id = getattr(task, "id", None)
    told: list[tuple[Any, Preferences, list[tuple[str, str]], bool]] = []
    for uid in wanted:
        user = users.get(uid)
        # her task is how she starts working a confidential case: offered to her, she may be told of it
        # (asked first: those a new task is offered to may take it, and that is cheaper to ask)
        if user is None or not ((task is not None and may_take(actors[uid], task))
                                or can_see(s, engine, actors[uid], case)):
            continue
        pref = prefs[uid]
        chosen = pref.channels_for(kind)
        sends = []
        for name in chosen:
            channel = outside.get(name)
            if name == IN_APP or channel is None:
                continue
            address = channel.address(user, pref)
            if address:
                sends.append((name, address))
        if IN_APP in chosen or sends:
            told.append((user, pref, sends, IN_APP in chosen))
    if not told:
        return []
    values = [{"user_id": user.id, "kind": kind, "case_id": case.id, "task_id": task_id, "text_zh": zh,
               "text_en": en, "link": link, "in_app": in_app, "created_at": now, "read_at": None}
              for user, _, _, in_app in told]
    if new_ids is not None:     # PostgreSQL: ids known, the rows go with the next round trip
        created = new_ids[0][:len(values)]
        for row, row_id in zip(values, created):
            fast.defer(s, _F_INSERT_NOTIFICATION, {"id": row_id, **row}, insert=True)
    else:
        created = [fast.run(s, _F_INSERT_NOTIFICATION_ID, row, insert=True).scalar() for row in values]
    rows = []
    for notification_id, (user, pref, sends, _) in zip(created, told):
        for name, address in sends:
            digest = name == EMAIL and bool(pref.digest)
            payload = {"kind": kind, "zh": zh, "en": en, "link": link, "case_id": case.id, "task_id": task_id,
                       "to": address, "name": user.name or user.username, "username": user.username}
            rows.append(outbox.row_values("notification", name, kind, payload, now, notification_id=notification_id,
                                          recipient_id=user.id, case_id=case.id, digest=digest,
                                          next_attempt_at=next_digest(pref.digest, now, engine.timezone) if digest else now))
    if new_ids is not None:
        outbox.add_rows(s, rows, ids=new_ids[1][:len(rows)])
    else:
        outbox.add_rows(s, rows)
    return created


def _local_text(moment: datetime, zone: tzinfo) -> str:
    return moment.replace(tzinfo=timezone.utc).astimezone(zone).strftime("%Y-%m-%d %H:%M")


# -------------------------------------------------------------- the worker's
def notify_due(engine: Any, soon: timedelta = DUE_SOON, limit: int = 500) -> int:
    """Tell the people of open tasks that fall due within ``soon`` (``due_soon``) or are past due
    (``overdue``), once per task and kind; returns how many tasks were announced.

    Several workers may run it at once: the tasks are claimed ``FOR UPDATE SKIP LOCKED``
    (PostgreSQL), or under SQLite's write lock, and a task already announced is skipped.
    """
    from hexie.models import Case
    from .service import records
    announced = 0
    now = engine.clock()
    for kind, window in (("overdue", Task.due_at <= now),
                         ("due_soon", and_(Task.due_at > now, Task.due_at <= now + soon))):
        with engine.transaction() as s:
            if s.connection().dialect.name == "sqlite":
                s.connection().exec_driver_sql("BEGIN IMMEDIATE")
            kinds = ("overdue",) if kind == "overdue" else ("due_soon", "overdue")
            told = exists().where(_NOTIFICATIONS.c.task_id == Task.id, _NOTIFICATIONS.c.kind.in_(kinds))
            tasks = records(s, select(Task.__table__).where(Task.status.in_(("offered", "allocated")),
                                                           Task.due_at.isnot(None), window, ~told,
                                                           Task.suspended_at.is_(None))
                            .order_by(Task.due_at, Task.id).limit(limit).with_for_update(skip_locked=True))
            for task in tasks:
                # asked again now that the task is locked: a statement started before another
                # worker's commit may have missed what it wrote (READ COMMITTED)
                if s.scalar(select(_NOTIFICATIONS.c.id).where(_NOTIFICATIONS.c.task_id == task.id,
                                                              _NOTIFICATIONS.c.kind.in_(kinds)).limit(1)):
                    continue
                (case,) = records(s, select(Case.__table__).where(Case.id == task.case_id))
                if case.closed_at is not None or case.suspended_at is not None:   # on hold: no clock runs
                    continue
                if not notify(s, engine, kind, task_people(s, task), case, task=task):
                    # no one to tell (or no one may be told): a row for no one marks the task as announced
                    s.connection().execute(_INSERT_NOTIFICATION, {
                        "user_id": None, "kind": kind, "case_id": case.id, "task_id": task.id, "text_zh": "",
                        "text_en": "", "link": None, "in_app": False, "created_at": now, "read_at": None})
                announced += 1
    return announced


# ------------------------------------------------------------------ reading
def _view(row: Notification, locale: str = "zh") -> dict[str, Any]:
    return {"id": row.id, "kind": row.kind, "case_id": row.case_id, "task_id": row.task_id,
            "text": f"{row.text_zh} / {row.text_en}", "text_zh": row.text_zh, "text_en": row.text_en,
            "link": row.link, "at": row.created_at, "read": row.read_at is not None}


def list_notifications(engine: Any, actor: Actor, *, unread: bool = False, page: int = 1,
                       per_page: int = 50) -> tuple[list[dict[str, Any]], int]:
    """The caller's notification centre, newest first, and how many there are."""
    from .queries import paging
    with engine.read_session() as s:
        stmt = select(Notification).where(Notification.user_id == actor.user_id, Notification.in_app.is_(True))
        if unread:
            stmt = stmt.where(Notification.read_at.is_(None))
        total = engine.count(s, stmt)
        page, per_page = paging(page, per_page)
        rows = s.scalars(stmt.order_by(Notification.id.desc()).offset((page - 1) * per_page).limit(per_page)).all()
        return [_view(r, actor.locale) for r in rows], total


def unread_count(engine: Any, actor: Actor) -> int:
    """How many of her in-app notifications she has not read (the bell's number)."""
    if actor.user_id is None:
        return 0
    with engine.read_session() as s:
        return engine.count(s, select(Notification.id).where(
            Notification.user_id == actor.user_id, Notification.in_app.is_(True), Notification.read_at.is_(None)))


def mark_read(engine: Any, actor: Actor, notification_id: int) -> None:
    """Mark one of her notifications read (someone else's is "not found")."""
    with engine.session_factory() as s, s.begin():
        row = s.get(Notification, notification_id) if 0 < notification_id < 2**63 else None
        if row is None or row.user_id != actor.user_id or not row.in_app:
            raise NotFound("没有这条通知", f"no notification {notification_id}")
        if row.read_at is None:
            row.read_at = engine.clock()


def mark_all_read(engine: Any, actor: Actor) -> int:
    """Mark every notification of hers read; returns how many were unread."""
    with engine.session_factory() as s, s.begin():
        return s.execute(update(Notification).where(Notification.user_id == actor.user_id,
                                                    Notification.read_at.is_(None))
                         .values(read_at=engine.clock())).rowcount
