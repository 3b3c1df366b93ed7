"""webhooks: subscriptions, outbox events, delivery attempts

Revision ID: d7e1f2d78a98
Revises: a2d93bf18c42
Create Date: 2026-11-29 16:54:23.352612
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import service.models.types

revision: str = 'd7e1f2d78a98'
down_revision: str | None = 'a2d93bf18c42'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('webhook_subscriptions',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('url', sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
    sa.Column('description', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('event_types', sa.JSON(), nullable=False),
    sa.Column('filter_department_code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('filter_service_code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('filter_jurisdiction_code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('owner_kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('owner_id', sa.Uuid(), nullable=False),
    sa.Column('scope', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('scope_department_code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('scope_api_client_id', sa.Uuid(), nullable=True),
    sa.Column('secret', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
    sa.Column('previous_secret', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    sa.Column('previous_secret_expires_at', service.models.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('active', sa.Boolean(), server_default=sa.true(), nullable=False),
    sa.Column('disabled_at', service.models.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('disabled_reason', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('failing_since', service.models.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('consecutive_failures', sa.Integer(), server_default='0', nullable=False),
    sa.Column('created_at', service.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', service.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name='pk_webhook_subscriptions')
    )
    with op.batch_alter_table('webhook_subscriptions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_webhook_subscriptions_active'), ['active'], unique=False)
        batch_op.create_index(batch_op.f('ix_webhook_subscriptions_owner_id'), ['owner_id'], unique=False)

    op.create_table('webhook_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('subscription_id', sa.Uuid(), nullable=False),
    sa.Column('report_id', sa.Uuid(), nullable=False),
    sa.Column('type', sqlmodel.sql.sqltypes.AutoString(length=48), nullable=False),
    sa.Column('payload', sa.JSON(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), server_default='pending', nullable=False),
    sa.Column('attempts', sa.Integer(), server_default='0', nullable=False),
    sa.Column('next_attempt_at', service.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('created_at', service.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', service.models.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('last_error', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.ForeignKeyConstraint(['report_id'], ['reports.id'], name='fk_webhook_events_report'),
    sa.ForeignKeyConstraint(['subscription_id'], ['webhook_subscriptions.id'], name='fk_webhook_events_subscription'),
    sa.PrimaryKeyConstraint('id', name='pk_webhook_events'),
    sa.UniqueConstraint('subscription_id', 'event_id', name='uq_webhook_events_subscription_event')
    )
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_events_due', ['status', 'next_attempt_at'], unique=False)
        batch_op.create_index('ix_webhook_events_stream', ['subscription_id', 'report_id', 'status', 'id'], unique=False)
        batch_op.create_index('ix_webhook_events_subscription_created', ['subscription_id', 'created_at'], unique=False)

    op.create_table('webhook_delivery_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('subscription_id', sa.Uuid(), nullable=False),
    sa.Column('webhook_event_id', sa.Integer(), nullable=False),
    sa.Column('event_id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('event_type', sqlmodel.sql.sqltypes.AutoString(length=48), nullable=False),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('attempted_at', service.models.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('succeeded', sa.Boolean(), server_default=sa.false(), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('latency_ms', sa.Integer(), nullable=True),
    sa.Column('response_excerpt', sa.Text(), nullable=True),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.ForeignKeyConstraint(['subscription_id'], ['webhook_subscriptions.id'], name='fk_webhook_attempts_subscription'),
    sa.ForeignKeyConstraint(['webhook_event_id'], ['webhook_events.id'], name='fk_webhook_attempts_event'),
    sa.PrimaryKeyConstraint('id', name='pk_webhook_delivery_attempts')
    )
    with op.batch_alter_table('webhook_delivery_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_webhook_delivery_attempts_event', ['webhook_event_id'], unique=False)
        batch_op.create_index('ix_webhook_delivery_attempts_subscription', ['subscription_id', 'id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('webhook_delivery_attempts', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_delivery_attempts_subscription')
        batch_op.drop_index('ix_webhook_delivery_attempts_event')

    op.drop_table('webhook_delivery_attempts')
    with op.batch_alter_table('webhook_events', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_events_subscription_created')
        batch_op.drop_index('ix_webhook_events_stream')
        batch_op.drop_index('ix_webhook_events_due')

    op.drop_table('webhook_events')
    with op.batch_alter_table('webhook_subscriptions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_webhook_subscriptions_owner_id'))
        batch_op.drop_index(batch_op.f('ix_webhook_subscriptions_active'))

    op.drop_table('webhook_subscriptions')
