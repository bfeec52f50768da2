"""A mixin that puts a host application's own records under a Hexie workflow.

Like OCA's ``base_tier_validation`` does for Odoo records, a host model declares
which process governs it and gains a link to its case plus a few verbs::

    class LoanApplication(Base, WorkflowMixin):
        __tablename__ = "loan_applications"
        __workflow__ = "microloan"
        id: Mapped[int] = mapped_column(primary_key=True)

    loan.start_workflow(service, actor, "t01v01", {"applicant_name": "张兰", ...})
    host_session.commit()                       # the host commits its own session
    loan.fire_workflow(service, actor, "submit")
    loan.workflow_state(queries, actor)         # "eligibility_check"

The record only stores the case id (``hexie_case_id``); the case itself, its tasks
and its history live in Hexie's tables and are changed only through
:class:`hexie.workflows.service.WorkflowService`, so every rule (roles, guards, forms,
separation of duties) applies to the host exactly as to Hexie's own screens.
"""
from __future__ import annotations

from typing import Any, ClassVar, Mapping

from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from hexie.models import BigID

from .access import Actor
from .errors import Conflict
from .queries import CaseQueries
from .service import WorkflowService


class WorkflowMixin:
    """Adds ``hexie_case_id`` and the workflow verbs to a host's SQLAlchemy model."""

    #: The process key (a file in definitions/) that governs records of this model.
    __workflow__: ClassVar[str]

    @declared_attr
    def hexie_case_id(cls) -> Mapped[int | None]:
        """The Hexie case of this record, once its workflow is started."""
        return mapped_column(BigID, nullable=True, index=True)

    # -- changing --------------------------------------------------------------
    def start_workflow(self, service: WorkflowService, actor: Actor, org_unit: str,
                       data: Mapping[str, Any] | None = None, comment: str | None = None) -> int:
        """Open the case for this record and remember its id (the host then commits its session).

        Raises :class:`hexie.workflows.errors.Conflict` when the record already has a case, and
        whatever :meth:`WorkflowService.start_case` raises (nothing is stored then).
        """
        if getattr(self, "hexie_case_id", None) is not None:
            raise Conflict("该记录已发起流程", f"this record already has case {self.hexie_case_id}")
        case_id = service.start_case(actor, self.workflow_process(), org_unit, data, comment=comment)
        self.hexie_case_id = case_id
        return case_id

    def fire_workflow(self, service: WorkflowService, actor: Actor, trigger: str, **kw: Any) -> dict[str, Any]:
        """Fire ``trigger`` on this record's case; ``kw``: ``data``, ``comment``, ``lock_version``."""
        return service.fire(actor, self._case_id(), trigger, **kw)

    # -- reading ---------------------------------------------------------------
    def workflow_case(self, queries: CaseQueries, actor: Actor) -> dict[str, Any] | None:
        """The case as ``actor`` may see it (:meth:`CaseQueries.case`), or None before the start."""
        case_id = getattr(self, "hexie_case_id", None)
        return None if case_id is None else queries.case(actor, case_id)

    def workflow_state(self, queries: CaseQueries, actor: Actor) -> str | None:
        """The case's state name, or None before the workflow is started."""
        case = self.workflow_case(queries, actor)
        return None if case is None else case["state"]

    def workflow_actions(self, queries: CaseQueries, actor: Actor) -> list[str]:
        """The triggers ``actor`` may fire now (empty before the start)."""
        case = self.workflow_case(queries, actor)
        return [] if case is None else list(case["actions"])

    def workflow_history(self, queries: CaseQueries, actor: Actor) -> list[dict[str, Any]]:
        """The case's audit events, oldest first (empty before the start)."""
        case_id = getattr(self, "hexie_case_id", None)
        return [] if case_id is None else queries.history(actor, case_id)

    # -- helpers ---------------------------------------------------------------
    @classmethod
    def workflow_process(cls) -> str:
        process = getattr(cls, "__workflow__", None)
        if not process:
            raise TypeError(f"{cls.__name__} must name its process in __workflow__")
        return process

    def _case_id(self) -> int:
        case_id = getattr(self, "hexie_case_id", None)
        if case_id is None:
            raise Conflict("该记录尚未发起流程", "this record has no workflow yet (call start_workflow first)")
        return case_id
