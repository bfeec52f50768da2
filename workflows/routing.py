"""Who gets a new task (definitions.md, "Who gets a task").

In order: ``assign: {user: FIELD}`` (the person a ``user`` field of the case names),
``assign: {owner: true}`` (the case's owner), ``assign: {policy: …}`` (one of those who may
take it, chosen in turn, by the shortest queue or by chance), ``assign: {same_as: STATE}``
(retain familiar), the starter for the first step; otherwise nobody: the task is offered to
its role. A named person who may not take the task (her roles, her area, her capabilities,
separation of duties) does not get it: it is offered to the role and *flagged*, so that a
manager sees that the definition's choice could not be followed. A person away with a
delegate who may take it is replaced by the delegate.
"""
from __future__ import annotations

import random
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hexie.models import OrgUnit, RoleAssignment, Task, User

from .access import Actor, has_capabilities
from .org import ancestor_paths
from .spec import ProcessSpec, TaskSpec

_random = random.SystemRandom()


def route(s: Session, engine: Any, spec: ProcessSpec, case: Any, task_spec: TaskSpec,
          starter: Actor | None) -> tuple[int | None, bool]:
    """(the person the new task is allocated to or None, whether it is flagged)."""
    if task_spec.assign_user:
        username = (case.data or {}).get(task_spec.assign_user)
        if not username:
            return None, False
        user_id = s.scalar(select(User.id).where(User.username == str(username)))
        if user_id is not None and eligible(s, engine, user_id, case, task_spec):
            return away_delegate(s, engine, user_id, case, task_spec), False
        return None, True
    if task_spec.assign_owner:
        owner = getattr(case, "owner_id", None)
        if owner is None:
            return None, False
        if eligible(s, engine, owner, case, task_spec):
            return away_delegate(s, engine, owner, case, task_spec), False
        return None, False   # an owner who does not do this step (a chair filed it): the role's pool
    if task_spec.policy:
        return by_policy(s, engine, case, task_spec), False
    return first_holder(s, engine, case.id, case.org_path, task_spec, starter, case=case), False


def first_holder(s: Session, engine: Any, case_id: int | None, org_path: str, task_spec: TaskSpec,
                 starter: Actor | None, case: Any = None) -> int | None:
    """Retain familiar, or the starter for the first step (then delegation while away)."""
    candidate: int | None = None
    if task_spec.same_as:
        candidate = s.scalar(select(Task.completed_by_id).where(
            Task.case_id == case_id, Task.state == task_spec.same_as, Task.status == "completed",
            Task.kind == "work", Task.completed_by_id.isnot(None))
            .order_by(Task.completed_at.desc(), Task.id.desc()).limit(1))
        if candidate is not None and not user_may_take(s, engine, candidate, org_path, task_spec):
            candidate = None
    elif starter is not None and starter.user_id and starter.holds(task_spec.role, org_path, task_spec.at) \
            and has_capabilities(starter, task_spec.requires):
        candidate = starter.user_id
    if candidate is None:
        return None
    return _delegate_if_away(s, engine, candidate, org_path, task_spec)


def user_may_take(s: Session, engine: Any, user_id: int, org_path: str, task_spec: TaskSpec) -> bool:
    """Active, holding the task's role there (at its level), with the capabilities it requires."""
    user = s.get(User, user_id)
    if user is None or not user.active:
        return False
    actor = engine.actor_for(s, user)
    return actor.holds(task_spec.role, org_path, task_spec.at) and has_capabilities(actor, task_spec.requires)


def eligible(s: Session, engine: Any, user_id: int, case: Any, task_spec: TaskSpec) -> bool:
    """She may take the task of this case: role, area, capabilities and separation of duties."""
    from .queries import barred_by_separation
    if not user_may_take(s, engine, user_id, case.org_path, task_spec):
        return False
    if task_spec.separate_from and case.id is not None:
        return not barred_by_separation(s, engine.actor_for(s, s.get(User, user_id)), case.id, task_spec)
    return True


def away_delegate(s: Session, engine: Any, user_id: int, case: Any, task_spec: TaskSpec) -> int:
    return _delegate_if_away(s, engine, user_id, case.org_path, task_spec)


def _delegate_if_away(s: Session, engine: Any, user_id: int, org_path: str, task_spec: TaskSpec) -> int:
    user = s.get(User, user_id)
    if user is not None and user.away_until and user.away_until > engine.clock() and user.delegate_to_id \
            and user_may_take(s, engine, user.delegate_to_id, org_path, task_spec):
        return user.delegate_to_id
    return user_id


def candidates(s: Session, engine: Any, case: Any, task_spec: TaskSpec) -> list[int]:
    """Everyone who may take the task now and is not away, by id."""
    stmt = (select(User.id, User.capabilities, User.away_until)
            .join(RoleAssignment, RoleAssignment.user_id == User.id)
            .join(OrgUnit, OrgUnit.id == RoleAssignment.org_unit_id)
            .where(RoleAssignment.role == task_spec.role, OrgUnit.path.in_(ancestor_paths(case.org_path)),
                   User.active.is_(True)))
    if task_spec.at:
        stmt = stmt.where(OrgUnit.level == task_spec.at)
    now = engine.clock()
    wanted = set(task_spec.requires)
    ids = sorted({uid for uid, caps, away in s.execute(stmt).all()
                  if wanted <= set(caps or ()) and not (away and away > now)})
    if task_spec.separate_from and case.id is not None:
        ids = [uid for uid in ids if eligible(s, engine, uid, case, task_spec)]
    return ids


def by_policy(s: Session, engine: Any, case: Any, task_spec: TaskSpec) -> int | None:
    """``round_robin``: the one after whoever got this step last; ``shortest_queue``: the one
    holding the fewest open tasks (ties: the lowest id); ``random``: by chance."""
    people = candidates(s, engine, case, task_spec)
    if not people:
        return None
    if task_spec.policy == "random":
        return _random.choice(people)
    if task_spec.policy == "shortest_queue":
        counts = dict(s.execute(select(Task.assignee_id, func.count()).where(
            Task.assignee_id.in_(people), Task.status == "allocated").group_by(Task.assignee_id)).all())
        return min(people, key=lambda uid: (counts.get(uid, 0), uid))
    last = s.scalar(select(Task.assignee_id).where(
        Task.process_key == case.process_key, Task.state == task_spec_state(case, task_spec),
        Task.name == task_spec.name, Task.assignee_id.in_(people))
        .order_by(Task.created_at.desc(), Task.id.desc()).limit(1))
    if last is None:
        return people[0]
    later = [uid for uid in people if uid > last]
    return later[0] if later else people[0]


def task_spec_state(case: Any, task_spec: TaskSpec) -> str:
    """The state whose task this is (a single task is named after its state)."""
    return case.state   # set to the state being entered before its tasks open
