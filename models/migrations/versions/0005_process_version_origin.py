"""Where a process version came from: a definitions file or the browser's editor.

A file whose content equals an older version is a deliberate revert when the newest version
also came from a file (the version number grows), but not when the newest was published
from the browser into a definitions folder it could not write (the newer version stays).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 01:20:00
"""
from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("hexie_process_versions", sa.Column("origin", sa.String(length=16), nullable=False,
                                                server_default=sa.text("'file'")))


def downgrade() -> None:
    op.drop_column("hexie_process_versions", "origin")  # SQLite >= 3.35 drops columns in place
