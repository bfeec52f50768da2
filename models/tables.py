"""The tables of Hexie, as SQLAlchemy 2 typed declarative classes.

Structure only: columns, keys, indexes and navigation between rows. The rules
(who may do what, how a case moves) live in :mod:`workflows`. Datetimes are
timezone-naive UTC (see :func:`hexie.models.base.utcnow`); JSON values are JSON-safe
(money as strings).
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON, Boolean, Date, DateTime, ForeignKey, Index, Integer, Numeric, String, Text,
    UniqueConstraint, false, text, true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .base import BigID, Base, PathString, utcnow

# Task statuses, timer statuses and delivery statuses, for reference by the engine.
# ``waiting``: opened in its state but held back until the survivor's consent for its agency is
# recorded (protection.md); ``declined``: a referral its agency declined (``acceptance: true``).
TASK_STATUSES = ("offered", "allocated", "completed", "cancelled", "skipped", "waiting", "declined")
TIMER_STATUSES = ("pending", "fired", "cancelled")
DELIVERY_STATUSES = ("pending", "delivered", "failed")


def _created_at() -> Mapped[datetime]:
    return mapped_column(DateTime(), default=utcnow, nullable=False)


class OrgUnit(Base):
    """A node of the org tree (county → town → village).

    ``path`` is the materialized path of codes, ``/county/t01/t01v01/``: a unit's
    subtree is every path starting with its own, its ancestors are the prefixes.
    """

    __tablename__ = "hexie_org_units"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(32))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("hexie_org_units.id"), index=True)
    path: Mapped[str] = mapped_column(PathString, index=True)

    parent: Mapped[OrgUnit | None] = relationship(back_populates="children", remote_side=[id])
    children: Mapped[list[OrgUnit]] = relationship(back_populates="parent", order_by="OrgUnit.code")

    def __repr__(self) -> str:
        return f"<OrgUnit {self.code} {self.path}>"


class User(Base):
    """A person who signs in; while away (``away_until``) work goes to ``delegate_to``."""

    __tablename__ = "hexie_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(80), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    locale: Mapped[str] = mapped_column(String(8), default="zh", server_default="zh")
    away_until: Mapped[datetime | None] = mapped_column(DateTime())
    delegate_to_id: Mapped[int | None] = mapped_column(ForeignKey("hexie_users.id"))
    created_at: Mapped[datetime] = _created_at()
    #: whether ``locale`` was chosen (the language switch, the org file, an administrator); when
    #: not, the browser's Accept-Language decides, then HEXIE_DEFAULT_LOCALE
    locale_chosen: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    email: Mapped[str | None] = mapped_column(String(254))
    #: words such as ``sign_language`` or ``lawyer`` (a task's ``requires:``), a JSON list
    capabilities: Mapped[list[str] | None] = mapped_column(JSON)

    delegate_to: Mapped[User | None] = relationship(remote_side=[id])
    role_assignments: Mapped[list[RoleAssignment]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True)

    def __repr__(self) -> str:
        return f"<User {self.username}>"


class SavedView(Base):
    """An inbox view a person keeps under a name: the query string of ``GET /tasks``."""

    __tablename__ = "hexie_saved_views"
    __table_args__ = (UniqueConstraint("user_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("hexie_users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    query: Mapped[str] = mapped_column(String(2000))
    created_at: Mapped[datetime] = _created_at()


class ApiToken(Base):
    """A credential Hexie issued and can take back: an API token or a sign-in session.

    The signed token (or the session cookie) carries ``jti``; it is honoured only while
    this row has no ``revoked_at`` and its user is active. A password change, a
    deactivation or "sign out everywhere" revoke every row of the user; reactivating her
    revives none of them.
    """

    __tablename__ = "hexie_api_tokens"
    __table_args__ = (Index("ix_hexie_api_tokens_user_id_revoked_at", "user_id", "revoked_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    jti: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("hexie_users.id", ondelete="CASCADE"))
    #: ``token`` (an API token) or ``session`` (a sign-in to the web pages)
    kind: Mapped[str] = mapped_column(String(16), default="token", server_default=text("'token'"))
    #: how it was made: ``password`` (POST /token), ``cli`` (hexie token), ``host`` (hexie.issue_token), ``login``
    origin: Mapped[str] = mapped_column(String(16), default="password", server_default=text("'password'"))
    created_at: Mapped[datetime] = _created_at()
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime())

    def __repr__(self) -> str:
        return f"<ApiToken {self.kind} user={self.user_id} revoked={self.revoked_at}>"


class LoginAttempt(Base):
    """One sign-in attempt (form or ``POST /token``), for the throttle every process shares."""

    __tablename__ = "hexie_login_attempts"
    __table_args__ = (
        Index("ix_hexie_login_attempts_username_at", "username", "at"),
        Index("ix_hexie_login_attempts_address_at", "address", "at"),
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    username: Mapped[str] = mapped_column(String(80))     # lower-cased, cut to 80
    address: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(DateTime(), index=True)
    ok: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class RoleAssignment(Base):
    """``user`` holds ``role`` at ``org_unit`` (and so over its whole subtree)."""

    __tablename__ = "hexie_role_assignments"
    __table_args__ = (
        UniqueConstraint("user_id", "role", "org_unit_id"),
        Index("ix_hexie_role_assignments_role_org_unit_id", "role", "org_unit_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("hexie_users.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(String(64))
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("hexie_org_units.id"))

    user: Mapped[User] = relationship(back_populates="role_assignments")
    org_unit: Mapped[OrgUnit] = relationship()

    def __repr__(self) -> str:
        return f"<RoleAssignment {self.role}@{self.org_unit_id} user={self.user_id}>"


class ProcessVersion(Base):
    """One version of a process definition, kept verbatim for the cases that run on it."""

    __tablename__ = "hexie_process_versions"
    __table_args__ = (UniqueConstraint("key", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    source_text: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = _created_at()
    #: ``file`` (read from definitions/) or ``published`` (edited in the browser)
    origin: Mapped[str] = mapped_column(String(16), default="file", server_default=text("'file'"))

    def __repr__(self) -> str:
        return f"<ProcessVersion {self.key} v{self.version}>"


class Case(Base):
    """One running (or finished) instance of a process.

    ``lock_version`` is the optimistic lock: an UPDATE from a stale copy matches no
    row (the service's ``save_case`` then refuses; through the ORM, SQLAlchemy raises
    ``StaleDataError``). ``audit_seq`` is the ``seq`` of the case's
    latest audit event (kept here so appending needs no query); ``audit_head`` is the hash of the
    case's latest audit event, so that removing that event is detectable.
    """

    __tablename__ = "hexie_cases"
    __table_args__ = (
        Index("ix_hexie_cases_process_key_state", "process_key", "state"),
        # a host record's key is unique per process when given (NULLs never clash; migration 0007)
        Index("ix_hexie_cases_process_key_business_key", "process_key", "business_key", unique=True),
        # the few cases on hold, which the overdue view leaves out (migration 0018)
        Index("ix_hexie_cases_held", "id", postgresql_where=text("suspended_at IS NOT NULL"),
              sqlite_where=text("suspended_at IS NOT NULL")),
        {"sqlite_autoincrement": True},  # never reuse a case number
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    process_version_id: Mapped[int] = mapped_column(ForeignKey("hexie_process_versions.id"))
    process_key: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("hexie_org_units.id"))
    org_path: Mapped[str] = mapped_column(PathString, index=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("hexie_users.id"))
    created_at: Mapped[datetime] = _created_at()
    updated_at: Mapped[datetime] = mapped_column(DateTime(), default=utcnow, onupdate=utcnow)
    closed_at: Mapped[datetime | None] = mapped_column(DateTime())
    subject: Mapped[str] = mapped_column(String(200), default="", index=True)
    confidential: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    lock_version: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("1"))
    audit_head: Mapped[str | None] = mapped_column(String(64))
    audit_seq: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default=text("0"))
    #: The outside record this case is about (``"purchase_requests:42"``, ``"PR-9"``); host.md.
    business_key: Mapped[str | None] = mapped_column(String(200), index=True)
    #: The case fields a host record owns (its ``__workflow_fields__``): Hexie's forms never edit them.
    host_fields: Mapped[list[str] | None] = mapped_column(JSON)
    #: ``seq`` of the case's latest outbound event (webhook payloads): one more for each
    event_seq: Mapped[int] = mapped_column(Integer, nullable=False, default=0, server_default=text("0"))
    #: The case that started this one with ``call:`` (a sub-process, definitions.md "Work decided
    #: at run time"); it waits in its calling state until this one ends (migration 0015).
    parent_case_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("hexie_cases.id"), index=True)
    #: who answers for the case: the starter, until it is handed over (migration 0014; no foreign
    #: key, so that SQLite need not rebuild the table)
    owner_id: Mapped[int | None] = mapped_column(Integer, index=True)
    #: on hold since (``None``: running); no action fires and no clock runs while held
    suspended_at: Mapped[datetime | None] = mapped_column(DateTime())
    suspended_until: Mapped[datetime | None] = mapped_column(DateTime())
    suspended_by_id: Mapped[int | None] = mapped_column(Integer)
    suspend_comment: Mapped[str | None] = mapped_column(Text)
    #: when ``hexie retention run`` erased its sensitive values and attachments (migration 0017)
    anonymised_at: Mapped[datetime | None] = mapped_column(DateTime())

    __mapper_args__ = {"version_id_col": lock_version}

    process_version: Mapped[ProcessVersion] = relationship()
    org_unit: Mapped[OrgUnit] = relationship()
    created_by: Mapped[User | None] = relationship()
    tasks: Mapped[list[Task]] = relationship(back_populates="case", order_by="Task.id")

    def __repr__(self) -> str:
        return f"<Case {self.id} {self.process_key}:{self.state}>"


class Task(Base):
    """A work item: offered to a role in an area, allocated to one person, then done."""

    __tablename__ = "hexie_tasks"
    __table_args__ = (
        Index("ix_hexie_tasks_assignee_id_status", "assignee_id", "status"),
        Index("ix_hexie_tasks_role_status_org_path", "role", "status", "org_path"),
        Index("ix_hexie_tasks_status_due_at", "status", "due_at"),
        Index("ix_hexie_tasks_status_escalate_at", "status", "escalate_at"),
        Index("ix_hexie_tasks_case_id_status", "case_id", "status"),
        # "the cases she worked": tasks she holds or completed (migration 0018)
        Index("ix_hexie_tasks_completed_by_id", "completed_by_id"),
        # the escalation arm of the "available" inbox (migration 0002)
        Index("ix_hexie_tasks_escalate_to_status_org_path", "escalate_to", "status", "org_path",
              postgresql_where=text("escalated IS TRUE"), sqlite_where=text("escalated IS 1")),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    case_id: Mapped[int] = mapped_column(BigID, ForeignKey("hexie_cases.id"))
    process_key: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    role: Mapped[str] = mapped_column(String(64))
    at_level: Mapped[str | None] = mapped_column(String(32))
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("hexie_org_units.id"))
    org_path: Mapped[str] = mapped_column(PathString)
    status: Mapped[str] = mapped_column(String(16), default="offered", server_default="offered")
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("hexie_users.id"))
    created_at: Mapped[datetime] = _created_at()
    due_at: Mapped[datetime | None] = mapped_column(DateTime())
    escalate_at: Mapped[datetime | None] = mapped_column(DateTime())
    escalate_to: Mapped[str | None] = mapped_column(String(64))
    escalated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    priority: Mapped[str] = mapped_column(String(8), default="normal", server_default="normal")
    optional: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    completed_at: Mapped[datetime | None] = mapped_column(DateTime())
    completed_by_id: Mapped[int | None] = mapped_column(ForeignKey("hexie_users.id"))
    lock_version: Mapped[int] = mapped_column(Integer, nullable=False, server_default=text("1"))
    #: A referral (``acceptance: true``) accepted by its agency: who took it first, and when (migration 0016).
    accepted_at: Mapped[datetime | None] = mapped_column(DateTime())
    accepted_by_id: Mapped[int | None] = mapped_column(ForeignKey("hexie_users.id"))
    #: Why it was declined, or why it opened without consent (an overseer's override).
    note: Mapped[str | None] = mapped_column(Text)
    #: ``work`` (a step of the process) or ``consult`` (advice asked of a colleague; migration 0014)
    kind: Mapped[str] = mapped_column(String(16), default="work", server_default="work")
    #: the task's own hold: its due date and escalation stand still from then
    suspended_at: Mapped[datetime | None] = mapped_column(DateTime())
    #: it could not go to the person the definition named (``assign: {user:}``): offered to the role
    flagged: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    #: the capabilities its holder needs (``requires:``), sorted and comma-separated
    requires: Mapped[str | None] = mapped_column(String(500))
    #: for a consult: the task it was asked from
    consult_of: Mapped[int | None] = mapped_column(BigID)

    __mapper_args__ = {"version_id_col": lock_version}

    case: Mapped[Case] = relationship(back_populates="tasks")
    org_unit: Mapped[OrgUnit] = relationship()
    assignee: Mapped[User | None] = relationship(foreign_keys=[assignee_id])
    completed_by: Mapped[User | None] = relationship(foreign_keys=[completed_by_id])
    accepted_by: Mapped[User | None] = relationship(foreign_keys=[accepted_by_id])

    def __repr__(self) -> str:
        return f"<Task {self.id} case={self.case_id} {self.state}/{self.name} {self.status}>"


class Vote(Base):
    """One person's vote towards a trigger's quorum in a state of a case."""

    __tablename__ = "hexie_votes"
    __table_args__ = (UniqueConstraint("case_id", "state", "trigger", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(BigID, ForeignKey("hexie_cases.id"))
    state: Mapped[str] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int] = mapped_column(ForeignKey("hexie_users.id"))
    comment: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()

    user: Mapped[User] = relationship()


class Timer(Base):
    """A trigger to fire as ``system`` at ``due_at`` if the case is still in ``state``."""

    __tablename__ = "hexie_timers"
    __table_args__ = (
        Index("ix_hexie_timers_status_due_at", "status", "due_at"),
        Index("ix_hexie_timers_case_id_status", "case_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(BigID, ForeignKey("hexie_cases.id"))
    state: Mapped[str] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(64))
    due_at: Mapped[datetime] = mapped_column(DateTime())
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    fired_at: Mapped[datetime | None] = mapped_column(DateTime())
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)


class AuditEvent(Base):
    """One entry of a case's history, hash-chained to the previous one.

    Append-only by convention: nothing updates or deletes these rows, and
    :func:`hexie.workflows.audit.verify_chain` detects it when something does.
    """

    __tablename__ = "hexie_audit_events"
    # (case_id, seq) is unique, and its index also serves lookups by case_id.
    __table_args__ = (UniqueConstraint("case_id", "seq"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    case_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("hexie_cases.id"))
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(DateTime(), default=utcnow)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("hexie_users.id"), index=True)  # "cases she acted on"
    actor: Mapped[str] = mapped_column(String(80))
    kind: Mapped[str] = mapped_column(String(32))
    trigger: Mapped[str | None] = mapped_column(String(64))
    from_state: Mapped[str | None] = mapped_column(String(64))
    to_state: Mapped[str | None] = mapped_column(String(64))
    comment: Mapped[str | None] = mapped_column(Text)
    changes: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))   # HMAC-SHA256 with the audit key (workflows.audit)
    #: 1: the values are hashed as they are; 2: sealed values enter the hash through ``sealed`` (migration 0017)
    hash_version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    #: field -> the keyed hashes of its recorded ``[old, new]`` values (scheme 2): retention may erase them
    sealed: Mapped[dict[str, list[str]] | None] = mapped_column(JSON)

    def __repr__(self) -> str:
        return f"<AuditEvent case={self.case_id} #{self.seq} {self.kind}>"


class LedgerEntry(Base):
    """Money into or out of an earmarked fund, posted by a transition that declares ``ledger``,
    or received into it (``kind`` ``receipt``: a donation or an allocation, with its donor,
    the day it was received and its voucher number; no case, ``case_id`` NULL).

    Written in the transaction of the action (or of the receipt), which also records the
    posting in its hash-chained audit event (``case_id``, ``audit_seq``; a receipt's event is
    in the case-less chain): ``hexie ledger verify`` reconciles the two. ``amount`` is above
    zero; ``kind`` says which way it went.
    """

    __tablename__ = "hexie_ledger_entries"
    __table_args__ = (
        UniqueConstraint("case_id", "audit_seq"),
        Index("ix_hexie_ledger_entries_fund_at", "fund", "at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    case_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("hexie_cases.id"))
    audit_seq: Mapped[int] = mapped_column(Integer)
    process_key: Mapped[str] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(64))
    fund: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    org_unit_id: Mapped[int] = mapped_column(ForeignKey("hexie_org_units.id"))
    org_path: Mapped[str] = mapped_column(PathString, index=True)
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("hexie_users.id"))
    at: Mapped[datetime] = mapped_column(DateTime(), nullable=False)
    #: the voucher (凭证号) the bookkeeper files it under; a receipt's is required
    voucher: Mapped[str | None] = mapped_column(String(64))
    #: a receipt's donor or allocating body, and the day the money arrived
    donor: Mapped[str | None] = mapped_column(String(200))
    received_on: Mapped[date | None] = mapped_column(Date())


class Attachment(Base):
    """An uploaded file of a case's ``file`` field, stored on disk as ``storage_key``."""

    __tablename__ = "hexie_attachments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(BigID, ForeignKey("hexie_cases.id"), index=True)
    field: Mapped[str] = mapped_column(String(64))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    storage_key: Mapped[str] = mapped_column(String(255), unique=True)
    uploaded_by_id: Mapped[int] = mapped_column(ForeignKey("hexie_users.id"))
    created_at: Mapped[datetime] = _created_at()

    case: Mapped[Case] = relationship()
    uploaded_by: Mapped[User] = relationship()


class CaseLookup(Base):
    """The blind index: a keyed hash of a searchable field's value, written with the case, so that
    those working it find it by the survivor's full name or ID number without the value being
    searchable in the database (protection.md, "Finding a survivor's case")."""

    __tablename__ = "hexie_case_lookups"
    __table_args__ = (UniqueConstraint("case_id", "field"),)

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    case_id: Mapped[int] = mapped_column(BigID, ForeignKey("hexie_cases.id"))
    field: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64), index=True)


class WebhookSubscription(Base):
    """An outside URL told about the listed events, signed with ``secret``."""

    __tablename__ = "hexie_webhook_subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    url: Mapped[str] = mapped_column(String(1000))
    secret: Mapped[str] = mapped_column(String(128))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = _created_at()

    deliveries: Mapped[list[WebhookDelivery]] = relationship(
        back_populates="subscription", passive_deletes=True)


class OutboxMessage(Base):
    """One message that leaves Hexie, written in the transaction of the action that caused it.

    The outbox of architecture.md: a webhook delivery (``kind`` ``webhook``: one event for
    one subscription) or a notification for one outside channel (``kind``
    ``notification``: e-mail, WeCom, ...; ``(notification_id, channel)`` is unique, so a
    notification has one row per channel). ``hexie worker`` sends what is ``pending``
    and due (``next_attempt_at``), retrying with backoff; ``attempts`` counts the claims
    and names the claim that may mark the row sent. ``digest`` rows wait for the
    recipient's daily digest. ``attempts`` counts the tries made; each claim sets a new
    ``claim_token`` and leases the row (``next_attempt_at`` moves past the lease).
    """

    __tablename__ = "hexie_outbox"
    __table_args__ = (
        Index("ix_hexie_outbox_status_next_attempt_at", "status", "next_attempt_at"),
        UniqueConstraint("notification_id", "channel"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(32))
    subscription_id: Mapped[int | None] = mapped_column(
        ForeignKey("hexie_webhook_subscriptions.id", ondelete="CASCADE"), index=True)
    notification_id: Mapped[int | None] = mapped_column(BigID, ForeignKey("hexie_notifications.id"))
    recipient_id: Mapped[int | None] = mapped_column(ForeignKey("hexie_users.id"))
    case_id: Mapped[int | None] = mapped_column(BigID)
    seq: Mapped[int | None] = mapped_column(Integer)
    event: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending", server_default="pending")
    digest: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(), default=utcnow)
    #: set by each claim: only the sender holding it may record the outcome
    claim_token: Mapped[str | None] = mapped_column(String(32))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created_at()
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime())

    __mapper_args__ = {"polymorphic_on": kind, "polymorphic_abstract": True}


class WebhookDelivery(OutboxMessage):
    """One event to send to one subscription, retried until delivered or given up."""

    __mapper_args__ = {"polymorphic_identity": "webhook"}

    def __init__(self, **kw: Any) -> None:
        kw.setdefault("channel", "webhook")
        super().__init__(**kw)

    subscription: Mapped[WebhookSubscription] = relationship(back_populates="deliveries")


class NotificationDelivery(OutboxMessage):
    """One notification to send through one outside channel (e-mail, WeCom, ...)."""

    __mapper_args__ = {"polymorphic_identity": "notification"}


class Notification(Base):
    """Something a person is told (notifications in interfaces.md); shown in her
    notification centre when ``in_app``, and sent through her other channels from the outbox."""

    __tablename__ = "hexie_notifications"
    __table_args__ = (
        Index("ix_hexie_notifications_user_id_read_at", "user_id", "read_at"),
        Index("ix_hexie_notifications_task_id_kind", "task_id", "kind"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    #: none: the worker announced a task's due date to no one (kept so that it is announced once)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("hexie_users.id"))
    kind: Mapped[str] = mapped_column(String(32))
    case_id: Mapped[int | None] = mapped_column(BigID)
    task_id: Mapped[int | None] = mapped_column(BigID)
    text_zh: Mapped[str] = mapped_column(Text)
    text_en: Mapped[str] = mapped_column(Text)
    link: Mapped[str | None] = mapped_column(String(500))
    in_app: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = _created_at()
    read_at: Mapped[datetime | None] = mapped_column(DateTime())


class NotificationPreference(Base):
    """How a person wants to be told: her address, the channels per kind, a daily digest time."""

    __tablename__ = "hexie_notification_preferences"

    user_id: Mapped[int] = mapped_column(ForeignKey("hexie_users.id", ondelete="CASCADE"), primary_key=True)
    email: Mapped[str | None] = mapped_column(String(254))
    channels: Mapped[dict[str, list[str]]] = mapped_column(JSON, default=dict)
    digest: Mapped[str | None] = mapped_column(String(5))      # "HH:MM" local time, or none
    updated_at: Mapped[datetime] = _created_at()


class ExternalTask(Base):
    """The machine side of a task with ``external: TOPIC``: who holds its lock, its retries, its incident.

    One row per such task (``task_id``), written when the task opens. A worker's
    fetch-and-lock sets ``worker_id`` and ``lock_expires_at``; an expired lock frees it.
    A failure counts ``retries`` down and waits ``retry_at``; at 0 retries the task is an
    incident (``incident_at``) until an administrator sets retries again.
    """

    __tablename__ = "hexie_external_tasks"
    __table_args__ = (Index("ix_hexie_external_tasks_topic_lock_expires_at", "topic", "lock_expires_at"),)

    task_id: Mapped[int] = mapped_column(BigID, ForeignKey("hexie_tasks.id", ondelete="CASCADE"), primary_key=True)
    topic: Mapped[str] = mapped_column(String(64))
    worker_id: Mapped[str | None] = mapped_column(String(255))
    lock_expires_at: Mapped[datetime | None] = mapped_column(DateTime())
    retries: Mapped[int] = mapped_column(Integer, default=3, server_default=text("3"))
    retry_at: Mapped[datetime | None] = mapped_column(DateTime())
    error_message: Mapped[str | None] = mapped_column(Text)
    incident_at: Mapped[datetime | None] = mapped_column(DateTime(), index=True)
    #: when its worker completed it (the row keeps who did: ``worker_id``)
    completed_at: Mapped[datetime | None] = mapped_column(DateTime())
    created_at: Mapped[datetime] = _created_at()


class ImportRun(Base):
    """One run of ``hexie cases import``: which file, for which process, how far it got.

    ``last_line`` is the spreadsheet row number of the last row whose case is committed
    (1, the header, before any); ``finished_at`` is set when the whole file is in. An
    interrupted run (killed, aborted) keeps both, and ``--resume`` carries on after it.
    """

    __tablename__ = "hexie_import_runs"
    __table_args__ = (Index("ix_hexie_import_runs_process_key_file_hash", "process_key", "file_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    process_key: Mapped[str] = mapped_column(String(64))
    file_name: Mapped[str] = mapped_column(String(1000))
    file_hash: Mapped[str] = mapped_column(String(64))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("hexie_users.id"))
    last_line: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))
    started: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    started_at: Mapped[datetime] = _created_at()
    finished_at: Mapped[datetime | None] = mapped_column(DateTime())


class ImportRow(Base):
    """A row an import run turned into a case, written in the same transaction as the case."""

    __tablename__ = "hexie_import_rows"
    __table_args__ = (Index("ix_hexie_import_rows_run_id_business_key", "run_id", "business_key"),)

    run_id: Mapped[int] = mapped_column(ForeignKey("hexie_import_runs.id"), primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(BigID, ForeignKey("hexie_cases.id"), index=True)
    business_key: Mapped[str | None] = mapped_column(String(200))


class RequestKey(Base):
    """The answer to an action sent with a request key (the API's ``Idempotency-Key``, a page's
    form key), written in the action's transaction: the retry of a committed action gets the
    same answer instead of "already voted" or "the case moved on"."""

    __tablename__ = "hexie_request_keys"

    user_id: Mapped[int] = mapped_column(ForeignKey("hexie_users.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    case_id: Mapped[int] = mapped_column(BigID, ForeignKey("hexie_cases.id"), index=True)
    outcome: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = _created_at()


class Consent(Base):
    """The survivor's consent for one receiving agency (protection.md "Consent"), one row per
    statement: given, withdrawn (``given`` false) or an overseer's override (``override``,
    the reason in ``note``). Rows are never changed; what holds now is each agency's latest
    row for its scope."""

    __tablename__ = "hexie_consents"
    __table_args__ = (Index("ix_hexie_consents_case_id_agency", "case_id", "agency"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    case_id: Mapped[int] = mapped_column(BigID, ForeignKey("hexie_cases.id"))
    agency: Mapped[str] = mapped_column(String(64))
    scope: Mapped[str] = mapped_column(String(16))           # services | statistics
    given: Mapped[bool] = mapped_column(Boolean)
    override: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    note: Mapped[str | None] = mapped_column(Text)
    recorded_by_id: Mapped[int | None] = mapped_column(ForeignKey("hexie_users.id"))
    recorded_by: Mapped[str] = mapped_column(String(80))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(), nullable=False)


class AccessLogEntry(Base):
    """One read of a confidential case (protection.md "Access log"): who, when, what, from where.

    Append-only: Hexie only ever inserts here (one INSERT per read)."""

    __tablename__ = "hexie_access_log"
    __table_args__ = (Index("ix_hexie_access_log_case_id_id", "case_id", "id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigID, primary_key=True)
    case_id: Mapped[int] = mapped_column(BigID, ForeignKey("hexie_cases.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("hexie_users.id"))
    username: Mapped[str] = mapped_column(String(80))
    at: Mapped[datetime] = mapped_column(DateTime(), nullable=False)
    what: Mapped[str] = mapped_column(String(32))            # page, case, history, print, export, attachment, access_log
    detail: Mapped[str | None] = mapped_column(String(200))  # e.g. the attachment's id
    remote_addr: Mapped[str | None] = mapped_column(String(64))
