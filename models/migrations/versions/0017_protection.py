"""Protection of survivors' data: the blind index (hexie_case_lookups), hash scheme 2 of the audit
chain (hash_version, sealed: a sealed value enters the hash through its own keyed hash, so that
retention may erase it), and when a case was anonymised.

Existing events keep scheme 1 and verify as before; nothing is re-hashed, so anchors written
before stay valid. The blind index is filled for existing cases by ``hexie search reindex``
(no definition before this revision could mark a field searchable).

Revision ID: 0017
Revises: 0014
Create Date: 2026-12-01 10:40:00
"""
from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "hexie_case_lookups",
        sa.Column("id", _ID, nullable=False),
        sa.Column("case_id", _ID, nullable=False),
        sa.Column("field", sa.String(length=64), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["hexie_cases.id"], name=op.f("fk_hexie_case_lookups_case_id_hexie_cases")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hexie_case_lookups")),
        sa.UniqueConstraint("case_id", "field", name=op.f("uq_hexie_case_lookups_case_id_field")),
    )
    op.create_index(op.f("ix_hexie_case_lookups_digest"), "hexie_case_lookups", ["digest"], unique=False)
    with op.batch_alter_table("hexie_audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hash_version", sa.Integer(), server_default=sa.text("1"), nullable=False))
        batch_op.add_column(sa.Column("sealed", sa.JSON(), nullable=True))
    with op.batch_alter_table("hexie_cases", schema=None) as batch_op:
        batch_op.add_column(sa.Column("anonymised_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hexie_cases", schema=None) as batch_op:
        batch_op.drop_column("anonymised_at")
    with op.batch_alter_table("hexie_audit_events", schema=None) as batch_op:
        batch_op.drop_column("sealed")
        batch_op.drop_column("hash_version")
    op.drop_index(op.f("ix_hexie_case_lookups_digest"), table_name="hexie_case_lookups")
    op.drop_table("hexie_case_lookups")
