"""reports: the deadline each near-deadline notice (acknowledge, resolve) was last sent for

Revision ID: 5d2b7e9c4a61
Revises: 4a8e2c6f1d37
Create Date: 2026-12-06 14:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import service.models.types

revision: str = '5d2b7e9c4a61'
down_revision: str | None = '4a8e2c6f1d37'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.add_column(sa.Column('acknowledge_due_soon_sent_for', service.models.types.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('due_soon_sent_for', service.models.types.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.drop_column('due_soon_sent_for')
        batch_op.drop_column('acknowledge_due_soon_sent_for')
