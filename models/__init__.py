"""Persistence: the tables of Hexie and the database session setup. No business rules."""
from . import fast
from .base import Base, BigID, NAMING_CONVENTION, utcnow
from .db import (
    alembic_config, current_revision, database_unavailable, database_url, make_engine, make_session_factory,
    normalize_url, upgrade,
)
from .tables import (
    AccessLogEntry, ApiToken, Attachment, AuditEvent, Case, CaseLookup, Consent, ExternalTask, ImportRow, ImportRun, LedgerEntry, LoginAttempt,
    Notification, NotificationDelivery, NotificationPreference, OrgUnit, OutboxMessage, ProcessVersion, RequestKey,
    RoleAssignment, SavedView, Task, Timer, User, Vote, WebhookDelivery, WebhookSubscription,
)

__all__ = [
    "Base", "BigID", "NAMING_CONVENTION", "utcnow",
    "alembic_config", "current_revision", "database_unavailable", "database_url", "make_engine",
    "make_session_factory", "normalize_url", "upgrade",
    "ApiToken", "Attachment", "AuditEvent", "Case", "CaseLookup", "ImportRow", "ImportRun", "LedgerEntry", "LoginAttempt",
    "OrgUnit", "ProcessVersion", "RequestKey", "RoleAssignment", "SavedView",
    "Task", "Timer", "User", "Vote", "WebhookDelivery", "WebhookSubscription",
    "AccessLogEntry", "Consent", "ExternalTask", "Notification", "NotificationDelivery", "NotificationPreference", "OutboxMessage",
]
