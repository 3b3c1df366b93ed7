"""photos: sha256 nullable, recorded by the photo worker rather than at upload

Revision ID: c4d8e1a9f3b2
Revises: 3f9a7c2e1b64
Create Date: 2026-12-07 03:30:00

An upload is no longer hashed while it arrives: the worker records the original's SHA-256 when it
re-encodes the photo, so a photo not processed yet has none.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = 'c4d8e1a9f3b2'
down_revision: str | None = '3f9a7c2e1b64'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('photos', schema=None) as batch_op:
        batch_op.alter_column('sha256', existing_type=sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)


def downgrade() -> None:
    # The bytes are not at hand here: a photo not hashed yet gets its id (32 hex digits, unique), which
    # the older code uses only as the ETag base of its served copies.
    op.execute(sa.text("UPDATE photos SET sha256 = replace(CAST(id AS TEXT), '-', '') WHERE sha256 IS NULL"))
    with op.batch_alter_table('photos', schema=None) as batch_op:
        batch_op.alter_column('sha256', existing_type=sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False)
