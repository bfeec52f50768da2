"""Sub-processes: a case started by another case's ``call:`` state names its parent.

``parent_case_id`` (nullable, indexed, a foreign key to the cases table): the parent waits in its
calling state until the child reaches a final state (definitions.md, "Work decided at run time").

Revision ID: 0015
Revises: 0017
Create Date: 2026-12-01 10:20:00
"""
from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "0015"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    fk = op.f("fk_hexie_cases_parent_case_id_hexie_cases")
    if op.get_bind().dialect.name == "sqlite":
        # SQLite adds a column with its reference in one statement; a batch would rebuild the
        # cases table, which the tasks' foreign keys forbid while they are enforced
        op.execute(f"ALTER TABLE hexie_cases ADD COLUMN parent_case_id INTEGER "
                   f"CONSTRAINT {fk} REFERENCES hexie_cases (id)")
    else:
        op.add_column("hexie_cases", sa.Column("parent_case_id", BIG_ID, nullable=True))
        op.create_foreign_key(fk, "hexie_cases", "hexie_cases", ["parent_case_id"], ["id"])
    op.create_index(op.f("ix_hexie_cases_parent_case_id"), "hexie_cases", ["parent_case_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_hexie_cases_parent_case_id"), table_name="hexie_cases")
    if op.get_bind().dialect.name == "sqlite":
        op.execute("ALTER TABLE hexie_cases DROP COLUMN parent_case_id")   # SQLite 3.35+
    else:
        op.drop_constraint(op.f("fk_hexie_cases_parent_case_id_hexie_cases"), "hexie_cases", type_="foreignkey")
        op.drop_column("hexie_cases", "parent_case_id")
