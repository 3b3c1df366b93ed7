"""One delivery in flight per stream: a lease on the stream's row, kept in the database.

Several jobs may look at one (subscription, report) stream at once: its own job, its follow-up, one the
sweep queued. Only the job holding the stream's lease sends, and it holds the lease from before an
attempt until the attempt is recorded, so an event is never sent again while its first attempt is
still on its way. A job that finds the lease held sends nothing and comes back later.

Taking the lease is one conditional UPDATE (free, expired, or already ours), the same statement on
PostgreSQL and SQLite: PostgreSQL re-checks the condition once a concurrent claim commits, SQLite
runs one writer at a time. No row lock is held across the HTTP call; the lease is a value in the row.
A lease its holder never gives back (a killed worker) ends at `claimed_until`, and the next job takes
the stream over.
"""

from datetime import datetime, timedelta
from uuid import UUID

from sqlalchemy import or_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from service.models import WebhookStream
from service.models.types import utcnow
from service.settings import Settings

# An attempt ends within webhook_total_timeout_seconds; the margin covers the database work around it.
LEASE_MARGIN_SECONDS = 10.0


def lease_seconds(settings: Settings) -> float:
    return settings.webhook_total_timeout_seconds + LEASE_MARGIN_SECONDS


def _is_stream(subscription_id: UUID, report_id: UUID):
    return (col(WebhookStream.subscription_id) == subscription_id) & (col(WebhookStream.report_id) == report_id)


def _insert(session: AsyncSession):
    dialect = session.bind.dialect.name  # type: ignore[union-attr]
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(WebhookStream)


async def claim(
    session: AsyncSession, subscription_id: UUID, report_id: UUID, *, holder: str, seconds: float
) -> float | None:
    """Take the stream's lease for `seconds` (or extend it, when `holder` has it already).

    Returns None when the lease is the holder's; otherwise the seconds until the other holder's lease
    ends. Read the stream's events after this call, not before (then everything the previous holder
    recorded is visible), and commit before sending."""
    now = utcnow()
    until = now + timedelta(seconds=seconds)
    taken = await session.execute(
        update(WebhookStream)
        .where(
            _is_stream(subscription_id, report_id),
            or_(
                col(WebhookStream.claimed_until).is_(None),
                col(WebhookStream.claimed_until) <= now,
                col(WebhookStream.claimed_by) == holder,
            ),
        )
        .values(claimed_by=holder, claimed_until=until)
    )
    if taken.rowcount == 1:  # type: ignore[attr-defined]
        return None
    # The stream's first delivery: its row is written by whoever gets there first.
    inserted = await session.execute(
        _insert(session)
        .values(subscription_id=subscription_id, report_id=report_id, claimed_by=holder, claimed_until=until)
        .on_conflict_do_nothing(index_elements=["subscription_id", "report_id"])
    )
    if inserted.rowcount == 1:  # type: ignore[attr-defined]
        return None
    held_until: datetime | None = (
        await session.exec(select(WebhookStream.claimed_until).where(_is_stream(subscription_id, report_id)))
    ).first()
    # None here: the holder let go between the two statements; the caller looks again soon.
    return max((held_until - now).total_seconds(), 0.0) if held_until else 0.0


async def release(session: AsyncSession, subscription_id: UUID, report_id: UUID, *, holder: str) -> None:
    """Let the next job in at once; a lease that already passed to another holder is left alone."""
    await session.execute(
        update(WebhookStream)
        .where(_is_stream(subscription_id, report_id), col(WebhookStream.claimed_by) == holder)
        .values(claimed_by=None, claimed_until=None)
    )
