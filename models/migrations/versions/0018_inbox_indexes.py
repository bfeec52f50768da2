"""Two indexes the inbox needs at province scale (issue 16, measured at 1,000,000 cases).

* ``hexie_tasks.completed_by_id``: "the cases she worked" (who may see a confidential case)
  asks for tasks she holds *or completed*; without this index the second half is a scan of
  every task, which PostgreSQL's planner then charges to each row of the navigation's counts
  and, to avoid it, joins the counts to the whole case table (0.9 s at a million cases).
* ``hexie_cases (id) WHERE suspended_at IS NOT NULL``: the cases on hold, which the overdue
  view leaves out (a partial index: it holds only the few cases on hold).

Revision ID: 0018
Revises: 0016
Create Date: 2026-12-01 14:40:00
"""
from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_hexie_tasks_completed_by_id", "hexie_tasks", ["completed_by_id"], unique=False)
    op.create_index("ix_hexie_cases_held", "hexie_cases", ["id"], unique=False,
                    postgresql_where=sa.text("suspended_at IS NOT NULL"),
                    sqlite_where=sa.text("suspended_at IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_hexie_cases_held", table_name="hexie_cases")
    op.drop_index("ix_hexie_tasks_completed_by_id", table_name="hexie_tasks")
