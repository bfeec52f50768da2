"""Fund receipts and voucher numbers: ledger entries of kind ``receipt`` (no case), with
donor, day received and voucher number.

Revision ID: 0012
Revises: 0015
Create Date: 2026-12-01 10:30:00
"""
from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("hexie_ledger_entries", schema=None) as batch_op:
        batch_op.alter_column("case_id", existing_type=_ID, nullable=True)
        batch_op.add_column(sa.Column("voucher", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("donor", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("received_on", sa.Date(), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM hexie_ledger_entries WHERE case_id IS NULL")
    with op.batch_alter_table("hexie_ledger_entries", schema=None) as batch_op:
        batch_op.drop_column("received_on")
        batch_op.drop_column("donor")
        batch_op.drop_column("voucher")
        batch_op.alter_column("case_id", existing_type=_ID, nullable=False)
