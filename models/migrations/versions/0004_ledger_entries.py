"""The ledger of earmarked funds: one entry per posting transition (``ledger:``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29 00:25:26
"""
from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('hexie_ledger_entries',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('case_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('audit_seq', sa.Integer(), nullable=False),
    sa.Column('process_key', sa.String(length=64), nullable=False),
    sa.Column('trigger', sa.String(length=64), nullable=False),
    sa.Column('fund', sa.String(length=64), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('org_unit_id', sa.Integer(), nullable=False),
    sa.Column('org_path', sa.String(length=1000).with_variant(sa.String(length=1000, collation='C'), 'postgresql'), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['hexie_users.id'], name=op.f('fk_hexie_ledger_entries_actor_id_hexie_users')),
    sa.ForeignKeyConstraint(['case_id'], ['hexie_cases.id'], name=op.f('fk_hexie_ledger_entries_case_id_hexie_cases')),
    sa.ForeignKeyConstraint(['org_unit_id'], ['hexie_org_units.id'], name=op.f('fk_hexie_ledger_entries_org_unit_id_hexie_org_units')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_hexie_ledger_entries')),
    sa.UniqueConstraint('case_id', 'audit_seq', name=op.f('uq_hexie_ledger_entries_case_id_audit_seq')),
    sqlite_autoincrement=True
    )
    with op.batch_alter_table('hexie_ledger_entries', schema=None) as batch_op:
        batch_op.create_index('ix_hexie_ledger_entries_fund_at', ['fund', 'at'], unique=False)
        batch_op.create_index(batch_op.f('ix_hexie_ledger_entries_org_path'), ['org_path'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('hexie_ledger_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_hexie_ledger_entries_org_path'))
        batch_op.drop_index('ix_hexie_ledger_entries_fund_at')

    op.drop_table('hexie_ledger_entries')
