"""Revocable API tokens and sign-in sessions, the shared sign-in throttle, people's e-mail
and capabilities.

Revision ID: 0008
Revises: 0013
Create Date: 2026-12-01 07:20:00
"""
from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hexie_login_attempts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("username", sa.String(length=80), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("at", sa.DateTime(), nullable=False),
        sa.Column("ok", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hexie_login_attempts")),
    )
    with op.batch_alter_table("hexie_login_attempts", schema=None) as batch_op:
        batch_op.create_index("ix_hexie_login_attempts_address_at", ["address", "at"], unique=False)
        batch_op.create_index(batch_op.f("ix_hexie_login_attempts_at"), ["at"], unique=False)
        batch_op.create_index("ix_hexie_login_attempts_username_at", ["username", "at"], unique=False)

    op.create_table(
        "hexie_api_tokens",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("jti", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), server_default=sa.text("'token'"), nullable=False),
        sa.Column("origin", sa.String(length=16), server_default=sa.text("'password'"), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["hexie_users.id"],
                                name=op.f("fk_hexie_api_tokens_user_id_hexie_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hexie_api_tokens")),
        sa.UniqueConstraint("jti", name=op.f("uq_hexie_api_tokens_jti")),
    )
    with op.batch_alter_table("hexie_api_tokens", schema=None) as batch_op:
        batch_op.create_index("ix_hexie_api_tokens_user_id_revoked_at", ["user_id", "revoked_at"], unique=False)

    # ADD COLUMN only: SQLite adds them in place (no rebuild of a table others refer to).
    # Existing users' locale was the default, not a choice: their browsers decide from now on.
    op.add_column("hexie_users", sa.Column("locale_chosen", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("hexie_users", sa.Column("email", sa.String(length=254), nullable=True))
    op.add_column("hexie_users", sa.Column("capabilities", sa.JSON(), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite >= 3.35), not batch mode: rebuilding hexie_users would
    # cascade into the tables that refer to it.
    op.drop_column("hexie_users", "capabilities")
    op.drop_column("hexie_users", "email")
    op.drop_column("hexie_users", "locale_chosen")
    with op.batch_alter_table("hexie_api_tokens", schema=None) as batch_op:
        batch_op.drop_index("ix_hexie_api_tokens_user_id_revoked_at")
    op.drop_table("hexie_api_tokens")
    with op.batch_alter_table("hexie_login_attempts", schema=None) as batch_op:
        batch_op.drop_index("ix_hexie_login_attempts_username_at")
        batch_op.drop_index(batch_op.f("ix_hexie_login_attempts_at"))
        batch_op.drop_index("ix_hexie_login_attempts_address_at")
    op.drop_table("hexie_login_attempts")
