"""Report jobs: each a few lines around a service call, each safe to run more than once."""

import asyncio
import contextlib
import logging
from collections import Counter, OrderedDict
from collections.abc import Iterable
from datetime import timedelta
from uuid import UUID

from arq import Retry
from sqlmodel import col, select

from service import metrics
from service.errors import is_outage
from service.jobs import enqueue_process_photos, enqueue_process_reports, withdraw_report_jobs
from service.lifecycle import changes
from service.lifecycle.events import EventCode
from service.lifecycle.states import Status
from service.models import Photo, Report
from service.models.types import utcnow
from service.pipeline import service as pipeline
from service.pipeline.photos import process_photos as process_report_photos

log = logging.getLogger(__name__)

SWEEP_BATCH = 500


class ProcessedHere:
    """The last reports this process committed as processed. Nothing moves a report back to `received`,
    so a job whose reports are all here (another batch of this process took them) has nothing to do,
    and it need not ask the database. Built once per process: arq gives each job a fresh copy of the
    worker's context."""

    def __init__(self, size: int = 100_000):
        self._ids: OrderedDict[UUID, None] = OrderedDict()
        self._size = size
        # claimed by a batch of this process that has not ended yet -> set when that batch ends
        self._in_flight: dict[UUID, asyncio.Event] = {}

    @contextlib.contextmanager
    def in_flight(self, report_ids: list[UUID]):
        ended = asyncio.Event()
        self._in_flight.update(dict.fromkeys(report_ids, ended))
        try:
            yield
        finally:
            for report_id in report_ids:
                self._in_flight.pop(report_id, None)
            ended.set()

    async def settled(self, report_ids: list[UUID]) -> None:
        """When every one of these reports is processed here or held by a batch of this process, wait
        until those batches end. A job that would find nothing to take keeps its place among the
        worker's jobs meanwhile, rather than let the worker start more such jobs, and the batches'
        commits withdraw the jobs still queued."""
        if not all(report_id in self._ids or report_id in self._in_flight for report_id in report_ids):
            return
        batches = {self._in_flight[report_id] for report_id in report_ids if report_id in self._in_flight}
        for ended in batches:
            await ended.wait()

    def add(self, report_ids: Iterable[UUID]) -> None:
        for report_id in report_ids:
            self._ids[report_id] = None
        while len(self._ids) > self._size:
            self._ids.popitem(last=False)

    def has_all(self, report_ids: list[UUID]) -> bool:
        return bool(report_ids) and all(report_id in self._ids for report_id in report_ids)

    def left(self, report_ids: list[UUID]) -> list[UUID]:
        """Those of these reports not processed here."""
        return [report_id for report_id in report_ids if report_id not in self._ids]


async def process_report(ctx: dict, *report_ids: str) -> str:
    """These reports, topped up with others waiting to a batch of `WORKER_BATCH_MAX`, in one transaction.
    When the batch fails (not an outage), each of its reports is tried alone: one report that always
    fails holds back none of the others."""
    ids = [UUID(report_id) for report_id in report_ids]
    processed_here: ProcessedHere = ctx.setdefault("processed_here", ProcessedHere())
    await processed_here.settled(ids)
    if processed_here.has_all(ids):
        return "already-processed"
    held: list[UUID] = []
    # SQLite has no row locks: the batch and its fallback run under the process's one lock together.
    async with ctx["serial"] or contextlib.nullcontext():
        outcomes = await _process(ctx, ids, held)
    # The queued jobs of the reports taken from other jobs' shares have nothing left to do.
    own = set(ids)
    taken = [report_id for report_id in outcomes if report_id not in own]
    await withdraw_report_jobs(ctx["redis"], ctx["settings"].queue_name, taken, done=processed_here.has_all)
    # Another transaction (a batch of this process or another's, or a change to the report) held some of
    # them. Its batch may fail and leave them to their own jobs, which is this one: look again soon (after
    # the batch, when it is this process's) unless it processed them.
    await processed_here.settled(held)
    if held := processed_here.left(held):
        job_try = ctx.get("job_try", 1)
        log.info("%d of the job's reports were held by another transaction: trying again", len(held))
        raise Retry(defer=min(0.5 * job_try, 5.0))
    await metrics.observe_job_latency(ctx["redis"], ctx["settings"].queue_name, ctx.get("enqueue_time"))
    return " ".join(f"{outcome}={count}" for outcome, count in sorted(Counter(outcomes.values()).items()))


async def _process(ctx: dict, ids: list[UUID], held: list[UUID]) -> dict[UUID, str]:
    claimed: list[UUID] = []
    try:
        return await _process_batch(ctx, ids, claimed, held)
    except Exception as exc:
        if is_outage(exc):
            # Exponential backoff: 5 s, 10 s, 20 s … while the database is away.
            raise Retry(defer=5 * 2 ** (ctx.get("job_try", 1) - 1)) from exc
        log.warning("a batch of %d reports failed (%s): each is tried alone", len(claimed), type(exc).__name__)
        # A failure counts against the reports of this job only: one the batch took from another job's
        # share will be tried (and counted) by that job, so each report's failures still count its jobs.
        return {
            report_id: await _process_alone(ctx, report_id, count_failure=report_id in ids)
            for report_id in claimed or ids
        }


async def _process_batch(ctx: dict, report_ids: list[UUID], claimed: list[UUID], held: list[UUID]) -> dict[UUID, str]:
    processed_here: ProcessedHere = ctx["processed_here"]
    async with ctx["sessions"]() as session:
        reports = await pipeline.claim(session, report_ids, top_up_to=ctx["settings"].worker_batch_max)
        claimed.extend(report.id for report in reports)
        with processed_here.in_flight(claimed):
            if missing := [report_id for report_id in report_ids if report_id not in set(claimed)]:
                held.extend(await pipeline.still_waiting(session, missing))
            outcomes = await pipeline.process_claimed(session, reports, ctx["pipeline"])
            await ctx["handoff"].commit(session)
            processed_here.add(outcomes)  # before the batch counts as ended (see `settled`)
    return outcomes


async def _process_alone(ctx: dict, report_id: UUID, *, count_failure: bool) -> str:
    processed_here: ProcessedHere = ctx["processed_here"]
    try:
        async with ctx["sessions"]() as session:
            outcome = await pipeline.process(session, report_id, ctx["pipeline"])
            await ctx["handoff"].commit(session)
        if outcome not in ("already-processed", "missing"):  # processed by this transaction
            processed_here.add([report_id])
        return outcome
    except Exception as exc:
        if is_outage(exc):
            raise Retry(defer=5 * 2 ** (ctx.get("job_try", 1) - 1)) from exc
        log.exception("processing report %s failed", report_id)
        if not count_failure:
            return "left-to-its-own-job"
        async with ctx["sessions"]() as session:
            outcome = await pipeline.give_up(session, report_id, type(exc).__name__, ctx["pipeline"])
            await ctx["handoff"].commit(session)
        return outcome


async def process_photos(ctx: dict, report_id: str) -> int:
    """Photos added after intake: strip metadata, make thumbnails. Already-processed photos are skipped."""
    async with ctx["sessions"]() as session:
        report = await session.get(Report, UUID(report_id))
        if report is None:
            return 0
        summaries = await process_report_photos(session, ctx["pipeline"].storage, report)
        if summaries:
            await changes.note(session, report, EventCode.PHOTOS_PROCESSED, data={"photos": summaries})
        await ctx["handoff"].commit(session)
        return len(summaries)


async def sweep_stale_reports(ctx: dict) -> int:
    """Re-enqueue reports (and later photos) whose hand-off was lost. Job ids de-duplicate what is still queued."""
    stale_before = utcnow() - timedelta(seconds=ctx["settings"].stale_report_seconds)
    async with ctx["sessions"]() as session:
        photo_reports = (
            await session.exec(
                select(Photo.report_id)
                .join(Report, col(Report.id) == col(Photo.report_id))
                .where(
                    col(Photo.processed_at).is_(None),
                    col(Photo.created_at) < stale_before,
                    Report.status != Status.RECEIVED,
                )
                .distinct()
                .limit(SWEEP_BATCH)
            )
        ).all()
        stale = (
            await session.exec(
                select(Report.id, Report.processing_failures)
                .where(Report.status == Status.RECEIVED, col(Report.created_at) < stale_before)
                # Those that never failed first: a report that keeps failing cannot hold the others back.
                .order_by(col(Report.processing_failures), col(Report.created_at))
                .limit(SWEEP_BATCH)
            )
        ).all()
    ids = [report_id for report_id, _ in stale]
    queue_name = ctx["settings"].queue_name
    # Reports that never failed go in batches; one that failed goes alone, in a job of its own id.
    await enqueue_process_reports(
        ctx["redis"], queue_name, [report_id for report_id, failures in stale if not failures]
    )
    for report_id, failures in stale:
        if failures:
            await enqueue_process_reports(ctx["redis"], queue_name, [report_id])
    for report_id in photo_reports:
        await enqueue_process_photos(ctx["redis"], ctx["settings"].queue_name, report_id)
    if ids:
        log.info("sweep re-enqueued %d stale reports", len(ids))
    return len(ids)
