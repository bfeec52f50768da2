"""Reads: case views, available actions, history, case lists and task inboxes.

Every list is paged and costs a fixed number of queries whatever the page size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from sqlalchemy import and_, exists, false, func, not_, or_, select
from sqlalchemy.orm import Session, aliased

from hexie.models import AuditEvent, Case, OrgUnit, Task, User, Vote

from .access import (Actor, can_see_case, escalated_to, may_take, offered_now, offered_tasks_clause,
                     team_tasks_clause,
                     visible_cases_clause)
from .engine import Engine
from .errors import BadRequest, not_found
from .forms import storable_text
from .machine import FireContext
from .org import in_subtree, town_path
from .spec import ProcessSpec, TaskSpec

OPEN = ("offered", "allocated")
MAX_ID = 2**63 - 1  # ids are BIGINT: anything larger cannot name a row
MASK = "***"
TASK_VIEWS = ("mine", "available", "overdue", "escalated", "team")
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


def _worked(s: Session, actor: Actor, case: Case) -> bool:
    """She filed the case, holds or completed one of its tasks, or acted on it before (claimed a
    task and handed it on, voted, ...): the same rule as the lists' :func:`visible_cases_clause`."""
    if actor.user_id is None:
        return False
    if case.created_by_id == actor.user_id:
        return True
    held = s.scalar(select(Task.id).where(
        Task.case_id == case.id,
        or_(Task.assignee_id == actor.user_id, Task.completed_by_id == actor.user_id)).limit(1))
    return held is not None or s.scalar(select(AuditEvent.id).where(
        AuditEvent.case_id == case.id, AuditEvent.actor_id == actor.user_id).limit(1)) is not None


def can_see(s: Session, engine: Engine, actor: Actor, case: Case) -> bool:
    """The Access rule for one loaded case."""
    if actor.is_system:
        return True
    spec = engine.spec_of(s, case.process_version_id)
    if can_see_case(actor, spec, case, worked=False, could_take=False):
        return True
    if _worked(s, actor, case):
        return True
    open_tasks = s.scalars(select(Task).where(Task.case_id == case.id, Task.status.in_(OPEN)))
    # confidential: only if one of its tasks is offered to her now (not one a colleague took)
    offered = offered_now if spec.confidential else may_take
    return any(offered(actor, t) for t in open_tasks)


def works_on(s: Session, actor: Actor, case: Case, open_tasks: list[Task]) -> bool:
    """Working the case *now*: she may see sensitive fields unmasked.

    She filed it, holds or completed one of its tasks, or acted on it; and, outside
    confidential processes, one of its open tasks is offered to her now (waiting in her
    roles' pool, not taken by a colleague). In a confidential process an offered task is
    not enough: she reads the case masked until she takes it (protection.md). Overseeing
    a case (a county chair, an administrator) is not working it, until she acts on it.
    """
    if actor.is_system:
        return True
    if _worked(s, actor, case):
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
    def case(self, actor: Actor, case_id: int) -> dict[str, Any]:
        """``{id, process, version, state, org_unit, data, tasks, actions, lock_version, ...}``."""
        with self.engine.session_factory() as s:
            # the case with its unit and its creator's name: one statement
            row = s.execute(select(Case, OrgUnit, User.username).join(OrgUnit, OrgUnit.id == Case.org_unit_id)
                            .outerjoin(User, User.id == Case.created_by_id)
                            .where(Case.id == case_id)).first() if is_row_id(case_id) else None
            if row is None or not can_see(s, self.engine, actor, row[0]):
                raise not_found()
            return self._view(s, actor, *row)

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
        for t, held_by, done_by in rows:
            people[t.assignee_id], people[t.completed_by_id] = held_by, done_by
        people.pop(None, None)
        open_tasks = [t for t in tasks if t.status in OPEN]
        working = works_on(s, actor, case, open_tasks)
        now = self.engine.clock()
        allowed, blocked, quorums = self.action_status(s, actor, case, spec, open_tasks)
        return {
            "id": case.id, "process": case.process_key,
            "version": self.engine.version_number(s, case.process_version_id),
            "state": case.state, "org_unit": unit.code, "org_unit_name": unit.name,
            "data": dict(case.data) if working else mask(spec, case.data),
            "masked": not working, "subject": case.subject,
            "created_at": case.created_at, "updated_at": case.updated_at, "closed_at": case.closed_at,
            "created_by": people.get(case.created_by_id),
            "lock_version": case.lock_version,
            "tasks": [task_row(t, people, now) for t in tasks if t.status in OPEN],
            "actions": allowed,
            "blocked_actions": blocked,
            "action_quorums": quorums,
        }

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
                                   self.engine.clock().date(), open_tasks)
        waiting = [t.name for t in open_tasks if not t.optional] if state.parallel else []
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
                    blocked.setdefault(trigger, _why(f"并行任务尚未完成：{'、'.join(waiting)}",
                                                     f"parallel work still open: {', '.join(waiting)}"))
                    continue
                if t.when is not None and not (t.when.names & form_fields(trigger)):
                    selection = compiled.select(state.name, trigger, ctx)
                    if selection.transition is None:  # the guard reads only what the case holds, and fails
                        reason = "; ".join(selection.reasons) or t.when.source
                        blocked.setdefault(trigger, _why(f"条件不满足：{t.when.source}", reason))
                        continue
                allowed.append(trigger)
                selected = compiled.select(state.name, trigger, ctx).transition
                quorums[trigger] = (selected or t).quorum
                blocked.pop(trigger, None)
                break
        return allowed, [{"trigger": k, **v} for k, v in blocked.items() if k not in allowed], quorums

    def history(self, actor: Actor, case_id: int) -> list[dict[str, Any]]:
        """The audit events of a case, oldest first."""
        with self.engine.session_factory() as s:
            case = s.get(Case, case_id) if is_row_id(case_id) else None
            if case is None or not can_see(s, self.engine, actor, case):
                raise not_found()
            spec = self.engine.spec_of(s, case.process_version_id)
            working = works_on(s, actor, case, list(s.scalars(
                select(Task).where(Task.case_id == case.id, Task.status.in_(OPEN)))))
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

    # ------------------------------------------------------------------ lists
    def cases(self, actor: Actor, *, process: str | None = None, state: str | None = None,
              org_unit: str | None = None, search: str | None = None, page: int = 1,
              per_page: int = 50) -> Page:
        """Cases visible to ``actor``, newest first."""
        page, per_page = paging(page, per_page)
        with self.engine.session_factory() as s:
            stmt = select(Case, OrgUnit.code).join(OrgUnit, OrgUnit.id == Case.org_unit_id).where(
                visible_cases_clause(actor, self.engine.processes.values()))
            stmt = self._filters(s, stmt, Case, process, state, org_unit, search)
            total = self.engine.count(s, stmt)
            rows = s.execute(stmt.order_by(Case.id.desc()).offset((page - 1) * per_page).limit(per_page)).all()
            items = []
            for case, code in rows:
                spec = self.engine.spec_of(s, case.process_version_id)
                items.append({"id": case.id, "process": case.process_key, "state": case.state,
                              "org_unit": code, "subject": None if spec.confidential else case.subject,
                              "created_at": case.created_at, "updated_at": case.updated_at,
                              "closed_at": case.closed_at, "lock_version": case.lock_version})
            return Page(items, total, page, per_page)

    def tasks(self, actor: Actor, view: str = "mine", *, process: str | None = None, state: str | None = None,
              org_unit: str | None = None, search: str | None = None, overdue_only: bool = False,
              page: int = 1, per_page: int = 50) -> Page:
        """A task inbox: ``mine``, ``available``, ``overdue``, ``escalated``, or ``team`` (a manager's
        area: every open task of the cases she may see there)."""
        if view not in TASK_VIEWS:
            raise BadRequest("未知的视图", f"view must be one of {', '.join(TASK_VIEWS)}", {"view": view})
        page, per_page = paging(page, per_page)
        now = self.engine.clock()
        with self.engine.session_factory() as s:
            where = self._view_clause(actor, view, now)
            if overdue_only:
                where = and_(where, Task.due_at < now)
            # One statement for the page, its total (a window count) and the holders' names; a
            # second only for a page past the end, where no row carries the total. Unit and holder
            # are looked up per row (_UNIT_NAME, _HOLDER): as joins, a loose row estimate made
            # PostgreSQL hash both whole tables (2 → 7 ms at a million cases).
            matching = select(*_TASK_COLUMNS, Case.subject, Case.confidential, _UNIT_NAME, _HOLDER,
                              func.count().over().label("total")).join(Case, Case.id == Task.case_id).where(where)
            matching = self._filters(s, matching, Task, process, state, org_unit, search)
            order = [Task.due_at.is_(None), Task.due_at, Task.id] if view != "mine" else [Task.id.desc()]
            rows = s.execute(matching.order_by(*order).offset((page - 1) * per_page).limit(per_page)).all()
            if rows:
                total = rows[0].total
            elif page == 1:
                total = 0
            else:
                total = self.engine.count(s, matching.with_only_columns(Task.id))
            people = {row.assignee_id: row.holder for row in rows if row.assignee_id is not None}
            items = []
            for task in rows:   # plain rows: the page needs no ORM objects
                row = task_row(task, people, now)
                row.update(subject=None if task.confidential else task.subject, confidential=task.confidential,
                           org_unit_name=task.unit_name)
                items.append(row)
            return Page(items, total, page, per_page)

    def _view_clause(self, actor: Actor, view: str, now):
        """Which tasks a view of her inbox holds (the one definition the page, the API and the
        navigation's counts share)."""
        mine = Task.assignee_id == actor.user_id if actor.user_id is not None else Task.id.is_(None)
        offered = and_(Task.status == "offered", offered_tasks_clause(actor),
                       not_(_separated_clause(actor, self.engine.processes.values())))
        if view == "mine":
            return and_(Task.status == "allocated", mine)
        if view == "available":
            return offered
        if view == "overdue":
            return and_(Task.status.in_(OPEN), Task.due_at < now, or_(mine, offered))
        if view == "escalated":  # escalated to her: held by a colleague who let it lapse, too
            return and_(Task.status.in_(OPEN), Task.escalated.is_(True), or_(mine, offered_tasks_clause(actor)),
                        visible_cases_clause(actor, self.engine.processes.values()))
        return and_(Task.status.in_(OPEN), team_tasks_clause(actor),
                    visible_cases_clause(actor, self.engine.processes.values()))

    def task_counts(self, actor: Actor, views: tuple[str, ...] = ("mine", "available", "overdue", "escalated")
                    ) -> dict[str, int]:
        """How many tasks each view of her inbox holds, in one statement (the navigation's badges)."""
        now = self.engine.clock()
        clauses = [self._view_clause(actor, view, now) for view in views]
        with self.engine.session_factory() as s:
            stmt = select(*(func.count().filter(c) for c in clauses)).select_from(Task)
            if {"escalated", "team"} & set(views):   # these views ask whether she may see the case
                stmt = stmt.join(Case, Case.id == Task.case_id)
            row = s.execute(stmt.where(Task.status.in_(OPEN), or_(*clauses))).one()
        return {view: int(n or 0) for view, n in zip(views, row)}

    def report(self, actor: Actor, process: str) -> dict[str, Any]:
        """Cases of ``process`` she may see, counted by town and state and by month opened.

        ``{"states": [...], "final_states": [...], "towns": [{"code", "name", "counts": {state: n},
        "total", "open_tasks", "overdue"}], "totals": {state: n, "open_tasks": n, "overdue": n},
        "months": [("2026-03", n), ...], "total": n}``: what a chair reports upward (cases by state,
        town and month; the page shows each final state's share of a town's cases, so elder
        support's signing rate is the ``archived`` column; and the work open and overdue now).
        Grouped in the database (a few hundred rows whatever the number of cases).
        """
        spec = self.engine.current(process)[0]
        visible = visible_cases_clause(actor, [spec])
        with self.engine.session_factory() as s:
            by_unit = s.execute(select(Case.org_path, Case.state, func.count())
                                .where(Case.process_key == process, visible)
                                .group_by(Case.org_path, Case.state)).all()
            work = s.execute(select(Task.org_path, func.count(), func.count().filter(Task.due_at < self.engine.clock()))
                             .join(Case, Case.id == Task.case_id)
                             .where(Task.status.in_(OPEN), Case.process_key == process, visible)
                             .group_by(Task.org_path)).all()
            year, month = func.extract("year", Case.created_at), func.extract("month", Case.created_at)
            by_month = s.execute(select(year, month, func.count()).where(Case.process_key == process, visible)
                                 .group_by(year, month).order_by(year, month)).all()
            towns: dict[str, dict[str, int]] = {}
            for path, state, n in by_unit:
                town = town_path(path)
                counts = towns.setdefault(town, {})
                counts[state] = counts.get(state, 0) + n
            open_work: dict[str, list[int]] = {}
            for path, n, late in work:
                sums = open_work.setdefault(town_path(path), [0, 0])
                sums[0], sums[1] = sums[0] + n, sums[1] + late
            names = dict(s.execute(select(OrgUnit.path, OrgUnit.name).where(OrgUnit.path.in_(list(towns)))).all())
        rows = [{"code": path.rstrip("/").rsplit("/", 1)[-1], "name": names.get(path, path),
                 "counts": counts, "total": sum(counts.values()),
                 "open_tasks": open_work.get(path, [0, 0])[0], "overdue": open_work.get(path, [0, 0])[1]}
                for path, counts in sorted(towns.items())]
        totals: dict[str, int] = {"open_tasks": 0, "overdue": 0}
        for row in rows:
            for key, n in [*row["counts"].items(), ("open_tasks", row["open_tasks"]), ("overdue", row["overdue"])]:
                totals[key] = totals.get(key, 0) + n
        return {"process": process, "states": [st.name for st in spec.states],
                "final_states": [st.name for st in spec.states if st.final], "towns": rows, "totals": totals,
                "months": [(f"{int(y):04d}-{int(m):02d}", n) for y, m, n in by_month],
                "total": sum(r["total"] for r in rows)}

    def _filters(self, s: Session, stmt, table, process, state, org_unit, search):
        if process:
            stmt = stmt.where(table.process_key == process)
        if state:
            stmt = stmt.where(table.state == state)
        if org_unit:
            path = s.scalar(select(OrgUnit.path).where(OrgUnit.code == org_unit))
            if path is None:
                raise BadRequest("没有这个单位", f"unknown org unit {org_unit!r}", {"org_unit": org_unit})
            stmt = stmt.where(in_subtree(table.org_path, path))
        if any(v and not storable_text(str(v)) for v in (process, state, org_unit, search)):
            raise BadRequest("查询条件包含无效字符", "filters contain characters that cannot be stored")
        if search:
            stmt = stmt.where(Case.subject.contains(search.strip()[:100], autoescape=True),
                              Case.confidential.is_(False))
        return stmt


def _separated_clause(actor: Actor, processes):
    """Tasks separation of duties keeps from her: she completed an earlier step they name in that case."""
    if actor.user_id is None:
        return false()
    done = aliased(Task)
    barred = [and_(Task.process_key == spec.key, Task.state == state.name, Task.name == task.name,
                   exists().where(done.case_id == Task.case_id, done.state.in_(task.separate_from),
                                  done.status == "completed", done.completed_by_id == actor.user_id))
              for spec in processes for state in spec.states for task in state.tasks if task.separate_from]
    return or_(*barred) if barred else false()


def _why(zh: str, en: str) -> dict[str, str]:
    return {"reason_zh": zh, "reason_en": en}


def task_row(t: Task, people: Mapping[int, str], now) -> dict[str, Any]:
    return {"id": t.id, "case_id": t.case_id, "process": t.process_key, "state": t.state, "name": t.name,
            "role": t.role, "status": t.status, "assignee": people.get(t.assignee_id),
            "due_at": t.due_at, "overdue": bool(t.due_at and t.status in OPEN and t.due_at < now),
            "escalated": bool(t.escalated), "priority": t.priority, "created_at": t.created_at}


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
