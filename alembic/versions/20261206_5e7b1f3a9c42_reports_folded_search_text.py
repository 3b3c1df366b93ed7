"""reports: a folded search column (no diacritics), backfilled, with a trigram index on PostgreSQL

Revision ID: 5e7b1f3a9c42
Revises: 5d2b7e9c4a61
Create Date: 2026-12-06 14:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from service.reports.search import search_text

revision: str = '5e7b1f3a9c42'
down_revision: str | None = '5d2b7e9c4a61'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.add_column(sa.Column('search_text', sa.Text(), nullable=True))
    _backfill()
    if op.get_bind().dialect.name == 'postgresql':
        # pg_trgm is a trusted extension (PostgreSQL 13+): the database's owner may create it.
        op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
    # A trigram index on PostgreSQL; a plain one on SQLite, which its infix LIKE cannot use (see the model).
    op.create_index('ix_reports_search_text_trigram', 'reports', ['search_text'], unique=False,
                    postgresql_using='gin', postgresql_ops={'search_text': 'gin_trgm_ops'})


def _backfill() -> None:
    """The same folding as new reports get, in Python (neither database folds Vietnamese on its own)."""
    bind = op.get_bind()
    reports = sa.table('reports', sa.column('id'), sa.column('tracking_code'), sa.column('title'),
                       sa.column('description'), sa.column('address'), sa.column('search_text'))
    while True:
        rows = bind.execute(
            sa.select(reports.c.id, reports.c.tracking_code, reports.c.title, reports.c.description, reports.c.address)
            .where(reports.c.search_text.is_(None)).limit(BATCH)
        ).all()
        if not rows:
            return
        bind.execute(
            sa.update(reports).where(reports.c.id == sa.bindparam('row_id')).values(search_text=sa.bindparam('folded')),
            [{'row_id': row.id, 'folded': search_text(row.tracking_code, row.title, row.description, row.address)} for row in rows],
        )


def downgrade() -> None:
    op.drop_index('ix_reports_search_text_trigram', table_name='reports', postgresql_using='gin')
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.drop_column('search_text')
