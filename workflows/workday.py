"""The working day's verbs of the service (interfaces.md, "Work queues and the case").

- **The case's owner** answers for it: the person who started it, until she (or a manager
  of the area) hands it over (:meth:`WorkdayMixin.hand_over_case`). Her open tasks of the
  case go with it where the new owner may take them; later tasks with
  ``assign: {owner: true}`` go to the new owner.
- **Hold and resume** (:meth:`suspend_case`, :meth:`resume_case`, :meth:`suspend_task`,
  :meth:`resume_task`): a reason is required. While a case is held no action is fired (409),
  no timer fires and nothing escalates or falls due; on resume every pending timer, due date
  and escalation moves on by the time spent on hold. A task's own hold stands its due date and
  escalation still the same way (its holder may still work it). A hold with ``until`` ends by
  itself then (the worker's :meth:`resume_due_holds`).
- **Notes** (:meth:`add_note`): a line in the history without firing an action; the people
  mentioned (``@username`` in the text, or the list) are told (kind ``mention``). Only people
  who may see the case can be mentioned.
- **Consults** (:meth:`consult`): the holder of a task asks a colleague's advice. The consult
  is a work item of kind ``consult`` allocated to her (in her ``mine`` view); she answers it
  with :meth:`done` and a comment; the task stays with its holder. While it is open the person
  consulted may read the case, even a confidential one; her answer gives her no lasting access.
- **Away** (:meth:`set_away`): the API's ``PUT /me/away`` and ``PUT /users/{username}/away``.

Each public method is one transaction; a refused call writes nothing.
"""
from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterable, Mapping

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hexie.models import Case, OrgUnit, RoleAssignment, Task, Timer, User

from . import audit, notifications
from .access import SYSTEM, Actor, is_admin, manager_roles, manages_case, may_take
from .errors import Conflict, Forbidden, Invalid, NotFound, not_found

OPEN = ("offered", "allocated")
MAX_NOTE = 4000
MAX_MENTIONS = 20
MENTION_RE = re.compile(r"@([A-Za-z0-9_.\-]{1,80})")


def _reason(comment: str | None, required: bool = True) -> str | None:
    text = (comment or "").strip()
    if "\x00" in text:
        raise Invalid("意见包含无效字符", "the comment contains characters that cannot be stored",
                      {"comment": "无效 / invalid"})
    if required and not text:
        raise Invalid("请填写原因", "a reason is required", {"comment": "必填 / required"})
    if len(text) > MAX_NOTE:
        raise Invalid(f"意见不能超过 {MAX_NOTE} 个字", f"at most {MAX_NOTE} characters",
                      {"comment": f"at most {MAX_NOTE} / 最多 {MAX_NOTE} 字"})
    return text or None


def mentioned_usernames(text: str, mentions: Iterable[str] = ()) -> list[str]:
    """The usernames a note mentions: the list given and every ``@username`` in its text, once each."""
    names = [m for m in mentions if isinstance(m, str) and m]
    names += MENTION_RE.findall(text or "")
    return list(dict.fromkeys(n.rstrip(".") for n in names))


def end_of_local_day(day: date, zone: Any) -> datetime:
    """The midnight after ``day`` in the office's zone, as naive UTC (how moments are stored)."""
    end = datetime.combine(day + timedelta(days=1), datetime.min.time()).replace(tzinfo=zone)
    return end.astimezone(timezone.utc).replace(tzinfo=None)


def parse_until(value: str | None, zone: Any) -> datetime | None:
    """A hold's ``until``: a day (the end of that local day) or an ISO 8601 moment (no offset: local)."""
    if value in (None, ""):
        return None
    text = str(value).strip()
    try:
        if len(text) == 10:
            return end_of_local_day(date.fromisoformat(text), zone)
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise Invalid("日期格式无效", "until must be a day (YYYY-MM-DD) or an ISO 8601 moment",
                      {"until": "日期无效 / invalid date"}) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=zone)
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def _duration_text(held: timedelta) -> str:
    hours = int(held.total_seconds() // 3600)
    return f"{hours // 24}d{hours % 24}h" if hours >= 24 else f"{max(hours, 0)}h"


class WorkdayMixin:
    """Owner, hold and resume, notes, consults and absences (see the module's text)."""

    engine: Any

    # ------------------------------------------------------------------ owner
    def hand_over_case(self, actor: Actor, case_id: int, to_username: str, comment: str | None = None
                       ) -> dict[str, Any]:
        """Make ``to_username`` the case's owner; her predecessor's open tasks of the case go with it
        where she may take them (the others stay and are listed in ``kept``)."""
        from .service import open_tasks_of, save_case, save_task
        comment = _reason(comment, required=False)
        with self.engine.transaction() as s:
            case = self._case_for_update(s, actor, case_id)
            spec = self.engine.spec_of(s, case.process_version_id)
            if case.closed_at is not None:
                raise Conflict("案件已办结", "the case is closed")
            if not (case.owner_id == actor.user_id and actor.user_id is not None) \
                    and not manages_case(actor, self.engine.registry.roles, case.org_path, bool(case.confidential)):
                raise Forbidden("只有案件负责人或本辖区主管可以移交案件",
                                "only the case's owner or a manager of its area may hand it over")
            target = self._active_user(s, to_username, "to")
            target_actor = self.engine.actor_for(s, target)
            if not target_actor.holds_any(spec.roles_named(), case.org_path):
                raise Invalid("该用户在本案所在单位没有本流程的角色",
                              f"{to_username} holds no role of this process at the case's unit",
                              {"to": "不能负责本案 / not eligible"})
            if target.id == case.owner_id:
                raise Invalid("该用户已是案件负责人", f"{to_username} already owns the case", {"to": "已是负责人 / already the owner"})
            previous = case.owner_id
            names = self._usernames(s, [previous, target.id])
            now = self.engine.clock()
            moved, kept = [], []
            for task in open_tasks_of(s, case.id):
                if previous is None or task.assignee_id != previous:
                    continue
                if may_take(target_actor, task) and not self._barred(s, target_actor, case, spec, task):
                    task.assignee_id, task.status = target.id, "allocated"
                    save_task(s, task)
                    moved.append(task.id)
                else:
                    kept.append(task.id)
            case.owner_id = target.id
            case.updated_at = now
            audit.append_event(s, case, kind="owner_changed", actor=self._user(s, actor), from_state=case.state,
                               to_state=case.state, comment=comment, at=now,
                               changes={"owner": [names.get(previous), names.get(target.id)]})
            save_case(s, case)
            notifications.notify(s, self.engine, "task_allocated", [target.id], case, actor=actor,
                                 task=next(iter(self._task_records(s, moved)), None))
            return {"case_id": case.id, "owner": target.username, "moved": moved, "kept": kept}

    # ------------------------------------------------------------ hold, resume
    def suspend_case(self, actor: Actor, case_id: int, comment: str | None, until: datetime | None = None
                     ) -> dict[str, Any]:
        """Put the case on hold (managers of the area and the owner); a reason is required."""
        from .service import save_case
        comment = _reason(comment)
        with self.engine.transaction() as s:
            case = self._case_for_update(s, actor, case_id)
            self._may_hold_case(actor, case)
            if case.closed_at is not None:
                raise Conflict("案件已办结", "the case is closed")
            if case.suspended_at is not None:
                raise Conflict("案件已暂停", "the case is already on hold")
            now = self.engine.clock()
            if until is not None and until <= now:
                raise Invalid("恢复日期须在今天之后", "until must be in the future", {"until": "已过 / in the past"})
            case.suspended_at, case.suspended_until = now, until
            case.suspended_by_id, case.suspend_comment = actor.user_id, comment
            case.updated_at = now
            audit.append_event(s, case, kind="case_suspended", actor=self._user(s, actor), from_state=case.state,
                               to_state=case.state, comment=comment, at=now,
                               changes={"until": [None, until.isoformat() if until else None]})
            save_case(s, case)
            return {"case_id": case.id, "suspended_at": now}

    def resume_case(self, actor: Actor, case_id: int, comment: str | None = None) -> dict[str, Any]:
        """End the case's hold: its timers, due dates and escalations move on by the time held."""
        comment = _reason(comment, required=False)
        with self.engine.transaction() as s:
            case = self._case_for_update(s, actor, case_id)
            self._may_hold_case(actor, case)
            return self._resume(s, actor, case, comment)

    def _resume(self, s: Session, actor: Actor, case: Any, comment: str | None) -> dict[str, Any]:
        from .service import open_tasks_of, save_case, save_task
        if case.suspended_at is None:
            raise Conflict("案件未暂停", "the case is not on hold")
        now = self.engine.clock()
        held = max(now - case.suspended_at, timedelta(0))
        for task in open_tasks_of(s, case.id):
            if task.suspended_at is not None:   # held on its own too: moves on when it resumes
                continue
            if task.due_at is None and task.escalate_at is None:
                continue
            task.due_at = task.due_at + held if task.due_at else None
            task.escalate_at = task.escalate_at + held if task.escalate_at else None
            save_task(s, task)
        for timer_id, due in s.execute(select(Timer.id, Timer.due_at).where(
                Timer.case_id == case.id, Timer.status == "pending")).all():
            s.execute(update(Timer).where(Timer.id == timer_id).values(due_at=due + held))
        case.suspended_at = case.suspended_until = case.suspended_by_id = case.suspend_comment = None
        case.updated_at = now
        audit.append_event(s, case, kind="case_resumed", actor=self._user(s, actor), from_state=case.state,
                           to_state=case.state, comment=comment, at=now,
                           changes={"held": [None, _duration_text(held)]})
        save_case(s, case)
        return {"case_id": case.id, "held_seconds": int(held.total_seconds())}

    def resume_due_holds(self, limit: int = 200) -> int:
        """Resume (as the system) every case whose hold was until a moment now past."""
        now = self.engine.clock()
        with self.engine.session_factory() as s:
            ids = list(s.scalars(select(Case.id).where(Case.suspended_at.isnot(None), Case.suspended_until <= now)
                                 .order_by(Case.id).limit(limit)))
        done = 0
        for case_id in ids:
            with self.engine.transaction() as s:
                case = self._case_for_update(s, SYSTEM, case_id)
                if case.suspended_at is None or case.suspended_until is None or case.suspended_until > now:
                    continue
                self._resume(s, SYSTEM, case, None)
                done += 1
        return done

    def suspend_task(self, actor: Actor, task_id: int, comment: str | None) -> int:
        """Hold one task (its holder or a manager): its due date and escalation stand still."""
        from .service import save_case, save_task
        comment = _reason(comment)
        with self.engine.transaction() as s:
            task, case, _ = self._task_for_update(s, actor, task_id)
            self._may_hold_task(actor, task, case)
            if task.suspended_at is not None:
                raise Conflict("任务已暂停", "the task is already on hold")
            now = self.engine.clock()
            task.suspended_at = now
            save_task(s, task)
            case.updated_at = now
            audit.append_event(s, case, kind="task_suspended", actor=self._user(s, actor), from_state=case.state,
                               to_state=case.state, comment=comment, at=now, changes={"task": [task.name, task.name]})
            save_case(s, case)
            return task.id

    def resume_task(self, actor: Actor, task_id: int, comment: str | None = None) -> int:
        """End a task's hold: its due date and escalation move on by the time held."""
        from .service import save_case, save_task
        comment = _reason(comment, required=False)
        with self.engine.transaction() as s:
            task, case, _ = self._task_for_update(s, actor, task_id)
            self._may_hold_task(actor, task, case)
            if task.suspended_at is None:
                raise Conflict("任务未暂停", "the task is not on hold")
            now = self.engine.clock()
            held = max(now - task.suspended_at, timedelta(0))
            task.due_at = task.due_at + held if task.due_at else None
            task.escalate_at = task.escalate_at + held if task.escalate_at else None
            task.suspended_at = None
            save_task(s, task)
            case.updated_at = now
            audit.append_event(s, case, kind="task_resumed", actor=self._user(s, actor), from_state=case.state,
                               to_state=case.state, comment=comment, at=now,
                               changes={"task": [task.name, task.name], "held": [None, _duration_text(held)]})
            save_case(s, case)
            return task.id

    def _may_hold_case(self, actor: Actor, case: Any) -> None:
        if actor.is_system or (actor.user_id is not None and case.owner_id == actor.user_id) \
                or manages_case(actor, self.engine.registry.roles, case.org_path, bool(case.confidential)):
            return
        raise Forbidden("只有案件负责人或本辖区主管可以暂停或恢复案件",
                        "only the case's owner or a manager of its area may hold or resume it")

    def _may_hold_task(self, actor: Actor, task: Any, case: Any) -> None:
        if getattr(task, "kind", "work") != "work":
            raise Invalid("征求意见不能暂停", "a consult cannot be held")
        if task.assignee_id == actor.user_id and actor.user_id is not None:
            return
        if manages_case(actor, self.engine.registry.roles, case.org_path, bool(case.confidential)):
            return
        raise Forbidden("只有任务的办理人或本辖区主管可以暂停或恢复任务",
                        "only the task's holder or a manager of its area may hold or resume it")

    # ------------------------------------------------------------------ notes
    def add_note(self, actor: Actor, case_id: int, text: str, mentions: Iterable[str] = ()) -> dict[str, Any]:
        """A note in the case's history (kind ``note``), no action fired; mentioned people are told."""
        from .queries import can_see
        from .service import save_case
        text = _reason(text)
        wanted = mentioned_usernames(text, mentions)
        if len(wanted) > MAX_MENTIONS:
            raise Invalid(f"一次最多提到 {MAX_MENTIONS} 人", f"at most {MAX_MENTIONS} people per note",
                          {"mentions": f"at most {MAX_MENTIONS}"})
        with self.engine.transaction() as s:
            case = self._case_for_update(s, actor, case_id)
            people = {u.username: u for u in s.scalars(select(User).where(User.username.in_(wanted)))} if wanted else {}
            bad = [n for n in wanted if n not in people or not people[n].active
                   or not can_see(s, self.engine, self.engine.actor_for(s, people[n]), s.get(Case, case.id))]
            # an @word that names nobody is just text; a name in the list must be someone who may see the case
            listed = set(m for m in mentions if isinstance(m, str))
            refused = [n for n in bad if n in listed or n in people]
            if refused:
                raise Invalid("只能提到可以查看本案的人", "you may mention only people who may see this case",
                              {"mentions": "、".join(refused)})
            told = [people[n] for n in wanted if n not in bad]
            now = self.engine.clock()
            event = audit.append_event(s, case, kind="note", actor=self._user(s, actor), from_state=case.state,
                                       to_state=case.state, comment=text, at=now,
                                       changes={"mentions": [None, [u.username for u in told]]} if told else None)
            case.updated_at = now
            save_case(s, case)
            notifications.notify(s, self.engine, "mention", [u.id for u in told], case, actor=actor, note=text)
            return {"at": now, "actor": actor.username, "kind": "note", "trigger": None, "from_state": case.state,
                    "to_state": case.state, "comment": text, "changes": event.changes if event is not None else None}

    # --------------------------------------------------------------- consults
    def consult(self, actor: Actor, task_id: int, to_username: str, comment: str | None) -> int:
        """Ask a colleague's advice on my task: a consult work item allocated to her; returns its id."""
        from .service import _INSERT_TASK, save_case
        comment = _reason(comment)
        with self.engine.transaction() as s:
            task, case, _ = self._task_for_update(s, actor, task_id)
            if getattr(task, "kind", "work") != "work":
                raise Invalid("不能对征求意见再征求意见", "a consult cannot itself be consulted on")
            # A confidential case's task offered to her pool is not hers yet: she reads the case masked
            # and (a referral) has not accepted it, so she may not open it to a colleague either.
            mine = task.assignee_id == actor.user_id or (task.assignee_id is None and not case.confidential
                                                         and may_take(actor, task))
            if actor.user_id is None or not mine:
                raise Forbidden("只有任务的办理人可以征求意见", "only the task's holder may consult a colleague")
            target = self._active_user(s, to_username, "to")
            if target.id == actor.user_id:
                raise Invalid("不能征求自己的意见", "you cannot consult yourself", {"to": "本人 / yourself"})
            if s.scalar(select(Task.id).where(Task.consult_of == task.id, Task.assignee_id == target.id,
                                              Task.status.in_(OPEN)).limit(1)) is not None:
                raise Conflict("已向该同事征求意见，尚未答复", f"{to_username} has not answered your earlier consult yet")
            now = self.engine.clock()
            row = dict(case_id=case.id, process_key=task.process_key, state=task.state, name=task.name,
                       role=task.role, at_level=None, org_unit_id=task.org_unit_id, org_path=task.org_path,
                       status="allocated", assignee_id=target.id, created_at=now, due_at=None, escalate_at=None,
                       escalate_to=None, escalated=False, priority=task.priority, optional=True, kind="consult",
                       consult_of=task.id, flagged=False, requires=None)
            consult_id = s.connection().execute(_INSERT_TASK, row).scalar_one()
            audit.append_event(s, case, kind="consulted", actor=self._user(s, actor), from_state=case.state,
                               to_state=case.state, comment=comment, at=now,
                               changes={"task": [task.name, task.name], "consulted": [None, target.username]})
            case.updated_at = now
            save_case(s, case)
            created = type(task)(**{**row, "id": consult_id, "lock_version": 1})
            notifications.notify(s, self.engine, "consult", [target.id], case, task=created, actor=actor, note=comment)
            return consult_id

    def _answer_consult(self, s: Session, actor: Actor, task: Any, case: Any, comment: str | None) -> int:
        from .service import save_case, save_task
        if task.assignee_id != actor.user_id:
            raise Conflict("这不是向您征求的意见", "this consult was asked of someone else")
        comment = _reason(comment)
        now = self.engine.clock()
        task.status, task.completed_at, task.completed_by_id = "completed", now, actor.user_id
        save_task(s, task)
        asked = s.scalar(select(Task.assignee_id).where(Task.id == task.consult_of)) if task.consult_of else None
        audit.append_event(s, case, kind="consult_answered", actor=self._user(s, actor), from_state=case.state,
                           to_state=case.state, comment=comment, at=now, changes={"task": [task.name, task.name]})
        case.updated_at = now
        save_case(s, case)
        if asked:
            notifications.notify(s, self.engine, "consult", [asked], case, actor=actor, note=comment)
        return task.id

    # ------------------------------------------------------------------- away
    def set_away(self, actor: Actor, username: str, until: date | None, delegate: str | None,
                 ends_at: datetime | None = None) -> dict[str, Any]:
        """Mark ``username`` away until the end of ``until`` (``ends_at``: that moment, naive UTC)
        with ``delegate`` (None: back); her open tasks are handed to the delegate where the delegate
        may take them. Herself, a manager of an area where she holds a role, or an administrator."""
        from .people import record_admin_change
        from .service import open_tasks_of, records, save_case, save_task, _CASE_FOR_UPDATE
        from .queries import barred_by_separation
        roles = self.engine.registry.roles
        if username != actor.username and not is_admin(actor, roles) and not actor.paths_for(manager_roles(roles)):
            # as the people API: someone who manages no area and administers nothing may not mark
            # anybody else away, whoever is named (asked before the lookup: nothing is disclosed)
            raise Forbidden("只有管理员和负责人可以设置他人外出",
                            "only administrators and managers may mark someone else away")
        with self.engine.transaction() as s:
            person = s.scalars(select(User).where(User.username == username)).first()
            if person is None or not self._may_set_away(s, actor, person):
                raise NotFound("没有这个用户", f"no user {username!r} you may manage")
            now = self.engine.clock()
            if until is None:
                before = person.away_until
                person.away_until, person.delegate_to_id = None, None
                record_admin_change(s, actor, "away_ended", {"user": [username, username],
                                                             "away_until": [str(before) if before else None, None]},
                                    at=now)
                s.flush()
                return {"username": person.username, "name": person.name, "away_until": None, "delegate": None,
                        "moved": [], "kept": []}
            if ends_at is None or ends_at <= now:
                raise Invalid("离开日期不能早于今天", "until must be today or later", {"until": "已过 / in the past"})
            if not delegate:
                raise Invalid("请指定代理人", "a delegate is required while away", {"delegate": "必填 / required"})
            deputy = s.scalars(select(User).where(User.username == delegate)).first()
            if deputy is None or not deputy.active or deputy.id == person.id:
                raise Invalid("代理人无效", f"no active colleague {delegate!r}", {"delegate": "无此人 / unknown"})
            person.away_until, person.delegate_to_id = ends_at, deputy.id
            record_admin_change(s, actor, "away_set", {"user": [username, username],
                                                       "away_until": [None, until.isoformat()],
                                                       "delegate_to": [None, deputy.username]}, at=now)
            s.flush()
            deputy_actor = self.engine.actor_for(s, deputy)
            moved, kept = [], []
            for task_id, case_id in s.execute(select(Task.id, Task.case_id).where(
                    Task.assignee_id == person.id, Task.status == "allocated", Task.kind == "work")
                    .order_by(Task.id)).all():
                (case,) = records(s, _CASE_FOR_UPDATE, {"case_id": case_id})
                task = next(t for t in open_tasks_of(s, case_id) if t.id == task_id)
                spec = self.engine.spec_of(s, case.process_version_id)
                task_spec = spec.state(task.state).task(task.name)
                if may_take(deputy_actor, task) and not (
                        task_spec is not None and barred_by_separation(s, deputy_actor, case_id, task_spec)):
                    self._assign(s, case, task, actor, deputy.id, "delegated")
                    moved.append(task_id)
                else:
                    kept.append(task_id)
            return {"username": person.username, "name": person.name, "away_until": until,
                    "delegate": deputy.username, "moved": moved, "kept": kept}

    def _may_set_away(self, s: Session, actor: Actor, person: User) -> bool:
        if actor.user_id is not None and actor.user_id == person.id:
            return True
        roles = self.engine.registry.roles
        if is_admin(actor, roles):
            return True
        paths = actor.paths_for(manager_roles(roles))
        if not paths:
            return False
        held = s.scalars(select(OrgUnit.path).join(RoleAssignment, RoleAssignment.org_unit_id == OrgUnit.id)
                         .where(RoleAssignment.user_id == person.id)).all()
        return any(p.startswith(m) for p in held for m in paths)

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def _active_user(s: Session, username: str, key: str) -> User:
        user = s.scalars(select(User).where(User.username == username)).first() \
            if isinstance(username, str) and username else None
        if user is None or not user.active:
            raise Invalid("没有这个用户", f"no active user {username!r}", {key: "无此人 / unknown user"})
        return user

    @staticmethod
    def _usernames(s: Session, ids: Iterable[int | None]) -> dict[int, str]:
        wanted = [i for i in ids if i is not None]
        return dict(s.execute(select(User.id, User.username).where(User.id.in_(wanted))).all()) if wanted else {}

    @staticmethod
    def _task_records(s: Session, ids: list[int]) -> list[Any]:
        from .service import records, _tasks
        return records(s, select(_tasks).where(_tasks.c.id.in_(ids))) if ids else []

    def _barred(self, s: Session, actor: Actor, case: Any, spec: Any, task: Any) -> bool:
        from .queries import barred_by_separation
        task_spec = spec.state(task.state).task(task.name)
        return task_spec is not None and barred_by_separation(s, actor, case.id, task_spec)
