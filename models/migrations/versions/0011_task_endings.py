"""A task's status says how it ended: completed by its holder, cancelled by a transition, or skipped.

Before, leaving a state marked every open task ``completed`` by whoever moved the case on
(a withdrawal by the applicant, a manager closing the case), and separation of duties and
retain-familiar read that. Existing rows are put right where the history allows it: a task
held by one person and "completed" by another was cut short by that other (a holder cannot
be overtaken otherwise), and one "completed" by nobody was ended by the system.

Revision ID: 0011
Revises: 0007
Create Date: 2026-12-01 08:00:00
"""
from __future__ import annotations

from typing import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("UPDATE hexie_tasks SET status = 'cancelled', completed_by_id = NULL "
               "WHERE status = 'completed' AND (completed_by_id IS NULL "
               "OR (assignee_id IS NOT NULL AND assignee_id <> completed_by_id))")


def downgrade() -> None:
    op.execute("UPDATE hexie_tasks SET status = 'cancelled' WHERE status = 'skipped'")
