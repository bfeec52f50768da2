"""External tasks: machine steps done by other systems (interfaces.md, "Machine steps").

A state's task with ``external: TOPIC`` opens like any task (offered to its
``worker_role``) plus a :class:`~hexie.models.ExternalTask` row. Workers, holding a token
of a user with that role, poll :func:`fetch_and_lock`, which locks up to ``max_tasks``
free tasks of the topics asked for to that ``worker_id`` for ``lock_duration_ms``
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL: workers on several hosts never get the same
task; on SQLite the claim takes the write lock first). An expired lock frees the task.
The holder then completes it (:func:`complete` fires a trigger of the state, as
``POST /cases/{id}/actions/{trigger}`` would, in the same transaction), reports a
failure (:func:`failure`: ``retries`` left and a ``retry_timeout_ms`` before the next
fetch; at 0 retries an incident, shown to administrators and resolved by
:func:`set_retries`), extends its lock or gives it up. A call by a worker that does not
hold the lock (never had it, or let it expire) is a :class:`Conflict` (409).

Each call is one transaction; a refused call changes nothing.
"""
from __future__ import annotations

from datetime import timedelta
from typing import Any, Iterable, Mapping

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from hexie.models import Case, ExternalTask, Task

from .access import Actor, is_admin, may_take
from .errors import Conflict, Forbidden, Invalid, not_found
from .queries import is_row_id

MAX_LOCK_MS = 24 * 3600 * 1000
_EXT, _TASKS, _CASES = ExternalTask.__table__, Task.__table__, Case.__table__


def _admin(engine: Any, actor: Actor) -> None:
    if not is_admin(actor, engine.registry.roles):
        raise Forbidden("只有管理员可以处理外部任务故障", "only an administrator may handle external task incidents")


def _duration(value: Any, name: str) -> timedelta:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 < value <= MAX_LOCK_MS:
        raise Invalid("时长无效", f"{name} must be a whole number of milliseconds, 1 to {MAX_LOCK_MS}",
                      {name: "1..86400000"})
    return timedelta(milliseconds=value)


def _worker(worker_id: Any) -> str:
    if not isinstance(worker_id, str) or not worker_id.strip() or len(worker_id) > 255:
        raise Invalid("缺少 worker_id", "worker_id must be a non-empty text of at most 255 characters",
                      {"worker_id": "必填 / required"})
    return worker_id


def _view(engine: Any, s: Session, ext: Any, task: Any, case: Any) -> dict[str, Any]:
    spec = engine.spec_of(s, case.process_version_id)
    state = spec.state(task.state)
    task_spec = state.task(task.name) if state.tasks else None
    names = task_spec.variables if task_spec is not None else ()
    return {"id": task.id, "topic": ext.topic, "case_id": case.id, "business_key": getattr(case, "business_key", None),
            "process": case.process_key, "state": task.state, "data": {n: case.data.get(n) for n in names},
            "retries": ext.retries, "worker_id": ext.worker_id, "lock_expires_at": ext.lock_expires_at,
            "error_message": ext.error_message, "incident": ext.incident_at is not None,
            "incident_at": ext.incident_at, "retry_at": ext.retry_at, "status": task.status}


def fetch_and_lock(engine: Any, actor: Actor, worker_id: str, max_tasks: int,
                   topics: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Lock up to ``max_tasks`` free external tasks of ``topics`` (``{name, lock_duration_ms}``) to
    ``worker_id``; returns them with their variables."""
    worker_id = _worker(worker_id)
    if not isinstance(max_tasks, int) or isinstance(max_tasks, bool) or not 1 <= max_tasks <= 100:
        raise Invalid("max_tasks 无效", "max_tasks must be 1 to 100", {"max_tasks": "1..100"})
    durations = {}
    for topic in topics:
        name = topic.get("name")
        if not isinstance(name, str) or not name:
            raise Invalid("主题无效", "each topic needs a name", {"topics": "缺少名称 / a name is required"})
        durations[name] = _duration(topic.get("lock_duration_ms"), "lock_duration_ms")
    if not durations:
        raise Invalid("缺少主题", "name at least one topic", {"topics": "不能为空 / empty"})
    roles = sorted(actor.all_roles)
    if not roles:
        return []
    now = engine.clock()
    with engine.transaction() as s:
        conn = s.connection()
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")   # the claim is ours until the commit
        # (the external row's own columns decide: PostgreSQL re-reads a row another worker just
        # changed, not the task joined to it)
        free = and_(_EXT.c.topic.in_(list(durations)), _EXT.c.retries > 0, _EXT.c.completed_at.is_(None),
                    or_(_EXT.c.lock_expires_at.is_(None), _EXT.c.lock_expires_at <= now),
                    or_(_EXT.c.retry_at.is_(None), _EXT.c.retry_at <= now),
                    _TASKS.c.status.in_(("offered", "allocated")), _TASKS.c.role.in_(roles))
        rows = conn.execute(
            select(_EXT, _TASKS.c.id.label("t_id"), _TASKS.c.role, _TASKS.c.org_path, _TASKS.c.at_level,
                   _TASKS.c.escalated, _TASKS.c.escalate_to, _TASKS.c.case_id)
            .join(_TASKS, _TASKS.c.id == _EXT.c.task_id).where(free)
            .order_by(_EXT.c.task_id).limit(max_tasks * 4)
            .with_for_update(of=_EXT, skip_locked=True)).all()
        taken = [r for r in rows if may_take(actor, r)][:max_tasks]
        out = []
        for r in taken:
            expires = now + durations[r.topic]
            conn.execute(update(_EXT).where(_EXT.c.task_id == r.task_id)
                         .values(worker_id=worker_id, lock_expires_at=expires))
        for r in taken:
            ext, task, case = _load(s, r.task_id)
            out.append(_view(engine, s, ext, task, case))
        return out


def _load(s: Session, task_id: int, *, for_update: bool = False) -> tuple[Any, Any, Any]:
    stmt = select(_EXT).where(_EXT.c.task_id == task_id)
    ext = s.connection().execute(stmt.with_for_update() if for_update else stmt).first() if is_row_id(task_id) else None
    if ext is None:
        raise not_found()   # the same words for hidden and missing, no id
    task = s.connection().execute(select(_TASKS).where(_TASKS.c.id == task_id)).one()
    case = s.connection().execute(select(_CASES).where(_CASES.c.id == task.case_id)).one()
    return ext, task, case


def _held(engine: Any, s: Session, actor: Actor, task_id: int, worker_id: Any) -> tuple[Any, Any, Any]:
    """The locked task, if ``worker_id`` holds its lock now; else 404 (not hers to see) or 409."""
    worker_id = _worker(worker_id)
    ext, task, case = _load(s, task_id, for_update=True)
    if not actor.is_system and not may_take(actor, task):
        raise not_found()   # the same words for hidden and missing, no id
    if task.status not in ("offered", "allocated") or ext.completed_at is not None:
        raise Conflict("外部任务已完成", "the external task is already closed")
    if ext.worker_id != worker_id or ext.lock_expires_at is None or ext.lock_expires_at <= engine.clock():
        raise Conflict("该工作者未持有此任务的锁", f"worker {worker_id!r} does not hold the lock of this task",
                       {"worker_id": ext.worker_id if ext.lock_expires_at and ext.lock_expires_at > engine.clock()
                        else None})
    return ext, task, case


def complete(engine: Any, service: Any, actor: Actor, task_id: int, worker_id: str, trigger: str,
             data: Mapping[str, Any] | None = None) -> int:
    """Fire ``trigger`` on the task's case for the worker holding its lock; returns the case id."""
    with engine.transaction() as s:
        _ext, task, case = _held(engine, s, actor, task_id, worker_id)
        if not isinstance(trigger, str) or not trigger:
            raise Invalid("缺少 trigger", "name the trigger to fire", {"trigger": "必填 / required"})
        service._fire(s, actor, case.id, trigger, dict(data or {}), None, None)
        s.connection().execute(update(_EXT).where(_EXT.c.task_id == task.id)
                               .values(lock_expires_at=None, retry_at=None, completed_at=engine.clock()))
        return case.id


def failure(engine: Any, actor: Actor, task_id: int, worker_id: str, error: Any, retries: Any,
            retry_timeout_ms: Any = None) -> dict[str, Any]:
    """The holder could not do it: ``retries`` tries left, the next not before ``retry_timeout_ms``."""
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise Invalid("retries 无效", "retries must be a whole number from 0", {"retries": ">= 0"})
    wait = _duration(retry_timeout_ms, "retry_timeout_ms") if retry_timeout_ms not in (None, 0) else None
    now = engine.clock()
    with engine.transaction() as s:
        _held(engine, s, actor, task_id, worker_id)
        s.connection().execute(update(_EXT).where(_EXT.c.task_id == task_id).values(
            worker_id=None, lock_expires_at=None, retries=retries, error_message=str(error or "")[:4000] or None,
            retry_at=now + wait if wait else None, incident_at=now if retries == 0 else None))
        return _view(engine, s, *_load(s, task_id))


def extend_lock(engine: Any, actor: Actor, task_id: int, worker_id: str, new_duration_ms: Any) -> dict[str, Any]:
    """The holder needs longer: her lock now ends ``new_duration_ms`` from now."""
    duration = _duration(new_duration_ms, "new_duration_ms")
    with engine.transaction() as s:
        _held(engine, s, actor, task_id, worker_id)
        s.connection().execute(update(_EXT).where(_EXT.c.task_id == task_id)
                               .values(lock_expires_at=engine.clock() + duration))
        return _view(engine, s, *_load(s, task_id))


def unlock(engine: Any, actor: Actor, task_id: int, worker_id: str) -> dict[str, Any]:
    """The holder gives the task back: any worker may fetch it now."""
    with engine.transaction() as s:
        _held(engine, s, actor, task_id, worker_id)
        s.connection().execute(update(_EXT).where(_EXT.c.task_id == task_id)
                               .values(worker_id=None, lock_expires_at=None))
        return _view(engine, s, *_load(s, task_id))


def set_retries(engine: Any, actor: Actor, task_id: int, retries: Any) -> dict[str, Any]:
    """An administrator gives a task more tries (resolving its incident when above 0)."""
    _admin(engine, actor)
    if not isinstance(retries, int) or isinstance(retries, bool) or retries < 0:
        raise Invalid("retries 无效", "retries must be a whole number from 0", {"retries": ">= 0"})
    with engine.transaction() as s:
        _ext, task, _case = _load(s, task_id, for_update=True)
        if task.status not in ("offered", "allocated"):
            raise Conflict("外部任务已完成", "the external task is already closed")
        s.connection().execute(update(_EXT).where(_EXT.c.task_id == task_id).values(
            retries=retries, retry_at=None, incident_at=None if retries > 0 else engine.clock()))
        return _view(engine, s, *_load(s, task_id))


def incidents(engine: Any, actor: Actor, limit: int = 200, offset: int = 0) -> list[dict[str, Any]]:
    """Open external tasks out of retries, newest first (administrators)."""
    return incident_page(engine, actor, limit, offset)[0]


def incident_page(engine: Any, actor: Actor, limit: int = 50, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """A page of :func:`incidents` and how many there are in all (the API's paging)."""
    _admin(engine, actor)
    where = (_EXT.c.incident_at.isnot(None), _TASKS.c.status.in_(("offered", "allocated")))
    with engine.session_factory() as s:
        ids = s.scalars(select(_EXT.c.task_id).join(_TASKS, _TASKS.c.id == _EXT.c.task_id).where(*where)
                        .order_by(_EXT.c.incident_at.desc(), _EXT.c.task_id.desc())
                        .offset(offset).limit(limit)).all()
        total = s.scalar(select(func.count()).select_from(_EXT).join(_TASKS, _TASKS.c.id == _EXT.c.task_id)
                         .where(*where))
        return [_view(engine, s, *_load(s, i)) for i in ids], total


def get(engine: Any, actor: Actor, task_id: int) -> dict[str, Any]:
    """One external task, for its workers and administrators."""
    with engine.session_factory() as s:
        ext, task, case = _load(s, task_id)
        if not (is_admin(actor, engine.registry.roles) or may_take(actor, task)):
            raise not_found()   # the same words for hidden and missing, no id
        return _view(engine, s, ext, task, case)
