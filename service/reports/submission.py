"""Committing a new report and handing it to the workers: one path for every intake channel.

/v1/reports and Open311 parse their own wire formats, then call `commit_report`, so both get the
same validation, idempotency, commit-then-enqueue order and clean-up of staged photos.
"""

import logging
from typing import Any

import anyio
from fastapi import Request
from sqlalchemy.exc import IntegrityError

from service import metrics, privacy
from service.catalogue.attributes import Answer
from service.db import SessionOnDemand
from service.models import ApiClient
from service.photos.storage import PhotoStorage
from service.ratelimit import Limit, client_address
from service.reports import service
from service.reports.schemas import ReportCreate
from service.reports.service import StagedPhoto, Submission

log = logging.getLogger(__name__)

# A new tracking code is drawn when one clashes with an existing report's (see service.create).
TRACKING_CODE_ATTEMPTS = 3


async def discard_staged(storage: PhotoStorage, staged: list[StagedPhoto]) -> None:
    """Delete photos stored for a request that did not commit. Runs in a thread (an object store is a
    network call) and shielded, so a client hanging up mid-request still gets its uploads removed."""
    if not staged:
        return

    def delete_all() -> None:
        for photo in staged:
            try:
                storage.delete(photo.key)
            except Exception:  # cleanup must not hide the error being answered; the object is orphaned
                log.warning("could not delete staged photo %s", photo.key, exc_info=True)

    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(delete_all)


def intake_limits(request: Request, client: ApiClient, data: ReportCreate) -> list[Limit]:
    """Per app key, per client address and per reporter contact (a keyed hash, never the contact itself)."""
    settings = request.app.state.settings
    if not settings.rate_limits_enabled:
        return []
    limits = [
        Limit(client.rate_limit or settings.rate_limit_intake_per_key, "intake:key", str(client.id)),
        Limit(settings.rate_limit_intake_per_address, "intake:address", client_address(request)),
    ]
    phone = data.reporter_phone and privacy.phone_identity(data.reporter_phone, settings.phone_region)
    for contact in (phone, data.reporter_email):
        if contact:
            limits.append(
                Limit(settings.rate_limit_intake_per_reporter, "intake:reporter", privacy.lookup_hash(contact))
            )
    return limits


async def pass_intake_gate(
    request: Request, client: ApiClient, data: ReportCreate, idempotency_key: str | None
) -> bool:
    """The intake limits and the claim of the idempotency key, in one Redis round trip: raises 429 when a
    limit is spent. True when an earlier request may have used this key (Redis says so): only then is
    an earlier report looked up before the insert."""
    claim = f"{client.id}:{idempotency_key}" if idempotency_key else None
    return await request.app.state.rate_limiter.gate(intake_limits(request, client, data), claim) is False


async def commit_report(
    request: Request,
    session: SessionOnDemand,
    *,
    client: ApiClient,
    data: ReportCreate,
    staged: list[StagedPhoto],
    idempotency_key: str | None,
    attributes: dict[str, Answer] | None = None,
    media_url: str | None = None,
) -> Submission:
    """Create the report and commit it, then enqueue its processing (both through the intake writer).

    The staged photos are deleted when this fails, and when the request was a retry (the first
    attempt's copies are the ones kept). A lost race between two retries answers with the winner.
    `session` is for reads only, and opened only when something must be read.
    """
    state = request.app.state
    extras: dict[str, Any] = {"attributes": attributes, "media_url": media_url}
    try:
        # A key Redis has not seen (or cannot say, being down) needs no lookup of an earlier report
        # before the insert: the unique index on (client, key) catches any earlier report all the same,
        # and the lost race below answers with it. The lookup is kept for the retries Redis recognises.
        maybe_retry = await pass_intake_gate(request, client, data, idempotency_key)
    except BaseException:
        await discard_staged(state.storage, staged)
        raise
    try:
        for attempt in range(1, TRACKING_CODE_ATTEMPTS + 1):
            try:
                prepared = await service.prepare(
                    session,
                    client=client,
                    data=data,
                    photos=staged,
                    idempotency_key=idempotency_key,
                    look_up_earlier=maybe_retry or attempt > 1,
                    settings=state.settings,
                    storage=state.storage,
                    **extras,
                )
                if isinstance(prepared, Submission):
                    submission = prepared
                    break
                # Only reads so far: give the connection back to the pool rather than hold it while
                # the writer commits (64 waiting requests would otherwise starve the writer).
                if session.opened is not None and session.opened.in_transaction():
                    await session.opened.rollback()
                # Committed (with other reports that arrived meanwhile) and handed to the workers
                # by the intake writer; no await may follow inside this try (see IntakeWriter.write).
                await state.intake_writer.write(prepared)
                submission = Submission(report=prepared.report, replayed=False)
                break
            except IntegrityError as exc:
                if session.opened is not None:
                    await session.opened.rollback()
                if service.is_tracking_code_clash(exc) and attempt < TRACKING_CODE_ATTEMPTS:
                    continue
                if not idempotency_key:
                    raise
                replay = await service.replay_after_race(
                    session.get(),
                    state.storage,
                    client=client,
                    idempotency_key=idempotency_key,
                    data=data,
                    photos=staged,
                    **extras,
                )
                if replay is None:
                    raise
                submission = Submission(report=replay, replayed=True)
                break
    except BaseException:
        await discard_staged(state.storage, staged)
        raise
    if submission.replayed:
        await discard_staged(state.storage, staged)
    else:
        metrics.report_received(submission.report.channel)
    return submission
