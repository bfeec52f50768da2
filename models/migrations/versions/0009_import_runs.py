"""Import runs and their rows: ``hexie cases import --resume`` carries on where a run stopped;
request keys: the retry of a committed action gets its answer again.

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-01 07:30:00
"""
from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "hexie_import_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("process_key", sa.String(length=64), nullable=False),
        sa.Column("file_name", sa.String(length=1000), nullable=False),
        sa.Column("file_hash", sa.String(length=64), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("last_line", sa.Integer(), server_default=sa.text("1"), nullable=False),
        sa.Column("started", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["actor_id"], ["hexie_users.id"],
                                name=op.f("fk_hexie_import_runs_actor_id_hexie_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hexie_import_runs")),
    )
    with op.batch_alter_table("hexie_import_runs", schema=None) as batch_op:
        batch_op.create_index("ix_hexie_import_runs_process_key_file_hash", ["process_key", "file_hash"], unique=False)
    op.create_table(
        "hexie_import_rows",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("business_key", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["hexie_cases.id"], name=op.f("fk_hexie_import_rows_case_id_hexie_cases")),
        sa.ForeignKeyConstraint(["run_id"], ["hexie_import_runs.id"],
                                name=op.f("fk_hexie_import_rows_run_id_hexie_import_runs")),
        sa.PrimaryKeyConstraint("run_id", "line", name=op.f("pk_hexie_import_rows")),
    )
    with op.batch_alter_table("hexie_import_rows", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hexie_import_rows_case_id"), ["case_id"], unique=False)
        batch_op.create_index("ix_hexie_import_rows_run_id_business_key", ["run_id", "business_key"], unique=False)
    op.create_table(
        "hexie_request_keys",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=100), nullable=False),
        sa.Column("case_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("outcome", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["hexie_cases.id"], name=op.f("fk_hexie_request_keys_case_id_hexie_cases")),
        sa.ForeignKeyConstraint(["user_id"], ["hexie_users.id"], name=op.f("fk_hexie_request_keys_user_id_hexie_users")),
        sa.PrimaryKeyConstraint("user_id", "key", name=op.f("pk_hexie_request_keys")),
    )
    with op.batch_alter_table("hexie_request_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_hexie_request_keys_case_id"), ["case_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("hexie_request_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hexie_request_keys_case_id"))
    op.drop_table("hexie_request_keys")
    with op.batch_alter_table("hexie_import_rows", schema=None) as batch_op:
        batch_op.drop_index("ix_hexie_import_rows_run_id_business_key")
        batch_op.drop_index(batch_op.f("ix_hexie_import_rows_case_id"))
    op.drop_table("hexie_import_rows")
    with op.batch_alter_table("hexie_import_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_hexie_import_runs_process_key_file_hash")
    op.drop_table("hexie_import_runs")
