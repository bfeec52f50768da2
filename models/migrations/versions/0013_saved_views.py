"""Saved inbox views: a name and the query string of GET /tasks, per person.

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-01 08:40:00
"""
from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hexie_saved_views",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("query", sa.String(length=2000), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["hexie_users.id"], name=op.f("fk_hexie_saved_views_user_id_hexie_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hexie_saved_views")),
        sa.UniqueConstraint("user_id", "name", name=op.f("uq_hexie_saved_views_user_id_name")),
    )
    op.create_index(op.f("ix_hexie_saved_views_user_id"), "hexie_saved_views", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_hexie_saved_views_user_id"), table_name="hexie_saved_views")
    op.drop_table("hexie_saved_views")
