"""Survivors' data protection: consent per agency, accepted or declined referrals, the access log.

``hexie_consents``: one row per statement of consent (given, withdrawn, overridden);
``hexie_access_log``: one row per read of a confidential case (append-only);
``hexie_tasks.accepted_at / accepted_by_id / note``: who accepted a referral, why it was
declined or opened without consent. Tasks may now be ``waiting`` (for consent) or ``declined``.

Revision ID: 0016
Revises: 0017
Create Date: 2026-12-01 10:30:00
"""
from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("hexie_tasks") as batch:
        batch.add_column(sa.Column("accepted_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("accepted_by_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("note", sa.Text(), nullable=True))
        batch.create_foreign_key(op.f("fk_hexie_tasks_accepted_by_id_hexie_users"), "hexie_users",
                                 ["accepted_by_id"], ["id"])
    op.create_table(
        "hexie_consents",
        sa.Column("id", BigID, nullable=False),
        sa.Column("case_id", BigID, nullable=False),
        sa.Column("agency", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("given", sa.Boolean(), nullable=False),
        sa.Column("override", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("recorded_by_id", sa.Integer(), nullable=True),
        sa.Column("recorded_by", sa.String(length=80), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["hexie_cases.id"], name=op.f("fk_hexie_consents_case_id_hexie_cases")),
        sa.ForeignKeyConstraint(["recorded_by_id"], ["hexie_users.id"],
                                name=op.f("fk_hexie_consents_recorded_by_id_hexie_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hexie_consents")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_hexie_consents_case_id_agency", "hexie_consents", ["case_id", "agency"], unique=False)
    op.create_table(
        "hexie_access_log",
        sa.Column("id", BigID, nullable=False),
        sa.Column("case_id", BigID, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(length=80), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("what", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.String(length=200), nullable=True),
        sa.Column("remote_addr", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["hexie_cases.id"], name=op.f("fk_hexie_access_log_case_id_hexie_cases")),
        sa.ForeignKeyConstraint(["user_id"], ["hexie_users.id"], name=op.f("fk_hexie_access_log_user_id_hexie_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hexie_access_log")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_hexie_access_log_case_id_id", "hexie_access_log", ["case_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_hexie_access_log_case_id_id", table_name="hexie_access_log")
    op.drop_table("hexie_access_log")
    op.drop_index("ix_hexie_consents_case_id_agency", table_name="hexie_consents")
    op.drop_table("hexie_consents")
    with op.batch_alter_table("hexie_tasks") as batch:
        batch.drop_constraint(op.f("fk_hexie_tasks_accepted_by_id_hexie_users"), type_="foreignkey")
        batch.drop_column("note")
        batch.drop_column("accepted_by_id")
        batch.drop_column("accepted_at")
