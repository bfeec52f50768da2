"""The example host's own models: a module literally named ``models`` (imported top-level when
the example runs with ``examples/host_app`` on ``sys.path``), beside Hexie's ``hexie.models``.

Its tables -- ``users``, ``purchase_requests``, ``tasks``, ``cases`` and its own
``alembic_version`` -- live in the same database as Hexie's ``hexie_*`` tables.
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from sqlalchemy import DateTime, ForeignKey, Numeric, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from hexie import WorkflowMixin

#: Above this amount (yuan) finance signs too (the definition's guard says the same).
FINANCE_THRESHOLD = Decimal("5000")


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


class Base(DeclarativeBase):
    """The host's declarative base (its own metadata, its own Alembic history)."""


class User(Base):
    """The host's people: its own login, and the roles Hexie is told they hold."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    department: Mapped[str] = mapped_column(String(40))
    #: Hexie roles, "role@unit" separated by spaces (e.g. "dept_head@it").
    roles: Mapped[str] = mapped_column(String(400), default="")


class PurchaseRequest(Base, WorkflowMixin):
    """A purchase request; its approval is a Hexie ``purchase_request`` case."""

    __tablename__ = "purchase_requests"
    __workflow__ = "purchase_request"
    #: host attribute -> case field: the host is their master; locked while under review.
    __workflow_fields__ = {"title": "title", "amount": "amount"}

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    amount: Mapped[Decimal] = mapped_column(Numeric(12, 2))
    department: Mapped[str] = mapped_column(String(40))
    requester_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(), default=_now)

    requester: Mapped[User] = relationship()

    def __workflow_business_key__(self) -> str:
        """The number people quote (PR-7), instead of the default "purchase_requests:7"."""
        return f"PR-{self.id}"


class Task(Base):
    """The host's own to-do list: a table named ``tasks``, like Hexie's old one."""

    __tablename__ = "tasks"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))
    done: Mapped[bool] = mapped_column(default=False)


class Case(Base):
    """The host's own customer-service cases: a table named ``cases``."""

    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str] = mapped_column(String(50))
    notes: Mapped[str | None] = mapped_column(Text)
