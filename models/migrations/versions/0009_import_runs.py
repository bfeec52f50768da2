"""Import runs and their rows: ``hexie cases import --resume`` carries on where a run stopped;
request keys: the retry of a committed action gets its answer again; the audit chain is keyed:
chains written before (plain SHA-256) are re-sealed with the audit key if they verify.

Revision ID: 0009
Revises: 0010
Create Date: 2026-12-01 07:30:00
"""
from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0010"
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
    _reseal_audit_chains(op.get_bind())


def _reseal_audit_chains(conn) -> None:
    """Re-hash every chain that verifies as it was written (plain SHA-256) with the audit key.

    A chain already broken is left as it is, so that ``hexie audit verify`` still reports it.
    The key is the application's (``HEXIE_AUDIT_KEY`` or the instance folder), as at run time.
    """
    from itertools import groupby

    from hexie.workflows.audit import HASHED_FIELDS, event_hash

    events = sa.table("hexie_audit_events", sa.column("id", sa.BigInteger()), sa.column("case_id", sa.BigInteger()),
                      sa.column("seq", sa.Integer()), sa.column("at", sa.DateTime()), sa.column("actor", sa.String()),
                      sa.column("kind", sa.String()), sa.column("trigger", sa.String()),
                      sa.column("from_state", sa.String()), sa.column("to_state", sa.String()),
                      sa.column("comment", sa.Text()), sa.column("changes", sa.JSON()),
                      sa.column("prev_hash", sa.String()), sa.column("hash", sa.String()))
    cases = sa.table("hexie_cases", sa.column("id", sa.BigInteger()), sa.column("audit_head", sa.String()))
    rows = conn.execute(sa.select(events).order_by(events.c.case_id, events.c.seq)).all()
    for case_id, chain in groupby(rows, key=lambda row: row.case_id):
        chain = list(chain)
        prev, intact = None, True
        for n, row in enumerate(chain, start=1):
            fields = {name: getattr(row, name) for name in HASHED_FIELDS}
            if row.seq != n or row.prev_hash != prev or event_hash(**fields, keyed=False) != row.hash:
                intact = False
                break
            prev = row.hash
        if not intact:
            continue
        old_head, prev = chain[-1].hash, None
        for row in chain:
            fields = {**{name: getattr(row, name) for name in HASHED_FIELDS}, "prev_hash": prev}
            new = event_hash(**fields)
            conn.execute(events.update().where(events.c.id == row.id).values(prev_hash=prev, hash=new))
            prev = new
        if case_id is not None:
            conn.execute(cases.update().where(cases.c.id == case_id, cases.c.audit_head == old_head)
                         .values(audit_head=prev))


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
