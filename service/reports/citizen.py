"""What a citizen can do with the tracking code and the token returned at intake."""

from datetime import timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from service.errors import AppError, Conflict, Unauthenticated
from service.lifecycle import changes as lifecycle
from service.lifecycle.changes import CITIZEN
from service.lifecycle.events import EventCode
from service.lifecycle.states import Status, Via
from service.models import Photo, Report
from service.models.types import utcnow
from service.reports.codes import verify_citizen_token
from service.reports.service import StagedPhoto
from service.settings import Settings
from service.sla import service as sla


class NotAllowedNow(AppError):
    status = 409


def authorise(settings: Settings, report: Report, token: str | None) -> None:
    if not token or not verify_citizen_token(settings.secret_key, report.id, token):
        raise Unauthenticated("invalid_citizen_token", headers={"WWW-Authenticate": "CitizenToken"})


def attach_photos(session: AsyncSession, report: Report, staged: list[StagedPhoto], *, kind: str) -> None:
    start = 100 if kind != "report" else 0  # keep the original photos first
    for offset, photo in enumerate(staged):
        session.add(
            Photo(
                id=photo.id,
                report_id=report.id,
                position=start + offset,
                kind=kind,
                original_key=photo.key,
                content_type=photo.content_type,
                size_bytes=photo.size_bytes,
            )
        )


async def answer(
    session: AsyncSession, report: Report, *, message: str | None, photos: list[StagedPhoto], settings: Settings
) -> Report:
    """The citizen answers the question that put the ticket on hold; the clock runs again."""
    if report.status != Status.ON_HOLD:
        raise NotAllowedNow("not_on_hold")
    now = utcnow()
    policy, _ = await sla.policy_for(session, report.service_code, report.priority)
    sla.resume_clock(report, policy, sla.calendar_from(settings), now)
    attach_photos(session, report, photos, kind="citizen_reply")
    await lifecycle.note(
        session,
        report,
        EventCode.CITIZEN_REPLY,
        actor=CITIZEN,
        message=message,
        data={"photos": len(photos)},
        public=True,
        touch=False,
        webhook_extra={"comment": message, "photo_count": len(photos)},
    )
    await lifecycle.change(session, report, via=Via.CITIZEN, actor=CITIZEN, status=Status.IN_PROGRESS)
    await session.flush()
    return report


async def rate(session: AsyncSession, report: Report, *, rating: int, comment: str | None) -> Report:
    """1–5 stars on a resolution. Rating again replaces the earlier one (a retried request is harmless)."""
    if report.status not in (Status.RESOLVED, Status.CLOSED):
        raise NotAllowedNow("not_resolved")
    if report.citizen_rating == rating and report.citizen_feedback == comment:
        return report
    report.citizen_rating, report.citizen_feedback, report.rated_at = rating, comment, utcnow()
    await lifecycle.note(session, report, EventCode.RATED, actor=CITIZEN, data={"rating": rating})
    await session.flush()
    return report


async def reopen(session: AsyncSession, report: Report, *, reason: str, settings: Settings) -> Report:
    """Once, within the configured days after resolution."""
    if report.status != Status.RESOLVED or report.resolved_at is None:
        raise NotAllowedNow("not_resolved")
    if report.reopened_count >= 1:
        raise Conflict("already_reopened")
    now = utcnow()
    if now - report.resolved_at > timedelta(days=settings.reopen_window_days):
        raise NotAllowedNow("reopen_window_passed")
    policy, _ = await sla.policy_for(session, report.service_code, report.priority)
    sla.start_clock(report, policy, sla.calendar_from(settings), now, settings.sla_at_risk_ratio)
    report.reopened_count += 1
    report.resolved_at = None
    await lifecycle.change(
        session, report, via=Via.CITIZEN, actor=CITIZEN, status=Status.REOPENED, message=reason, data={"reason": reason}
    )
    await session.flush()
    return report
