"""The working day: a case's owner, holding cases and tasks, consults, routing flags.

``hexie_cases.owner_id`` is the person who answers for the case (the starter, until it is
handed over; existing cases take their starter). ``suspended_*`` record a hold (since when,
until when if said, by whom, why). ``hexie_tasks.kind`` is ``work`` (a step of the process)
or ``consult`` (a colleague asked for advice); ``suspended_at`` a task's own hold;
``flagged`` marks work that could not go to the person the definition named (offered to the
role instead); ``requires`` the capabilities its holder needs (sorted, comma-separated);
``consult_of`` the task a consult was asked from.

Revision ID: 0014
Revises: 0009
Create Date: 2026-12-01 10:30:00
"""
from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain integer columns (no foreign keys): adding a constraint would make SQLite rebuild
    # hexie_cases; the service writes only ids of existing people here.
    op.add_column("hexie_cases", sa.Column("owner_id", sa.Integer(), nullable=True))
    op.add_column("hexie_cases", sa.Column("suspended_at", sa.DateTime(), nullable=True))
    op.add_column("hexie_cases", sa.Column("suspended_until", sa.DateTime(), nullable=True))
    op.add_column("hexie_cases", sa.Column("suspended_by_id", sa.Integer(), nullable=True))
    op.add_column("hexie_cases", sa.Column("suspend_comment", sa.Text(), nullable=True))
    op.create_index(op.f("ix_hexie_cases_owner_id"), "hexie_cases", ["owner_id"], unique=False)
    op.execute("UPDATE hexie_cases SET owner_id = created_by_id")
    op.add_column("hexie_tasks", sa.Column("kind", sa.String(length=16), server_default="work", nullable=False))
    op.add_column("hexie_tasks", sa.Column("suspended_at", sa.DateTime(), nullable=True))
    op.add_column("hexie_tasks", sa.Column("flagged", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("hexie_tasks", sa.Column("requires", sa.String(length=500), nullable=True))
    op.add_column("hexie_tasks", sa.Column("consult_of", sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
                                           nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hexie_tasks") as batch:
        for name in ("consult_of", "requires", "flagged", "suspended_at", "kind"):
            batch.drop_column(name)
    op.drop_index(op.f("ix_hexie_cases_owner_id"), table_name="hexie_cases")
    with op.batch_alter_table("hexie_cases") as batch:
        for name in ("suspend_comment", "suspended_by_id", "suspended_until", "suspended_at", "owner_id"):
            batch.drop_column(name)
