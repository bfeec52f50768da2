"""The service layer: the only way anything changes a case.

Each public method is one transaction. A refused call raises a typed error
(:mod:`hexie.workflows.errors`) and writes nothing. Reads live in :mod:`hexie.workflows.queries`.

The case and tasks an action works on are read as plain :class:`Record` objects and
written with statements built once: no ORM identity map, no unit of work (they cost more
than everything else an action does). The action changes its records in place and
:func:`save_case` / :func:`save_task` write each back with one UPDATE, checked against
the ``lock_version`` it was read with (a concurrent change is a :class:`Conflict`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, time, timezone, tzinfo
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, Iterable, Mapping

from sqlalchemy import bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hexie.models import Attachment, Case, ExternalTask, LedgerEntry, OrgUnit, RequestKey, Task, Timer, User, Vote
from hexie.models import fast

from . import audit, notifications
from .access import SYSTEM, Actor, escalated_to, is_admin, manages_case, may_take, offered_now
from .engine import Engine
from .errors import Conflict, Forbidden, HexieError, Invalid, NotFound, not_found
from .forms import checked_comment, defaults, validate_form
from .ledger import ledger_posting
from .consent import accept_referral, consent_holds
from .protection import index_case
from .queries import barred_by_separation
from .workday import WorkdayMixin
from .routing import first_holder, route  # noqa: F401  (first_holder: the bulk import's too)
from .machine import FireContext
from .spec import LEDGER_KEY, SYSTEM_ROLE, FormField, Label, ProcessSpec, StateSpec, TaskSpec, TransitionSpec

OPEN = ("offered", "allocated")
#: How many automatic transitions one service call fires on a case, and how deep cases that call
#: one another are settled, before the engine stops and leaves the case where it is (a loop of
#: ``auto: true`` transitions through states with no work would otherwise never end).
AUTO_CHAIN_LIMIT = 20
CALL_DEPTH_LIMIT = 8

# Statements built once: building and cache-keying a statement costs more than running it
# on a fast connection, and these run on every action.
_cases, _tasks = Case.__table__, Task.__table__
_CASE_FOR_UPDATE = select(_cases).where(_cases.c.id == bindparam("case_id")).with_for_update()
_TASK = select(_tasks).where(_tasks.c.id == bindparam("task_id"))
# the case's open work (a consult is no step of the process: it stays open until answered)
_OPEN_TASKS = select(_tasks).where(_tasks.c.case_id == bindparam("case_id"), _tasks.c.status.in_(OPEN),
                                   _tasks.c.kind == "work")
#: What :func:`save_case` writes back: its parameter -> the case's column.
_CASE_WRITES = {"v_version": "process_version_id", "v_state": "state", "v_data": "data", "v_subject": "subject",
                "v_updated": "updated_at", "v_closed": "closed_at", "v_seq": "audit_seq", "v_head": "audit_head",
                "v_event_seq": "event_seq", "v_owner": "owner_id", "v_suspended_at": "suspended_at",
                "v_suspended_until": "suspended_until", "v_suspended_by": "suspended_by_id",
                "v_suspend_comment": "suspend_comment"}
_SAVE_TASK = (update(_tasks).where(_tasks.c.id == bindparam("b_id"), _tasks.c.lock_version == bindparam("b_lock"))
              .values(status=bindparam("v_status"), assignee_id=bindparam("v_assignee"),
                      completed_at=bindparam("v_completed_at"), completed_by_id=bindparam("v_completed_by"),
                      escalated=bindparam("v_escalated"), due_at=bindparam("v_due_at"),
                      escalate_at=bindparam("v_escalate_at"), suspended_at=bindparam("v_suspended_at"),
                      flagged=bindparam("v_flagged"), lock_version=_tasks.c.lock_version + 1))
_INSERT_CASE = insert(_cases).returning(_cases.c.id)
_INSERT_TASK = insert(_tasks).returning(_tasks.c.id)
_CASE_TASKS = select(_tasks).where(_tasks.c.case_id == bindparam("case_id")).order_by(_tasks.c.id)

_INSERT_TIMER = insert(Timer.__table__)
_INSERT_VOTE = insert(Vote.__table__)
_INSERT_LEDGER = insert(LedgerEntry.__table__)
_INSERT_EXTERNAL = insert(ExternalTask.__table__)
_INSERT_ATTACHMENT = insert(Attachment.__table__).returning(Attachment.__table__.c.id)
_INSERT_REQUEST_KEY = insert(RequestKey.__table__)

# The same, run at the driver (hexie.models.fast): compiled once per dialect, and on PostgreSQL
# the writes travel with the transaction's next round trip.
_F_CASE_FOR_UPDATE = fast.Statement(_CASE_FOR_UPDATE)
_F_CASE_TASKS = fast.Statement(_CASE_TASKS)
_F_SAVE_TASK = fast.Statement(_SAVE_TASK, checked=True)
_F_INSERT_TASK = fast.Statement(_INSERT_TASK)
_F_INSERT_TIMER = fast.Statement(_INSERT_TIMER)
_F_INSERT_LEDGER = fast.Statement(_INSERT_LEDGER)


@dataclass(frozen=True)
class Upload:
    """A file already stored outside the web root, to be recorded on a ``file`` field by the
    call it is handed to (start, action, done): in that call's transaction, so that a refused
    call keeps no attachment (the caller then removes the stored file)."""

    field: str
    filename: str
    content_type: str
    size: int
    storage_key: str


class WorkflowService(WorkdayMixin):
    """Start cases, fire actions, work tasks, run timers: each call one transaction.

    The working day's verbs (owner, hold and resume, notes, consults, away) come from
    :class:`~hexie.workflows.workday.WorkdayMixin`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # ------------------------------------------------------------------ start
    def start_case(self, actor: Actor, process: str, org_unit: str, data: Mapping[str, Any] | None = None,
                   comment: str | None = None, *, business_key: str | None = None,
                   host_values: Mapping[str, Any] | None = None, host: bool = False,
                   session: Session | None = None, uploads: Iterable[Upload] = ()) -> int:
        """Open a case of ``process`` at unit ``org_unit`` with its first form filled; returns its id.

        ``business_key``: the outside record the case is about, unique per process (a second
        case with the same key is a :class:`Conflict`). ``host_values``: case fields owned by a
        host record (its ``__workflow_fields__``), copied in whatever the first form lists and
        never editable by Hexie's forms afterwards. ``host``: the host application starts the
        case for ``actor`` (through the mixin): a process with ``starters: [system]`` accepts
        it. ``session``: a host's session to run in (:meth:`Engine.transaction`).
        ``uploads``: files for the first form's file fields, recorded in the same transaction.
        Attachment ids in ``data`` must be those uploads' own (nothing else is this case's).
        """
        spec, version_id, _ = self.engine.current(process)
        data = dict(data or {})
        host_values = dict(host_values or {})
        business_key = _business_key(business_key)
        uploads = list(uploads)
        comment = checked_comment(comment)
        with self.engine.transaction(session) as s:
            unit = s.scalars(select(OrgUnit).where(OrgUnit.code == org_unit)).first()
            check_start(self.engine.registry.roles.levels, spec, actor, unit, org_unit, host=host)
            if business_key is not None and s.scalar(select(Case.id).where(
                    Case.process_key == spec.key, Case.business_key == business_key).limit(1)) is not None:
                raise _duplicate_key(spec.key, business_key)
            owned = host_start_values(spec, host_values)   # they fill the first form's fields too
            own_data = {k: v for k, v in data.items() if k not in host_values}
            values = {} if uploads else start_values(spec, own_data, owned)  # with uploads: once their ids are known
            initial = spec.initial_state
            now = self.engine.clock()
            case = Record(process_version_id=version_id, process_key=spec.key, state=initial.name,
                          data=values, org_unit_id=unit.id, org_path=unit.path, created_by_id=actor.user_id,
                          created_at=now, updated_at=now, closed_at=None, subject=_subject(spec, values),
                          confidential=spec.confidential, audit_seq=0, audit_head=None, event_seq=0,
                          business_key=business_key, host_fields=sorted(host_values) or None,
                          owner_id=actor.user_id, suspended_at=None, suspended_until=None, suspended_by_id=None,
                          suspend_comment=None)
            try:
                case.id = s.connection().execute(_INSERT_CASE, vars(case)).scalar_one()
            except IntegrityError:   # the same key, started meanwhile by someone else (all rolled back)
                if business_key is None:
                    raise
                raise _duplicate_key(spec.key, business_key) from None
            case.lock_version = 1
            if uploads:
                ids = self._record_uploads(s, actor, case, spec, uploads, {e.name for e in initial.form}, now)
                values = start_values(spec, _with_uploads(spec, own_data, {}, ids), owned)
                case.data, case.subject = values, _subject(spec, values)
            errors = _foreign_attachments(s, spec, case, values)
            if errors:
                raise Invalid("表单有误", "the form has errors", errors)
            audit.append_event(s, case, kind="started", actor=self._user(s, actor), to_state=initial.name,
                               comment=comment or None, changes=start_changes(values), at=now,
                               seal=audit.sealed_fields(spec))
            index_case(s, spec, case.id, values)
            self._audit_uploads(s, actor, case, uploads, now, spec)
            emit(self.engine, s, case, "case_started", process=spec.key, state=initial.name, org_unit=unit.code)
            self._enter(s, spec, case, initial, actor, now, starter=actor)
            save_case(s, case)
            self._settle(s, case.id, now, spec)
            return case.id

    def sync_fields(self, actor: Actor, case_id: int, values: Mapping[str, Any], *,
                    session: Session | None = None) -> dict[str, list[Any]]:
        """Copy a host record's mapped values into its case; returns the changes (``{field: [old, new]}``).

        Only the case's host fields (set when it was started) are accepted. Nothing changed:
        nothing is written. Otherwise one audit event (kind ``synced``) by ``actor``.
        """
        with self.engine.transaction(session) as s:
            case = self._case_for_update(s, actor, case_id)
            spec = self.engine.spec_of(s, case.process_version_id)
            owned = set(case.host_fields or ())
            foreign = sorted(set(values) - owned)
            if foreign:
                raise Invalid("这些字段不由业务系统维护", f"not host fields of this case: {', '.join(foreign)}",
                              {name: "not a host field / 非业务系统字段" for name in foreign})
            changes, errors = validate_form(spec, [FormField(name, False) for name in sorted(owned)],
                                            dict(values), case.data)
            if errors:
                raise Invalid("业务系统的数据不符合流程字段", "the host's values do not fit the case's fields", errors)
            if not changes:
                return {}
            if case.closed_at is not None:
                raise Conflict("案件已办结，不能再同步", "the case is closed: its fields no longer change")
            now = self.engine.clock()
            change_log = {k: [case.data.get(k), v] for k, v in changes.items()}
            case.data = {**case.data, **changes}
            case.subject = _subject(spec, case.data)
            case.updated_at = now
            audit.append_event(s, case, kind="synced", actor=self._user(s, actor), from_state=case.state,
                               to_state=case.state, changes=change_log, at=now, seal=audit.sealed_fields(spec))
            index_case(s, spec, case.id, case.data, changes)
            save_case(s, case)
            return json.loads(audit.canonical_json(change_log))

    # ------------------------------------------------------------------- fire
    def fire(self, actor: Actor, case_id: int, trigger: str, data: Mapping[str, Any] | None = None,
             comment: str | None = None, lock_version: int | None = None, *,
             session: Session | None = None, uploads: Iterable[Upload] = (),
             request_key: str | None = None) -> dict[str, Any]:
        """Fire ``trigger`` on a case. Returns ``{"outcome": "moved"|"voted", ...}``.

        ``session``: a host's session to run in (:meth:`Engine.transaction`).
        ``uploads``: files for the action form's file fields, recorded in the action's own
        transaction (a refused action keeps none of them); their ids join the field's value.
        ``request_key``: the caller's key for this request (the API's ``Idempotency-Key``, a
        page's form key); sent again once the action is committed, it gets the same answer
        (with ``repeated: true``) and nothing is done twice, so that a retry after a database
        blip never reads "already voted".
        """
        with self.engine.transaction(session) as s:
            return self._fire(s, actor, case_id, trigger, dict(data or {}), comment, lock_version, list(uploads),
                              request_key)

    def _fire(self, s: Session, actor: Actor, case_id: int, trigger: str, data: dict[str, Any],
              comment: str | None, lock_version: int | None, uploads: list[Upload] = (),
              request_key: str | None = None, settle: bool = True) -> dict[str, Any]:
        case = self._case_for_update(s, actor, case_id)
        spec = self.engine.spec_of(s, case.process_version_id)
        compiled = self.engine.compiled(s, case.process_version_id)
        if request_key is not None:
            answered = self._answered(s, actor, request_key, case.id)
            if answered is not None:
                return answered
        if lock_version is not None and lock_version != case.lock_version:
            raise Conflict("案件已被他人修改，请刷新", "the case changed since you loaded it (stale lock_version)",
                           {"lock_version": case.lock_version})
        refuse_while_held(case)
        if not any(t.trigger == trigger for t in spec.transitions):
            raise NotFound("没有这个操作", f"{spec.key} has no action {trigger!r}")
        state = spec.state(case.state)
        if case.closed_at is not None and not state.final:   # it ended where it was, idle or cancelled
            raise Conflict("案件已办结，不能再办理", "the case is closed: no action is possible")
        if trigger not in compiled.triggers(state.name):
            raise Conflict("案件已进入其他环节，此操作不再可用",
                           f"the case is in {state.name}; {trigger!r} is not possible there")
        all_tasks = case_tasks(s, case.id)
        open_tasks = [t for t in all_tasks if _open_work(t)]
        ctx = self._context(spec, case, actor, {}, open_tasks)   # who she is here; the data comes below
        candidates = [t for _, t in compiled.candidates(state.name, trigger)]
        if not any(ctx.holds_any(spec.transition_roles(t, state.name)) for t in candidates):
            raise Forbidden("您无权执行此操作", f"you may not {trigger} here")
        if not actor.is_system:  # before the form: "taken by a colleague" is the answer, not its errors
            self._check_task_holder(s, actor, state, candidates, open_tasks, case)

        form = spec.action_form(state.name, trigger)
        refuse_host_fields(case, data)
        if uploads:
            now = self.engine.clock()
            ids = self._record_uploads(s, actor, case, spec, uploads, {f.name for f in form}, now)
            data = _with_uploads(spec, data, case.data, ids)
            self._audit_uploads(s, actor, case, uploads, now, spec)
        changes, errors = validate_form(spec, form, data, case.data)
        errors.update(_foreign_attachments(s, spec, case, changes))
        if errors:
            raise Invalid("表单有误", "the form has errors", errors)
        merged = {**case.data, **changes}
        ctx = self._context(spec, case, actor, merged, open_tasks)
        selection = compiled.select(state.name, trigger, ctx)
        chosen = selection.transition
        if chosen is None:
            zh = "；或者".join(r.zh for r in selection.reasons) or "没有可用的办理路径"
            en = "; or ".join(r.en for r in selection.reasons) or "no way forward applies"
            raise Invalid(f"不能执行此操作：{zh}", f"not allowed now: {en}",
                          {"when": f"{zh} / {en}", "expression": "; ".join(selection.expressions)})
        comment = checked_comment(comment)
        if chosen.comment == "required" and not comment:
            raise Invalid("此操作必须填写意见", "a comment is required for this action",
                          {"comment": "必填 / required"})
        if chosen.comment == "none" and comment:
            raise Invalid("此操作不接受意见", "this action takes no comment", {"comment": "此操作不接受意见 / not allowed for this action"})
        # A timer fires "if the case is still in the state then": a deadline does not wait
        # for the parallel work it cuts short (the open tasks are cancelled, as by an interrupt).
        if state.parallel and not chosen.interrupt and not actor.is_system:
            waiting = [t.name for t in open_tasks if not t.optional]
            if waiting:
                labels = [state.task(name).label for name in waiting]
                raise Invalid(f"并行任务尚未全部完成：{'、'.join(l.zh for l in labels)}",
                              f"parallel tasks still open: {', '.join(l.en for l in labels)}", {"tasks": waiting})
        posting = ledger_posting(chosen, merged)
        now = self.engine.clock()
        user = self._user(s, actor)
        change_log = {k: [case.data.get(k), v] for k, v in changes.items()}
        if chosen.quorum > 1:
            try:
                s.connection().execute(_INSERT_VOTE, {"case_id": case.id, "state": state.name, "trigger": trigger,
                                                      "user_id": actor.user_id, "comment": comment, "created_at": now})
            except IntegrityError:
                raise Conflict("您已投过票", "you have already voted on this") from None
            votes = s.scalar(select(func.count()).select_from(Vote).where(
                Vote.case_id == case.id, Vote.state == state.name, Vote.trigger == trigger))
            if votes < chosen.quorum:
                case.data = merged
                case.updated_at = now  # bumps lock_version: voters are serialized on the case
                audit.append_event(s, case, kind="vote", actor=user, trigger=trigger, from_state=state.name,
                                   to_state=state.name, comment=comment, changes=change_log or None, at=now,
                                   seal=audit.sealed_fields(spec))
                index_case(s, spec, case.id, merged, changes)
                save_case(s, case)
                return self._remember(s, actor, request_key, case.id, {
                    "outcome": "voted", "votes": votes, "quorum": chosen.quorum, "case_id": case.id})
        new_state = compiled.fire(state.name, trigger, ctx)
        self._leave(s, case, state, actor, chosen.interrupt, now, open_tasks=open_tasks,
                    sweep=bool(state.timers) or _has_quorum(spec, state))
        case.data = merged
        case.state = new_state
        case.subject = _subject(spec, merged)
        case.updated_at = now
        if posting is not None:
            change_log[LEDGER_KEY] = [None, posting]
        event = audit.append_event(s, case, kind="fired", actor=user, trigger=trigger, from_state=state.name,
                                   to_state=new_state, comment=comment, changes=change_log or None, at=now,
                                   seal=audit.sealed_fields(spec))
        index_case(s, spec, case.id, merged, changes)
        if posting is not None:
            fast.defer(s, _F_INSERT_LEDGER, insert=True, values={
                "case_id": case.id, "audit_seq": event.seq, "process_key": spec.key, "trigger": trigger,
                "fund": posting["fund"], "kind": posting["kind"], "amount": Decimal(posting["amount"]),
                "org_unit_id": case.org_unit_id, "org_path": case.org_path, "actor_id": actor.user_id, "at": now,
                "voucher": posting.get("voucher"), "donor": None, "received_on": None})
        emit(self.engine, s, case, "state_changed", process=spec.key, trigger=trigger, from_state=state.name,
             to_state=new_state, actor=actor.username)
        entered = spec.state(new_state)
        # sent back to a step it was at before (the tasks read with the locked case tell)
        returned = bool(entered.tasks) and new_state != state.name and any(t.state == new_state for t in all_tasks)
        self._enter(s, spec, case, entered, actor, now, returned=returned)
        save_case(s, case)
        if case.closed_at is not None and getattr(case, "parent_case_id", None) is not None:
            self._return_to_parent(s, case, now)
        if settle:
            new_state = self._settle(s, case.id, now, spec) or new_state
        return self._remember(s, actor, request_key, case.id, {"outcome": "moved", "case_id": case.id, "state": new_state})

    def _answered(self, s: Session, actor: Actor, request_key: str, case_id: int) -> dict[str, Any] | None:
        """What the call with this request key answered, if it was committed: a retry (after a
        database blip, a lost answer, a second click) gets the same answer, nothing twice."""
        if actor.user_id is None:
            return None
        row = s.execute(select(RequestKey.case_id, RequestKey.outcome).where(
            RequestKey.user_id == actor.user_id, RequestKey.key == request_key)).first()
        if row is None:
            return None
        if row.case_id != case_id:
            raise Conflict("该请求编号已用于另一案件", "this Idempotency-Key was used for another case",
                           {"idempotency_key": "used / 已使用"})
        return {**row.outcome, "repeated": True}

    def _remember(self, s: Session, actor: Actor, request_key: str | None, case_id: int,
                  outcome: dict[str, Any]) -> dict[str, Any]:
        """Keep the call's answer under its request key, in its own transaction."""
        if request_key is not None and actor.user_id is not None:
            s.connection().execute(_INSERT_REQUEST_KEY, {"user_id": actor.user_id, "key": request_key,
                                                         "case_id": case_id, "outcome": outcome,
                                                         "created_at": self.engine.clock()})
        return outcome

    def _check_task_holder(self, s: Session, actor: Actor, state: StateSpec, candidates: list[TransitionSpec],
                           open_tasks: list[Record], case: Record) -> None:
        """Default-role actions belong to the task's holder, and respect separation of duties."""
        own = [t for t in candidates if t.roles is None]
        if not own:
            return
        mine = [t for t in open_tasks if may_take(actor, t) or t.assignee_id == actor.user_id]
        if all(t.quorum == 1 for t in own) and mine and all(
                t.assignee_id not in (None, actor.user_id) and not escalated_to(actor, t) for t in mine):
            raise Conflict("任务已由他人领取", "the task is allocated to someone else")
        for task_spec in state.tasks:
            self._check_separation(s, actor, case, task_spec)

    def _check_separation(self, s: Session, actor: Actor, case: Record, task_spec: TaskSpec) -> None:
        if barred_by_separation(s, actor, case.id, task_spec):
            raise Forbidden("职责分离：您已办理本案前序环节，不能办理此任务",
                            "separation of duties: you worked an earlier step of this case "
                            f"({', '.join(task_spec.separate_from)})")

    # --------------------------------------------------------- state changes
    def _enter(self, s: Session, spec: ProcessSpec, case: Record, state: StateSpec, actor: Actor,
               now: datetime, starter: Actor | None = None, returned: bool = False) -> None:
        """Open the state's tasks and schedule its timers; close the case on a final state.

        The people of each new task are told (``returned``: the case was sent back to this
        step, a return for revision); on a final state, the case's owner and those who worked it.
        """
        if state.final:
            case.closed_at = now
            emit(self.engine, s, case, "case_closed", process=spec.key, state=state.name)
            # a consult still open ends with the case
            s.execute(update(Task).where(Task.case_id == case.id, Task.kind == "consult", Task.status.in_(OPEN))
                      .values(status="cancelled", completed_at=now))
            people = [getattr(case, "owner_id", None) or case.created_by_id, *s.scalars(select(Task.completed_by_id).where(
                Task.case_id == case.id, Task.completed_by_id.isnot(None), Task.kind == "work").distinct())]
            notifications.notify(s, self.engine, "case_closed", people, case, actor=actor, state=state.name)
            return
        for task_spec in state.tasks_to_open(case.data):
            self._open_task(s, spec, case, state, task_spec, actor, now, starter, returned)
        for trigger, due in timer_dues(state, case.data, now, self.engine.timezone):
            fast.defer(s, _F_INSERT_TIMER, {"case_id": case.id, "state": state.name, "trigger": trigger,
                                            "due_at": due, "status": "pending"}, insert=True)
        if state.call is not None:
            self._start_child(s, spec, case, state, actor, now)

    def _open_task(self, s: Session, spec: ProcessSpec, case: Record, state: StateSpec, task_spec: TaskSpec,
                   actor: Actor, now: datetime, starter: Actor | None = None, returned: bool = False) -> int:
        """Open one work item of ``state`` and tell its people."""
        task = dict(case_id=case.id, **new_task_values(spec, state, task_spec, case.org_unit_id, case.org_path, now))
        if task_spec.consent is not None and not consent_holds(s, case.id, task_spec.consent):
            # held back until her consent for the agency is recorded (consent.py opens it)
            task.update(status="waiting", due_at=None, escalate_at=None)
            return s.connection().execute(_INSERT_TASK, task).scalar_one()
        # interleaved tasks are taken one at a time, by whoever picks one: none is handed out at once
        holder, flagged = (None, False) if task_spec.external or state.interleaved else route(
            s, self.engine, spec, case, task_spec, starter)
        if holder is not None:
            task.update(status="allocated", assignee_id=holder)
        task["flagged"] = flagged
        # the new task and what notify() reads of the people it is offered to
        # (notifications.task_people): one round trip
        asked = None if task_spec.external or holder is not None else notifications.offered_reads(
            s, self.engine, task["role"], task["org_path"], task["at_level"], actor)
        _read_tasks(s).pop(case.id, None)
        answers = fast.run_many(s, [(_F_INSERT_TASK, task, True), *(asked or ())])
        task_id = answers[0].scalar()
        emit(self.engine, s, case, "task_created", task_id=task_id, process=spec.key, state=state.name,
             name=task["name"], role=task["role"], assignee_id=holder)
        if task_spec.external:   # a machine step: fetched by its workers, nobody to tell
            s.connection().execute(_INSERT_EXTERNAL, {"task_id": task_id, "topic": task_spec.external,
                                                      "retries": task_spec.retries, "created_at": now})
            return task_id
        created = Record(id=task_id, escalated=False, **{k: v for k, v in task.items() if k != "assignee_id"},
                         assignee_id=holder)
        kind = "task_returned" if returned else "task_allocated" if holder is not None else "task_offered"
        notifications.notify(s, self.engine, kind, [holder], case, task=created, actor=actor,
                             read=answers[1:] if asked else None)
        return task_id

    def _leave(self, s: Session, case: Record, state: StateSpec, actor: Actor, interrupt: bool, now: datetime,
               open_tasks: list[Record] | None = None, sweep: bool = True) -> None:
        """Close the state's open tasks, cancel its timers, discard its votes.

        ``open_tasks``: the case's open tasks when the caller already loaded them in this
        transaction (the case row is locked, so they cannot have changed). ``sweep=False``
        skips the timer and vote statements: :meth:`_fire` passes it for a state that
        declares no timers and no quorum, where none can be pending (only ``_enter`` of
        such a state and a vote on its transitions create them).
        """
        if state.call is not None:
            self._cancel_children(s, case, now)
        if open_tasks is None:
            open_tasks = open_tasks_of(s, case.id)
        for task in open_tasks:
            task.status = _how_it_ended(task, state, actor, interrupt)
            task.completed_at = now
            if task.status == "completed":
                task.completed_by_id = actor.user_id
            save_task(s, task)
        if any(t.consent for t in state.tasks):   # referrals still waiting for consent end with the state
            s.execute(update(Task).where(Task.case_id == case.id, Task.status == "waiting")
                      .values(status="cancelled", completed_at=now, lock_version=Task.lock_version + 1))
        if not sweep:
            return
        s.execute(update(Timer).where(Timer.case_id == case.id, Timer.status == "pending")
                  .values(status="cancelled"))
        s.execute(delete(Vote).where(Vote.case_id == case.id))

    # ------------------------------------------------------------------ tasks
    def claim(self, actor: Actor, task_id: int) -> int:
        """Take an offered task: it becomes mine alone."""
        with self.engine.transaction() as s:
            task, case, spec = self._task_for_update(s, actor, task_id)
            if task.assignee_id == actor.user_id and task.status == "allocated":
                return task.id
            if task.status != "offered" and not (task.status == "allocated" and escalated_to(actor, task)):
                raise Conflict("任务已由他人领取", "the task is already taken")
            if not may_take(actor, task):
                raise Forbidden("您不能领取此任务", "this task is not offered to your roles here")
            task_spec = spec.state(task.state).task(task.name)
            self._check_interleaving(s, spec.state(task.state), task)
            self._check_separation(s, actor, case, task_spec)
            if task_spec is not None and task_spec.acceptance and task.accepted_at is None:
                accept_referral(s, self.engine, actor, case, task)   # taking a referral first accepts it
                save_case(s, case)
                return task.id
            self._assign(s, case, task, actor, actor.user_id, "claimed")
            return task.id

    def withdraw_vote(self, actor: Actor, case_id: int, trigger: str, comment: str | None = None) -> dict[str, Any]:
        """Take back my vote for ``trigger`` while the quorum is not reached yet (audited as ``vote_withdrawn``)."""
        with self.engine.transaction() as s:
            case = self._case_for_update(s, actor, case_id)
            vote = s.scalars(select(Vote).where(Vote.case_id == case.id, Vote.state == case.state,
                                                Vote.trigger == trigger, Vote.user_id == actor.user_id)).first()
            if vote is None:   # a reached quorum has moved the case on and cleared the votes
                raise Conflict("没有可撤回的投票（可能已达到规定人数）",
                               "you have no vote to withdraw here (the quorum may have been reached)")
            s.execute(delete(Vote).where(Vote.id == vote.id))
            now = self.engine.clock()
            audit.append_event(s, case, kind="vote_withdrawn", actor=self._user(s, actor), trigger=trigger,
                               from_state=case.state, to_state=case.state,
                               comment=(comment or "").strip() or None, at=now)
            case.updated_at = now
            save_case(s, case)
            votes = s.scalar(select(func.count()).select_from(Vote).where(
                Vote.case_id == case.id, Vote.state == case.state, Vote.trigger == trigger))
            return {"outcome": "vote_withdrawn", "votes": votes, "case_id": case.id}

    def release(self, actor: Actor, task_id: int) -> int:
        """Give my task back to the pool."""
        with self.engine.transaction() as s:
            task, case, _ = self._task_for_update(s, actor, task_id)
            if task.assignee_id != actor.user_id or task.status != "allocated":
                raise Forbidden("这不是您的任务", "only the holder may release a task")
            if getattr(task, "kind", "work") != "work":
                raise Invalid("征求意见须由本人答复", "a consult is answered (done), not released")
            task.status, task.assignee_id = "offered", None
            save_task(s, task)
            audit.append_event(s, case, kind="released", actor=self._user(s, actor), from_state=case.state,
                               to_state=case.state, changes={"task": [task.name, None]}, at=self.engine.clock())
            case.updated_at = self.engine.clock()
            save_case(s, case)
            return task.id

    def delegate(self, actor: Actor, task_id: int, to_username: str) -> int:
        """Hand my task (or one I may take) to a colleague who may take it."""
        with self.engine.transaction() as s:
            task, case, _ = self._task_for_update(s, actor, task_id)
            if task.assignee_id not in (None, actor.user_id) or (task.assignee_id is None and not may_take(actor, task)):
                raise Forbidden("只能转交自己的任务", "you may delegate only your own task")
            return self._handover(s, task, case, to_username, "delegated", actor)

    def reassign(self, actor: Actor, task_id: int, to_username: str) -> int:
        """A manager gives a task to someone else in the area."""
        with self.engine.transaction() as s:
            task, case, _ = self._task_for_update(s, actor, task_id)
            if not manages_case(actor, self.engine.registry.roles, case.org_path, bool(case.confidential)):
                raise Forbidden("只有主管可以改派任务", "only a manager of this area may reassign tasks")
            return self._handover(s, task, case, to_username, "reassigned", actor)

    def _handover(self, s: Session, task: Record, case: Record, to_username: str, kind: str, actor: Actor) -> int:
        if getattr(task, "kind", "work") != "work":
            raise Invalid("征求意见只能由被征求的人答复，不能转交", "a consult is answered by the one asked, not handed on")
        target = s.scalars(select(User).where(User.username == to_username)).first()
        if target is None or not target.active:
            raise Invalid("没有这个用户", f"no active user {to_username!r}", {"to": "没有这个用户 / unknown user"})
        spec = self.engine.spec_of(s, case.process_version_id)
        target_actor = self.engine.actor_for(s, target)
        if not may_take(target_actor, task):
            raise Invalid("该用户不能办理此任务", f"{to_username} may not take this task here",
                          {"to": "此人不能办理此任务 / not eligible for this task"})
        self._check_separation(s, target_actor, case, spec.state(task.state).task(task.name))
        self._assign(s, case, task, actor, target.id, kind)
        return task.id

    def _assign(self, s: Session, case: Record, task: Record, actor: Actor, user_id: int, kind: str) -> None:
        previous = task.assignee_id
        task.status, task.assignee_id = "allocated", user_id
        save_task(s, task)
        now = self.engine.clock()
        case.updated_at = now
        names = dict(s.execute(select(User.id, User.username).where(User.id.in_([i for i in (previous, user_id) if i]))).all())
        audit.append_event(s, case, kind=kind, actor=self._user(s, actor), from_state=case.state,
                           to_state=case.state, at=now,
                           changes={"task": [task.name, task.name], "assignee": [names.get(previous), names.get(user_id)]})
        save_case(s, case)
        if kind != "claimed":
            notifications.notify(s, self.engine, "task_allocated", [user_id], case, task=task, actor=actor)

    def done(self, actor: Actor, task_id: int, data: Mapping[str, Any] | None = None,
             uploads: Iterable[Upload] = (), comment: str | None = None) -> int:
        """Mark one parallel task done (its form, if any, is saved; ``uploads`` as for :meth:`fire`).

        A consult (:meth:`consult`) is answered this way: ``comment`` is the answer."""
        with self.engine.transaction() as s:
            task, case, spec = self._task_for_update(s, actor, task_id)
            if getattr(task, "kind", "work") == "consult":
                return self._answer_consult(s, actor, task, case, comment)
            refuse_while_held(case)
            state = spec.state(task.state)
            if not state.parallel:
                raise Invalid("此任务随操作完成，请选择操作按钮", "this task is completed by an action, not by done")
            if task.status not in OPEN:
                raise Conflict("任务已完成", "the task is already closed")
            if task.assignee_id not in (None, actor.user_id):
                raise Conflict("任务已由他人领取", "the task is allocated to someone else")
            if not may_take(actor, task):
                raise Forbidden("您不能办理此任务", "this task is not offered to you")
            task_spec = state.task(task.name)
            self._check_interleaving(s, state, task)
            self._check_separation(s, actor, case, task_spec)
            if task_spec.acceptance and task.accepted_at is None:
                accept_referral(s, self.engine, actor, case, task)   # doing a referral first accepts it
            refuse_host_fields(case, data or {})
            data = dict(data or {})
            uploads = list(uploads)
            if uploads:
                now = self.engine.clock()
                ids = self._record_uploads(s, actor, case, spec, uploads, {e.name for e in task_spec.form}, now)
                data = _with_uploads(spec, data, case.data, ids)
                self._audit_uploads(s, actor, case, uploads, now, spec)
            changes, errors = validate_form(spec, task_spec.form, data, case.data)
            errors.update(_foreign_attachments(s, spec, case, changes))
            if errors:
                raise Invalid("表单有误", "the form has errors", errors)
            now = self.engine.clock()
            task.status, task.assignee_id = "completed", actor.user_id
            task.completed_at, task.completed_by_id = now, actor.user_id
            save_task(s, task)
            case.data = {**case.data, **changes}
            case.updated_at = now
            cut_short = self._enough_done(s, state, task, now)
            audit.append_event(s, case, kind="task_done", actor=self._user(s, actor), from_state=case.state,
                               to_state=case.state, at=now, changes={"task": [task.name, "done"],
                                                                     **({"cancelled": [None, cut_short]} if cut_short else {}),
                                                                     **{k: [None, v] for k, v in changes.items()}},
                               seal=audit.sealed_fields(spec))
            index_case(s, spec, case.id, case.data, changes)
            save_case(s, case)
            self._settle(s, case.id, now, spec)
            return task.id

    def add_attachment(self, actor: Actor, case_id: int, field: str, filename: str, content_type: str,
                       size: int, storage_key: str) -> int:
        """Record a file already stored outside the web root for a case's ``file`` field, ahead of
        the action whose form will name it (the API's upload; the pages upload with the action).

        Only to a file field of a form she may submit now: an action she may fire, or the
        parallel task she may mark done.
        """
        with self.engine.transaction() as s:
            case = self._case_for_update(s, actor, case_id)
            spec = self.engine.spec_of(s, case.process_version_id)
            allowed = self._upload_fields(s, actor, case, spec, open_tasks_of(s, case.id))
            now = self.engine.clock()
            upload = Upload(field, filename, content_type, size, storage_key)
            (attachment_id,) = self._record_uploads(s, actor, case, spec, [upload], allowed, now)[field]
            self._audit_uploads(s, actor, case, [upload], now, spec)
            case.updated_at = now
            save_case(s, case)
            return attachment_id

    def _upload_fields(self, s: Session, actor: Actor, case: Record, spec: ProcessSpec,
                       open_tasks: list[Record]) -> set[str]:
        """The file fields of the forms ``actor`` may submit now on the case."""
        if case.closed_at is not None:
            return set()
        from .queries import CaseQueries
        allowed, _, _ = CaseQueries(self.engine).action_status(s, actor, case, spec, open_tasks)
        names = {f.name for trigger in allowed for f in spec.action_form(case.state, trigger)}
        state = spec.state(case.state)
        if state.parallel:
            for task in open_tasks:
                task_spec = state.task(task.name)
                if task_spec is not None and task.assignee_id in (None, actor.user_id) and may_take(actor, task) \
                        and not barred_by_separation(s, actor, case.id, task_spec):
                    names |= {e.name for e in task_spec.form}
        return {n for n in names if n in spec.fields and spec.fields[n].type == "file"}

    def _record_uploads(self, s: Session, actor: Actor, case: Record, spec: ProcessSpec, uploads: list[Upload],
                        allowed: set[str], now: datetime) -> dict[str, list[int]]:
        """Insert the attachment rows of ``uploads`` (each to a file field among ``allowed``); field -> ids."""
        ids: dict[str, list[int]] = {}
        for upload in uploads:
            field = upload.field
            if field not in spec.fields or spec.fields[field].type != "file":
                raise Invalid("不是附件字段", f"{field!r} is not a file field", {field: "不是附件字段 / not a file field"})
            if field not in allowed:
                raise Forbidden("您现在不能为此字段上传附件", "you may not attach files to this field now",
                                {field: "不是您现在可以提交的表单 / not in a form you may submit now"})
            row = dict(case_id=case.id, field=field, filename=upload.filename[:255],
                       content_type=upload.content_type[:100], size=upload.size, storage_key=upload.storage_key,
                       uploaded_by_id=actor.user_id, created_at=now)
            ids.setdefault(field, []).append(s.connection().execute(_INSERT_ATTACHMENT, row).scalar_one())
        return ids

    def _audit_uploads(self, s: Session, actor: Actor, case: Record, uploads: list[Upload], now: datetime,
                       spec: ProcessSpec) -> None:
        for upload in uploads:   # the file's name is sealed: retention erases it with the file
            audit.append_event(s, case, kind="attached", actor=self._user(s, actor), from_state=case.state,
                               to_state=case.state, at=now, changes={upload.field: [None, upload.filename[:255]]},
                               seal=audit.sealed_fields(spec))

    # ------------------------------------------------- work decided at run time
    def _check_interleaving(self, s: Session, state: StateSpec, task: Record) -> None:
        """``order: any_one_at_a_time``: while one of the state's tasks is in someone's hands,
        no other may be taken or done (any order, never two at once)."""
        if not state.interleaved:
            return
        busy = [t for t in open_tasks_of(s, task.case_id)
                if t.state == state.name and t.id != task.id and t.status == "allocated"]
        if busy:
            labels = [state.task(t.name).label if state.task(t.name) else Label.of(t.name) for t in busy]
            raise Conflict(f"这些任务须逐项办理：“{'、'.join(l.zh for l in labels)}”正在办理中，请等其完成",
                           f"these tasks are done one at a time: {', '.join(l.en for l in labels)} is in hand; "
                           "wait until it is done", {"tasks": [t.name for t in busy]})

    def _enough_done(self, s: Session, state: StateSpec, task: Record, now: datetime) -> list[str]:
        """``complete: any | N``: once enough instances are done, cancel the others (their names)."""
        rule = state.for_each
        if rule is None or rule.complete == "all":
            return []
        visit = records(s, select(_tasks).where(_tasks.c.case_id == task.case_id, _tasks.c.state == state.name,
                                                _tasks.c.created_at == task.created_at))
        done = sum(1 for t in visit if t.status == "completed")
        if done < rule.needed(len(visit)):
            return []
        cut = []
        for other in visit:
            if other.status in OPEN:
                other.status, other.completed_at = "cancelled", now
                save_task(s, other)
                cut.append(other.name)
        return cut

    def _settle(self, s: Session, case_id: int, now: datetime, spec: ProcessSpec | None = None) -> str | None:
        """After an action: fire the case's automatic transitions whose time has come, end it where
        it is idle (``end_when_idle``), and settle the children a calling state waits for.

        Returns the state the case is left in. At most :data:`AUTO_CHAIN_LIMIT` automatic
        transitions are fired (a loop through states with no work stops there), and cases
        calling one another are settled at most :data:`CALL_DEPTH_LIMIT` deep.
        """
        if spec is not None and not spec.acts_by_itself:
            return None   # nothing in this process moves by itself: no statement needed
        depth = s.info.get("hexie_settle_depth", 0)
        if depth >= CALL_DEPTH_LIMIT:
            return None
        s.info["hexie_settle_depth"] = depth + 1
        try:
            state_name = None
            for _ in range(AUTO_CHAIN_LIMIT):
                (case,) = records(s, _CASE_FOR_UPDATE, {"case_id": case_id})
                state_name = case.state
                if case.closed_at is not None:
                    return state_name
                spec = self.engine.spec_of(s, case.process_version_id)
                state = spec.state(case.state)
                if state.call is not None:
                    children = s.scalars(select(Case.id).where(Case.parent_case_id == case.id,
                                                               Case.closed_at.is_(None)).order_by(Case.id)).all()
                    for child_id in children:
                        self._settle(s, child_id, now)
                    if s.scalar(select(Case.state).where(Case.id == case.id)) == state_name:
                        return state_name   # still waiting for its child
                    continue
                open_tasks = open_tasks_of(s, case.id)
                if any(not t.optional for t in open_tasks):
                    return state_name
                trigger = self._auto_trigger(s, spec, case, state, open_tasks)
                if trigger is not None:
                    marks = _outbox_marks(s)
                    try:
                        with s.begin_nested():
                            self._fire(s, SYSTEM, case.id, trigger, {}, None, None, settle=False)
                    except HexieError:   # it needs a form or a hand after all: the case waits for one
                        _rewind_outbox(s, marks)
                        return state_name
                    continue
                if spec.ends_when_idle(state) and not open_tasks:
                    self._end_idle(s, spec, case, state, now)
                return state_name
            return state_name
        finally:
            s.info["hexie_settle_depth"] = depth

    def _auto_trigger(self, s: Session, spec: ProcessSpec, case: Record, state: StateSpec,
                      open_tasks: list[Record]) -> str | None:
        """The first automatic trigger from ``state`` whose transition would be taken now."""
        triggers = spec.auto_triggers(state.name)
        if not triggers:
            return None
        compiled = self.engine.compiled(s, case.process_version_id)
        for trigger in triggers:
            ctx = self._context(spec, case, SYSTEM, case.data, open_tasks)
            chosen = compiled.select(state.name, trigger, ctx).transition
            if chosen is not None and chosen.auto:
                return trigger
        return None

    def _end_idle(self, s: Session, spec: ProcessSpec, case: Record, state: StateSpec, now: datetime) -> None:
        """``end_when_idle``: no work is left and nothing leads on, so the case ends where it is."""
        case.closed_at = case.updated_at = now
        audit.append_event(s, case, kind="ended_idle", actor=None, from_state=state.name, to_state=state.name, at=now)
        emit(self.engine, s, case, "case_closed", process=spec.key, state=state.name)
        save_case(s, case)
        if getattr(case, "parent_case_id", None) is not None:
            self._return_to_parent(s, case, now)

    def _start_child(self, s: Session, spec: ProcessSpec, parent: Record, state: StateSpec, actor: Actor,
                     now: datetime) -> int:
        """``call:``: start a case of the called process at the parent's unit, its ``data`` copied in.

        The child is the engine's (no starter rule applies: the parent's definition decided it);
        its owner is the parent's, its tasks are offered to its own roles.
        """
        call = state.call
        child_spec, version_id, _ = self.engine.current(call.process)
        values = dict(defaults(child_spec))
        for child_field, parent_field in call.data:
            if parent.data.get(parent_field) is not None:
                values[child_field] = parent.data[parent_field]
        initial = child_spec.initial_state
        child = Record(process_version_id=version_id, process_key=child_spec.key, state=initial.name,
                       data=values, org_unit_id=parent.org_unit_id, org_path=parent.org_path,
                       created_by_id=parent.created_by_id, created_at=now, updated_at=now, closed_at=None,
                       subject=_subject(child_spec, values), confidential=child_spec.confidential,
                       audit_seq=0, audit_head=None, event_seq=0, business_key=None, host_fields=None,
                       parent_case_id=parent.id)
        child.id = s.connection().execute(_INSERT_CASE, vars(child)).scalar_one()
        child.lock_version = 1
        user = self._user(s, actor)
        audit.append_event(s, child, kind="started", actor=user, to_state=initial.name,
                           changes=start_changes(values), at=now)
        audit.append_event(s, parent, kind="called", actor=user, from_state=state.name, to_state=state.name,
                           changes={"child_case": [None, child.id]}, at=now)
        emit(self.engine, s, child, "case_started", process=child_spec.key, state=initial.name,
             org_unit=s.scalar(select(OrgUnit.code).where(OrgUnit.id == parent.org_unit_id)),
             parent_case_id=parent.id)
        self._enter(s, child_spec, child, initial, actor, now)
        save_case(s, child)
        return child.id

    def _return_to_parent(self, s: Session, child: Record, now: datetime) -> None:
        """The child has ended: copy its ``result`` into the parent waiting for it and fire the
        parent's trigger mapped to the child's end state, as ``system``.

        A parent that moved on meanwhile (it no longer waits in the calling state) is left alone.
        A trigger that is refused (its guard, a form it needs) leaves the parent waiting, for
        the people who may act there; the refusal is rolled back, nothing of it is kept.
        """
        (parent,) = records(s, _CASE_FOR_UPDATE, {"case_id": child.parent_case_id})
        spec = self.engine.spec_of(s, parent.process_version_id)
        state = spec.state(parent.state)
        call = state.call
        if parent.closed_at is not None or call is None or call.process != child.process_key:
            return
        copied = {pf: child.data.get(cf) for pf, cf in call.result}
        change_log = {k: [parent.data.get(k), v] for k, v in copied.items() if parent.data.get(k) != v}
        parent.data = {**parent.data, **copied}
        parent.subject = _subject(spec, parent.data)
        parent.updated_at = now
        audit.append_event(s, parent, kind="child_ended", actor=None, from_state=state.name, to_state=state.name,
                           changes={"child_case": [child.id, child.state], **change_log}, at=now)
        save_case(s, parent)
        trigger = call.trigger_for(child.state)
        if trigger is None:
            return
        marks = _outbox_marks(s)
        try:
            with s.begin_nested():
                self._fire(s, SYSTEM, parent.id, trigger, {}, None, None)
        except HexieError:
            _rewind_outbox(s, marks)

    def _cancel_children(self, s: Session, parent: Record, now: datetime) -> None:
        """The parent left its calling state another way (withdrawn, a deadline, an emergency):
        the children it was waiting for are closed, their open work cancelled."""
        for child in records(s, select(_cases).where(_cases.c.parent_case_id == parent.id,
                                                     _cases.c.closed_at.is_(None)).with_for_update()):
            spec = self.engine.spec_of(s, child.process_version_id)
            self._leave(s, child, spec.state(child.state), SYSTEM, True, now)
            child.closed_at = child.updated_at = now
            audit.append_event(s, child, kind="cancelled", actor=None, from_state=child.state, to_state=child.state,
                               changes={"parent_case": [parent.id, parent.id]}, at=now)
            emit(self.engine, s, child, "case_closed", process=spec.key, state=child.state)
            save_case(s, child)

    # ---------------------------------------------------------------- timers
    def run_due_timers(self, limit: int = 500) -> int:
        """Fire every due timer once (as ``system``); several workers may run this at once."""
        fired = 0
        while fired < limit:
            with self.engine.transaction() as s:
                held = select(Case.id).where(Case.id == Timer.case_id, Case.suspended_at.isnot(None))
                timer = s.scalars(select(Timer).where(Timer.status == "pending",
                                                      Timer.due_at <= self.engine.clock(), ~held.exists())
                                  .order_by(Timer.due_at, Timer.id).limit(1)
                                  .with_for_update(skip_locked=True)).first()
                if timer is None:
                    return fired
                timer.attempts = (timer.attempts or 0) + 1
                if s.scalar(select(Case.state).where(Case.id == timer.case_id)) != timer.state:
                    timer.status = "cancelled"   # the case moved on: nothing to do
                    continue
                marks = _outbox_marks(s)
                try:
                    with s.begin_nested():
                        self._fire(s, SYSTEM, timer.case_id, timer.trigger, {}, None, None)
                except HexieError as err:
                    _rewind_outbox(s, marks)   # what the refused action emitted was rolled back with it
                    timer.status, timer.last_error = "failed", err.message
                else:
                    timer.status, timer.fired_at = "fired", self.engine.clock()
                    fired += 1
        return fired

    def escalate_overdue(self, limit: int = 1000) -> int:
        """Flag tasks overdue past their escalation and offer them to the escalation role."""
        now = self.engine.clock()
        with self.engine.transaction() as s:
            held = select(_cases.c.id).where(_cases.c.id == _tasks.c.case_id, _cases.c.suspended_at.isnot(None))
            tasks = records(s, select(_tasks).where(_tasks.c.status.in_(OPEN), _tasks.c.escalated.is_(False),
                                                    _tasks.c.escalate_at <= now, _tasks.c.suspended_at.is_(None),
                                                    ~held.exists())
                            .order_by(_tasks.c.escalate_at).limit(limit).with_for_update(skip_locked=True))
            for task in tasks:
                task.escalated = True
                save_task(s, task)
                (case,) = records(s, _CASE_FOR_UPDATE, {"case_id": task.case_id})
                audit.append_event(s, case, kind="escalated", actor=None, from_state=case.state,
                                   to_state=case.state, at=now,
                                   changes={"task": [task.name, task.name], "escalate_to": [None, task.escalate_to]})
                save_case(s, case)
                notifications.notify(s, self.engine, "task_escalated",
                                     notifications.holders(s, task.escalate_to, task.org_path), case, task=task)
            return len(tasks)

    # ------------------------------------------------------------- migration
    def migrate(self, actor: Actor, process: str, from_version: int, state_map: Mapping[str, str] | None = None) -> int:
        """Move running cases of ``from_version`` to the current version; returns how many moved."""
        if not is_admin(actor, self.engine.registry.roles):
            raise Forbidden("只有管理员可以迁移案件", "only an administrator may migrate cases")
        spec, version_id, _ = self.engine.current(process)
        state_map = dict(state_map or {})
        with self.engine.transaction() as s:
            from hexie.models import ProcessVersion
            old = s.scalars(select(ProcessVersion).where(ProcessVersion.key == process,
                                                         ProcessVersion.version == from_version)).first()
            if old is None:
                raise NotFound("没有这个版本", f"{process} has no version {from_version}")
            names = {st.name for st in spec.states}
            cases = records(s, select(_cases).where(_cases.c.process_version_id == old.id, _cases.c.closed_at.is_(None))
                            .with_for_update())
            missing = sorted({state_map.get(c.state, c.state) for c in cases} - names)
            if missing:
                raise Invalid("新版本中没有这些环节", f"states missing in the new version: {', '.join(missing)}",
                              {"state_map": missing})
            now = self.engine.clock()
            user = self._user(s, actor)
            old_spec = self.engine.spec_of(s, old.id)
            for case in cases:
                old_state = case.state
                new_state = spec.state(state_map.get(old_state, old_state))
                carried = new_state.name == old_state and new_state.parallel and old_spec.state(old_state).parallel
                changes: dict[str, Any] = {"version": [from_version, self.engine.version_number(s, version_id)]}
                if carried:   # parallel work in the same state: what was done stays done (see _carry_over)
                    changes.update(self._carry_over(s, spec, case, new_state, actor, now))
                else:
                    self._leave(s, case, new_state, SYSTEM, True, now)
                case.process_version_id = version_id
                case.state = new_state.name
                case.updated_at = now
                audit.append_event(s, case, kind="migrated", actor=user, from_state=old_state, to_state=case.state,
                                   at=now, changes=changes)
                if not carried:
                    self._enter(s, spec, case, new_state, actor, now)
                save_case(s, case)
            for case in cases:
                self._settle(s, case.id, now)
            return len(cases)

    def _carry_over(self, s: Session, spec: ProcessSpec, case: Record, state: StateSpec, actor: Actor,
                    now: datetime) -> dict[str, list[Any]]:
        """Migrate a case waiting on parallel tasks into a state of the same name in the new version
        without redoing its work: tasks done stay done, open ones the new state still has stay open
        (with their holders), the others are cancelled, and the new state's missing ones are opened.

        A for-each state whose field the case lacks (a version before the field) takes as its
        values the tasks of the current visit that were done or still required: the old fixed
        ``police / legal_aid / court`` referrals of a complaint become its ``referred_to``, an
        optional one nobody did (the court, when not needed) is left out. Returns the data changes.
        """
        visit_at = s.scalar(select(func.max(Task.created_at)).where(Task.case_id == case.id, Task.state == state.name))
        visit = records(s, select(_tasks).where(_tasks.c.case_id == case.id, _tasks.c.state == state.name,
                                                _tasks.c.created_at == visit_at)) if visit_at else []
        changes: dict[str, list[Any]] = {}
        rule = state.for_each
        if rule is not None and rule.field not in case.data:
            kept = {t.name for t in visit if t.status == "completed" or (t.status in OPEN and not t.optional)}
            chosen = [key for key in spec.fields[rule.field].choice_keys if key in kept]   # in the field's order
            case.data = {**case.data, rule.field: chosen}
            changes[rule.field] = [None, chosen]
        wanted = {t.name for t in state.tasks_to_open(case.data)}
        for task in visit:
            if task.status in OPEN and task.name not in wanted:
                task.status, task.completed_at = "cancelled", now
                save_task(s, task)
        have = {t.name for t in visit if t.status in OPEN or t.status == "completed"}
        for task_spec in state.tasks_to_open(case.data):
            if task_spec.name not in have:
                self._open_task(s, spec, case, state, task_spec, actor, now)
        return changes

    # --------------------------------------------------------------- helpers
    def _context(self, spec: ProcessSpec, case: Record, actor: Actor, data: Mapping[str, Any],
                 open_tasks: list[Record]) -> FireContext:
        return FireContext.for_case(spec, data, actor, case.org_path, case.created_at, self.engine.today(),
                                    open_tasks)

    def _case_for_update(self, s: Session, actor: Actor, case_id: int, task: Record | None = None) -> Record:
        """Lock the case row (PostgreSQL) so concurrent actions on it run one after another.

        A task offered to the actor now makes its case reachable for that task's verbs, even in
        a confidential process (claiming it is how she starts working the case); one a colleague
        has taken does not. Whoever may not see the case gets the answer a task or case that
        does not exist gets (:func:`~hexie.workflows.errors.not_found`).
        """
        from .queries import can_see, is_row_id
        found = []
        if is_row_id(case_id):
            # The case, locked, and its tasks: two statements in one round trip on PostgreSQL
            # (a pipeline). Not one statement: a join locked FOR UPDATE would, under READ
            # COMMITTED, re-check the case row after waiting for its lock but return the tasks
            # as they were before the wait (a concurrent action's new task unseen). Pipelined,
            # the server runs the tasks' SELECT after the lock is granted, with a snapshot of
            # its own taken then: it sees everything committed before the lock was ours.
            locked, tasks = fast.run_many(s, [(_F_CASE_FOR_UPDATE, {"case_id": case_id}, False),
                                              (_F_CASE_TASKS, {"case_id": case_id}, False)])
            found = [Record(**row) for row in locked.mappings()]
            if found:
                _read_tasks(s)[case_id] = [Record(**row) for row in tasks.mappings()]
                _read_cases(s)[case_id] = (found[0].lock_version, _case_writes(found[0]))
        case = found[0] if found else None
        if case is None or not ((task is not None and offered_now(actor, task)) or can_see(s, self.engine, actor, case)):
            raise not_found()
        return case

    def _task_for_update(self, s: Session, actor: Actor, task_id: int) -> tuple[Record, Record, ProcessSpec]:
        from .queries import is_row_id
        found = records(s, _TASK, {"task_id": task_id}) if is_row_id(task_id) else []
        if not found:
            raise not_found()
        case = self._case_for_update(s, actor, found[0].case_id, found[0])
        # the task as it is now that the case is locked (read with it)
        (task,) = [t for t in case_tasks(s, case.id, keep=True) if t.id == task_id]
        if task.status not in OPEN:
            raise Conflict("任务已关闭", "the task is already closed")
        return task, case, self.engine.spec_of(s, case.process_version_id)

    @staticmethod
    def _user(s: Session, actor: Actor) -> "ActorRef | None":
        """Who the audit trail names: the actor's id and username, known without a query."""
        return None if actor.is_system or actor.user_id is None else ActorRef(actor.user_id, actor.username)



# --------------------------------------------------------------------------------------
# Writing back what an action changed.

class Record(SimpleNamespace):
    """A row an action reads, changes in place and writes back (:func:`save_case`, :func:`save_task`):
    its columns as attributes, nothing more (no identity map, no lazy loading)."""


def records(s: Session, stmt, params: Mapping[str, Any] | None = None) -> list[Record]:
    """The rows of ``stmt`` (a Core select of whole rows) as records."""
    return [Record(**row._mapping) for row in s.connection().execute(stmt, params or {})]


def open_tasks_of(s: Session, case_id: int) -> list[Record]:
    """The case's open tasks (the action changes them; :func:`save_task` writes them)."""
    return [t for t in case_tasks(s, case_id) if _open_work(t)]


def _open_work(task: Record) -> bool:
    """The case's open work, as :data:`_OPEN_TASKS` says (a consult is no step of the process)."""
    return task.status in OPEN and getattr(task, "kind", "work") == "work"


def _read_tasks(s: Session) -> dict[int, list[Record]]:
    """Tasks read with their locked case in this transaction, by case id, until a task of the
    case is written (then they are read again)."""
    return s.info.setdefault("hexie_case_tasks", {})


def case_tasks(s: Session, case_id: int, keep: bool = False) -> list[Record]:
    """All tasks of a case, oldest first: those read with the case when it was locked (once,
    unless ``keep``), else read now."""
    read = _read_tasks(s)
    tasks = read.get(case_id) if keep else read.pop(case_id, None)
    if tasks is None:
        tasks = [Record(**row) for row in fast.rows(s, _F_CASE_TASKS, {"case_id": case_id})]
    return tasks


def emit(engine: Engine, s: Session, case: Record, kind: str, **payload: Any) -> None:
    """Emit an outbound event of ``case``, numbered: its ``seq`` is one more than the case's last
    (the case row is locked by the action and :func:`save_case` writes the count back)."""
    case.event_seq = (case.event_seq or 0) + 1
    engine.emit(s, kind, case_id=case.id, seq=case.event_seq, business_key=getattr(case, "business_key", None),
                **payload)


def _stale_case() -> Conflict:
    return Conflict("案件已被他人修改，请刷新", "the case was changed by someone else meanwhile")


def _stale_task() -> Conflict:
    return Conflict("任务已被他人修改，请刷新", "the task was changed by someone else meanwhile")


def save_case(s: Session, case: Record) -> None:
    """Write a case record back: one UPDATE, refused (:class:`Conflict`) if someone changed it
    since it was read. On PostgreSQL it travels with the transaction's next round trip and the
    server makes the check (:mod:`hexie.models.fast`): the Conflict then comes from there.

    A case locked in this transaction (:meth:`WorkflowService._case_for_update`) is written
    with only the columns that differ from what was read (and ``data`` always: a form may have
    changed it in place): on SQLite an UPDATE rewrites the entries of every index on a column it
    sets, changed or not (a step sets neither the subject nor the owner nor the hold)."""
    values = _case_writes(case)
    read = _read_cases(s).get(case.id)
    if read is not None and read[0] == case.lock_version:
        was = read[1]
        changed = tuple(k for k, v in values.items() if k == "v_data" or was[k] != v)
    else:
        changed = tuple(values)
    fast.defer(s, _save_case_statement(changed), {"b_id": case.id, "b_lock": case.lock_version,
                                                  **{k: values[k] for k in changed}}, conflict=_stale_case)
    case.lock_version += 1
    _read_cases(s)[case.id] = (case.lock_version, values)


def _case_writes(case: Record) -> dict[str, Any]:
    """What :func:`save_case` writes of a case record, by parameter (``_CASE_WRITES``)."""
    return {k: getattr(case, column, None) for k, column in _CASE_WRITES.items()}


_SAVE_CASE: dict[tuple[str, ...], fast.Statement] = {}


def _save_case_statement(changed: tuple[str, ...]) -> fast.Statement:
    """The version-checked UPDATE of the case columns ``changed`` names (one per set, built once)."""
    found = _SAVE_CASE.get(changed)
    if found is None:
        stmt = (update(_cases).where(_cases.c.id == bindparam("b_id"), _cases.c.lock_version == bindparam("b_lock"))
                .values(**{_CASE_WRITES[k]: bindparam(k, type_=_cases.c[_CASE_WRITES[k]].type) for k in changed},
                        lock_version=_cases.c.lock_version + 1))
        found = _SAVE_CASE[changed] = fast.Statement(stmt, checked=True)
    return found


def _read_cases(s: Session) -> dict[int, tuple[int, dict[str, Any]]]:
    """Cases locked or written in this transaction, by id: (their lock version, what
    :func:`save_case` would write of them then)."""
    return s.info.setdefault("hexie_case_rows", {})


def save_task(s: Session, task: Record) -> None:
    """Write a task record back: one UPDATE, refused if someone changed it since it was read
    (as :func:`save_case`)."""
    _read_tasks(s).pop(task.case_id, None)
    fast.defer(s, _F_SAVE_TASK, {
        "b_id": task.id, "b_lock": task.lock_version, "v_status": task.status, "v_assignee": task.assignee_id,
        "v_completed_at": task.completed_at, "v_completed_by": task.completed_by_id,
        "v_escalated": task.escalated, "v_due_at": task.due_at, "v_escalate_at": task.escalate_at,
        "v_suspended_at": getattr(task, "suspended_at", None), "v_flagged": bool(getattr(task, "flagged", False))},
        conflict=_stale_task)
    task.lock_version += 1


def insert_task(s: Session, values: Mapping[str, Any]) -> int:
    """Insert a task row; returns its id."""
    _read_tasks(s).pop(values["case_id"], None)
    return fast.run(s, _F_INSERT_TASK, values, insert=True).scalar()


# --------------------------------------------------------------------------------------
# The pieces of starting a case and entering a state, shared with the bulk import
# (hexie.workflows.bulk) so that both apply the same rules.

def check_start(levels: tuple[str, ...] | list[str], spec: ProcessSpec, actor: Actor, unit: Any,
                org_unit: str, host: bool = False) -> None:
    """Refuse to file a case of ``spec`` at ``unit`` (an OrgUnit, or anything with ``level``
    and ``path``; None when no unit has the code ``org_unit``) unless the rules allow it.

    ``host``: the host application starts it for ``actor`` (the mixin); a process with
    ``starters: [system]`` is started only that way (or by the engine itself)."""
    if unit is None:
        raise Invalid("没有这个单位", f"unknown org unit {org_unit!r}", {"org_unit": "没有这个单位 / unknown org unit"})
    if unit.level in levels and spec.org_level in levels \
            and levels.index(unit.level) < levels.index(spec.org_level):
        raise Invalid("该流程不能在此级别单位立案",
                      f"{spec.key} cases are filed at {spec.org_level} level or below",
                      {"org_unit": f"must be at {spec.org_level} level or below"})
    if host and spec.host_started:
        return
    if spec.host_started and not actor.is_system and spec.starters == (SYSTEM_ROLE,):
        raise Forbidden("该流程只能由业务系统发起", f"{spec.key} cases are started only by the host application")
    if not actor.is_system and not any(actor.holds(r, unit.path, at) for r, at in spec.starter_roles):
        raise Forbidden("您不能在此单位发起该流程", f"you may not start {spec.key} at {org_unit}")


def start_values(spec: ProcessSpec, data: Mapping[str, Any],
                 host_values: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The stored data of a new case: its first form validated, over the fields' defaults
    (``host_values``: a host record's mapped fields, already checked, which the form does not edit)."""
    host_values = dict(host_values or {})
    form = [entry for entry in spec.initial_state.form if entry.name not in host_values]
    changes, errors = validate_form(spec, form, data, {})
    if errors:
        raise Invalid("表单有误", "the form has errors", errors)
    return {**defaults(spec), **host_values, **changes}


def host_start_values(spec: ProcessSpec, host_values: Mapping[str, Any]) -> dict[str, Any]:
    """A host record's mapped values, checked against the case's fields (whatever the form lists)."""
    unknown = sorted(set(host_values) - set(spec.fields))
    if unknown:
        raise Invalid("流程没有这些字段", f"{spec.key} has no fields {', '.join(unknown)}",
                      {name: "unknown field / 无此字段" for name in unknown})
    changes, errors = validate_form(spec, [FormField(name, False) for name in host_values], host_values, {})
    if errors:
        raise Invalid("业务系统的数据不符合流程字段", "the host's values do not fit the case's fields", errors)
    return changes


def refuse_while_held(case: Any) -> None:
    """No action is fired on a case on hold (interfaces.md): a Conflict until it is resumed."""
    if getattr(case, "suspended_at", None) is not None:
        raise Conflict("案件已暂停办理，恢复后才能继续", "the case is on hold: resume it before acting on it",
                       {"suspended": "on hold / 已暂停"})


def refuse_host_fields(case: Any, data: Mapping[str, Any]) -> None:
    """Hexie's forms never edit a field a host record owns (host.md): a form naming one is refused."""
    owned = sorted(set(data) & set(getattr(case, "host_fields", None) or ()))
    if owned:
        raise Invalid("这些字段由业务系统维护，不能在此修改", f"kept by the host application: {', '.join(owned)}",
                      {name: "由业务系统维护 / kept by the host application" for name in owned})


def _business_key(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 200 or "\x00" in value:
        raise Invalid("业务编号无效", "business_key must be text of 1 to 200 characters",
                      {"business_key": "1–200 个字符 / 1 to 200 characters"})
    return value


def _duplicate_key(process: str, business_key: str | None) -> Conflict:
    return Conflict(f"业务编号 {business_key} 已有该流程的案件", f"a {process} case with business key "
                    f"{business_key!r} already exists", {"business_key": business_key})


def start_changes(values: Mapping[str, Any]) -> dict[str, list[Any]]:
    """The ``changes`` of a case's "started" audit event."""
    return {k: [None, v] for k, v in values.items()}


def new_task_values(spec: ProcessSpec, state: StateSpec, task_spec: TaskSpec, org_unit_id: int, org_path: str,
                    now: datetime) -> dict[str, Any]:
    """The columns of a task opened on entering ``state`` (offered; the holder comes after)."""
    due_at = now + task_spec.due if task_spec.due else None
    escalate_at = (due_at or now) + task_spec.escalate.after if task_spec.escalate else None
    return dict(process_key=spec.key, state=state.name, name=task_spec.name, role=task_spec.role,
                requires=",".join(sorted(task_spec.requires)) or None,
                at_level=task_spec.at, org_unit_id=org_unit_id, org_path=org_path, status="offered",
                created_at=now, priority=task_spec.priority, optional=task_spec.optional, due_at=due_at,
                escalate_at=escalate_at, escalate_to=task_spec.escalate.to if task_spec.escalate else None)


def timer_dues(state: StateSpec, data: Mapping[str, Any], now: datetime,
               zone: tzinfo | None = None) -> list[tuple[str, datetime]]:
    """(trigger, due) of the timers entering ``state`` schedules (a date field left empty: none).

    A date or a datetime without an offset is a local one, in ``zone`` (the office's, HEXIE_TIMEZONE).
    """
    out = []
    for timer in state.timers:
        due = now + timer.after if timer.after else _field_moment(data.get(timer.at_field), zone)
        if due is not None:
            out.append((timer.trigger, due))
    return out


@dataclass(frozen=True)
class ActorRef:
    """The two things :func:`hexie.workflows.audit.append_event` reads of the acting user."""

    id: int
    username: str


def _how_it_ended(task: Record, state: StateSpec, actor: Actor, interrupt: bool) -> str:
    """How an open task ends when the case leaves its state (the task's ``status``).

    ``completed``: she did the step herself, firing its own action as its holder (or as
    one who may take it). ``skipped``: an optional parallel task nobody did. ``cancelled``:
    the work was cut short by someone else's transition (a withdrawal, an interruption, a
    timer). Separation of duties and retain-familiar read only ``completed``.
    """
    if state.parallel and task.optional and not interrupt:
        return "skipped"
    own = not actor.is_system and not interrupt and (
        task.assignee_id == actor.user_id or (task.assignee_id is None and may_take(actor, task)))
    return "completed" if own and not state.parallel else "cancelled"


def _outbox_marks(s: Session) -> tuple[int, dict[str, int]]:
    """Where this transaction's events and outbox rows stand (see :func:`_rewind_outbox`)."""
    return len(s.info.get("events", ())), {k: len(v) for k, v in s.info.get("outbox", {}).items()}


def _rewind_outbox(s: Session, marks: tuple[int, dict[str, int]]) -> None:
    """Forget the events and outbox rows of a savepoint that was rolled back."""
    events, rows = marks
    del s.info.setdefault("events", [])[events:]
    for kind, ids in s.info.get("outbox", {}).items():
        del ids[rows.get(kind, 0):]


def _has_quorum(spec: ProcessSpec, state: StateSpec) -> bool:
    """Whether a transition out of ``state`` collects votes (so votes may be pending)."""
    return any(t.quorum > 1 for t in spec.transitions if state.name in t.sources)


def _with_uploads(spec: ProcessSpec, data: Mapping[str, Any], current: Mapping[str, Any],
                  ids: Mapping[str, list[int]]) -> dict[str, Any]:
    """The submitted data with the new attachments' ids joined to their fields' values."""
    out = dict(data)
    for name, new in ids.items():
        if spec.fields[name].multiple:
            base = out.get(name, current.get(name))
            base = list(base) if isinstance(base, list) else ([] if base in (None, "") else [base])
            out[name] = base + new
        else:
            out[name] = new[-1]
    return out


def _foreign_attachments(s: Session, spec: ProcessSpec, case: Record, changes: Mapping[str, Any]) -> dict[str, str]:
    """Errors for file fields naming attachments that are not this case's uploads for that field."""
    errors = {}
    for name, value in changes.items():
        if spec.fields[name].type != "file" or value is None:
            continue
        ids = set(value if isinstance(value, list) else [value])
        found = set(s.scalars(select(Attachment.id).where(Attachment.id.in_(ids), Attachment.case_id == case.id,
                                                          Attachment.field == name)))
        if found != ids:
            errors[name] = "附件不存在或不属于本案 / unknown attachment for this case"
    return errors


def _subject(spec: ProcessSpec, data: Mapping[str, Any]) -> str:
    """A short searchable summary: the first text field with a value (not a sensitive one)."""
    for name, field in spec.fields.items():
        if field.type == "text" and not field.sensitive and data.get(name):
            return str(data[name])[:200]
    return ""


def _field_moment(value: Any, zone: tzinfo | None = None) -> datetime | None:
    """A date or datetime field's value as the engine's naive-UTC time (an offset is honoured;
    without one it is a time in ``zone``, UTC when None)."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value) if "T" in str(value) else datetime.combine(
            datetime.fromisoformat(value).date(), time())
    except ValueError:
        return None
    if moment.tzinfo is None and zone is not None:
        moment = moment.replace(tzinfo=zone)
    if moment.tzinfo is not None:
        moment = moment.astimezone(timezone.utc).replace(tzinfo=None)
    return moment
