"""A mixin that puts a host application's own records under a Hexie workflow.

Like OCA's ``base_tier_validation`` does for Odoo records, a host model declares which
process governs it, which of its attributes the case holds, and gains a link to its case
plus a few verbs::

    class PurchaseRequest(Base, WorkflowMixin):
        __tablename__ = "purchase_requests"
        __workflow__ = "purchase_request"
        __workflow_fields__ = {"amount": "amount", "title": "title"}   # host attribute -> case field
        id: Mapped[int] = mapped_column(primary_key=True)
        ...

    pr = PurchaseRequest(title="Laptops", amount=Decimal("8000.00"))
    session.add(pr)
    pr.start_workflow(actor, "dept_it", session=session)   # the case joins the host's transaction
    session.commit()                                        # record and case: both or neither
    pr.fire_workflow(actor, "submit", session=session)
    pr.workflow_state(actor)                                # "head_review"

The record stores only the case id (``hexie_case_id``); the case, its tasks and its history
live in Hexie's tables and change only through :class:`hexie.workflows.service.WorkflowService`,
so every rule (roles, guards, forms, separation of duties) applies to the host exactly as to
Hexie's own screens.

* ``session=``: the host's SQLAlchemy session (same database as Hexie's tables). The call
  runs inside it (a SAVEPOINT): the host commits or rolls back record and case together, and
  Hexie's outbound events are sent only after that commit. Without it, each call is a
  transaction of Hexie's own.
* ``business_key``: ``"<table>:<primary key>"`` unless the model defines
  ``__workflow_business_key__`` (a method returning the key, or a value) or the call passes
  ``business_key=``. Unique per process: a second case for the same record is a ``Conflict``.
* ``__workflow_fields__``: the host is the master of these case fields. They are copied into
  the case at the start and by :meth:`WorkflowMixin.sync_workflow` (an audited ``synced``
  event by the actor), Hexie's forms never edit them, and while the case is in a state not
  marked ``host_editable: true`` a flush of the host's session that changes one raises
  :class:`hexie.workflows.errors.WorkflowLocked`.
* The engine: the model's own (``Model.bind_workflow(engine)``), else the current Flask
  app's Hexie engine, else the last one made by :func:`hexie.create_engine` or mounted by
  the ``Hexie`` extension.
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from sqlalchemy import event, inspect, select
from sqlalchemy.orm import Mapped, Session, declared_attr, mapped_column, object_session

from hexie.models import BigID, Case

from .access import Actor
from .errors import Conflict, WorkflowLocked
from .queries import CaseQueries
from .service import WorkflowService

if TYPE_CHECKING:
    from .engine import Engine


class WorkflowMixin:
    """Adds ``hexie_case_id`` and the workflow verbs to a host's SQLAlchemy model."""

    #: The process key (a definition file) that governs records of this model.
    __workflow__: ClassVar[str]
    #: Host attribute -> case field: copied into the case, locked outside ``host_editable`` states.
    __workflow_fields__: ClassVar[Mapping[str, str]] = {}
    #: The engine this model's records use (see :meth:`bind_workflow`); None: found at call time.
    __workflow_engine__: ClassVar["Engine | None"] = None

    @declared_attr
    def hexie_case_id(cls) -> Mapped[int | None]:
        """The Hexie case of this record, once its workflow is started."""
        return mapped_column(BigID, nullable=True, index=True)

    @classmethod
    def bind_workflow(cls, engine: "Engine") -> None:
        """Use ``engine`` for this model's records (and its subclasses')."""
        cls.__workflow_engine__ = engine

    # -- changing --------------------------------------------------------------
    def start_workflow(self, *args: Any, session: Session | None = None, business_key: str | None = None,
                       **kw: Any) -> int:
        """``start_workflow(actor, org_unit, data=None, comment=None, *, session=None, business_key=None)``.

        Opens the case for this record (the host's own starting: a process with
        ``starters: [system]`` is started only this way), with ``data`` as its first form
        and the mapped fields copied in; remembers its id in ``hexie_case_id``. Raises
        :class:`Conflict` when the record already has a case (or another case has its
        business key), and whatever :meth:`WorkflowService.start_case` raises (nothing of
        Hexie's is stored then).
        """
        engine, (actor, org_unit, data, comment) = self._engine_and(args, kw, ("actor", "org_unit", "data", "comment"),
                                                                    required=2)
        if getattr(self, "hexie_case_id", None) is not None:
            raise Conflict("该记录已发起流程", f"this record already has case {self.hexie_case_id}")
        if session is not None:
            session.add(self)
            session.flush()          # the primary key (the business key) and the lock checks
        elif object_session(self) is not None and inspect(self).identity is None:
            object_session(self).flush()
        if business_key is None:
            business_key = self.workflow_business_key()
        case_id = WorkflowService(engine).start_case(
            actor, self.workflow_process(), org_unit, data, comment=comment, business_key=business_key,
            host_values=self.workflow_values(), host=True, session=session)
        self.hexie_case_id = case_id
        return case_id

    def fire_workflow(self, *args: Any, session: Session | None = None, sync: bool = True,
                      **kw: Any) -> dict[str, Any]:
        """``fire_workflow(actor, trigger, *, data=None, comment=None, lock_version=None, session=None)``.

        Fires ``trigger`` on this record's case. With ``sync`` (the default) the mapped fields
        are first copied into the case when they differ (:meth:`sync_workflow`), so that a
        resubmitted amount decides the branch the case takes.
        """
        options = {k: kw.pop(k) for k in ("data", "comment", "lock_version") if k in kw}
        engine, (actor, trigger) = self._engine_and(args, kw, ("actor", "trigger"), required=2)
        if session is not None:
            session.flush()
        if sync and self.__workflow_fields__:
            self._sync(engine, actor, session)
        return WorkflowService(engine).fire(actor, self._case_id(), trigger, session=session, **options)

    def sync_workflow(self, *args: Any, session: Session | None = None, **kw: Any) -> dict[str, list[Any]]:
        """Copy the mapped fields into the case (one audited ``synced`` event by ``actor``).

        Returns the changes, ``{case_field: [old, new]}`` (empty: nothing differed, nothing written).
        """
        engine, (actor,) = self._engine_and(args, kw, ("actor",), required=1)
        if session is not None:
            session.flush()
        return self._sync(engine, actor, session)

    def _sync(self, engine: "Engine", actor: Actor, session: Session | None) -> dict[str, list[Any]]:
        return WorkflowService(engine).sync_fields(actor, self._case_id(), self.workflow_values(), session=session)

    # -- reading ---------------------------------------------------------------
    def workflow_case(self, *args: Any, **kw: Any) -> dict[str, Any] | None:
        """The case as ``actor`` may see it (:meth:`CaseQueries.case`), or None before the start."""
        engine, (actor,) = self._engine_and(args, kw, ("actor",), required=1)
        case_id = getattr(self, "hexie_case_id", None)
        return None if case_id is None else CaseQueries(engine).case(actor, case_id)

    def workflow_state(self, *args: Any, **kw: Any) -> str | None:
        """The case's state name, or None before the workflow is started."""
        case = self.workflow_case(*args, **kw)
        return None if case is None else case["state"]

    def workflow_actions(self, *args: Any, **kw: Any) -> list[str]:
        """The triggers ``actor`` may fire now (empty before the start)."""
        case = self.workflow_case(*args, **kw)
        return [] if case is None else list(case["actions"])

    def workflow_history(self, *args: Any, **kw: Any) -> list[dict[str, Any]]:
        """The case's audit events, oldest first (empty before the start)."""
        engine, (actor,) = self._engine_and(args, kw, ("actor",), required=1)
        case_id = getattr(self, "hexie_case_id", None)
        return [] if case_id is None else CaseQueries(engine).history(actor, case_id)

    # -- what the case holds of the record ----------------------------------------
    @classmethod
    def workflow_process(cls) -> str:
        process = getattr(cls, "__workflow__", None)
        if not process:
            raise TypeError(f"{cls.__name__} must name its process in __workflow__")
        return process

    def workflow_business_key(self) -> str | None:
        """``__workflow_business_key__`` (a method or a value) if the model has one, else
        ``"<table>:<primary key>"`` (None while the record has no primary key)."""
        custom = getattr(self, "__workflow_business_key__", None)
        if custom is not None:
            value = custom() if callable(custom) else custom
            return None if value is None else str(value)
        identity = inspect(self).identity
        if identity is None:
            mapper = inspect(type(self))
            identity = tuple(getattr(self, column.key) for column in mapper.primary_key)
            if any(part is None for part in identity):
                return None
        return f"{type(self).__tablename__}:{'-'.join(str(part) for part in identity)}"

    def workflow_values(self) -> dict[str, Any]:
        """The mapped fields as the case stores them: ``{case_field: value}``."""
        return {case_field: _plain(getattr(self, attr)) for attr, case_field in self.__workflow_fields__.items()}

    # -- helpers ---------------------------------------------------------------
    def _engine_and(self, args: tuple, kw: dict, names: tuple[str, ...], required: int) -> tuple["Engine", list]:
        """The engine and the call's arguments; an old-style first argument (a WorkflowService or
        CaseQueries, as in Hexie 0.1) is accepted and names the engine."""
        engine = None
        if args and isinstance(args[0], (WorkflowService, CaseQueries)):
            engine, args = args[0].engine, args[1:]
        values = list(args) + [kw.pop(name) for name in names[len(args):] if name in kw]
        if kw:
            raise TypeError(f"unexpected arguments: {', '.join(kw)}")
        if len(values) < required:
            raise TypeError(f"expected {', '.join(names[:required])}")
        values += [None] * (len(names) - len(values))
        return engine or workflow_engine(type(self)), values

    def _case_id(self) -> int:
        case_id = getattr(self, "hexie_case_id", None)
        if case_id is None:
            raise Conflict("该记录尚未发起流程", "this record has no workflow yet (call start_workflow first)")
        return case_id


def workflow_engine(model: type | None = None) -> "Engine":
    """The engine a host model's records use (see the module's docstring for the order)."""
    bound = getattr(model, "__workflow_engine__", None) if model is not None else None
    if bound is not None:
        return bound
    try:
        from flask import current_app, has_app_context
    except ImportError:  # pragma: no cover - Flask is a dependency
        has_app_context = lambda: False  # noqa: E731
    if has_app_context() and "hexie" in current_app.extensions:
        return current_app.extensions["hexie"].engine
    from .engine import default_engine
    found = default_engine()
    if found is None:
        raise RuntimeError("no Hexie engine: call Model.bind_workflow(engine), hexie.create_engine() "
                           "or mount the Hexie extension first")
    return found


def _plain(value: Any) -> Any:
    """A host attribute as a case field value (money as text, dates in ISO form)."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


# -------------------------------------------------------------- the lock (host.md)

def _changed(state: Any, attr: str) -> bool:
    history = state.attrs[attr].history
    if not history.has_changes():
        return False
    return list(history.added) != list(history.deleted)


@event.listens_for(Session, "before_flush")
def _refuse_locked_changes(session: Session, _context: Any, _instances: Any) -> None:
    """A flush changing a mapped attribute of a record whose case is under review raises WorkflowLocked."""
    for obj in list(session.dirty):
        if not isinstance(obj, WorkflowMixin) or not obj.__workflow_fields__:
            continue
        case_id = getattr(obj, "hexie_case_id", None)
        state = inspect(obj)
        if case_id is None or _changed(state, "hexie_case_id"):
            continue
        changed = sorted(attr for attr in obj.__workflow_fields__ if _changed(state, attr))
        if changed:
            _check_editable(session, obj, case_id, changed)


def _check_editable(session: Session, obj: WorkflowMixin, case_id: int, changed: list[str]) -> None:
    engine = workflow_engine(type(obj))
    query = select(Case.state, Case.process_version_id).where(Case.id == case_id)
    if session.info.get("hexie_joined"):          # the case may be this transaction's own
        row = session.connection().execute(query).first()
        spec = engine.spec_of(session, row.process_version_id) if row else None
    else:
        with engine.session_factory() as own:
            row = own.execute(query).first()
            spec = engine.spec_of(own, row.process_version_id) if row else None
    if row is None or spec is None:
        return
    if not spec.state(row.state).host_editable:
        label = spec.state(row.state).label
        raise WorkflowLocked(f"该记录正在审批（{label.zh}），不能修改：{'、'.join(changed)}",
                             f"the record is under review ({label.en}): {', '.join(changed)} may not change",
                             {"fields": changed, "state": row.state, "case_id": case_id})
