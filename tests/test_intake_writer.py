"""Group commit (service/reports/writer.py) and the per-process caches on the intake path.

Reports that arrive together share a transaction, yet each client is answered only once its own
report is committed, each report is handed to the workers, and a report that cannot be written
fails alone.
"""

import asyncio
import time

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import event, update
from sqlmodel import func, select

from service.jobs import PROCESS_REPORT, process_report_job_id
from service.main import create_app
from service.models import ApiClient, Report, ReportEvent
from service.models.types import utcnow
from service.reports import service
from tests.conftest import in_app
from tests.factories import report_body

BURST = 40


def burst(client: TestClient, api_key: str, bodies: list[dict], headers: dict | None = None) -> list[httpx.Response]:
    """Send every body at once on the app's own event loop, so they queue up for the writer together."""

    async def send_all():
        transport = httpx.ASGITransport(app=client.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return await asyncio.gather(
                *(
                    http.post("/v1/reports", json=body, headers={"X-API-Key": api_key, **(headers or {})})
                    for body in bodies
                )
            )

    return client.portal.call(send_all)


def bodies(count: int) -> list[dict]:
    return [
        report_body(description=f"Ổ gà lớn số {number} trên đường Nguyễn Trãi, xe máy dễ té") for number in range(count)
    ]


def test_reports_sent_at_once_are_each_stored_once_and_queued(client, api_key):
    responses = burst(client, api_key, bodies(BURST))

    assert [response.status_code for response in responses] == [201] * BURST
    codes = {response.json()["tracking_code"] for response in responses}
    assert len(codes) == BURST
    stored = in_app(client, lambda s: s.exec(select(Report.tracking_code)))
    assert set(stored.all()) == codes
    received = in_app(
        client, lambda s: s.exec(select(func.count()).select_from(ReportEvent).where(ReportEvent.type == "received"))
    )
    assert received.one() == BURST
    # Every report was handed to the workers (after its commit): reports committed together share a job.
    # The hand-off runs in the background, after the answers: wait for what is on its way to Redis.
    client.portal.call(client.app.state.handoff.drain)
    arq, queue_name = client.app.state.arq, client.app.state.settings.queue_name
    queued = client.portal.call(lambda: arq.queued_jobs(queue_name=queue_name))
    jobs = [job for job in queued if job.function == PROCESS_REPORT]
    ids = [response.json()["id"] for response in responses]
    assert sorted(report_id for job in jobs for report_id in job.args) == sorted(ids)
    assert len(jobs) < BURST, "reports committed together go to the workers in shared jobs"
    assert {job.job_id for job in jobs} == {process_report_job_id(job.args[0]) for job in jobs}


def test_one_retry_key_sent_many_times_at_once_makes_one_report(client, api_key):
    responses = burst(client, api_key, [report_body()] * 12, headers={"Idempotency-Key": "storm-retry-1"})

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 11 + [201]
    assert len({response.json()["tracking_code"] for response in responses}) == 1
    count = in_app(client, lambda s: s.exec(select(func.count()).select_from(Report)))
    assert count.one() == 1


def test_a_report_that_cannot_be_written_fails_alone(client, api_key, monkeypatch):
    add_new = service.add_new

    async def refuses_one(session, reports):
        if any("số 7 " in new.values["description"] for new in reports):
            raise ValueError("a row the database refuses")
        await add_new(session, reports)

    monkeypatch.setattr(service, "add_new", refuses_one)
    monkeypatch.setattr(client._transport, "raise_server_exceptions", False)
    responses = burst(client, api_key, bodies(BURST))

    statuses = [response.status_code for response in responses]
    assert statuses[7] == 500
    assert statuses[:7] + statuses[8:] == [201] * (BURST - 1)
    count = in_app(client, lambda s: s.exec(select(func.count()).select_from(Report)))
    assert count.one() == BURST - 1


def test_a_key_revoked_elsewhere_stops_working_within_the_cache_time(settings, client, api_key):
    # Long enough for the second request to come within it on a loaded CI machine (0.5 s was not).
    cached = settings.model_copy(update={"api_key_cache_seconds": 3})
    with TestClient(create_app(cached)) as api:
        submit = lambda: api.post("/v1/reports", json=report_body(), headers={"X-API-Key": api_key})  # noqa: E731
        assert submit().status_code == 201
        # Another API process revokes it: this process's cache does not hear of it.
        in_app(client, lambda s: s.exec(update(ApiClient).values(revoked_at=utcnow())))
        assert submit().status_code == 201
        time.sleep(3.1)
        assert submit().status_code == 401


def test_a_burst_on_a_key_the_process_has_not_checked_yet_asks_the_database_once(client, api_key):
    lookups: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if "WHERE api_clients.key_prefix =" in statement:  # authenticate's lookup of a key
            lookups.append(statement)

    engine = client.app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        answers = burst(client, api_key, bodies(BURST))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert [answer.status_code for answer in answers] == [201] * BURST
    # Every request of the burst missed the cache at once; one lookup answered them all.
    assert len(lookups) == 1
