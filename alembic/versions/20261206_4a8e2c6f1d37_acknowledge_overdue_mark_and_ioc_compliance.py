"""reports: the mark of a ticket not acknowledged in time; the IOC rollup's acknowledgement compliance

Revision ID: 4a8e2c6f1d37
Revises: 7c3e5a1d9b20
Create Date: 2026-12-06 12:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import service.models.types

revision: str = '4a8e2c6f1d37'
down_revision: str | None = '7c3e5a1d9b20'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

PENDING = "acknowledged_at IS NULL AND acknowledge_overdue_at IS NULL"


def upgrade() -> None:
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.add_column(sa.Column('acknowledge_overdue_at', service.models.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_reports_acknowledge_pending', ['status', 'acknowledge_due_at'], unique=False,
                              postgresql_where=sa.text(PENDING), sqlite_where=sa.text(PENDING))
    with op.batch_alter_table('ioc_daily_rollup', schema=None) as batch_op:
        batch_op.add_column(sa.Column('acknowledge_measured', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('acknowledged_on_time', sa.Integer(), nullable=False, server_default='0'))
    # The rollup is a cache: without its state row the next refresh rebuilds every day, new figures included.
    op.execute("DELETE FROM ioc_rollup_state")


def downgrade() -> None:
    with op.batch_alter_table('ioc_daily_rollup', schema=None) as batch_op:
        batch_op.drop_column('acknowledged_on_time')
        batch_op.drop_column('acknowledge_measured')
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.drop_index('ix_reports_acknowledge_pending', postgresql_where=sa.text(PENDING), sqlite_where=sa.text(PENDING))
        batch_op.drop_column('acknowledge_overdue_at')
