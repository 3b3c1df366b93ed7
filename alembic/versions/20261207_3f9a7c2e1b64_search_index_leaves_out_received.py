"""reports: the trigram search index leaves out reports still `received` (PostgreSQL)

Revision ID: 3f9a7c2e1b64
Revises: 5e7b1f3a9c42
Create Date: 2026-12-07 03:20:00

Intake's INSERT no longer writes a report's trigrams; the pipeline's UPDATE puts the report in the
index as it leaves `received`. Built concurrently beside the old index, then swapped, so a city's
intake and search go on while it builds. SQLite's plain index of that name is left as it is.
"""

from collections.abc import Sequence

from alembic import op

revision: str = '3f9a7c2e1b64'
down_revision: str | None = '5e7b1f3a9c42'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = 'ix_reports_search_text_trigram'


def _swap(where: str) -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    with op.get_context().autocommit_block():
        op.execute(f'DROP INDEX CONCURRENTLY IF EXISTS {NAME}_new')  # left by an interrupted run
        op.execute(f'CREATE INDEX CONCURRENTLY {NAME}_new ON reports USING gin (search_text gin_trgm_ops) {where}')
        op.execute(f'DROP INDEX CONCURRENTLY IF EXISTS {NAME}')
        op.execute(f'ALTER INDEX {NAME}_new RENAME TO {NAME}')


def upgrade() -> None:
    _swap("WHERE status <> 'received'")


def downgrade() -> None:
    _swap('')
