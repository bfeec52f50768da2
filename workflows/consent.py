"""Survivors' data protection (protection.md): consent per agency, accepted or declined
referrals, and the access log of confidential cases.

- **Consent.** A task with ``consent: {agency: A}`` is created ``waiting`` when its state is
  entered without the survivor's consent for A (scope ``services``): nobody is offered it,
  nobody is told, it has no due date, and the case page shows it as "waiting for consent".
  Recording that consent opens it (``offered``, its due date counted from then, its people
  told); withdrawing it cancels the agency's open task; an overseer may open it without
  consent, with a written reason (its own audit event, shown on the case). Each statement
  is one row of ``hexie_consents`` (never changed) and one audit event.
- **Acceptance.** A task with ``acceptance: true`` is first accepted (it becomes the
  acceptor's) or declined with a reason (the task ends ``declined`` and the case owner, who
  is :func:`case_owner`, is told) by whoever takes it first.
- **Access log.** Every read of a confidential case is one INSERT into ``hexie_access_log``
  (:func:`record_read`), readable by the owner, the people working the case and overseers.

Each public method is one transaction; a refused call raises and writes nothing.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from hexie.models import AccessLogEntry, Case, Consent, Task, User

from . import audit, notifications
from .access import Actor, escalated_to, may_take, overseer_roles
from .engine import Engine
from .errors import Conflict, Forbidden, Invalid, not_found
from .forms import checked_comment
from .spec import ProcessSpec, TaskSpec

SCOPES = ("services", "statistics")
OPEN = ("offered", "allocated")
#: What a read was (``hexie_access_log.what``).
READS = ("page", "case", "history", "print", "export", "attachment", "access_log", "search")

_INSERT_CONSENT = insert(Consent.__table__)
_INSERT_READ = insert(AccessLogEntry.__table__)


def case_owner(case: Any) -> int | None:
    """The user id of the case's owner: whom a declined referral returns to.

    The person who started the case, until cases carry an owner of their own (then only
    this function changes)."""
    return getattr(case, "owner_id", None) or case.created_by_id


def is_overseer(actor: Actor, engine: Engine, org_path: str) -> bool:
    """Holds an overseer role (roles.yaml ``overseer: true``) at or above the case's unit."""
    return actor.holds_any(overseer_roles(engine.registry.roles), org_path)


def consent_holds(s: Session, case_id: int, agency: str) -> bool:
    """The latest statement for ``agency`` (scope ``services``) gives consent (an override counts)."""
    given = s.scalar(select(Consent.given).where(Consent.case_id == case_id, Consent.agency == agency,
                                                 Consent.scope == "services")
                     .order_by(Consent.id.desc()).limit(1))
    return bool(given)


# ----------------------------------------------------------------------------- access log

@dataclass(frozen=True)
class Read:
    """One read to log: ``what`` (READS), from where (the remote address), and a detail
    (an attachment's id, an export's format)."""

    what: str
    remote_addr: str | None = None
    detail: str | None = None


def log_read(s: Session, engine: Engine, actor: Actor, case_id: int, read: Read) -> None:
    """One INSERT into the access log, in the caller's transaction."""
    s.connection().execute(_INSERT_READ, {
        "case_id": case_id, "user_id": actor.user_id, "username": actor.username[:80], "at": engine.clock(),
        "what": read.what[:32], "detail": (read.detail or None) and str(read.detail)[:200],
        "remote_addr": (read.remote_addr or None) and read.remote_addr[:64]})


def record_read(engine: Engine, actor: Actor, case_id: int, read: Read) -> None:
    """Log a read of a case in its own short transaction, if the case is confidential
    (for reads that do not go through :class:`~hexie.workflows.queries.CaseQueries`:
    attachments, print-outs, exports)."""
    record_reads(engine, actor, [case_id], read)


def record_reads(engine: Engine, actor: Actor, case_ids: Iterable[int], read: Read) -> None:
    """Log the same read of each confidential case among ``case_ids`` (the rows of a list's
    export), in one short transaction."""
    ids = sorted(set(case_ids))
    if not ids:
        return
    with engine.session_factory() as s:
        confidential = s.scalars(select(Case.id).where(Case.id.in_(ids), Case.confidential.is_(True))).all()
        for case_id in confidential:
            log_read(s, engine, actor, case_id, read)
        if confidential:
            s.commit()


def may_record_consent(s: Session, engine: Engine, actor: Actor, case: Any, spec: ProcessSpec) -> bool:
    """The case owner, an overseer, or someone who holds or did one of its tasks other than a
    referral to an agency (a task with ``consent:``)."""
    if actor.user_id is not None and case_owner(case) == actor.user_id:
        return True
    if is_overseer(actor, engine, case.org_path):
        return True
    if actor.user_id is None:
        return False
    referrals = {(st.name, t.name) for st in spec.states for t in st.tasks if t.consent}
    rows = s.execute(select(Task.state, Task.name).where(
        Task.case_id == case.id, Task.status != "declined",
        (Task.assignee_id == actor.user_id) | (Task.completed_by_id == actor.user_id))).all()
    return any((state, name) not in referrals for state, name in rows)


def may_read_log(s: Session, engine: Engine, actor: Actor, case: Any) -> bool:
    """The owner, the people working the case (holding, having done or acted on one of its
    tasks) and overseers read its access log."""
    from .queries import _worked
    if actor.is_system or (actor.user_id is not None and case_owner(case) == actor.user_id):
        return True
    return is_overseer(actor, engine, case.org_path) or _worked(s, actor, case, engine)


# ----------------------------------------------------------------------------- service

class Protection:
    """Consent, acceptance and the access log: each call one transaction."""

    def __init__(self, engine: Engine) -> None:
        from .service import WorkflowService
        self.engine = engine
        self.service = WorkflowService(engine)

    # ------------------------------------------------------------------ consent
    def record_consent(self, actor: Actor, case_id: int, agency: Any, scope: Any = "services",
                       given: Any = True, note: Any = None) -> dict[str, Any]:
        """Record the survivor's consent for ``agency`` (or, ``given=False``, its withdrawal).

        Consent for ``services`` opens the agency's tasks waiting for it; a withdrawal of
        ``services`` cancels the agency's open task. Returns the stored statement."""
        with self.engine.transaction() as s:
            case = self.service._case_for_update(s, actor, case_id)
            spec = self.engine.spec_of(s, case.process_version_id)
            self._check_recorder(s, actor, case)
            agency, scope = self._checked(spec, agency, scope)
            if not isinstance(given, bool):
                raise Invalid("given 须为 true 或 false", "given must be true or false", {"given": "true / false"})
            note = checked_comment(note) or None
            now = self.engine.clock()
            row = self._insert(s, actor, case, agency, scope, given, False, note, now)
            audit.append_event(s, case, kind="consent_given" if given else "consent_withdrawn",
                               actor=self.service._user(s, actor), from_state=case.state, to_state=case.state,
                               comment=note, changes={"agency": [None, agency], "scope": [None, scope]}, at=now)
            if scope == "services":
                if given:
                    self._open_waiting(s, spec, case, agency, actor, now)
                else:
                    self._cancel_open(s, spec, case, agency, now)
            case.updated_at = now
            from .service import save_case
            save_case(s, case)
            return row

    def withdraw_consent(self, actor: Actor, case_id: int, agency: Any, scope: Any = "services",
                         note: Any = None) -> dict[str, Any]:
        """She takes her consent for ``agency`` back (the agency's open referral is cancelled)."""
        return self.record_consent(actor, case_id, agency, scope, False, note)

    def override_consent(self, actor: Actor, case_id: int, agency: Any, reason: Any) -> dict[str, Any]:
        """An overseer opens the agency's referral without consent, for a written reason
        (immediate danger): recorded as a statement of its own and the audit event
        ``consent_overridden``, shown on the case."""
        with self.engine.transaction() as s:
            case = self.service._case_for_update(s, actor, case_id)
            spec = self.engine.spec_of(s, case.process_version_id)
            if not is_overseer(actor, self.engine, case.org_path):
                raise Forbidden("只有监督人员可以在未经同意时转介",
                                "only an overseer may refer without consent")
            self._open_case(case)
            agency, _ = self._checked(spec, agency, "services")
            reason = checked_comment(reason)
            if not reason:
                raise Invalid("须写明理由（如紧迫危险）", "a written reason is required (immediate danger)",
                              {"reason": "必填 / required"})
            now = self.engine.clock()
            row = self._insert(s, actor, case, agency, "services", True, True, reason, now)
            audit.append_event(s, case, kind="consent_overridden", actor=self.service._user(s, actor),
                               from_state=case.state, to_state=case.state, comment=reason,
                               changes={"agency": [None, agency]}, at=now)
            self._open_waiting(s, spec, case, agency, actor, now, note=reason)
            case.updated_at = now
            from .service import save_case
            save_case(s, case)
            return row

    def consents(self, actor: Actor, case_id: int) -> list[dict[str, Any]]:
        """Every statement of consent of a case, oldest first (for those who may see it)."""
        from .queries import can_see, is_row_id
        with self.engine.session_factory() as s:
            case = s.get(Case, case_id) if is_row_id(case_id) else None
            if case is None or not can_see(s, self.engine, actor, case):
                raise not_found()
            return consent_rows(s, case_id)

    def _check_recorder(self, s: Session, actor: Actor, case: Any) -> None:
        """Consent is recorded, on an open case, by those working the case (and its owner) and
        overseers; not by the receiving agencies, whose referral is what it decides."""
        spec = self.engine.spec_of(s, case.process_version_id)
        if not (actor.is_system or may_record_consent(s, self.engine, actor, case, spec)):
            raise Forbidden("只有经办人员或监督人员可以记录当事人的同意",
                            "only those working the case or an overseer may record her consent")
        self._open_case(case)

    @staticmethod
    def _open_case(case: Any) -> None:
        if case.closed_at is not None:
            raise Conflict("案件已办结", "the case is closed")

    @staticmethod
    def _checked(spec: ProcessSpec, agency: Any, scope: Any) -> tuple[str, str]:
        known = [k for k, _ in spec.agencies]
        errors = {}
        if not known:
            errors["agency"] = "该流程没有可转介的机构 / this process names no agencies to refer to"
        elif agency not in known:
            errors["agency"] = _unknown("机构", "agency", agency, known, listing=True)
        if scope not in SCOPES:
            errors["scope"] = _unknown("同意范围", "scope", scope, SCOPES, listing=True)
        if errors:
            raise Invalid("同意记录有误", "the consent is not valid", errors)
        return agency, scope

    def _insert(self, s: Session, actor: Actor, case: Any, agency: str, scope: str, given: bool,
                override: bool, note: str | None, now: datetime) -> dict[str, Any]:
        row = {"case_id": case.id, "agency": agency, "scope": scope, "given": given, "override": override,
               "note": note, "recorded_by_id": actor.user_id, "recorded_by": actor.username[:80],
               "recorded_at": now}
        s.connection().execute(_INSERT_CONSENT, row)
        return {k: v for k, v in row.items() if k not in ("case_id", "recorded_by_id")}

    def _open_waiting(self, s: Session, spec: ProcessSpec, case: Any, agency: str, actor: Actor,
                      now: datetime, note: str | None = None) -> list[int]:
        """Open the tasks of the case's state waiting for ``agency``'s consent."""
        from .routing import route
        from .service import emit, records
        state = spec.state(case.state)
        names = [t.name for t in state.tasks if t.consent == agency]
        if not names:
            return []
        tasks = records(s, select(Task.__table__).where(Task.case_id == case.id, Task.state == case.state,
                                                        Task.status == "waiting", Task.name.in_(names)))
        opened = []
        for task in tasks:
            task_spec = state.task(task.name)
            # allocated as any new task of the state would be (assign: user / owner / policy, retain familiar)
            holder, flagged = (None, False) if state.interleaved else route(s, self.engine, spec, case, task_spec, None)
            due_at = now + task_spec.due if task_spec.due else None
            escalate_at = (due_at or now) + task_spec.escalate.after if task_spec.escalate else None
            values = dict(status="allocated" if holder is not None else "offered", assignee_id=holder,
                          created_at=now, due_at=due_at, escalate_at=escalate_at, note=note, flagged=flagged)
            _update_task(s, task, values)
            emit(self.engine, s, case, "task_created", task_id=task.id, process=spec.key, state=state.name,
                 name=task.name, role=task.role, assignee_id=holder)
            kind = "task_allocated" if holder is not None else "task_offered"
            notifications.notify(s, self.engine, kind, notifications.task_people(s, task), case, task=task,
                                 actor=actor)
            opened.append(task.id)
        return opened

    def _cancel_open(self, s: Session, spec: ProcessSpec, case: Any, agency: str, now: datetime) -> None:
        """Withdrawn consent: the agency's open referral task of the case's state is cancelled."""
        from .service import records
        names = [t.name for t in spec.state(case.state).tasks if t.consent == agency]
        if not names:
            return
        for task in records(s, select(Task.__table__).where(Task.case_id == case.id, Task.state == case.state,
                                                             Task.status.in_(OPEN), Task.name.in_(names))):
            _update_task(s, task, {"status": "cancelled", "completed_at": now,
                                   "note": "consent withdrawn / 当事人撤回同意"})

    # --------------------------------------------------------------- acceptance
    def accept(self, actor: Actor, task_id: int) -> int:
        """Accept a referral (``acceptance: true``): it becomes the acceptor's task."""
        with self.engine.transaction() as s:
            task, case, spec, task_spec = self._referral(s, actor, task_id)
            accept_referral(s, self.engine, actor, case, task)
            from .service import save_case
            save_case(s, case)
            return task.id

    def decline(self, actor: Actor, task_id: int, comment: Any) -> int:
        """Decline a referral, with a reason: the task ends ``declined`` and the work returns to
        the case owner (told by a notification; the case page shows who declined and why)."""
        with self.engine.transaction() as s:
            task, case, spec, task_spec = self._referral(s, actor, task_id)
            comment = checked_comment(comment)
            if not comment:
                raise Invalid("拒绝转介须说明理由", "a decline needs a reason", {"comment": "必填 / required"})
            now = self.engine.clock()
            _update_task(s, task, {"status": "declined", "completed_at": now, "completed_by_id": actor.user_id,
                                   "note": comment})
            audit.append_event(s, case, kind="referral_declined", actor=self.service._user(s, actor),
                               from_state=case.state, to_state=case.state, comment=comment,
                               changes={"task": [task.name, task.name]}, at=now)
            case.updated_at = now
            from .service import save_case
            save_case(s, case)
            notifications.notify(s, self.engine, "referral_declined", [case_owner(case)], case, task=task,
                                 actor=actor, note=comment)
            return task.id

    def _referral(self, s: Session, actor: Actor, task_id: int) -> tuple[Any, Any, ProcessSpec, TaskSpec]:
        """The referral she may accept or decline now (refusals in the order she would meet them)."""
        from .queries import barred_by_separation
        task, case, spec = self.service._task_for_update(s, actor, task_id)
        state = spec.state(task.state)
        task_spec = state.task(task.name)
        if task_spec is None or not task_spec.acceptance:
            raise Invalid("此任务不是需要接受或拒绝的转介", "this task is not a referral to accept or decline")
        if task.accepted_at is not None:
            raise Conflict("转介已被接受", "the referral is already accepted")
        if task.assignee_id not in (None, actor.user_id) and not escalated_to(actor, task):
            raise Conflict("任务已由他人领取", "the task is allocated to someone else")
        if not may_take(actor, task):
            raise Forbidden("此转介不是交给您的", "this referral is not offered to you")
        if barred_by_separation(s, actor, case.id, task_spec):
            raise Forbidden("职责分离：您已办理本案前序环节，不能办理此任务",
                            "separation of duties: you worked an earlier step of this case "
                            f"({', '.join(task_spec.separate_from)})")
        return task, case, spec, task_spec


def accept_referral(s: Session, engine: Engine, actor: Actor, case: Any, task: Any) -> None:
    """Record that ``actor`` accepts the referral ``task`` (checked by the caller): it becomes
    hers; the audit event ``referral_accepted`` (the caller saves the case). Accepting, claiming
    and doing a referral first are all taking it: whoever takes it first accepts it."""
    now = engine.clock()
    _update_task(s, task, {"status": "allocated", "assignee_id": actor.user_id, "accepted_at": now,
                           "accepted_by_id": actor.user_id})
    user = None if actor.is_system or actor.user_id is None else _Ref(actor.user_id, actor.username)
    audit.append_event(s, case, kind="referral_accepted", actor=user, from_state=case.state,
                       to_state=case.state, changes={"task": [task.name, task.name]}, at=now)
    case.updated_at = now


@dataclass(frozen=True)
class _Ref:
    id: int
    username: str


def _unknown(what_zh: str, what_en: str, word: Any, candidates: Any, listing: bool = True) -> str:
    """``未知的机构 'x'，是否应为 'y'？ / unknown agency 'x'; did you mean 'y'?`` with what is allowed."""
    import difflib
    candidates = [c for c in candidates if isinstance(c, str)]
    zh, en = f"未知的{what_zh} '{word}'", f"unknown {what_en} '{word}'"
    near = difflib.get_close_matches(word.lower(), [c.lower() for c in candidates], n=1, cutoff=0.6) \
        if isinstance(word, str) else []
    if near:
        match = next(c for c in candidates if c.lower() == near[0])
        zh, en = f"{zh}，是否应为 '{match}'？", f"{en}; did you mean '{match}'?"
    allowed = ", ".join(candidates)
    return f"{zh}（可选：{allowed}） / {en} (expected one of: {allowed})"


def _update_task(s: Session, task: Any, values: dict[str, Any]) -> None:
    """Write ``values`` to a task record, checked against the lock_version it was read with."""
    written = s.execute(update(Task.__table__).where(Task.__table__.c.id == task.id,
                                                     Task.__table__.c.lock_version == task.lock_version)
                        .values(**values, lock_version=Task.__table__.c.lock_version + 1)).rowcount
    if written != 1:
        raise Conflict("任务已被他人修改，请刷新", "the task was changed by someone else meanwhile")
    for key, value in values.items():
        setattr(task, key, value)
    task.lock_version += 1


def consent_rows(s: Session, case_id: int) -> list[dict[str, Any]]:
    """The statements of consent of a case, oldest first."""
    rows = s.execute(select(Consent).where(Consent.case_id == case_id).order_by(Consent.id)).scalars()
    return [{"id": c.id, "agency": c.agency, "scope": c.scope, "given": c.given, "override": c.override,
             "note": c.note, "recorded_by": c.recorded_by, "recorded_at": c.recorded_at} for c in rows]


def consent_status(rows: list[dict[str, Any]], agencies) -> list[dict[str, Any]]:
    """What holds now for each agency: ``{agency, services, statistics, override}`` where each
    scope is True (given), False (withdrawn or refused) or None (never asked)."""
    out = []
    for key, label in agencies:
        mine = [r for r in rows if r["agency"] == key]
        status = {"agency": key, "label": label, "services": None, "statistics": None, "override": None}
        for r in mine:   # oldest first: the latest statement of each scope wins
            status[r["scope"]] = r["given"]
            if r["scope"] == "services":
                status["override"] = r if r["override"] else None
        out.append(status)
    return out


def access_log_rows(s: Session, case_id: int, page: int, per_page: int) -> tuple[list[dict[str, Any]], int]:
    """A page of a case's access log, newest first, and how many entries it holds."""
    total = s.scalar(select(func.count()).select_from(AccessLogEntry).where(AccessLogEntry.case_id == case_id))
    rows = s.execute(select(AccessLogEntry).where(AccessLogEntry.case_id == case_id)
                     .order_by(AccessLogEntry.id.desc()).offset((page - 1) * per_page).limit(per_page)).scalars()
    return [{"id": r.id, "at": r.at, "username": r.username, "what": r.what, "detail": r.detail,
             "remote_addr": r.remote_addr} for r in rows], int(total or 0)


__all__ = ["Protection", "Read", "accept_referral", "READS", "SCOPES", "access_log_rows", "case_owner", "consent_holds",
           "consent_rows", "consent_status", "is_overseer", "log_read", "may_read_log", "record_read",
           "record_reads"]
