"""A slow or silent webhook receiver never holds back the processing of new reports.

A real `intake worker` process serves a real API's queue while a subscriber's receiver accepts every
connection and never answers: each delivery waits for its read timeout. New reports must still be
classified and routed at once, while those deliveries are still hanging.
"""

import os
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func
from sqlmodel import col, select

from service.models import Report
from tests.conftest import in_app
from tests.factories import report_body
from tests.processes import IntakeProcesses, settings_environment
from tests.test_webhooks import new_key, subscribe

REPORTS = 240
REPORTS_PER_SECOND = 8
# Far more than an unblocked worker needs for these reports, far less than a worker whose every slot
# waits for the silent receiver.
PROCESSED_WITHIN_SECONDS = 15


class SilentReceiver:
    """Accepts connections, reads what is sent, and never answers: every delivery hits its read timeout."""

    def __init__(self) -> None:
        self.connections = 0
        receiver = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                receiver.connections += 1
                self.request.settimeout(120)
                try:
                    while self.request.recv(65536):
                        pass
                except OSError:
                    pass

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 256

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/intake"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def silent_receiver(settings, monkeypatch) -> Iterator[SilentReceiver]:
    monkeypatch.setattr(settings, "webhook_allowed_hosts", ["127.0.0.1"])
    server = SilentReceiver()
    yield server
    server.close()


@pytest.fixture
def intake_worker(settings, tmp_path: Path) -> Iterator[IntakeProcesses]:
    """One real `intake worker` process on the tests' queue, with a short read timeout for webhooks."""
    if settings.is_sqlite:
        pytest.skip("the worker process's own view of the database is tested on PostgreSQL")
    configured = settings.model_copy(
        update={
            "webhook_allowed_hosts": ["127.0.0.1"],
            "webhook_connect_timeout_seconds": 3,
            "webhook_read_timeout_seconds": 3,
            "webhook_total_timeout_seconds": 6,
        }
    )
    processes = IntakeProcesses(tmp_path, {**os.environ, **settings_environment(configured)})
    processes.start_worker()
    try:
        yield processes
    finally:
        processes.stop_all()


def still_received(client) -> int:
    async def count(session):
        statement = select(func.count()).select_from(Report).where(col(Report.status) == "received")
        return (await session.exec(statement)).one()

    return in_app(client, count)


def file_reports(client, api_key: str, count: int) -> None:
    for n in range(count):
        body = report_body(service_code="street_lighting", lat=10.75 + (n % 40) * 0.003, lon=106.65 + (n // 40) * 0.003)
        response = client.post("/v1/reports", json=body, headers={"X-API-Key": api_key})
        assert response.status_code == 201, response.text


def wait_until_processed(client, timeout: float, processes: IntakeProcesses) -> None:
    deadline = time.monotonic() + timeout
    while (left := still_received(client)) > 0:
        if time.monotonic() > deadline:
            log = processes.log_text()[-3000:]
            raise AssertionError(f"{left} reports still `received` after {timeout} s; worker log tail:\n{log}")
        time.sleep(0.2)


def test_new_reports_are_processed_while_a_receiver_never_answers(client, api_key, silent_receiver, intake_worker):
    # The worker is up once a first report is processed (its start-up loads the classifier).
    file_reports(client, api_key, 1)
    wait_until_processed(client, 120, intake_worker)

    admin = new_key(client, "admin")
    subscribe(client, admin, silent_receiver.url)
    # A steady stream of reports, each one more delivery that waits for the silent receiver.
    started = time.monotonic()
    for n in range(REPORTS):
        file_reports(client, api_key, 1)
        time.sleep(max(0.0, started + (n + 1) / REPORTS_PER_SECOND - time.monotonic()))
    wait_until_processed(client, PROCESSED_WITHIN_SECONDS, intake_worker)
    # Deliveries were attempted meanwhile: the receiver took them and never answered.
    assert silent_receiver.connections > 0
