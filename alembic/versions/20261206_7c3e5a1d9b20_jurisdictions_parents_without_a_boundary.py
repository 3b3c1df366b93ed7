"""jurisdictions: parents without a boundary of their own

Revision ID: 7c3e5a1d9b20
Revises: 8d9c93fdb907
Create Date: 2026-12-06 11:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '7c3e5a1d9b20'
down_revision: str | None = '8d9c93fdb907'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('jurisdictions', schema=None) as batch_op:
        batch_op.alter_column('geometry_wkt', existing_type=sa.Text(), nullable=True)
        batch_op.create_index(batch_op.f('ix_jurisdictions_parent_code'), ['parent_code'], unique=False)


def downgrade() -> None:
    # Parents created without a boundary cannot keep a NOT NULL column: they go first.
    op.execute("DELETE FROM jurisdictions WHERE geometry_wkt IS NULL")
    with op.batch_alter_table('jurisdictions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_jurisdictions_parent_code'))
        batch_op.alter_column('geometry_wkt', existing_type=sa.Text(), nullable=False)
