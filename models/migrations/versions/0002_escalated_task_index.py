"""Index for the escalation arm of the "available" inbox.

``tasks(actor, "available")`` selects open tasks offered to the actor's roles in her
area OR escalated to one of her roles there. The first arm has its index (role,
status, org_path); without one for the second, PostgreSQL cannot combine the two with
a BitmapOr and scans every offered task instead (9.6 ms at 20,000 cases, growing with
the table; 0.25 ms with this index). Partial: only escalated tasks are in it, so it
stays small. The predicate is written as each database renders ``escalated IS true``
(SQLite uses a partial index only when the query repeats its WHERE term).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 23:00:00
"""
from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_hexie_tasks_escalate_to_status_org_path", "hexie_tasks", ["escalate_to", "status", "org_path"],
                    unique=False, postgresql_where=sa.text("escalated IS TRUE"),
                    sqlite_where=sa.text("escalated IS 1"))


def downgrade() -> None:
    op.drop_index("ix_hexie_tasks_escalate_to_status_org_path", table_name="hexie_tasks")
