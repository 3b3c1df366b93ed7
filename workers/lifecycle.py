"""Daily housekeeping: close resolved tickets nobody reopened, erase reporters' contact data when its time is up."""

import logging
from datetime import timedelta

from sqlalchemy import or_
from sqlmodel import col, select

from service.models import Report
from service.models.types import utcnow
from service.reports.service import record_event

log = logging.getLogger(__name__)
BATCH = 1000


async def close_resolved_tickets(ctx: dict) -> int:
    """A resolved ticket the citizen did not reopen within the window is closed."""
    settings = ctx["settings"]
    cutoff = utcnow() - timedelta(days=settings.reopen_window_days)
    async with ctx["sessions"]() as session:
        reports = (
            await session.exec(
                select(Report).where(Report.status == "resolved", col(Report.resolved_at) < cutoff).limit(BATCH)
                # Locked: a second sweep (another worker) skips what this one is closing.
                .with_for_update(skip_locked=True, of=Report)
            )
        ).all()
        now = utcnow()
        for report in reports:
            report.status, report.closed_at, report.updated_at = "closed", now, now
            session.add(report)
            record_event(session, report, "status_changed", message="Đã đóng / Closed",
                         data={"from": "resolved", "to": "closed", "reason": "reopen window passed"})
            record_event(session, report, "closed", public=False, data={"from": "resolved"})
        await session.commit()
    if reports:
        log.info("closed %d resolved tickets", len(reports))
    return len(reports)


async def erase_personal_data(ctx: dict) -> int:
    """Decree 13/2023: keep reporters' contact data only as long as the ticket needs it."""
    settings = ctx["settings"]
    cutoff = utcnow() - timedelta(days=settings.pii_retention_days)
    async with ctx["sessions"]() as session:
        reports = (
            await session.exec(
                select(Report)
                .where(
                    col(Report.closed_at) < cutoff,
                    or_(
                        col(Report.reporter_name).is_not(None),
                        col(Report.reporter_phone).is_not(None),
                        col(Report.reporter_email).is_not(None),
                    ),
                )
                .limit(BATCH)
                .with_for_update(skip_locked=True, of=Report)
            )
        ).all()
        for report in reports:
            report.reporter_name = report.reporter_phone = report.reporter_email = None
            session.add(report)
            record_event(session, report, "personal_data_erased", public=False,
                         data={"retention_days": settings.pii_retention_days})
        await session.commit()
    if reports:
        log.info("erased reporter contact data of %d closed tickets", len(reports))
    return len(reports)
