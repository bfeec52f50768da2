"""Initial schema: org tree, users and roles, process versions, cases, tasks, votes,
timers, the audit chain, attachments and webhooks.

Revision ID: 0001
Revises:
Create Date: 2026-01-01 00:00:00
"""
from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Frozen copies of hexie.models.base.BigID and PathString (a migration must not change when
# the models do): BIGINT ids on PostgreSQL, rowid-aliased INTEGER on SQLite; org paths
# compared bytewise on PostgreSQL so that prefix LIKE can use the index.
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
PATH = sa.String(length=1000).with_variant(sa.String(length=1000, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table('hexie_org_units',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('code', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('level', sa.String(length=32), nullable=False),
        sa.Column('parent_id', sa.Integer(), nullable=True),
        sa.Column('path', PATH, nullable=False),
        sa.ForeignKeyConstraint(['parent_id'], ['hexie_org_units.id'], name=op.f('fk_hexie_org_units_parent_id_hexie_org_units')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_hexie_org_units')),
        sa.UniqueConstraint('code', name=op.f('uq_hexie_org_units_code'))
    )
    op.create_index(op.f('ix_hexie_org_units_parent_id'), 'hexie_org_units', ['parent_id'], unique=False)
    op.create_index(op.f('ix_hexie_org_units_path'), 'hexie_org_units', ['path'], unique=False)
    op.create_table('hexie_process_versions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('key', sa.String(length=64), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('source_text', sa.Text(), nullable=False),
        sa.Column('content_hash', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_hexie_process_versions')),
        sa.UniqueConstraint('key', 'version', name=op.f('uq_hexie_process_versions_key_version'))
    )
    op.create_table('hexie_users',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('username', sa.String(length=80), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('password_hash', sa.String(length=255), nullable=False),
        sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column('locale', sa.String(length=8), server_default='zh', nullable=False),
        sa.Column('away_until', sa.DateTime(), nullable=True),
        sa.Column('delegate_to_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['delegate_to_id'], ['hexie_users.id'], name=op.f('fk_hexie_users_delegate_to_id_hexie_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_hexie_users')),
        sa.UniqueConstraint('username', name=op.f('uq_hexie_users_username'))
    )
    op.create_table('hexie_webhook_subscriptions',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('url', sa.String(length=1000), nullable=False),
        sa.Column('secret', sa.String(length=128), nullable=False),
        sa.Column('events', sa.JSON(), nullable=False),
        sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_hexie_webhook_subscriptions'))
    )
    op.create_table('hexie_cases',
        sa.Column('id', BIG_ID, nullable=False),
        sa.Column('process_version_id', sa.Integer(), nullable=False),
        sa.Column('process_key', sa.String(length=64), nullable=False),
        sa.Column('state', sa.String(length=64), nullable=False),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.Column('org_unit_id', sa.Integer(), nullable=False),
        sa.Column('org_path', PATH, nullable=False),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('updated_at', sa.DateTime(), nullable=False),
        sa.Column('closed_at', sa.DateTime(), nullable=True),
        sa.Column('subject', sa.String(length=200), nullable=False),
        sa.Column('confidential', sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column('lock_version', sa.Integer(), server_default=sa.text('1'), nullable=False),
        sa.Column('audit_head', sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(['created_by_id'], ['hexie_users.id'], name=op.f('fk_hexie_cases_created_by_id_hexie_users')),
        sa.ForeignKeyConstraint(['org_unit_id'], ['hexie_org_units.id'], name=op.f('fk_hexie_cases_org_unit_id_hexie_org_units')),
        sa.ForeignKeyConstraint(['process_version_id'], ['hexie_process_versions.id'], name=op.f('fk_hexie_cases_process_version_id_hexie_process_versions')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_hexie_cases')),
        sqlite_autoincrement=True
    )
    op.create_index(op.f('ix_hexie_cases_org_path'), 'hexie_cases', ['org_path'], unique=False)
    op.create_index('ix_hexie_cases_process_key_state', 'hexie_cases', ['process_key', 'state'], unique=False)
    op.create_index(op.f('ix_hexie_cases_subject'), 'hexie_cases', ['subject'], unique=False)
    op.create_table('hexie_role_assignments',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('role', sa.String(length=64), nullable=False),
        sa.Column('org_unit_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['org_unit_id'], ['hexie_org_units.id'], name=op.f('fk_hexie_role_assignments_org_unit_id_hexie_org_units')),
        sa.ForeignKeyConstraint(['user_id'], ['hexie_users.id'], name=op.f('fk_hexie_role_assignments_user_id_hexie_users'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_hexie_role_assignments')),
        sa.UniqueConstraint('user_id', 'role', 'org_unit_id', name=op.f('uq_hexie_role_assignments_user_id_role_org_unit_id'))
    )
    op.create_index('ix_hexie_role_assignments_role_org_unit_id', 'hexie_role_assignments', ['role', 'org_unit_id'], unique=False)
    op.create_table('hexie_webhook_deliveries',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('subscription_id', sa.Integer(), nullable=False),
        sa.Column('event', sa.String(length=64), nullable=False),
        sa.Column('payload', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(length=16), server_default='pending', nullable=False),
        sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('delivered_at', sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(['subscription_id'], ['hexie_webhook_subscriptions.id'], name=op.f('fk_hexie_webhook_deliveries_subscription_id_hexie_webhook_subscriptions'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_hexie_webhook_deliveries'))
    )
    op.create_index('ix_hexie_webhook_deliveries_status_next_attempt_at', 'hexie_webhook_deliveries', ['status', 'next_attempt_at'], unique=False)
    op.create_index(op.f('ix_hexie_webhook_deliveries_subscription_id'), 'hexie_webhook_deliveries', ['subscription_id'], unique=False)
    op.create_table('hexie_attachments',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('case_id', BIG_ID, nullable=False),
        sa.Column('field', sa.String(length=64), nullable=False),
        sa.Column('filename', sa.String(length=255), nullable=False),
        sa.Column('content_type', sa.String(length=100), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('storage_key', sa.String(length=255), nullable=False),
        sa.Column('uploaded_by_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['case_id'], ['hexie_cases.id'], name=op.f('fk_hexie_attachments_case_id_hexie_cases')),
        sa.ForeignKeyConstraint(['uploaded_by_id'], ['hexie_users.id'], name=op.f('fk_hexie_attachments_uploaded_by_id_hexie_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_hexie_attachments')),
        sa.UniqueConstraint('storage_key', name=op.f('uq_hexie_attachments_storage_key'))
    )
    op.create_index(op.f('ix_hexie_attachments_case_id'), 'hexie_attachments', ['case_id'], unique=False)
    op.create_table('hexie_audit_events',
        sa.Column('id', BIG_ID, nullable=False),
        sa.Column('case_id', BIG_ID, nullable=True),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('at', sa.DateTime(), nullable=False),
        sa.Column('actor_id', sa.Integer(), nullable=True),
        sa.Column('actor', sa.String(length=80), nullable=False),
        sa.Column('kind', sa.String(length=32), nullable=False),
        sa.Column('trigger', sa.String(length=64), nullable=True),
        sa.Column('from_state', sa.String(length=64), nullable=True),
        sa.Column('to_state', sa.String(length=64), nullable=True),
        sa.Column('comment', sa.Text(), nullable=True),
        sa.Column('changes', sa.JSON(), nullable=True),
        sa.Column('prev_hash', sa.String(length=64), nullable=True),
        sa.Column('hash', sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(['actor_id'], ['hexie_users.id'], name=op.f('fk_hexie_audit_events_actor_id_hexie_users')),
        sa.ForeignKeyConstraint(['case_id'], ['hexie_cases.id'], name=op.f('fk_hexie_audit_events_case_id_hexie_cases')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_hexie_audit_events')),
        sa.UniqueConstraint('case_id', 'seq', name=op.f('uq_hexie_audit_events_case_id_seq')),
        sqlite_autoincrement=True
    )
    op.create_table('hexie_tasks',
        sa.Column('id', BIG_ID, nullable=False),
        sa.Column('case_id', BIG_ID, nullable=False),
        sa.Column('process_key', sa.String(length=64), nullable=False),
        sa.Column('state', sa.String(length=64), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('role', sa.String(length=64), nullable=False),
        sa.Column('at_level', sa.String(length=32), nullable=True),
        sa.Column('org_unit_id', sa.Integer(), nullable=False),
        sa.Column('org_path', PATH, nullable=False),
        sa.Column('status', sa.String(length=16), server_default='offered', nullable=False),
        sa.Column('assignee_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.Column('due_at', sa.DateTime(), nullable=True),
        sa.Column('escalate_at', sa.DateTime(), nullable=True),
        sa.Column('escalate_to', sa.String(length=64), nullable=True),
        sa.Column('escalated', sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column('priority', sa.String(length=8), server_default='normal', nullable=False),
        sa.Column('optional', sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column('completed_at', sa.DateTime(), nullable=True),
        sa.Column('completed_by_id', sa.Integer(), nullable=True),
        sa.Column('lock_version', sa.Integer(), server_default=sa.text('1'), nullable=False),
        sa.ForeignKeyConstraint(['assignee_id'], ['hexie_users.id'], name=op.f('fk_hexie_tasks_assignee_id_hexie_users')),
        sa.ForeignKeyConstraint(['case_id'], ['hexie_cases.id'], name=op.f('fk_hexie_tasks_case_id_hexie_cases')),
        sa.ForeignKeyConstraint(['completed_by_id'], ['hexie_users.id'], name=op.f('fk_hexie_tasks_completed_by_id_hexie_users')),
        sa.ForeignKeyConstraint(['org_unit_id'], ['hexie_org_units.id'], name=op.f('fk_hexie_tasks_org_unit_id_hexie_org_units')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_hexie_tasks')),
        sqlite_autoincrement=True
    )
    op.create_index('ix_hexie_tasks_assignee_id_status', 'hexie_tasks', ['assignee_id', 'status'], unique=False)
    op.create_index('ix_hexie_tasks_case_id_status', 'hexie_tasks', ['case_id', 'status'], unique=False)
    op.create_index('ix_hexie_tasks_role_status_org_path', 'hexie_tasks', ['role', 'status', 'org_path'], unique=False)
    op.create_index('ix_hexie_tasks_status_due_at', 'hexie_tasks', ['status', 'due_at'], unique=False)
    op.create_index('ix_hexie_tasks_status_escalate_at', 'hexie_tasks', ['status', 'escalate_at'], unique=False)
    op.create_table('hexie_timers',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('case_id', BIG_ID, nullable=False),
        sa.Column('state', sa.String(length=64), nullable=False),
        sa.Column('trigger', sa.String(length=64), nullable=False),
        sa.Column('due_at', sa.DateTime(), nullable=False),
        sa.Column('status', sa.String(length=16), server_default='pending', nullable=False),
        sa.Column('fired_at', sa.DateTime(), nullable=True),
        sa.Column('attempts', sa.Integer(), server_default=sa.text('0'), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['case_id'], ['hexie_cases.id'], name=op.f('fk_hexie_timers_case_id_hexie_cases')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_hexie_timers'))
    )
    op.create_index('ix_hexie_timers_case_id_status', 'hexie_timers', ['case_id', 'status'], unique=False)
    op.create_index('ix_hexie_timers_status_due_at', 'hexie_timers', ['status', 'due_at'], unique=False)
    op.create_table('hexie_votes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('case_id', BIG_ID, nullable=False),
        sa.Column('state', sa.String(length=64), nullable=False),
        sa.Column('trigger', sa.String(length=64), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=False),
        sa.Column('comment', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(['case_id'], ['hexie_cases.id'], name=op.f('fk_hexie_votes_case_id_hexie_cases')),
        sa.ForeignKeyConstraint(['user_id'], ['hexie_users.id'], name=op.f('fk_hexie_votes_user_id_hexie_users')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_hexie_votes')),
        sa.UniqueConstraint('case_id', 'state', 'trigger', 'user_id', name=op.f('uq_hexie_votes_case_id_state_trigger_user_id'))
    )


def downgrade() -> None:
    op.drop_table('hexie_votes')
    op.drop_table('hexie_timers')
    op.drop_table('hexie_tasks')
    op.drop_table('hexie_audit_events')
    op.drop_table('hexie_attachments')
    op.drop_table('hexie_webhook_deliveries')
    op.drop_table('hexie_role_assignments')
    op.drop_table('hexie_cases')
    op.drop_table('hexie_webhook_subscriptions')
    op.drop_table('hexie_users')
    op.drop_table('hexie_process_versions')
    op.drop_table('hexie_org_units')
