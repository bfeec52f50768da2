"""One outbox for everything that leaves Hexie; notifications and their preferences; external tasks.

Webhook deliveries move into ``hexie_outbox`` (kind ``webhook``), beside the
notifications' outside channels (kind ``notification``); cases count their outbound
events (``event_seq``, the ``seq`` of webhook payloads).

Revision ID: 0010
Revises: 0008
Create Date: 2026-12-01 07:20:00
"""
from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "hexie_notifications",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("case_id", BIG_ID, nullable=True),
        sa.Column("task_id", BIG_ID, nullable=True),
        sa.Column("text_zh", sa.Text(), nullable=False),
        sa.Column("text_en", sa.Text(), nullable=False),
        sa.Column("link", sa.String(length=500), nullable=True),
        sa.Column("in_app", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("read_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["hexie_users.id"], name=op.f("fk_hexie_notifications_user_id_hexie_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hexie_notifications")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_hexie_notifications_user_id_read_at", "hexie_notifications", ["user_id", "read_at"])
    op.create_index("ix_hexie_notifications_task_id_kind", "hexie_notifications", ["task_id", "kind"])
    op.create_table(
        "hexie_notification_preferences",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.Column("digest", sa.String(length=5), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["hexie_users.id"],
                                name=op.f("fk_hexie_notification_preferences_user_id_hexie_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_hexie_notification_preferences")),
    )
    op.create_table(
        "hexie_outbox",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("channel", sa.String(length=32), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=True),
        sa.Column("notification_id", BIG_ID, nullable=True),
        sa.Column("recipient_id", sa.Integer(), nullable=True),
        sa.Column("case_id", BIG_ID, nullable=True),
        sa.Column("seq", sa.Integer(), nullable=True),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("digest", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["subscription_id"], ["hexie_webhook_subscriptions.id"],
                                name=op.f("fk_hexie_outbox_subscription_id_hexie_webhook_subscriptions"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["notification_id"], ["hexie_notifications.id"],
                                name=op.f("fk_hexie_outbox_notification_id_hexie_notifications")),
        sa.ForeignKeyConstraint(["recipient_id"], ["hexie_users.id"], name=op.f("fk_hexie_outbox_recipient_id_hexie_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hexie_outbox")),
        sa.UniqueConstraint("notification_id", "channel", name=op.f("uq_hexie_outbox_notification_id_channel")),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_hexie_outbox_status_next_attempt_at", "hexie_outbox", ["status", "next_attempt_at"])
    op.create_index(op.f("ix_hexie_outbox_subscription_id"), "hexie_outbox", ["subscription_id"])
    # the deliveries written so far: into the outbox, as they were
    op.execute(
        "INSERT INTO hexie_outbox (kind, channel, subscription_id, event, payload, status, digest, attempts, "
        "next_attempt_at, last_error, created_at, delivered_at) "
        "SELECT 'webhook', 'webhook', subscription_id, event, payload, status, false, attempts, next_attempt_at, "
        "last_error, created_at, delivered_at FROM hexie_webhook_deliveries ORDER BY id")
    op.drop_index("ix_hexie_webhook_deliveries_status_next_attempt_at", table_name="hexie_webhook_deliveries")
    op.drop_index(op.f("ix_hexie_webhook_deliveries_subscription_id"), table_name="hexie_webhook_deliveries")
    op.drop_table("hexie_webhook_deliveries")
    op.create_table(
        "hexie_external_tasks",
        sa.Column("task_id", BIG_ID, nullable=False),
        sa.Column("topic", sa.String(length=64), nullable=False),
        sa.Column("worker_id", sa.String(length=255), nullable=True),
        sa.Column("lock_expires_at", sa.DateTime(), nullable=True),
        sa.Column("retries", sa.Integer(), server_default=sa.text("3"), nullable=False),
        sa.Column("retry_at", sa.DateTime(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("incident_at", sa.DateTime(), nullable=True),
        sa.Column("completed_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(["task_id"], ["hexie_tasks.id"], name=op.f("fk_hexie_external_tasks_task_id_hexie_tasks"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("task_id", name=op.f("pk_hexie_external_tasks")),
    )
    op.create_index("ix_hexie_external_tasks_topic_lock_expires_at", "hexie_external_tasks", ["topic", "lock_expires_at"])
    op.create_index(op.f("ix_hexie_external_tasks_incident_at"), "hexie_external_tasks", ["incident_at"])
    # a plain ADD COLUMN (as 0003): no table rebuild under foreign keys
    op.add_column("hexie_cases", sa.Column("event_seq", sa.Integer(), nullable=False, server_default=sa.text("0")))


def downgrade() -> None:
    op.drop_column("hexie_cases", "event_seq")
    op.drop_index(op.f("ix_hexie_external_tasks_incident_at"), table_name="hexie_external_tasks")
    op.drop_index("ix_hexie_external_tasks_topic_lock_expires_at", table_name="hexie_external_tasks")
    op.drop_table("hexie_external_tasks")
    op.create_table(
        "hexie_webhook_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscription_id", sa.Integer(), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(["subscription_id"], ["hexie_webhook_subscriptions.id"],
                                name=op.f("fk_hexie_webhook_deliveries_subscription_id_hexie_webhook_subscriptions"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hexie_webhook_deliveries")),
    )
    op.create_index("ix_hexie_webhook_deliveries_status_next_attempt_at", "hexie_webhook_deliveries",
                    ["status", "next_attempt_at"])
    op.create_index(op.f("ix_hexie_webhook_deliveries_subscription_id"), "hexie_webhook_deliveries",
                    ["subscription_id"])
    op.execute(
        "INSERT INTO hexie_webhook_deliveries (subscription_id, event, payload, status, attempts, next_attempt_at, "
        "last_error, created_at, delivered_at) SELECT subscription_id, event, payload, status, attempts, "
        "next_attempt_at, last_error, created_at, delivered_at FROM hexie_outbox WHERE kind = 'webhook' ORDER BY id")
    op.drop_index(op.f("ix_hexie_outbox_subscription_id"), table_name="hexie_outbox")
    op.drop_index("ix_hexie_outbox_status_next_attempt_at", table_name="hexie_outbox")
    op.drop_table("hexie_outbox")
    op.drop_table("hexie_notification_preferences")
    op.drop_index("ix_hexie_notifications_task_id_kind", table_name="hexie_notifications")
    op.drop_index("ix_hexie_notifications_user_id_read_at", table_name="hexie_notifications")
    op.drop_table("hexie_notifications")
