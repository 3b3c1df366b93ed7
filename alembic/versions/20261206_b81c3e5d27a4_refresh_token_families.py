"""refresh token families: a replayed token revokes every token rotated from the same sign-in

Revision ID: b81c3e5d27a4
Revises: b7c2e9a41d05
Create Date: 2026-12-06 11:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'b81c3e5d27a4'
down_revision: str | None = 'b7c2e9a41d05'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('family_id', sa.Uuid(), nullable=True))
    # Tokens issued before families existed: each is a family of its own.
    op.execute('UPDATE refresh_tokens SET family_id = id')
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.alter_column('family_id', existing_type=sa.Uuid(), nullable=False)
        batch_op.create_index(batch_op.f('ix_refresh_tokens_family_id'), ['family_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('refresh_tokens', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_refresh_tokens_family_id'))
        batch_op.drop_column('family_id')
