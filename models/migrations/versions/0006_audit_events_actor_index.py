"""Index the audit trail by who acted: the cases a person acted on stay visible to her.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 01:40:00
"""
from __future__ import annotations

from typing import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_hexie_audit_events_actor_id"), "hexie_audit_events", ["actor_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_hexie_audit_events_actor_id"), table_name="hexie_audit_events")
