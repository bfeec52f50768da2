"""Who may see and do what: the "Access" rules of definitions.md.

A person holds a role at an org unit, which covers that unit's whole subtree. Units
are addressed by their materialized path (``/county/t01/t01v01/``), so "held at U or
an ancestor of U" is a prefix test, in Python and in SQL alike.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations
from typing import Iterable

from sqlalchemy import and_, exists, false, or_, select
from sqlalchemy.orm import aliased

from hexie.models import AuditEvent, Case, Consent, Task

from .org import in_subtree
from .spec import SYSTEM_ROLE, ProcessSpec, RolesSpec

# Which roles manage, oversee and administer is data (roles.yaml: ``manager: true``,
# ``overseer: true``, ``admin: true``; host.md), never a name in the code: every rule below
# that depends on it takes the loaded :class:`RolesSpec`.


def manager_roles(roles: RolesSpec | None) -> frozenset[str]:
    """Roles that may reassign work and see every non-confidential case and task of their area."""
    return frozenset() if roles is None else roles.managers


def overseer_roles(roles: RolesSpec | None) -> frozenset[str]:
    """Roles that also see the confidential cases below their unit (the leadership)."""
    return frozenset() if roles is None else roles.overseers


def admin_roles(roles: RolesSpec | None) -> frozenset[str]:
    """Roles that administer definitions, people, units and webhooks."""
    return frozenset() if roles is None else roles.admins


def is_admin(actor: "Actor", roles: RolesSpec | None) -> bool:
    """The engine itself, or someone holding an administrator role anywhere."""
    return actor.is_system or bool(actor.all_roles & admin_roles(roles))


def is_manager(actor: "Actor", roles: RolesSpec | None, org_path: str | None = None) -> bool:
    """Holds a manager role (at or above ``org_path`` when given)."""
    wanted = manager_roles(roles)
    if org_path is None:
        return bool(actor.all_roles & wanted)
    return actor.holds_any(wanted, org_path)


def manages_case(actor: "Actor", roles: RolesSpec | None, org_path: str, confidential: bool) -> bool:
    """May manage a case at ``org_path`` (reassign its tasks, hold and resume it or its tasks, hand
    it over): a manager role at or above it; for a confidential case an overseer role, since
    definitions.md ("Access") gives a confidential case to overseers and not to managers: a
    town chair consulted on a complaint answers the consult and manages nothing."""
    if confidential:
        return actor.holds_any(overseer_roles(roles), org_path)
    return is_manager(actor, roles, org_path)


@dataclass(frozen=True)
class Assignment:
    """One role held at one org unit."""

    role: str
    unit_code: str
    unit_path: str
    level: str


@dataclass(frozen=True)
class Actor:
    """The person acting, as the engine needs to know her.

    This is the whole protocol a host application implements: a username and the
    roles she holds where. ``user_id`` is the row in ``users`` (hosts get one made).
    """

    username: str
    user_id: int | None = None
    assignments: tuple[Assignment, ...] = ()
    name: str = ""
    is_system: bool = False
    locale: str | None = None      # her chosen language; None: the browser's, else HEXIE_DEFAULT_LOCALE
    #: words a task's ``requires:`` matches (the org file's and the people API's ``capabilities``)
    capabilities: frozenset[str] = frozenset()
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def held_at(self, org_path: str) -> frozenset[tuple[str, str]]:
        """(role, level) pairs held at the unit ``org_path`` or above it."""
        held = self._cache.get(org_path)
        if held is None:
            held = frozenset((a.role, a.level) for a in self.assignments
                             if org_path.startswith(a.unit_path))
            self._cache[org_path] = held
        return held

    def roles_at(self, org_path: str) -> list[str]:
        return sorted({role for role, _ in self.held_at(org_path)})

    def holds(self, role: str, org_path: str, at: str | None = None) -> bool:
        if role == SYSTEM_ROLE:
            return self.is_system
        return any(r == role and (at is None or level == at) for r, level in self.held_at(org_path))

    def holds_any(self, roles: Iterable[str], org_path: str) -> bool:
        return any(self.holds(r, org_path) for r in roles)

    @property
    def all_roles(self) -> frozenset[str]:
        return frozenset(a.role for a in self.assignments)

    def paths_for(self, roles: Iterable[str]) -> list[str]:
        wanted = set(roles)
        return [a.unit_path for a in self.assignments if a.role in wanted]


SYSTEM = Actor(username="system", is_system=True)


def viewer_roles(process: ProcessSpec, roles: RolesSpec | None) -> tuple[str, ...]:
    """Roles whose holders at or above a case's unit see it: overseers for a confidential
    process; otherwise the roles the process names, its managers and its overseers."""
    if process.confidential:
        return tuple(sorted(overseer_roles(roles)))
    return tuple(sorted(process.roles_named() | manager_roles(roles) | overseer_roles(roles)))


def has_capabilities(actor: Actor, requires: str | Iterable[str] | None) -> bool:
    """She has every capability a task ``requires`` (a task row's comma-separated text, or a list)."""
    if not requires:
        return True
    wanted = requires.split(",") if isinstance(requires, str) else requires
    return actor.is_system or set(wanted) <= actor.capabilities


def may_take(actor: Actor, task: Task) -> bool:
    """Offered to her: the task's role at the case's unit or above (with ``at``) and the
    capabilities it requires, or its escalation."""
    if actor.holds(task.role, task.org_path, task.at_level) and has_capabilities(actor, getattr(task, "requires", None)):
        return True
    return escalated_to(actor, task)


def escalated_to(actor: Actor, task: Task) -> bool:
    """The task is overdue past its escalation and she holds the escalation role above it.

    She may then do the task's work as its own role could (fire its actions, take it over
    even from a holder who let it lapse): that is what the escalation is for.
    """
    return bool(task.escalated and task.escalate_to and actor.holds(task.escalate_to, task.org_path))


def offered_now(actor: Actor, task: Task) -> bool:
    """The open task is offered to her now: waiting in her roles' pool, or escalated to her.

    Unlike :func:`may_take`, a task a colleague has taken is no longer offered to the other
    holders of its role: in a confidential process they then see neither it nor its case.
    """
    if task.status == "offered" and actor.holds(task.role, task.org_path, task.at_level) \
            and has_capabilities(actor, getattr(task, "requires", None)) and getattr(task, "kind", "work") == "work":
        return True
    return task.status in ("offered", "allocated") and escalated_to(actor, task)


def can_see_case(actor: Actor, process: ProcessSpec, case: Case, worked: bool, could_take: bool,
                 roles: RolesSpec | None) -> bool:
    """The Access rule for one case.

    ``worked``: she filed it, or was assigned or completed one of its tasks; ``could_take``: one of
    its open tasks is offered to her now (:func:`offered_now`), which in a confidential
    process is the only way to see it without having worked it or overseeing it.
    """
    if actor.is_system or worked:
        return True
    if actor.holds_any(viewer_roles(process, roles), case.org_path):
        return True
    return could_take


def visible_cases_clause(actor: Actor, processes: Iterable[ProcessSpec], roles: RolesSpec | None):
    """A WHERE clause selecting the cases ``actor`` may see (one query, any page size)."""
    if actor.is_system:
        return Case.id.isnot(None)
    processes = list(processes)
    clauses = []
    confidential = []
    for process in processes:
        # "could take one of its tasks" is covered: task roles are among the roles named
        paths = actor.paths_for(viewer_roles(process, roles))
        for path in sorted(set(paths)):
            clauses.append(and_(Case.process_key == process.key, in_subtree(Case.org_path, path)))
        if process.confidential:
            confidential.append(process.key)
    if confidential and actor.assignments:
        # a confidential case is seen by those to whom one of its tasks is offered now
        offered = select(Task.case_id).where(Task.process_key.in_(confidential), offered_now_clause(actor))
        clauses.append(Case.id.in_(offered))
    if actor.user_id is not None:
        worked = select(Task.case_id).where(worked_task_clause(actor.user_id), Task.status != "declined")
        # acted on it (claimed a task she then handed on, voted, ...): she keeps seeing it; declining a referral is not
        # acting on the case (protection.md)
        acted = select(AuditEvent.case_id).where(AuditEvent.actor_id == actor.user_id,
                                                 AuditEvent.kind.notin_((*PASSING_KINDS, "referral_declined")))
        cut = withdrawn_referral_cases(actor.user_id, processes, roles=[a.role for a in actor.assignments])
        if cut is not None:   # her only work was a referral to an agency the survivor withdrew her consent from
            worked, acted = worked.where(Task.case_id.notin_(cut)), acted.where(AuditEvent.case_id.notin_(cut))
        clauses.append(Case.id.in_(worked))
        clauses.append(Case.id.in_(acted))
        clauses.append(Case.created_by_id == actor.user_id)
        clauses.append(Case.owner_id == actor.user_id)
    return or_(*clauses) if clauses else false()


#: What a person does on a case that gives her no lasting sight of it: answering a consult
#: (she reads the case while it is open) and writing a note (which she could do only seeing it).
PASSING_KINDS = ("consult_answered", "note")


#: What an agency's worker does on a referral (accept, take, do, hand back, ask a colleague, attach
#: a file): work that a withdrawal of the survivor's consent to that agency takes back.
REFERRAL_WORK_KINDS = ("referral_accepted", "claimed", "released", "task_done", "consulted", "attached")


def withdrawn_referral_cases(user_id: int, processes: Iterable[ProcessSpec], case_id: int | None = None,
                             roles: Iterable[str] | None = None):
    """The confidential cases (a SELECT of ids; ``None`` when no process has referrals) that
    ``user_id`` worked *only* through referrals to agencies whose consent the survivor has since
    withdrawn (her latest ``services`` statement for the agency is a withdrawal).

    protection.md: consent is what lets the case be shared with an agency ("services — may be
    shared with that agency to help her"), and a withdrawal ends the referral. As Primero does when
    a referral is revoked, the agency's worker then loses the case: her held, done or accepted
    referral tasks and her referral work (:data:`REFERRAL_WORK_KINDS`) no longer make her one who
    works it. Any other task of hers on the case (or an open consult), any other act (an action
    fired, a vote), filing or owning it, keeps it; a new consent shares it again.

    ``roles``: the roles she holds; only referrals to those can be hers (so that nobody else's
    lists carry the subquery at all).
    """
    held = None if roles is None else set(roles)
    refs = [(p.key, st.name, t.name, t.consent) for p in processes if p.confidential
            for st in p.states for t in st.tasks if t.consent and (held is None or t.role in held)]
    if not refs:
        return None

    def withdrawn(task):
        latest, later = aliased(Consent), aliased(Consent)
        return exists().where(
            latest.case_id == task.case_id, latest.scope == "services", latest.given.is_(False),
            or_(*(and_(task.process_key == p, task.state == st, task.name == n, latest.agency == a)
                  for p, st, n, a in refs)),
            ~exists().where(later.case_id == latest.case_id, later.agency == latest.agency,
                            later.scope == "services", later.id > latest.id))

    def hers(task):
        return or_(and_(task.kind == "work", task.status != "declined",
                        or_(task.assignee_id == user_id, task.completed_by_id == user_id,
                            task.accepted_by_id == user_id)),
                   and_(task.kind == "consult", task.status.in_(("offered", "allocated")),
                        task.assignee_id == user_id))

    ref, other = aliased(Task), aliased(Task)
    stmt = select(ref.case_id).where(
        hers(ref), withdrawn(ref),
        ~exists().where(other.case_id == ref.case_id, hers(other), ~withdrawn(other)),
        ~exists().where(AuditEvent.case_id == ref.case_id, AuditEvent.actor_id == user_id,
                        AuditEvent.kind.notin_((*PASSING_KINDS, "referral_declined", *REFERRAL_WORK_KINDS))))
    return stmt.where(ref.case_id == case_id) if case_id is not None else stmt


def worked_task_clause(user_id: int):
    """Tasks that make her one who worked the case: a step she holds or completed, or a consult
    asked of her that is still open."""
    return or_(and_(Task.kind == "work", or_(Task.assignee_id == user_id, Task.completed_by_id == user_id)),
               and_(Task.kind == "consult", Task.status.in_(("offered", "allocated")), Task.assignee_id == user_id))


def team_tasks_clause(actor: Actor, roles: RolesSpec | None):
    """A WHERE clause for tasks in the areas where ``actor`` is a manager (who may reassign them)."""
    paths = sorted(set(actor.paths_for(manager_roles(roles))))
    return or_(*(in_subtree(Task.org_path, p) for p in paths)) if paths else false()


def requires_clause(actor: Actor):
    """A WHERE clause for tasks whose ``requires`` she meets: none, or a combination of her
    capabilities (stored sorted and comma-separated, so each combination is one exact text)."""
    caps = sorted(actor.capabilities)[:10]     # 1,023 combinations at most
    if not caps:
        return Task.requires.is_(None)
    combos = [",".join(c) for n in range(1, len(caps) + 1) for c in combinations(caps, n)]
    return or_(Task.requires.is_(None), Task.requires.in_(combos))


def offered_now_clause(actor: Actor):
    """A WHERE clause for the open tasks :func:`offered_now` to ``actor`` (the same rule in SQL)."""
    clauses = []
    for a in actor.assignments:
        clauses.append(and_(Task.status == "offered", Task.role == a.role, in_subtree(Task.org_path, a.unit_path),
                            or_(Task.at_level.is_(None), Task.at_level == a.level), requires_clause(actor)))
        clauses.append(and_(Task.status.in_(("offered", "allocated")), Task.escalated.is_(True),
                            Task.escalate_to == a.role, in_subtree(Task.org_path, a.unit_path)))
    return or_(*clauses) if clauses else false()


def offered_tasks_clause(actor: Actor):
    """A WHERE clause for open tasks offered to ``actor``'s roles in her area."""
    clauses = []
    for a in actor.assignments:
        clauses.append(and_(Task.role == a.role, in_subtree(Task.org_path, a.unit_path),
                            or_(Task.at_level.is_(None), Task.at_level == a.level), requires_clause(actor)))
        clauses.append(and_(Task.escalated.is_(True), Task.escalate_to == a.role,
                            in_subtree(Task.org_path, a.unit_path)))
    return or_(*clauses) if clauses else false()
