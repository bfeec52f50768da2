"""Reads: case views, available actions, history, case lists and task inboxes.

Every list is paged and costs a fixed number of queries whatever the page size.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace
from datetime import date, datetime, time, timedelta
from typing import Any, Mapping

from sqlalchemy import Column, and_, bindparam, case, exists, false, func, literal, not_, null, or_, select
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.util import ClauseAdapter

from hexie.models import AuditEvent, Case, OrgUnit, Task, Timer, User, Vote, fast

from .access import (PASSING_KINDS, Actor, can_see_case, escalated_to, may_take, offered_now, offered_tasks_clause,
                     team_tasks_clause, visible_cases_clause, withdrawn_referral_cases, worked_task_clause)
from .engine import Engine
from .errors import BadRequest, not_found
from .forms import storable_text
from .machine import FireContext
from .protection import case_code, suppress_report
from .org import in_subtree, unit_at_depth
from .consent import (Read, access_log_rows, consent_rows, consent_status, is_overseer, log_read,
                         may_read_log, may_record_consent)
from .spec import ProcessSpec, TaskSpec

OPEN = ("offered", "allocated")
MAX_ID = 2**63 - 1  # ids are BIGINT: anything larger cannot name a row
MASK = "***"
TASK_VIEWS = ("mine", "available", "overdue", "escalated", "team")
#: Orders of a task list (interfaces.md): ``due`` soonest first, ``priority`` most urgent first,
#: ``created`` oldest first; a leading ``-`` turns one round. The default: due, then priority.
TASK_SORTS = ("due", "-due", "priority", "-priority", "created", "-created")
_PRIORITY_RANK = case((Task.priority == "high", 0), (Task.priority == "low", 2), else_=1)
# The columns of an inbox row, built once: plain rows, no ORM objects for a page of tasks.
_TASK_COLUMNS = tuple(Task.__table__.c)
_UNIT_NAME = select(OrgUnit.name).where(OrgUnit.id == Task.org_unit_id).scalar_subquery().label("unit_name")
_HOLDER = select(User.username).where(User.id == Task.assignee_id).scalar_subquery().label("holder")


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def is_row_id(value: int) -> bool:
    """True when ``value`` can be the id of a row (so looking it up cannot overflow the column)."""
    return isinstance(value, int) and 0 < value <= MAX_ID


def _worked(s: Session, actor: Actor, case: Case, engine: Engine | None = None) -> bool:
    """She filed the case, holds or completed one of its tasks, or acted on it before (claimed a
    task and handed it on, voted, ...): the same rule as the lists' :func:`visible_cases_clause`
    (with ``engine``, also its cut for an agency whose consent was withdrawn)."""
    if actor.user_id is None:
        return False
    if actor.user_id in (case.created_by_id, getattr(case, "owner_id", None)):
        return True
    if engine is not None and getattr(case, "confidential", False):
        cut = withdrawn_referral_cases(actor.user_id, [engine.spec_of(s, case.process_version_id)], case.id,
                                       roles=[a.role for a in actor.assignments])
        if cut is not None and s.scalar(cut.limit(1)) is not None:
            return False      # her consent to his agency was withdrawn (protection.md)
    held = s.scalar(select(Task.id).where(Task.case_id == case.id, worked_task_clause(actor.user_id),
                                          Task.status != "declined").limit(1))
    return held is not None or s.scalar(select(AuditEvent.id).where(
        AuditEvent.case_id == case.id, AuditEvent.actor_id == actor.user_id,
        AuditEvent.kind.notin_((*PASSING_KINDS, "referral_declined"))).limit(1)) is not None


def can_see(s: Session, engine: Engine, actor: Actor, case: Case) -> bool:
    """The Access rule for one loaded case."""
    if actor.is_system:
        return True
    spec = engine.spec_of(s, case.process_version_id)
    if can_see_case(actor, spec, case, worked=False, could_take=False, roles=engine.registry.roles):
        return True
    if _worked(s, actor, case, engine):
        return True
    open_tasks = s.scalars(select(Task).where(Task.case_id == case.id, Task.status.in_(OPEN), Task.kind == "work"))
    # confidential: only if one of its tasks is offered to her now (not one a colleague took)
    offered = offered_now if spec.confidential else may_take
    if any(offered(actor, t) for t in open_tasks):
        return True
    return can_see_parent(s, engine, actor, case)


def can_see_parent(s: Session, engine: Engine, actor: Actor, case: Any, depth: int = 0) -> bool:
    """A case started by another's ``call:`` is visible to whoever may see the case that called it
    (definitions.md, "Work decided at run time")."""
    parent_id = getattr(case, "parent_case_id", None)
    if parent_id is None or depth > 8:
        return False
    parent = s.get(Case, parent_id)
    return parent is not None and can_see(s, engine, actor, parent)


def works_on(s: Session, actor: Actor, case: Case, open_tasks: list[Task], engine: Engine | None = None) -> bool:
    """Working the case *now*: she may see sensitive fields unmasked.

    She filed it, holds or completed one of its tasks, or acted on it; and, outside
    confidential processes, one of its open tasks is offered to her now (waiting in her
    roles' pool, not taken by a colleague). In a confidential process an offered task is
    not enough: she reads the case masked until she takes it (protection.md). Overseeing
    a case (a county chair, an administrator) is not working it, until she acts on it.
    """
    if actor.is_system:
        return True
    if _worked(s, actor, case, engine):
        return True
    return not case.confidential and any(offered_now(actor, t) for t in open_tasks)


def barred_by_separation(s: Session, actor: Actor, case_id: int, task_spec: TaskSpec) -> bool:
    """Separation of duties: she completed a task of one of ``task_spec.separate_from`` in this case."""
    if not task_spec.separate_from or actor.user_id is None:
        return False
    return s.scalar(select(Task.id).where(
        Task.case_id == case_id, Task.state.in_(task_spec.separate_from),
        Task.status == "completed", Task.completed_by_id == actor.user_id).limit(1)) is not None


def mask(spec: ProcessSpec, data: Mapping[str, Any]) -> dict[str, Any]:
    """Sensitive fields replaced by ``***`` for people not working the case."""
    return {k: (MASK if v not in (None, "") and k in spec.fields and spec.fields[k].sensitive else v)
            for k, v in data.items()}


class CaseQueries:
    """Read-only views; each method opens its own short session."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --------------------------------------------------------------- one case
    def case(self, actor: Actor, case_id: int, read: "Read | None" = None) -> dict[str, Any]:
        """``{id, process, version, state, org_unit, data, tasks, actions, lock_version, ...}``.

        ``read``: log this read in the access log (a confidential case; protection.md)."""
        with self.engine.session_factory() as s:
            # the case with its unit and its creator's name: one statement
            row = s.execute(select(Case, OrgUnit, User.username).join(OrgUnit, OrgUnit.id == Case.org_unit_id)
                            .outerjoin(User, User.id == Case.created_by_id)
                            .where(Case.id == case_id)).first() if is_row_id(case_id) else None
            if row is None or not can_see(s, self.engine, actor, row[0]):
                raise not_found()
            view = self._view(s, actor, *row)
            self._log(s, actor, row[0], read)
            return view

    def _log(self, s: Session, actor: Actor, case: Case, read: "Read | None") -> None:
        """The read's one INSERT into the access log, committed with this short session."""
        if read is not None and case.confidential:
            log_read(s, self.engine, actor, case.id, read)
            s.commit()

    def access_log(self, actor: Actor, case_id: int, *, page: int = 1, per_page: int = 50,
                   read: "Read | None" = Read("access_log")) -> Page:
        """Who read the case, when, what and from where, newest first: for its owner, the people
        working it and overseers (anyone else gets the 404 of a case that does not exist).
        Reading it is logged too (``read``)."""
        page, per_page = paging(page, per_page)
        with self.engine.session_factory() as s:
            case = s.get(Case, case_id) if is_row_id(case_id) else None
            if case is None or not can_see(s, self.engine, actor, case) or not may_read_log(s, self.engine, actor, case):
                raise not_found()
            self._log(s, actor, case, read)   # first: the reader finds her own read in the log
            items, total = access_log_rows(s, case.id, page, per_page)
            return Page(items, total, page, per_page)

    def _view(self, s: Session, actor: Actor, case: Case, unit: OrgUnit, creator: str | None) -> dict[str, Any]:
        spec = self.engine.spec_of(s, case.process_version_id)
        # the tasks with the names of who holds and who completed each: one statement
        holder, finisher = aliased(User), aliased(User)
        rows = s.execute(select(Task, holder.username, finisher.username)
                         .outerjoin(holder, holder.id == Task.assignee_id)
                         .outerjoin(finisher, finisher.id == Task.completed_by_id)
                         .where(Task.case_id == case.id).order_by(Task.id)).all()
        tasks = [t for t, _, _ in rows]
        people = {case.created_by_id: creator}
        extra = [i for i in (case.owner_id, case.suspended_by_id) if i is not None and i != case.created_by_id]
        if extra:
            people.update(_usernames(s, extra))
        for t, held_by, done_by in rows:
            people[t.assignee_id], people[t.completed_by_id] = held_by, done_by
        people.pop(None, None)
        open_tasks = [t for t in tasks if t.status in OPEN and t.kind == "work"]
        working = works_on(s, actor, case, open_tasks, self.engine)
        now = self.engine.clock()
        allowed, blocked, quorums = self.action_status(s, actor, case, spec, open_tasks)
        held = case.suspended_at is not None
        if held and allowed:   # on hold: nothing may be fired until it is resumed
            blocked = [{"trigger": t, **_why("案件已暂停办理", "the case is on hold")} for t in allowed] + blocked
            allowed, quorums = [], {}
        timers = s.execute(select(Timer.trigger, Timer.due_at).where(
            Timer.case_id == case.id, Timer.status == "pending").order_by(Timer.due_at, Timer.id)).all()
        return {
            "id": case.id, "process": case.process_key,
            "version": self.engine.version_number(s, case.process_version_id),
            "state": case.state, "org_unit": unit.code, "org_unit_name": unit.name,
            "data": dict(case.data) if working else mask(spec, case.data),
            "masked": not working, "subject": case.subject,
            "created_at": case.created_at, "updated_at": case.updated_at, "closed_at": case.closed_at,
            "anonymised_at": case.anonymised_at,
            "created_by": people.get(case.created_by_id),
            "business_key": case.business_key, "host_fields": list(case.host_fields or ()),
            "lock_version": case.lock_version,
            "tasks": [task_row(t, people, now, case_held=held, spec=spec) for t in tasks if t.status in OPEN],
            "owner": people.get(case.owner_id),
            "suspended": {"since": case.suspended_at, "until": case.suspended_until,
                          "comment": case.suspend_comment, "by": people.get(case.suspended_by_id)} if held else None,
            "timers": [{"trigger": trig, "due_at": due} for trig, due in timers],
            "actions": allowed,
            "blocked_actions": blocked,
            "action_quorums": quorums,
            "parent": self._related(s, actor, [case.parent_case_id] if case.parent_case_id else []),
            "children": self._related(s, actor, s.scalars(select(Case.id).where(
                Case.parent_case_id == case.id).order_by(Case.id)).all()),
            "confidential": bool(case.confidential),
            **self._protection(s, actor, case, spec, tasks, people, working),
        }

    def _protection(self, s: Session, actor: Actor, case: Case, spec: ProcessSpec, tasks: list[Task],
                    people: dict[int, str], working: bool) -> dict[str, Any]:
        """Consent per agency and the referrals of the current state (protection.md), and what the
        reader may do about them."""
        state = spec.state(case.state)
        referral_names = {t.name for t in state.tasks if t.consent or t.acceptance}
        referrals = []
        if referral_names:
            extra = _usernames(s, [t.accepted_by_id for t in tasks if t.accepted_by_id not in people])
            names = {**people, **extra}
            for t in tasks:
                if t.state != case.state or t.name not in referral_names:
                    continue
                task_spec = state.task(t.name)
                referrals.append({**task_row(t, names, self.engine.clock(), spec=spec),
                                  "agency": task_spec.consent, "note": t.note,
                                  "accepted_by": names.get(t.accepted_by_id), "accepted_at": t.accepted_at,
                                  "completed_at": t.completed_at, "completed_by": names.get(t.completed_by_id)})
            referrals = _latest_per_task(referrals)
        rows = consent_rows(s, case.id) if spec.agencies else []
        overseer = is_overseer(actor, self.engine, case.org_path)
        open_case = case.closed_at is None and not actor.is_system
        return {
            "consents": rows, "consent_status": consent_status(rows, spec.agencies),
            "referrals": referrals,
            "may_record_consent": bool(spec.agencies) and open_case and may_record_consent(
                s, self.engine, actor, case, spec),
            "may_override_consent": bool(spec.agencies) and open_case and overseer,
            "may_read_access_log": bool(case.confidential) and may_read_log(s, self.engine, actor, case),
        }

    def _related(self, s: Session, actor: Actor, ids: list[int]) -> list[dict[str, Any]]:
        """The cases ``call:`` links this one with (its parent, its children) that she may see."""
        out = []
        for other in (s.get(Case, i) for i in ids):
            if other is None or not can_see(s, self.engine, actor, other):
                continue
            out.append({"id": other.id, "process": other.process_key, "state": other.state,
                        "closed_at": other.closed_at,
                        "version": self.engine.version_number(s, other.process_version_id)})
        return out

    def action_status(self, s: Session, actor: Actor, case: Case, spec: ProcessSpec,
                      open_tasks: list[Task]) -> tuple[list[str], list[dict[str, str]], dict[str, int]]:
        """(triggers she may fire now, the others her roles allow with why not now, and how many
        people each allowed trigger needs as the case stands: its quorum).

        The second list lets a manager see *why* "approve" is not offered (a guard on the
        case's data, parallel work still open, the task held by a colleague) instead of
        wondering where the button went. Triggers her roles do not allow are never named.
        """
        if case.closed_at is not None or actor.is_system:
            return [], [], {}
        compiled = self.engine.compiled(s, case.process_version_id)
        state = spec.state(case.state)
        ctx = FireContext.for_case(spec, case.data, actor, case.org_path, case.created_at,
                                   self.engine.today(), open_tasks)
        waiting = [state.task(t.name).label for t in open_tasks if not t.optional] if state.parallel else []
        taken_by_other = bool(open_tasks) and all(t.assignee_id not in (None, actor.user_id)
                                                  and not escalated_to(actor, t) for t in open_tasks)
        barred = any(barred_by_separation(s, actor, case.id, task) for task in state.tasks)
        voted = set(s.scalars(select(Vote.trigger).where(
            Vote.case_id == case.id, Vote.state == state.name, Vote.user_id == actor.user_id))) \
            if actor.user_id is not None and any(t.quorum > 1 for t in spec.transitions if state.name in t.sources) \
            else set()

        def form_fields(trigger: str) -> set[str]:
            return {f.name for f in spec.action_form(state.name, trigger)}

        allowed: list[str] = []
        blocked: dict[str, dict[str, str]] = {}
        quorums: dict[str, int] = {}
        for trigger in compiled.triggers(state.name):
            for _, t in compiled.candidates(state.name, trigger):
                if not ctx.holds_any(spec.transition_roles(t, state.name)):
                    continue
                if t.roles is None and t.quorum == 1 and taken_by_other:
                    blocked.setdefault(trigger, _why("任务已由他人领取", "the task is held by a colleague"))
                    continue
                if t.roles is None and barred:
                    blocked.setdefault(trigger, _why("职责分离：您已办理本案前序环节",
                                                     "separation of duties: you worked an earlier step of this case"))
                    continue
                if t.quorum > 1 and trigger in voted:
                    blocked.setdefault(trigger, _why("您已投过票，等待其他人", "you have voted; waiting for the others"))
                    continue
                if waiting and not t.interrupt:
                    blocked.setdefault(trigger, _why(f"并行任务尚未完成：{'、'.join(w.zh for w in waiting)}",
                                                     f"parallel work still open: {', '.join(w.en for w in waiting)}"))
                    continue
                if t.when is not None and not (t.when.names & form_fields(trigger)):
                    selection = compiled.select(state.name, trigger, ctx)
                    if selection.transition is None:  # the guard reads only what the case holds, and fails
                        blocked.setdefault(trigger, _why("；或者".join(r.zh for r in selection.reasons),
                                                         "; or ".join(r.en for r in selection.reasons)))
                        continue
                allowed.append(trigger)
                quorums[trigger] = compiled.quorum(state.name, trigger, ctx, t.quorum)
                blocked.pop(trigger, None)
                break
        return allowed, [{"trigger": k, **v} for k, v in blocked.items() if k not in allowed], quorums

    def quorums(self, actor: Actor, wanted: Mapping[int, str]) -> dict[int, int]:
        """Per case id, how many people its trigger (``wanted``: case id -> trigger) needs as the
        case stands, for ``actor``, as the case page says (:meth:`action_status`); closed or
        missing cases are left out. For cases of her own task lists (it reads no data out):
        two queries whatever the number of cases."""
        ids = [i for i in wanted if is_row_id(i)]
        if not ids:
            return {}
        out: dict[int, int] = {}
        today = self.engine.today()
        with self.engine.session_factory() as s:
            cases = list(s.scalars(select(Case).where(Case.id.in_(ids), Case.closed_at.is_(None))))
            open_tasks: dict[int, list[Task]] = {}
            for task in s.scalars(select(Task).where(Task.case_id.in_([c.id for c in cases]),
                                                     Task.status.in_(OPEN))):
                open_tasks.setdefault(task.case_id, []).append(task)
            for case in cases:
                spec = self.engine.spec_of(s, case.process_version_id)
                compiled = self.engine.compiled(s, case.process_version_id)
                trigger = wanted[case.id]
                fallback = max((t.quorum for t in spec.transitions_from(case.state, trigger)), default=1)
                ctx = FireContext.for_case(spec, case.data, actor, case.org_path, case.created_at, today,
                                           open_tasks.get(case.id, []))
                out[case.id] = compiled.quorum(case.state, trigger, ctx, fallback)
        return out

    def history(self, actor: Actor, case_id: int, read: "Read | None" = None) -> list[dict[str, Any]]:
        """The audit events of a case, oldest first (``read``: log it, as for :meth:`case`)."""
        with self.engine.session_factory() as s:
            case = s.get(Case, case_id) if is_row_id(case_id) else None
            if case is None or not can_see(s, self.engine, actor, case):
                raise not_found()
            self._log(s, actor, case, read)
            spec = self.engine.spec_of(s, case.process_version_id)
            working = works_on(s, actor, case, list(s.scalars(
                select(Task).where(Task.case_id == case.id, Task.status.in_(OPEN)))), self.engine)
            events = s.scalars(select(AuditEvent).where(AuditEvent.case_id == case_id).order_by(AuditEvent.seq))
            out = []
            for e in events:
                changes = e.changes
                if changes and not working:
                    changes = {k: ([MASK, MASK] if k in spec.fields and spec.fields[k].sensitive else v)
                               for k, v in changes.items()}
                out.append({"at": e.at, "actor": e.actor, "kind": e.kind, "trigger": e.trigger,
                            "from_state": e.from_state, "to_state": e.to_state, "comment": e.comment,
                            "changes": changes})
            return out

    def lookup_ids(self, actor: Actor, value: str, read: "Read | None" = None) -> list[int]:
        """The cases whose searchable field is exactly ``value`` that ``actor`` works (filed, holds
        or held one of its tasks, acted on it) or oversees (an overseer role at or above it); for
        anyone else nothing, as for no match. The search is recorded on the case-less audit chain
        (``searched``: who, and the ids she was shown; never the value) and in the access log of
        each confidential case it found (``search``)."""
        if not isinstance(value, str) or not storable_text(value) or len(value) > 200:
            raise BadRequest("查找内容无效", "the name or number to find is not valid text (at most 200 characters)")
        from . import audit
        from .access import overseer_roles
        from .protection import matching_case_ids
        with self.engine.transaction() as s:
            shown: list[int] = []
            candidates = matching_case_ids(s, value) if value.strip() else []
            for case in (s.scalars(select(Case).where(Case.id.in_(candidates))) if candidates else ()):
                if actor.is_system or actor.holds_any(overseer_roles(self.engine.registry.roles), case.org_path) \
                        or _worked(s, actor, case, self.engine):
                    shown.append(case.id)
                    if case.confidential and not actor.is_system:   # found by a search: in its access log
                        log_read(s, self.engine, actor, case.id,
                                 Read("search", read.remote_addr if read is not None else None))
            user = None if actor.is_system or actor.user_id is None else SimpleNamespace(
                id=actor.user_id, username=actor.username)
            if s.get_bind().dialect.name == "postgresql":   # one append at a time to the case-less chain
                from sqlalchemy import text
                from .people import CASELESS_CHAIN_LOCK
                s.execute(text(f"SELECT pg_advisory_xact_lock({CASELESS_CHAIN_LOCK})"))
            audit.append_event(s, None, kind="searched", actor=user, at=self.engine.clock(),
                               changes={"found": [None, sorted(shown)]})
            return sorted(shown)

    # ------------------------------------------------------------------ lists
    def cases(self, actor: Actor, *, process: str | None = None, state: str | None = None,
              org_unit: str | None = None, search: str | None = None, business_key: str | None = None,
              lookup: str | None = None, page: int = 1, per_page: int = 50,
              read: "Read | None" = None) -> Page:
        """Cases visible to ``actor``, newest first (``business_key``: exactly that key).

        ``lookup``: the survivor's full name or ID number, found through the blind index
        (:meth:`lookup_ids`): only the cases she works or oversees, each search recorded
        (``read``: from where, for the access log).
        """
        page, per_page = paging(page, per_page)
        found = self.lookup_ids(actor, lookup, read) if lookup is not None else None
        with self.engine.read_session() as s:
            stmt = select(Case, OrgUnit.code).join(OrgUnit, OrgUnit.id == Case.org_unit_id).where(
                visible_cases_clause(actor, self.engine.processes.values(), self.engine.registry.roles))
            if found is not None:
                stmt = stmt.where(Case.id.in_(found) if found else false())
            stmt = self._filters(s, stmt, Case, process, state, org_unit, search)
            if business_key is not None:
                if not storable_text(business_key):
                    raise BadRequest("查询条件包含无效字符", "filters contain characters that cannot be stored")
                stmt = stmt.where(Case.business_key == business_key)
            total = self.engine.count(s, stmt)
            rows = s.execute(stmt.order_by(Case.id.desc()).offset((page - 1) * per_page).limit(per_page)).all()
            items = []
            for case, code in rows:
                spec = self.engine.spec_of(s, case.process_version_id)
                items.append({"id": case.id, "process": case.process_key, "state": case.state,
                              "org_unit": code, "subject": case_code(case.id) if spec.confidential else case.subject,
                              "confidential": spec.confidential,
                              "business_key": case.business_key,
                              "created_at": case.created_at, "updated_at": case.updated_at,
                              "closed_at": case.closed_at, "lock_version": case.lock_version})
            return Page(items, total, page, per_page)

    def tasks(self, actor: Actor, view: str = "mine", *, process: str | None = None, state: str | None = None,
              org_unit: str | None = None, search: str | None = None, overdue_only: bool = False,
              sort: str | None = None, page: int = 1, per_page: int = 50) -> Page:
        """A task inbox: ``mine``, ``available``, ``overdue``, ``escalated``, or ``team`` (a manager's
        area: every open task of the cases she may see there), in the order ``sort`` (TASK_SORTS)."""
        if view not in TASK_VIEWS:
            raise BadRequest("未知的视图", f"view must be one of {', '.join(TASK_VIEWS)}", {"view": view})
        if sort is not None and sort not in TASK_SORTS:
            raise BadRequest("未知的排序方式", f"sort must be one of {', '.join(TASK_SORTS)}", {"sort": sort})
        page, per_page = paging(page, per_page)
        now = self.engine.clock()
        with self.engine.read_session() as s:
            _check_storable(process, state, org_unit, search)
            path = self._unit_path(s, org_unit) if org_unit else None
            # the statement built once per person as she is now (the view clause's key), filters
            # and order; the clock, the page's offset and size are its parameters
            key = ("tasks", view, actor.user_id, actor.assignments, actor.is_system, process, state, path,
                   search, overdue_only, sort)
            paged = None if search else _kept(self.engine, key)     # a search's words are not kept
            if paged is None:
                paged = self._task_page(actor, view, process, state, path, search, overdue_only, sort)
                if not search:
                    _keep(self.engine, key, paged)
            rows, total = self._page_of(s, paged, Task.id, page, per_page)
            people = {row.assignee_id: row.holder for row in rows if row.assignee_id is not None}
            items = []
            for task in rows:   # plain rows: the page needs no ORM objects
                row = task_row(task, people, now, case_held=task.case_held is not None)
                row.update(subject=case_code(task.case_id) if task.confidential else task.subject,
                           confidential=task.confidential,
                           org_unit_name=task.unit_name, org_unit_id=task.org_unit_id)
                items.append(row)
            return Page(items, total, page, per_page)

    def _task_page(self, actor: Actor, view: str, process, state, path, search, overdue_only, sort):
        """The statement of a page of her task list (see :meth:`_paged`).

        One statement for the page, its total (a window count) and the holders' names; a
        second only for a page past the end, where no row carries the total. Unit and holder
        are looked up per row (_UNIT_NAME, _HOLDER): as joins, a loose row estimate made
        PostgreSQL hash both whole tables (2 → 7 ms at a million cases). The tasks are
        counted, sorted and cut to the page first, and only the page's rows are joined with
        their cases (the join never drops a task: every task has its case): joined before,
        every matching task probed its case (a county chair's 264 offered tasks: 8 of 11 ms)."""
        where = self._view_clause(actor, view)
        if overdue_only:
            where = and_(where, Task.due_at < _now_param(self.engine, "inbox_overdue_now"))
        matching = select(*_TASK_COLUMNS, _UNIT_NAME, _HOLDER, func.count().over().label("total")).select_from(Task)
        if search:   # the search reads the case's subject and key: joined for it
            matching = matching.join(Case, Case.id == Task.case_id)
        matching = self._filters(None, matching.where(where), Task, process, state, None, search, path=path)
        return self._paged(matching, _task_order(sort), joined=lambda cut, order: (
            select(cut, Case.subject, Case.confidential, Case.suspended_at.label("case_held"))
            .join(Case, Case.id == cut.c.case_id).order_by(*_on(cut, order))))

    def upcoming(self, actor: Actor, days: int = 30, *, process: str | None = None,
                 page: int = 1, per_page: int = 50) -> Page:
        """The work timers and follow-ups will open in the next ``days`` for her or her roles.

        Rows ``{case_id, process, state, trigger, due_at, role, assignee}``, soonest first:
        each pending timer of a case she may see, with the task its firing opens (the role it
        is offered to, and who will get it: the holder of the state's task when the timer
        stays in the state, as a follow-up visit does, or the one retain-familiar names).
        Only the rows that will be hers, or offered to a role she holds there, are listed.
        """
        if not isinstance(days, int) or not 1 <= days <= 366:
            raise BadRequest("天数须在 1 到 366 之间", "days must be between 1 and 366", {"days": days})
        page, per_page = paging(page, per_page)
        now = self.engine.clock()
        processes = list(self.engine.processes.values())
        with self.engine.read_session() as s:
            where = [Timer.status == "pending", Timer.due_at <= now + timedelta(days=days), Case.closed_at.is_(None),
                     visible_cases_clause(actor, processes, self.engine.registry.roles)]
            if process:
                where.append(Case.process_key == process)
            # Which (version, state, trigger) the due timers have: what their firing opens is in the
            # definitions; who it goes to is asked of the database by the page's one statement.
            combos = s.execute(select(Case.process_version_id, Timer.state, Timer.trigger).distinct()
                               .select_from(Timer).join(Case, Case.id == Timer.case_id).where(*where)).all()
            picks: list[tuple[Any, Any, Any]] = []   # (the timer's row qualifies here, role, assignee)
            for version_id, state, trigger in combos:
                spec = self.engine.spec_of(s, version_id)
                this = and_(Case.process_version_id == version_id, Timer.state == state, Timer.trigger == trigger)
                for role, assignee in self._opened_by(spec, state, trigger):
                    mine = assignee == actor.user_id if actor.user_id is not None else false()
                    offered = and_(assignee.is_(None), _holds_clause(actor, role))
                    picks.append((and_(this, or_(mine, offered)), role, assignee))
            if not picks:
                return Page([], 0, page, per_page)
            # the first task of the state that is hers (or offered to her roles) names the row
            role = case(*((cond, literal(r)) for cond, r, _ in picks))
            assignee = case(*((cond, a) for cond, _, a in picks))
            matching = (select(Timer.case_id, Timer.state, Timer.trigger, Timer.due_at, Case.process_key,
                               role.label("role"), assignee.label("assignee_id"), func.count().over().label("total"))
                        .join(Case, Case.id == Timer.case_id).where(*where, or_(*(c for c, _, _ in picks))))
            rows, total = self._page_of(s, self._paged(matching, (Timer.due_at, Timer.id)), Timer.id, page, per_page)
            names = dict(s.execute(select(User.id, User.username).where(
                User.id.in_({r.assignee_id for r in rows if r.assignee_id is not None}))).all()) if rows else {}
        items = [{"case_id": r.case_id, "process": r.process_key, "state": r.state, "trigger": r.trigger,
                  "due_at": r.due_at, "role": r.role, "assignee": names.get(r.assignee_id)} for r in rows]
        return Page(items, total, page, per_page)

    @staticmethod
    def _opened_by(spec: ProcessSpec, state: str, trigger: str) -> list[tuple[str, Any]]:
        """(role, who it goes to: an SQL expression over the timer's row, NULL for nobody yet) of
        each task the firing of ``trigger`` in ``state`` opens."""
        transitions = [t for t in spec.transitions_from(state, trigger)]
        if not transitions:
            return []
        dest = spec.state(transitions[0].dest)
        out = []
        for task in dest.tasks:
            found = []
            if dest.name == state:   # it stays: the visit goes to whoever holds the work now
                found.append(select(Task.assignee_id).where(
                    Task.case_id == Timer.case_id, Task.state == dest.name, Task.name == task.name,
                    Task.status.in_(OPEN)).limit(1).scalar_subquery())
            if task.same_as:
                found.append(select(Task.completed_by_id).where(
                    Task.case_id == Timer.case_id, Task.state == task.same_as, Task.status == "completed")
                    .order_by(Task.completed_at.desc()).limit(1).scalar_subquery())
            assignee = func.coalesce(*found) if len(found) > 1 else found[0] if found else null()
            out.append((task.role, assignee))
        return out

    def _view_clause(self, actor: Actor, view: str, now=None):
        """Which tasks a view of her inbox holds (the one definition the page, the API and the
        navigation's counts share).

        Built once per person as she is now and kept (:func:`_person_cache`): the clause depends
        on nothing else than her id, the roles she holds where (as loaded for this request), the
        definitions (the registry: a publish makes a new one) and the clock, which is a
        parameter read at each execution. A change of any of them is a new key, so nothing
        kept can be stale; building it (separation of duties spans every task of every
        programme) cost more than running it.
        """
        key = ("view", view, actor.user_id, actor.assignments, actor.is_system)
        clause = _kept(self.engine, key)
        if clause is None:
            clause = _keep(self.engine, key, self._build_view_clause(actor, view, _now_param(self.engine)))
        return clause

    def _build_view_clause(self, actor: Actor, view: str, now):
        mine = Task.assignee_id == actor.user_id if actor.user_id is not None else Task.id.is_(None)
        offered = and_(Task.status == "offered", offered_tasks_clause(actor),
                       not_(_separated_clause(actor, self.engine.processes.values())))
        if view == "mine":
            return and_(Task.status == "allocated", mine)
        if view == "available":
            return offered
        if view == "overdue":   # not what is on hold: its clock stands still
            return and_(Task.status.in_(OPEN), Task.due_at < now, or_(mine, offered), Task.suspended_at.is_(None),
                        Task.case_id.notin_(select(Case.id).where(Case.suspended_at.isnot(None))))
        # The views that ask whether she may see the case ask it of the task's own case, as a
        # correlated EXISTS (one primary-key probe per candidate task), not through a join of the
        # statement with the cases: joined, PostgreSQL's planner charged the clause's subqueries
        # to every probe and hashed the whole case table instead (0.4 s at a million cases).
        sees_case = (select(literal(1)).where(Case.id == Task.case_id, visible_cases_clause(
            actor, self.engine.processes.values(), self.engine.registry.roles)).correlate_except(Case).exists())
        if view == "escalated":  # escalated to her: held by a colleague who let it lapse, too
            return and_(Task.status.in_(OPEN), Task.escalated.is_(True), or_(mine, offered_tasks_clause(actor)),
                        sees_case)
        return and_(Task.status.in_(OPEN), team_tasks_clause(actor, self.engine.registry.roles), sees_case)

    def task_counts(self, actor: Actor, views: tuple[str, ...] = ("mine", "available", "overdue", "escalated")
                    ) -> dict[str, int]:
        """How many tasks each view of her inbox holds, in one statement (the navigation's badges)."""
        key = ("counts", views, actor.user_id, actor.assignments, actor.is_system)
        stmt = _kept(self.engine, key)
        if stmt is None:   # built once per person as she is now, run at the driver (hexie.models.fast)
            clauses = [self._view_clause(actor, view) for view in views]
            built = select(*(func.count().filter(c) for c in clauses)).select_from(Task)
            # the rows any view may count: a cheap superset of the views (each count is exact), so
            # that the planner plans each view's clause once, not once more in the WHERE
            mine = Task.assignee_id == actor.user_id if actor.user_id is not None else Task.id.is_(None)
            candidates = [mine, offered_tasks_clause(actor)]
            if "team" in views:
                candidates.append(team_tasks_clause(actor, self.engine.registry.roles))
            stmt = _keep(self.engine, key, fast.Statement(built.where(Task.status.in_(OPEN), or_(*candidates))))
        with self.engine.read_session() as s:
            conn = s.connection()
            if conn.dialect.name == "postgresql":
                row = conn.exec_driver_sql(_prepared_text(stmt, conn), {"inbox_now": self.engine.clock()}).one()
            else:
                (row,) = fast.run(s, stmt).rows
        return {view: int(n or 0) for view, n in zip(views, row)}

    def report(self, actor: Actor, process: str, *, by: str = "town", within: str | None = None,
               since: date | None = None, until: date | None = None) -> dict[str, Any]:
        """Cases of ``process`` she may see, counted by unit and state and by month opened.

        ``by``: ``town`` (each unit one level below the root, as a county reports) or
        ``village`` (each unit two levels below: cases filed at a town itself count for the
        town); ``within``: only the subtree of that unit; ``since``/``until``: cases opened
        on those days (inclusive). ``{"states", "final_states", "rates": [{name, label}],
        "units": [{"code", "name", "counts": {state: n}, "total", "rates": {name: [n, of]},
        "open_tasks", "overdue"}], "totals": {...}, "months": [("2026-03", n)], "total"}``:
        what a chair reports upward (elder support's signing rate among them: a definition's
        ``rates``). Grouped in the database (a few hundred rows whatever the number of cases).
        """
        if by not in ("town", "village"):
            raise BadRequest("分组方式只能是镇或村", f"by must be town or village, not {by!r}")
        if since and until and since > until:
            raise BadRequest("开始日期晚于结束日期", "the first day is after the last one")
        spec = self.engine.current(process)[0]
        depth = 2 if by == "town" else 3
        with self.engine.read_session() as s:
            cases = [Case.process_key == process, visible_cases_clause(actor, [spec], self.engine.registry.roles)]
            if within:
                path = s.scalar(select(OrgUnit.path).where(OrgUnit.code == within))
                if path is None:
                    raise BadRequest("没有这个单位", f"unknown org unit {within!r}", {"within": within})
                cases.append(in_subtree(Case.org_path, path))
            if since:
                cases.append(Case.created_at >= datetime.combine(since, time()))
            if until:
                cases.append(Case.created_at < datetime.combine(until + timedelta(days=1), time()))
            by_unit = s.execute(select(Case.org_path, Case.state, func.count())
                                .where(*cases).group_by(Case.org_path, Case.state)).all()
            work = s.execute(select(Task.org_path, func.count(), func.count().filter(Task.due_at < self.engine.clock()))
                             .join(Case, Case.id == Task.case_id)
                             .where(Task.status.in_(OPEN), Task.kind == "work", *cases)
                             .group_by(Task.org_path)).all()
            year, month = func.extract("year", Case.created_at), func.extract("month", Case.created_at)
            by_month = s.execute(select(year, month, func.count()).where(*cases)
                                 .group_by(year, month).order_by(year, month)).all()
            units: dict[str, dict[str, int]] = {}
            for path, state, n in by_unit:
                counts = units.setdefault(unit_at_depth(path, depth), {})
                counts[state] = counts.get(state, 0) + n
            open_work: dict[str, list[int]] = {}
            for path, n, late in work:
                sums = open_work.setdefault(unit_at_depth(path, depth), [0, 0])
                sums[0], sums[1] = sums[0] + n, sums[1] + late
            names = dict(s.execute(select(OrgUnit.path, OrgUnit.name).where(OrgUnit.path.in_(list(units)))).all())
            towns = {path: name for path, name in s.execute(select(OrgUnit.path, OrgUnit.name).where(
                OrgUnit.path.in_({unit_at_depth(p, 2) for p in units}))).all()} if by == "village" else {}
        def rates(counts: Mapping[str, int]) -> dict[str, list[int]]:
            return {r.name: [sum(counts.get(st, 0) for st in r.of),
                             sum(n for st, n in counts.items() if not r.over or st in r.over)] for r in spec.rates}

        rows = []
        for path, counts in sorted(units.items()):
            name = names.get(path, path)
            town = towns.get(unit_at_depth(path, 2))
            rows.append({"code": path.rstrip("/").rsplit("/", 1)[-1],
                         "name": f"{town} · {name}" if town and town != name else name,
                         "counts": counts, "total": sum(counts.values()), "rates": rates(counts),
                         "open_tasks": open_work.get(path, [0, 0])[0], "overdue": open_work.get(path, [0, 0])[1]})
        totals: dict[str, int] = {"open_tasks": 0, "overdue": 0}
        for row in rows:
            for key, n in [*row["counts"].items(), ("open_tasks", row["open_tasks"]), ("overdue", row["overdue"])]:
                totals[key] = totals.get(key, 0) + n
        state_totals = {k: v for k, v in totals.items() if k not in ("open_tasks", "overdue")}
        report = {"process": process, "by": by, "states": [st.name for st in spec.states],
                "final_states": [st.name for st in spec.states if st.final],
                "rates": [{"name": r.name, "label": r.label} for r in spec.rates],
                "units": rows, "totals": totals, "total_rates": rates(state_totals),
                "months": [(f"{int(y):04d}-{int(m):02d}", n) for y, m, n in by_month],
                "total": sum(r["total"] for r in rows), "suppressed": False}
        # protection.md: counts below 5 over a confidential process, and what would give them back
        return suppress_report(report, spec.rates) if spec.confidential else report

    @staticmethod
    def _paged(matching, order, joined=None) -> tuple[Any, Any]:
        """(the statement of one page of ``matching`` in ``order``, ``matching``): ``matching``
        carries a ``count() over ()`` column named ``total``; the page's offset and size are the
        parameters ``page_offset`` and ``page_limit`` (:meth:`_page_of`), so the statement can be kept.

        ``joined(cut, order)``: the statement that reads the page from ``cut`` (the page's rows as
        a subquery), where columns of another table are joined to the page's rows only."""
        stmt = matching.order_by(*order).offset(bindparam("page_offset")).limit(bindparam("page_limit"))
        return (stmt if joined is None else joined(stmt.subquery("page"), order)), matching

    def _page_of(self, s: Session, paged, id_column, page: int, per_page: int):
        """One page of a :meth:`_paged` statement and the number of all its rows: read from the
        page's first row, counted only for a page past the end."""
        stmt, matching = paged
        rows = s.execute(stmt, {"page_offset": (page - 1) * per_page, "page_limit": per_page}).all()
        if rows:
            return rows, rows[0].total
        return rows, 0 if page == 1 else self.engine.count(s, matching.with_only_columns(id_column))

    @staticmethod
    def _unit_path(s: Session, org_unit: str) -> str:
        """The path of the unit a list is filtered to (a BadRequest naming it when there is none)."""
        path = s.scalar(select(OrgUnit.path).where(OrgUnit.code == org_unit))
        if path is None:
            raise BadRequest("没有这个单位", f"unknown org unit {org_unit!r}", {"org_unit": "不存在 / unknown"})
        return path

    def _filters(self, s: Session | None, stmt, table, process, state, org_unit, search, path: str | None = None):
        """``stmt`` filtered; ``path``: the unit's, already read (else ``org_unit``'s is read through ``s``)."""
        if process:
            stmt = stmt.where(table.process_key == process)
        if state:
            stmt = stmt.where(table.state == state)
        if org_unit and path is None:
            path = self._unit_path(s, org_unit)
        if path is not None:
            stmt = stmt.where(in_subtree(table.org_path, path))
        _check_storable(process, state, org_unit, search)
        if search:
            words = search.strip()[:100]
            stmt = stmt.where(or_(and_(Case.subject.contains(words, autoescape=True), Case.confidential.is_(False)),
                                  Case.business_key.contains(words, autoescape=True)))
        return stmt


def _check_storable(*filters: Any) -> None:
    if any(v and not storable_text(str(v)) for v in filters):
        raise BadRequest("查询条件包含无效字符", "filters contain characters that cannot be stored")


def _on(cut: Any, order: list) -> list:
    """``order`` (of the tasks table) over the subquery ``cut`` of its rows."""
    adapt = ClauseAdapter(cut)
    out = []
    for o in order:
        o = o.__clause_element__() if hasattr(o, "__clause_element__") else o
        out.append(cut.corresponding_column(o) if isinstance(o, Column) else adapt.traverse(o))
    return out


def _task_order(sort: str | None) -> list:
    """ORDER BY of a task list: undated work last whichever way the dates run; ties by id."""
    undated_last = Task.due_at.is_(None)
    if sort in (None, "due"):
        return [undated_last, Task.due_at, _PRIORITY_RANK, Task.id]
    if sort == "-due":
        return [undated_last, Task.due_at.desc(), _PRIORITY_RANK, Task.id]
    if sort == "priority":
        return [_PRIORITY_RANK, undated_last, Task.due_at, Task.id]
    if sort == "-priority":
        return [_PRIORITY_RANK.desc(), undated_last, Task.due_at, Task.id]
    if sort == "created":
        return [Task.created_at, Task.id]
    return [Task.created_at.desc(), Task.id.desc()]


#: How many people's clauses an engine keeps (then it starts afresh: a key is cheap to rebuild).
PERSON_CACHE_SIZE = 4096


def _kept(engine: Engine, key: tuple) -> Any:
    """What the inbox and the navigation built for ``key`` (a person as she is now) with the
    engine's current definitions, or None (see :meth:`CaseQueries._view_clause`)."""
    kept = engine.__dict__.get("_hexie_person_cache")
    if kept is None or kept[0] is not engine.registry:   # definitions published since: start afresh
        return None
    return kept[1].get(key)


def _keep(engine: Engine, key: tuple, value: Any) -> Any:
    kept = engine.__dict__.get("_hexie_person_cache")
    if kept is None or kept[0] is not engine.registry or len(kept[1]) >= PERSON_CACHE_SIZE:
        kept = engine.__dict__["_hexie_person_cache"] = (engine.registry, {})
    kept[1][key] = value
    return value


_NOW_MARK = b"\x00inbox_now\x00"   # never in a rendered literal: PostgreSQL text holds no NUL


def _prepared_text(stmt: "fast.Statement", conn) -> str:
    """PostgreSQL: the counts statement with every value but the clock written in as a literal.

    The statement is particular to her (her roles and areas are in it) and long (9.6 KB at a
    million cases): planning it took 6 of the 9 ms it cost. Sent as the same text on every
    request with the clock as its one parameter, psycopg prepares it on the connection after
    five runs (``prepare_threshold``) and PostgreSQL keeps a generic plan for it after five
    more: about 0.05 ms of planning instead of 6. The areas stay literals, so that the generic
    plan still reads the ``org_path`` indexes by prefix (a ``LIKE $1`` could not). What is kept
    is the plan, never an answer: every run counts what is committed now (docs/performance.md,
    section 3). Built once per person and kept with her statement (:func:`_kept`).
    """
    form = stmt.form(conn.dialect, None)
    text = getattr(form, "hexie_prepared", None)
    if text is None:
        from psycopg.adapt import Transformer
        literal = Transformer(conn.connection.dbapi_connection).as_literal
        params = form.params({})
        params["inbox_now"] = _NOW_MARK
        rendered = fast._render(form.template, params,
                                lambda v: _NOW_MARK if v is _NOW_MARK else literal(v))
        # the driver's placeholders: a literal % doubled, the clock's mark made its parameter
        text = form.hexie_prepared = rendered.replace(b"%", b"%%").replace(
            _NOW_MARK, b"%(inbox_now)s").decode()
    return text


def _holds_clause(actor: Actor, role: str):
    """SQL for ``actor.holds(role, Case.org_path)``: the case lies where she holds ``role``."""
    paths = sorted({a.unit_path for a in actor.assignments if a.role == role})
    return or_(*(Case.org_path.startswith(p, autoescape=True) for p in paths)) if paths else false()


def _now_param(engine: Engine, name: str = "inbox_now"):
    """The engine's clock as a parameter read when the statement runs (not when it was built)."""
    from sqlalchemy import DateTime
    return bindparam(name, type_=DateTime(), callable_=lambda: engine.clock())


def _separated_clause(actor: Actor, processes):
    """Tasks separation of duties keeps from her: she completed an earlier step they name in that case."""
    if actor.user_id is None:
        return false()
    done = aliased(Task)
    # ``completed_by_id + 0``: the probe reads the case's few tasks by (case_id, status); left a
    # plain column, PostgreSQL ANDed it with a scan of everything she ever completed (733 index
    # entries a probe for a county chair, 0.015 ms × a probe per offered task, twice in her counts)
    barred = [and_(Task.process_key == spec.key, Task.state == state.name, Task.name == task.name,
                   exists().where(done.case_id == Task.case_id, done.state.in_(task.separate_from),
                                  done.status == "completed", (done.completed_by_id + 0) == actor.user_id))
              for spec in processes for state in spec.states for task in state.tasks if task.separate_from]
    return or_(*barred) if barred else false()


def _why(zh: str, en: str) -> dict[str, str]:
    return {"reason_zh": zh, "reason_en": en}


def task_row(t: Task, people: Mapping[int, str], now, case_held: bool = False,
             spec: ProcessSpec | None = None) -> dict[str, Any]:
    """One task as lists and the case show it; a held task (or one of a held case) is never overdue:
    its clock stands still."""
    held = bool(getattr(t, "suspended_at", None)) or case_held
    row = {"id": t.id, "case_id": t.case_id, "process": t.process_key, "state": t.state, "name": t.name,
            "role": t.role, "status": t.status, "assignee": people.get(t.assignee_id),
            "due_at": t.due_at, "overdue": bool(t.due_at and t.status in OPEN and t.due_at < now and not held),
            "escalated": bool(t.escalated), "priority": t.priority, "created_at": t.created_at,
            "kind": getattr(t, "kind", None) or "work", "suspended": held,
            "flagged": bool(getattr(t, "flagged", False)), "consult_of": getattr(t, "consult_of", None)}
    task_spec = _task_spec(spec, t) if spec is not None else None
    if task_spec is not None and task_spec.acceptance:   # a referral: accepted yet, or to accept or decline
        row.update(acceptance=True, accepted=getattr(t, "accepted_at", None) is not None)
    return row


def _task_spec(spec: ProcessSpec, t: Any) -> TaskSpec | None:
    try:
        return spec.state(t.state).task(t.name)
    except KeyError:
        return None


def _latest_per_task(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each referral task of the state once: its latest row (a state entered again opens new ones)."""
    latest: dict[str, dict[str, Any]] = {}
    for row in rows:   # oldest first
        latest[row["name"]] = row
    return list(latest.values())


def _usernames(s: Session, ids) -> dict[int, str]:
    ids = [i for i in ids if i is not None]
    if not ids:
        return {}
    return dict(s.execute(select(User.id, User.username).where(User.id.in_(ids))).all())


def paging(page: int, per_page: int) -> tuple[int, int]:
    try:
        page, per_page = int(page), int(per_page)
    except (TypeError, ValueError):
        raise BadRequest("分页参数无效", "page must be a whole number") from None
    if page < 1 or not 1 <= per_page <= 200:
        raise BadRequest("分页参数无效", "page >= 1 and 1 <= per_page <= 200", {"page": page})
    return page, per_page
