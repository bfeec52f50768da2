"""Cases carry a business key (the host record or outside reference they are about) and the
list of their fields a host record owns (``host_fields``: Hexie's forms never edit them).

Unique per process when given (a unique index on (process_key, business_key): NULLs never
clash), and indexed alone for ``GET /cases?business_key=K``.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 07:20:00
"""
from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("hexie_cases", sa.Column("business_key", sa.String(length=200), nullable=True))
    op.add_column("hexie_cases", sa.Column("host_fields", sa.JSON(), nullable=True))
    op.create_index(op.f("ix_hexie_cases_business_key"), "hexie_cases", ["business_key"], unique=False)
    op.create_index("ix_hexie_cases_process_key_business_key", "hexie_cases", ["process_key", "business_key"],
                    unique=True)


def downgrade() -> None:
    op.drop_index("ix_hexie_cases_process_key_business_key", table_name="hexie_cases")
    op.drop_index(op.f("ix_hexie_cases_business_key"), table_name="hexie_cases")
    with op.batch_alter_table("hexie_cases") as batch:
        batch.drop_column("host_fields")
        batch.drop_column("business_key")
