"""webhook streams: one delivery in flight per stream

Revision ID: 8d9c93fdb907
Revises: b81c3e5d27a4
Create Date: 2026-12-06 11:13:02.037202
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import service.models.types

revision: str = '8d9c93fdb907'
down_revision: str | None = 'b81c3e5d27a4'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('webhook_streams',
    sa.Column('subscription_id', sa.Uuid(), nullable=False),
    sa.Column('report_id', sa.Uuid(), nullable=False),
    sa.Column('claimed_by', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('claimed_until', service.models.types.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['report_id'], ['reports.id'], name='fk_webhook_streams_report'),
    sa.ForeignKeyConstraint(['subscription_id'], ['webhook_subscriptions.id'], name='fk_webhook_streams_subscription'),
    sa.PrimaryKeyConstraint('subscription_id', 'report_id', name='pk_webhook_streams')
    )


def downgrade() -> None:
    op.drop_table('webhook_streams')
