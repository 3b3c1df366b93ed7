"""The worker processes waiting reports in batches: what a batch does must be what one report alone does,
one original per spot however the reports fall into batches and workers, and one bad report fails alone."""

import asyncio
import threading
from collections import Counter, defaultdict
from contextlib import contextmanager
from uuid import UUID

import pytest
from arq import Retry
from sqlmodel import col, select

from service.jobs import enqueue_process_reports, process_report_job_id, withdraw_report_jobs
from service.models import Report, ReportEvent, WebhookEvent
from tests.conftest import in_app, run_worker, worker_context
from tests.factories import report_body
from tests.test_lifecycle import key, receiver  # noqa: F401 - the fixture
from tests.test_pipeline_e2e import processed_count, redis_server, stack, wait_until  # noqa: F401 - fixtures
from tests.test_webhooks import subscribe
from workers.reports import process_report

LAMP = "Đèn đường trước chợ bị tắt ba đêm nay, tối om rất nguy hiểm"
# Points in different wards, far apart: never duplicates of each other.
SPOTS = [(10.7725, 106.6980), (10.7740, 106.6930), (10.7660, 106.6930), (10.7830, 106.6910), (10.7735, 106.6700)]


def submit(client, api_key, **fields) -> dict:
    response = client.post("/v1/reports", json=report_body(**fields), headers={"X-API-Key": api_key})
    assert response.status_code == 201, response.text
    return response.json()


def trail(client, report_id: str) -> tuple[list[tuple[str, list[str]]], list[str]]:
    """The report's timeline (code and data keys, in order) and its outbox rows' types."""

    async def load(session):
        events = (
            await session.exec(
                select(ReportEvent).where(ReportEvent.report_id == UUID(report_id)).order_by(col(ReportEvent.id))
            )
        ).all()
        webhooks = (
            await session.exec(select(WebhookEvent.type).where(WebhookEvent.report_id == UUID(report_id)))
        ).all()
        return [(event.type, sorted(event.data)) for event in events], sorted(webhooks)

    return in_app(client, load)


def test_reports_processed_in_one_batch_get_the_events_and_webhooks_of_a_report_processed_alone(
    client, api_key, receiver  # noqa: F811 - the fixture
):
    subscribe(client, key(client, "admin"), receiver.url)
    alone = submit(client, api_key, description=LAMP, lat=SPOTS[0][0], lon=SPOTS[0][1])
    run_worker(client)
    expected = trail(client, alone["id"])
    assert [code for code, _ in expected[0]] == [
        "received", "classified", "prioritised", "located", "routed", "sla_set", "status_changed",
    ]
    assert expected[1] == ["report.assigned", "report.classified", "report.created", "report.status_changed"]

    together = [submit(client, api_key, description=LAMP, lat=lat, lon=lon) for lat, lon in SPOTS[1:]]
    run_worker(client)  # the first job takes every waiting report: one batch
    for created in together:
        assert trail(client, created["id"]) == expected


def test_processing_leaves_what_the_citizen_filed_and_their_contact_details_as_they_were(client, api_key):
    created = submit(client, api_key, description=LAMP, lat=SPOTS[0][0], lon=SPOTS[0][1], title="Đèn tắt",
                     reporter_name="Trần Thị Bình", reporter_phone="0903123456", reporter_email="binh@example.vn",
                     address="12 Lê Lợi")
    run_worker(client)
    report = in_app(client, lambda s: s.get(Report, UUID(created["id"])))
    assert report.status == "assigned" and report.processed_at is not None and report.due_at is not None
    assert (report.reporter_name, report.reporter_phone, report.reporter_email) == (
        "Trần Thị Bình", "0903123456", "binh@example.vn")
    assert (report.title, report.description, report.address) == ("Đèn tắt", LAMP, "12 Lê Lợi")
    assert report.revision > 1  # each step a reader would notice moved the ETag on


def test_jobs_of_reports_a_batch_already_took_find_nothing_left_to_do(client, api_key):
    created = [submit(client, api_key, description=LAMP, lat=lat, lon=lon) for lat, lon in SPOTS]
    ctx = worker_context(client)
    first = client.portal.call(process_report, ctx, created[0]["id"])
    assert first == f"assigned={len(SPOTS)}"  # topped up with every waiting report: one batch
    for report in created:  # the other reports' own jobs, in the same process
        assert client.portal.call(process_report, ctx, report["id"]) == "already-processed"
    for report in created:
        assert [code for code, _ in trail(client, report["id"])[0]].count("status_changed") == 1


@contextmanager
def row_lock_held(client, report_id: str, lock: str):
    """Another transaction holds the report's row (`FOR UPDATE`, as a change to it would, or `FOR KEY
    SHARE`, as a row referring to it takes) until the block ends."""
    import asyncio

    from sqlalchemy import text

    locked, release = threading.Event(), asyncio.Event()

    async def hold():
        async with client.app.state.sessions() as session:
            await session.execute(text(f"SELECT id FROM reports WHERE id = :id {lock}"), {"id": UUID(report_id)})
            locked.set()
            await release.wait()
            await session.commit()

    done = client.portal.start_task_soon(hold)
    assert locked.wait(10)
    try:
        yield
    finally:
        client.portal.call(release.set)
        done.result(10)


def status_of(client, report_id: str) -> str:
    return in_app(client, lambda s: s.get(Report, UUID(report_id))).status


def test_a_report_another_transaction_refers_to_is_processed_at_once(client, api_key, settings):
    if settings.is_sqlite:
        pytest.skip("row locks are PostgreSQL's; SQLite has one writer")
    created = submit(client, api_key, description=LAMP, lat=SPOTS[0][0], lon=SPOTS[0][1])
    with row_lock_held(client, created["id"], "FOR KEY SHARE"):  # an event or a webhook lease being written
        run_worker(client)
        assert status_of(client, created["id"]) == "assigned"


def test_a_report_held_by_another_transaction_when_its_job_runs_is_processed_once_it_is_let_go(
    client, api_key, settings
):
    if settings.is_sqlite:
        pytest.skip("row locks are PostgreSQL's; SQLite has one writer")
    created = submit(client, api_key, description=LAMP, lat=SPOTS[0][0], lon=SPOTS[0][1])
    client.portal.call(client.app.state.handoff.drain)  # its job is queued
    with row_lock_held(client, created["id"], "FOR NO KEY UPDATE"):
        ctx = worker_context(client)
        with pytest.raises(Retry):  # the job does not end while its report waits, unprocessed
            client.portal.call(process_report, ctx, created["id"])
        assert status_of(client, created["id"]) == "received"
    run_worker(client)  # the job again, after its holder let go
    assert status_of(client, created["id"]) == "assigned"
    assert [code for code, _ in trail(client, created["id"])[0]].count("status_changed") == 1


def test_near_identical_reports_in_one_batch_leave_one_original_with_every_supporter(client, api_key):
    burst = [
        submit(client, api_key, service_code="water_supply", description=f"Bể ống nước trước chợ, người thứ {n}",
               lat=SPOTS[0][0] + n * 0.00001, lon=SPOTS[0][1])
        for n in range(8)
    ]
    run_worker(client)

    reports = in_app(client, lambda s: s.exec(select(Report).where(col(Report.id).in_([UUID(r["id"]) for r in burst]))))
    reports = {str(report.id): report for report in reports.all()}
    originals = [report for report in reports.values() if report.status == "assigned"]
    assert len(originals) == 1
    original = originals[0]
    assert all(r.status == "duplicate" and r.duplicate_of_id == original.id for r in reports.values() if r is not original)
    assert original.supporter_count == 7
    codes = [code for code, _ in trail(client, str(original.id))[0]]
    assert codes.count("supporter_added") == 7


def test_a_report_that_fails_in_a_batch_holds_back_none_of_the_others(client, api_key, monkeypatch):
    from service.classify.model import Classifier

    real_predict = Classifier.predict_many

    def predict_many(self, texts, threshold):
        texts = list(texts)
        if any("POISON" in text for text in texts):
            raise ValueError("the model cannot read this text")
        return real_predict(self, texts, threshold)

    monkeypatch.setattr(Classifier, "predict_many", predict_many)
    fine = [submit(client, api_key, description=LAMP, lat=lat, lon=lon) for lat, lon in SPOTS[:2]]
    poison = submit(client, api_key, description="POISON đèn hỏng", lat=SPOTS[2][0], lon=SPOTS[2][1])
    fine += [submit(client, api_key, description=LAMP, lat=lat, lon=lon) for lat, lon in SPOTS[3:]]
    run_worker(client)

    for created in fine:
        assert client.get(f"/v1/reports/{created['tracking_code']}").json()["status"] == "assigned"
        assert [code for code, _ in trail(client, created["id"])[0]].count("status_changed") == 1
    failed = in_app(client, lambda s: s.get(Report, UUID(poison["id"])))
    assert failed.status == "received" and failed.processing_failures == 1  # tried again later, alone


def test_a_report_a_failing_batch_took_from_its_job_of_the_same_process_is_tried_and_counted_by_that_job(
    client, api_key, settings, monkeypatch
):
    """The poison report's own job looks for it while a batch of another job of the same process holds it.
    That batch fails and leaves the report to its own job, which must not have ended meanwhile."""
    if settings.is_sqlite:
        pytest.skip("row locks are PostgreSQL's; SQLite has one writer")
    from service.pipeline import service as pipeline

    fine = submit(client, api_key, description=LAMP, lat=SPOTS[0][0], lon=SPOTS[0][1])
    poison = submit(client, api_key, description="POISON đèn hỏng", lat=SPOTS[2][0], lon=SPOTS[2][1])
    real_claim, real_claimed, real_still_waiting = pipeline.claim, pipeline.process_claimed, pipeline.still_waiting
    batch_claimed = own_job_looked = asyncio.Event()

    async def claim(session, report_ids, *, top_up_to=0):
        if report_ids == [UUID(poison["id"])]:
            await batch_claimed.wait()
        claimed = await real_claim(session, report_ids, top_up_to=top_up_to)
        if len(claimed) > 1:
            batch_claimed.set()
        return claimed

    async def process_claimed(session, reports, resources):
        if len(reports) > 1:  # the fine report's batch, topped up with the poison report
            await own_job_looked.wait()
        if any(report.id == UUID(poison["id"]) for report in reports):
            raise ValueError("the model cannot read this text")
        return await real_claimed(session, reports, resources)

    async def still_waiting(session, report_ids):
        waiting = await real_still_waiting(session, report_ids)
        own_job_looked.set()
        return waiting

    monkeypatch.setattr(pipeline, "claim", claim)
    monkeypatch.setattr(pipeline, "process_claimed", process_claimed)
    monkeypatch.setattr(pipeline, "still_waiting", still_waiting)
    ctx = worker_context(client)

    async def both_jobs():
        nonlocal batch_claimed, own_job_looked
        batch_claimed, own_job_looked = asyncio.Event(), asyncio.Event()
        own = asyncio.create_task(process_report(dict(ctx), poison["id"]))
        await asyncio.sleep(0)  # it has found no batch of this process holding its report
        batch = asyncio.create_task(process_report(dict(ctx), fine["id"]))
        return await asyncio.wait_for(asyncio.gather(batch, own, return_exceptions=True), 60)

    batch, own = client.portal.call(both_jobs)
    assert batch == "assigned=1 left-to-its-own-job=1"
    assert isinstance(own, Retry)  # not ended: it looks again once the batch has let the report go
    assert status_of(client, poison["id"]) == "received"
    assert in_app(client, lambda s: s.get(Report, UUID(poison["id"]))).processing_failures == 0
    assert client.portal.call(process_report, dict(ctx, job_try=2), poison["id"]) == "will-retry=1"
    assert in_app(client, lambda s: s.get(Report, UUID(poison["id"]))).processing_failures == 1


@pytest.fixture
def small_batches(monkeypatch):
    """Worker processes that take a few reports per batch, so a spot's reports fall into several batches."""
    monkeypatch.setenv("WORKER_BATCH_MAX", "4")


def test_bursts_at_many_spots_across_two_workers_and_many_batches_leave_one_original_per_spot(
    small_batches, stack, api_key  # noqa: F811 - the fixture
):
    client, start_worker = stack
    per_spot, spots = 6, [(10.7650 + 0.004 * n, 106.6950) for n in range(10)]
    spot_of: dict[str, int] = {}
    for copy in range(per_spot):  # interleaved: each spot's reports land in different batches and workers
        for number, (lat, lon) in enumerate(spots):
            created = submit(client, api_key, service_code="water_supply",
                             description=f"Bể ống nước chảy tràn ra đường, người báo thứ {copy}",
                             lat=lat + copy * 0.00001, lon=lon)
            spot_of[created["id"]] = number
    start_worker()
    start_worker()
    total = per_spot * len(spots)
    wait_until(lambda: processed_count(client) == total, 120, "every report to be processed")

    reports = in_app(client, lambda s: s.exec(select(Report))).all()
    by_spot: dict[int, list[Report]] = defaultdict(list)
    for report in reports:
        by_spot[spot_of[str(report.id)]].append(report)
    for spot, group in by_spot.items():
        originals = [report for report in group if report.duplicate_of_id is None]
        assert len(originals) == 1, f"spot {spot}: {len(originals)} originals"
        assert originals[0].status == "assigned" and originals[0].supporter_count == per_spot - 1
        assert all(report.duplicate_of_id == originals[0].id for report in group if report is not originals[0])

    async def finals(session):
        rows = await session.exec(select(ReportEvent.report_id).where(ReportEvent.type == "status_changed"))
        return Counter(rows.all())

    assert set(in_app(client, finals).values()) == {1} and len(in_app(client, finals)) == total


def queued_jobs(client) -> set[str]:
    queue_name = client.app.state.settings.queue_name
    return {job.job_id for job in client.portal.call(lambda: client.app.state.arq.queued_jobs(queue_name=queue_name))}


def status_changes(client, report_id: str) -> int:
    return [code for code, _ in trail(client, report_id)[0]].count("status_changed")


def test_queued_jobs_whose_reports_a_batch_processed_leave_the_queue_and_never_run(client, api_key):
    created = [submit(client, api_key, description=LAMP, lat=lat, lon=lon) for lat, lon in SPOTS]
    client.portal.call(client.app.state.handoff.drain)
    assert queued_jobs(client) == {process_report_job_id(report["id"]) for report in created}  # a job each

    ctx = worker_context(client)
    assert client.portal.call(process_report, ctx, created[0]["id"]) == f"assigned={len(SPOTS)}"  # one batch
    # The first job ran here, outside arq, so it is still queued; the batch took the others' reports.
    assert queued_jobs(client) == {process_report_job_id(created[0]["id"])}

    worker = run_worker(client)
    assert (worker.jobs_complete, worker.jobs_failed, worker.jobs_retried) == (1, 0, 0)
    assert all(status_changes(client, report["id"]) == 1 for report in created)


def test_a_job_keeps_its_place_in_the_queue_while_any_of_its_reports_waits(client, api_key):
    settings = client.app.state.settings
    first, second, third = (submit(client, api_key, description=LAMP, lat=lat, lon=lon) for lat, lon in SPOTS[:3])
    client.portal.call(client.app.state.handoff.drain)
    arq, everything = client.app.state.arq, lambda report_ids: True
    # The first two reports in one job (as a transaction of two reports, or the sweep, hands them on).
    client.portal.call(
        lambda: withdraw_report_jobs(arq, settings.queue_name, [UUID(first["id"]), UUID(second["id"])], done=everything)
    )
    client.portal.call(enqueue_process_reports, arq, settings.queue_name, [UUID(first["id"]), UUID(second["id"])])

    async def failed_once(session):  # a batch leaves a report that failed before to its own job
        report = await session.get(Report, UUID(second["id"]))
        report.processing_failures = 1
        session.add(report)

    in_app(client, failed_once)
    ctx = worker_context(client)
    assert client.portal.call(process_report, ctx, third["id"]) == "assigned=2"  # the third and the first
    assert queued_jobs(client) == {process_report_job_id(first["id"]), process_report_job_id(third["id"])}

    worker = run_worker(client)
    assert (worker.jobs_complete, worker.jobs_failed) == (2, 0)
    assert all(status_changes(client, report["id"]) == 1 for report in (first, second, third))


def test_a_job_arq_already_started_is_left_to_run_and_processes_its_report_once(client, api_key):
    from arq.worker import Worker

    from workers.main import worker_options

    settings = client.app.state.settings
    created = submit(client, api_key, description=LAMP, lat=SPOTS[0][0], lon=SPOTS[0][1])
    client.portal.call(client.app.state.handoff.drain)
    ctx = worker_context(client)

    async def started_then_withdrawn() -> tuple[int, Worker]:
        options = worker_options(settings)
        options.pop("cron_jobs")
        worker = Worker(**options, redis_pool=ctx["redis"], ctx=ctx, burst=True, handle_signals=False)
        await worker.start_jobs([process_report_job_id(created["id"]).encode()])  # arq starts the job...
        # ...when a batch elsewhere would take its report out of the queue: a started job stays arq's.
        withdrawn = await withdraw_report_jobs(
            ctx["redis"], settings.queue_name, [UUID(created["id"])], done=lambda report_ids: True
        )
        await asyncio.gather(*worker.tasks.values())
        return withdrawn, worker

    withdrawn, worker = client.portal.call(started_then_withdrawn)
    assert withdrawn == 0
    assert (worker.jobs_complete, worker.jobs_failed, worker.jobs_retried) == (1, 0, 0)
    assert status_changes(client, created["id"]) == 1 and queued_jobs(client) == set()
