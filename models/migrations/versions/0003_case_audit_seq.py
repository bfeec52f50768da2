"""Keep the sequence number of a case's latest audit event on the case.

``hexie.workflows.audit.append_event`` used to read ``max(seq)`` of the case's events on every
append: one SELECT of the seven an action costs. The case row, which the action already
holds locked, now carries it beside ``audit_head``. Existing cases are filled from their
events.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 23:40:00
"""
from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # a plain ADD COLUMN (SQLite supports it with a default): no table rebuild under foreign keys
    op.add_column("hexie_cases", sa.Column("audit_seq", sa.Integer(), nullable=False, server_default=sa.text("0")))
    op.execute("UPDATE hexie_cases SET audit_seq = coalesce((SELECT max(seq) FROM hexie_audit_events "
               "WHERE hexie_audit_events.case_id = hexie_cases.id), 0)")


def downgrade() -> None:
    op.drop_column("hexie_cases", "audit_seq")  # SQLite >= 3.35 drops columns in place
