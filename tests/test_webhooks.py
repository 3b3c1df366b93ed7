"""Status webhooks: signed, ordered, retried, safe, and only about what the subscriber may see.

A real HTTP receiver runs in a thread on 127.0.0.1; it records what it gets and answers as told.
"""

import asyncio
import json
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from uuid import UUID

import httpx
import pytest
from sqlmodel import select
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from service.auth import api_keys, users
from service.models import Report, ReportEvent, WebhookEvent, WebhookSubscription
from service.models.types import utcnow
from service.lifecycle import changes as lifecycle
from service.lifecycle.events import EventCode
from service.lifecycle.states import Via
from service.webhooks import delivery, outbox
from service.webhooks.outbox import Outgoing, SubscriptionView, matches
from tests.conftest import in_app, run_worker, worker_context
from tests.factories import report_body

STREET_LIGHT = "Đèn đường trước chợ Bến Thành bị tắt ba đêm nay, tối om nguy hiểm"
SIDEWALK = "Hàng rong lấn chiếm hết vỉa hè trước chợ, người đi bộ phải xuống lòng đường"
REPORTER = {"reporter_name": "Nguyễn Thị Mai", "reporter_phone": "0903123456", "reporter_email": "mai@example.vn"}


# --- a real receiver --------------------------------------------------------------------------------


@dataclass
class Received:
    at: float
    headers: dict[str, str]
    body: bytes

    @property
    def payload(self) -> dict:
        return json.loads(self.body)


class Receiver:
    """A tiny HTTP server that records every request and answers from a script (200 when it runs out)."""

    def __init__(self):
        self.requests: list[Received] = []
        self.script: deque[tuple[int, dict, float, bytes]] = deque()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append(
                    Received(time.monotonic(), {k.lower(): v for k, v in self.headers.items()}, body)
                )
                status, headers, delay, answer = receiver.script.popleft() if receiver.script else (200, {}, 0, b"ok")
                if delay:
                    time.sleep(delay)
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/intake"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def answer(self, status: int, *, headers: dict | None = None, delay: float = 0, body: bytes = b"") -> None:
        self.script.append((status, headers or {}, delay, body))

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def types(self) -> list[str]:
        return [request.payload["type"] for request in self.requests]


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture(autouse=True)
def fast_webhooks(settings, monkeypatch):
    """Tiny retry delays and 127.0.0.1 allowed, so tests drive retries without sleeping for real backoff."""
    monkeypatch.setattr(settings, "webhook_allowed_hosts", ["127.0.0.1"])
    monkeypatch.setattr(settings, "webhook_retry_schedule_seconds", [0.05, 0.05, 0.05])
    monkeypatch.setattr(settings, "webhook_retry_jitter", 0.0)
    monkeypatch.setattr(settings, "webhook_total_timeout_seconds", 3.0)
    monkeypatch.setattr(settings, "webhook_stale_seconds", 0.0)


# --- helpers ----------------------------------------------------------------------------------------


def new_key(client, role: str = "citizen_app", department: str | None = None, name: str = "caller") -> str:
    return in_app(client, lambda s: api_keys.create(s, name=name, role=role, department_code=department)).key


def subscribe(client, key: str, url: str, **fields) -> dict:
    response = client.post("/v1/webhooks/subscriptions", json={"url": url, **fields}, headers={"X-API-Key": key})
    assert response.status_code == 201, response.text
    return response.json()


def submit(client, key: str, **fields) -> dict:
    response = client.post("/v1/reports", json=report_body(**fields), headers={"X-API-Key": key})
    assert response.status_code == 201, response.text
    return response.json()


def deliver(client) -> None:
    """Let commits finish handing off to Redis, then run a real worker until the queue is empty."""
    client.portal.call(client.app.state.handoff.drain)
    run_worker(client)


def staff_does(client, tracking_code: str, *events: tuple) -> None:
    """Change the report through the lifecycle as the staff API does: a move (with `status`) or a note."""

    async def work(session):
        report = (await session.exec(select(Report).where(Report.tracking_code == tracking_code))).one()
        for code, kwargs in events:
            if "status" in kwargs:
                await lifecycle.change(session, report, via=frozenset(Via), code=EventCode(code), **kwargs)
            else:
                await lifecycle.note(session, report, EventCode(code), **{"public": True, **kwargs})

    in_app(client, work)


def webhook_events(client, subscription_id: str) -> list[WebhookEvent]:
    async def load(session):
        rows = await session.exec(
            select(WebhookEvent).where(WebhookEvent.subscription_id == UUID(subscription_id)).order_by(WebhookEvent.id)
        )
        return list(rows.all())

    return in_app(client, load)


def verified(request: Received, secret: str) -> dict:
    return Webhook(secret).verify(request.body, request.headers)


# --- the promises -----------------------------------------------------------------------------------


def test_report_lifecycle_arrives_signed_and_in_order(client, api_key, receiver):
    admin = new_key(client, "admin")
    subscription = subscribe(client, admin, receiver.url)
    created = submit(client, api_key, description=STREET_LIGHT, **REPORTER)
    deliver(client)
    staff_does(
        client,
        created["tracking_code"],
        ("status_changed", {"status": "in_progress", "actor": "staff:an"}),
        ("internal_note", {"message": "Gọi chị Mai 0903123456 để hỏi thêm", "public": False}),
        ("public_reply", {"message": "Đội chiếu sáng sẽ thay bóng đèn trong hôm nay."}),
        ("status_changed", {"status": "resolved"}),
    )
    deliver(client)

    assert receiver.types() == [
        "report.created",
        "report.classified",
        "report.status_changed",
        "report.assigned",
        "report.status_changed",
        "report.commented",
        "report.status_changed",
        "report.resolved",
    ]
    for request in receiver.requests:
        payload = verified(request, subscription["secret"])
        assert request.headers["webhook-id"] == payload["id"]
        assert payload["id"].startswith("evt_")
        assert payload["data"]["tracking_code"] == created["tracking_code"]
        assert payload["data"]["url"] == f"http://testserver/v1/reports/{created['tracking_code']}"
    assigned = receiver.requests[3].payload["data"]
    assert assigned["status"] == "assigned"
    assert assigned["category"] == {
        "code": "street_lighting",
        "name_vi": assigned["category"]["name_vi"],
        "name_en": assigned["category"]["name_en"],
    }
    assert assigned["department"]["code"] == "chieu-sang" and assigned["department"]["name_vi"]
    assert assigned["due_at"] and assigned["priority"] == "normal"
    routed = receiver.requests[2].payload["data"]
    assert (routed["previous_status"], routed["status"]) == ("received", "assigned")
    changed = receiver.requests[4].payload["data"]
    assert (changed["previous_status"], changed["status"]) == ("assigned", "in_progress")
    assert receiver.requests[5].payload["data"]["comment"] == "Đội chiếu sáng sẽ thay bóng đèn trong hôm nay."
    # Nothing personal, nothing internal, in any body.
    everything = b"".join(request.body for request in receiver.requests).decode()
    for secret_text in (*REPORTER.values(), "Gọi chị Mai", "reporter"):
        assert secret_text not in everything


def test_failed_delivery_is_retried_and_later_events_wait_for_it(client, api_key, receiver):
    admin = new_key(client, "admin")
    subscription = subscribe(client, admin, receiver.url)
    receiver.answer(500, body=b"database is down")
    submit(client, api_key, description=STREET_LIGHT)
    deliver(client)

    assert receiver.types() == [
        "report.created",
        "report.created",
        "report.classified",
        "report.status_changed",
        "report.assigned",
    ]
    assert len({request.headers["webhook-id"] for request in receiver.requests[:2]}) == 1
    events = webhook_events(client, subscription["id"])
    assert [(event.type, event.status, event.attempts) for event in events] == [
        ("report.created", "delivered", 2),
        ("report.classified", "delivered", 1),
        ("report.status_changed", "delivered", 1),
        ("report.assigned", "delivered", 1),
    ]


def test_client_error_gives_the_event_up_and_the_next_one_goes(client, api_key, receiver):
    admin = new_key(client, "admin")
    subscription = subscribe(client, admin, receiver.url)
    receiver.answer(400, body=b"unknown field")
    submit(client, api_key, description=STREET_LIGHT)
    deliver(client)

    assert receiver.types() == ["report.created", "report.classified", "report.status_changed", "report.assigned"]
    statuses = [(event.type, event.status) for event in webhook_events(client, subscription["id"])]
    assert statuses == [
        ("report.created", "failed"),
        ("report.classified", "delivered"),
        ("report.status_changed", "delivered"),
        ("report.assigned", "delivered"),
    ]


def test_gone_endpoint_is_not_retried_and_the_subscription_is_disabled(client, api_key, receiver):
    admin = new_key(client, "admin")
    subscription = subscribe(client, admin, receiver.url)
    receiver.answer(410)
    submit(client, api_key, description=STREET_LIGHT)
    deliver(client)

    assert receiver.types() == ["report.created"]
    shown = client.get(f"/v1/webhooks/subscriptions/{subscription['id']}", headers={"X-API-Key": admin}).json()
    assert shown["active"] is False
    assert "410" in shown["disabled_reason"]
    assert shown["disabled_at"] is not None


def test_redirects_are_not_followed(client, api_key, receiver):
    admin = new_key(client, "admin")
    subscription = subscribe(client, admin, receiver.url, event_types=["report.created"])
    receiver.answer(307, headers={"Location": receiver.url + "/elsewhere"})
    submit(client, api_key, description=STREET_LIGHT)
    deliver(client)

    assert len(receiver.requests) == 1
    assert [(event.status, event.last_error) for event in webhook_events(client, subscription["id"])] == [
        ("failed", "HTTP 307")
    ]


def test_retry_after_is_honoured(client, api_key, receiver):
    admin = new_key(client, "admin")
    subscribe(client, admin, receiver.url, event_types=["report.created"])
    receiver.answer(429, headers={"Retry-After": "1"})
    submit(client, api_key, description=STREET_LIGHT)
    deliver(client)

    assert receiver.types() == ["report.created", "report.created"]
    assert receiver.requests[1].at - receiver.requests[0].at >= 0.95


def test_slow_receiver_times_out_and_is_retried(client, api_key, receiver, settings, monkeypatch):
    monkeypatch.setattr(settings, "webhook_read_timeout_seconds", 0.3)
    admin = new_key(client, "admin")
    subscription = subscribe(client, admin, receiver.url, event_types=["report.created"])
    receiver.answer(200, delay=1.0)
    submit(client, api_key, description=STREET_LIGHT)
    deliver(client)

    log = client.get(f"/v1/webhooks/subscriptions/{subscription['id']}/deliveries", headers={"X-API-Key": admin}).json()
    assert [(item["succeeded"], item["error"]) for item in reversed(log["items"])] == [(False, "timeout"), (True, None)]


def test_secret_rotation_signs_with_both_secrets_during_the_overlap(client, api_key, receiver):
    admin = new_key(client, "admin")
    subscription = subscribe(client, admin, receiver.url, event_types=["report.created"])
    headers = {"X-API-Key": admin}
    rotated = client.post(f"/v1/webhooks/subscriptions/{subscription['id']}/rotate-secret", headers=headers).json()
    assert rotated["secret"].startswith("whsec_") and rotated["secret"] != subscription["secret"]
    submit(client, api_key, description=STREET_LIGHT)
    deliver(client)

    during = receiver.requests[-1]
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert verified(during, subscription["secret"]) == verified(during, rotated["secret"])

    # Without overlap the old secret stops signing at once.
    again = client.post(
        f"/v1/webhooks/subscriptions/{subscription['id']}/rotate-secret", json={"overlap_seconds": 0}, headers=headers
    ).json()
    submit(client, api_key, description=SIDEWALK)
    deliver(client)
    after = receiver.requests[-1]
    verified(after, again["secret"])
    for old in (subscription["secret"], rotated["secret"]):
        with pytest.raises(WebhookVerificationError):
            verified(after, old)


def test_app_hears_only_about_reports_it_submitted(client, receiver):
    other_receiver = Receiver()
    try:
        app_a, app_b = new_key(client, name="app a"), new_key(client, name="app b")
        subscribe(client, app_a, receiver.url, event_types=["report.created"])
        subscribe(client, app_b, other_receiver.url, event_types=["report.created"])
        mine = submit(client, app_a, description=STREET_LIGHT)
        theirs = submit(client, app_b, description=SIDEWALK)
        deliver(client)
        assert [r.payload["data"]["tracking_code"] for r in receiver.requests] == [mine["tracking_code"]]
        assert [r.payload["data"]["tracking_code"] for r in other_receiver.requests] == [theirs["tracking_code"]]
        # Nor may one app read the other's subscriptions.
        assert (
            client.get("/v1/webhooks/subscriptions", headers={"X-API-Key": app_a}).json()["items"][0]["scope"]
            == "submitter"
        )
        assert len(client.get("/v1/webhooks/subscriptions", headers={"X-API-Key": app_b}).json()["items"]) == 1
    finally:
        other_receiver.close()


def test_revoked_key_hears_nothing_more(client, api_key, receiver):
    admin, kept = new_key(client, "admin", name="old admin"), new_key(client, "admin", name="admin")
    subscribe(client, admin, receiver.url, event_types=["report.created"])
    subscription = subscribe(client, kept, receiver.url, event_types=["report.created"])
    in_app(client, lambda s: api_keys.revoke(s, prefix=admin.split("_")[1]))
    submit(client, api_key, description=STREET_LIGHT)
    deliver(client)
    assert len(receiver.requests) == 1
    assert [event.subscription_id for event in in_app(client, lambda s: s.exec(select(WebhookEvent))).all()] == [
        UUID(subscription["id"])
    ]


def test_department_system_hears_only_about_its_department(client, api_key, receiver):
    lighting = new_key(client, "department_system", "chieu-sang")
    subscription = subscribe(client, lighting, receiver.url)
    assert subscription["scope"] == "department"
    lamp = submit(client, api_key, description=STREET_LIGHT)
    submit(client, api_key, description=SIDEWALK, service_code="urban_order")  # goes to ubnd-phuong-ben-thanh
    deliver(client)

    # Not report.created nor .classified: the report belonged to no department yet.
    assert receiver.types() == ["report.status_changed", "report.assigned"]
    assert {r.payload["data"]["tracking_code"] for r in receiver.requests} == {lamp["tracking_code"]}
    assert {r.payload["data"]["department"]["code"] for r in receiver.requests if r.payload["data"]["department"]} == {
        "chieu-sang"
    }

    other = client.post(
        "/v1/webhooks/subscriptions",
        json={"url": receiver.url, "filters": {"department_code": "ubnd-phuong-ben-thanh"}},
        headers={"X-API-Key": lighting},
    )
    assert other.status_code == 403
    assert other.json()["code"] == "webhook_scope_forbidden"


def test_a_staff_members_subscriptions_stop_once_they_may_no_longer_see_what_they_reach(client, api_key):
    """Someone moved to another department, demoted, or gone from the city's service must not go on
    hearing about tickets through a webhook they set up before."""
    password = "a long staff password"
    staff = {
        "moved": ("officer", "chieu-sang"),
        "demoted": ("admin", None),
        "gone": ("admin", None),
        "staying": ("officer", "chieu-sang"),
    }
    receivers = {name: Receiver() for name in staff}
    try:
        for name, (role, department) in staff.items():
            in_app(
                client,
                lambda s, name=name, role=role, department=department: users.create(
                    s, username=name, password=password, role=role, department_code=department
                ),
            )
            token = client.post("/v1/auth/token", data={"username": name, "password": password}).json()
            answer = client.post(
                "/v1/webhooks/subscriptions",
                json={"url": receivers[name].url, "event_types": ["report.assigned"]},
                headers={"Authorization": f"Bearer {token['access_token']}"},
            )
            assert answer.status_code == 201, answer.text
        submit(client, api_key, description=STREET_LIGHT)  # goes to chieu-sang
        deliver(client)
        assert {name: len(receiver.requests) for name, receiver in receivers.items()} == dict.fromkeys(staff, 1)

        in_app(client, lambda s: users.change_account(s, "moved", department_code="thoat-nuoc"))
        in_app(client, lambda s: users.change_account(s, "demoted", role="dispatcher"))
        in_app(client, lambda s: users.change_account(s, "gone", active=False))
        # Another lamp, 150 m away (not a duplicate of the first).
        lamp = submit(client, api_key, description=STREET_LIGHT, lat=10.7735, lon=106.6990)
        deliver(client)

        assert {name: len(receiver.requests) for name, receiver in receivers.items()} == {
            "moved": 1,
            "demoted": 1,
            "gone": 1,
            "staying": 2,
        }
        assert receivers["staying"].requests[-1].payload["data"]["tracking_code"] == lamp["tracking_code"]
    finally:
        for receiver in receivers.values():
            receiver.close()


def test_filters_narrow_what_an_admin_hears(client, api_key, receiver):
    admin = new_key(client, "admin")
    subscribe(client, admin, receiver.url, event_types=["report.assigned"], filters={"service_code": "urban_order"})
    submit(client, api_key, description=STREET_LIGHT)
    sidewalk = submit(client, api_key, description=SIDEWALK, service_code="urban_order")
    deliver(client)
    assert [(r.payload["type"], r.payload["data"]["tracking_code"]) for r in receiver.requests] == [
        ("report.assigned", sidewalk["tracking_code"])
    ]


def test_private_and_loopback_targets_are_refused_unless_allowed(client, receiver, settings, monkeypatch):
    admin = new_key(client, "admin")
    monkeypatch.setattr(settings, "webhook_allowed_hosts", [])
    for url in (
        receiver.url,
        "http://localhost:9/x",
        "http://169.254.169.254/latest/meta-data",
        "http://10.1.2.3/x",
        "http://[::1]/x",
    ):
        response = client.post("/v1/webhooks/subscriptions", json={"url": url}, headers={"X-API-Key": admin})
        assert response.status_code == 422, url
        assert response.json()["code"] == "webhook_url_not_allowed"
    for url in ("ftp://example.com/x", "/relative", "http://user:pw@example.com/x"):
        response = client.post("/v1/webhooks/subscriptions", json={"url": url}, headers={"X-API-Key": admin})
        assert response.json()["code"] == "webhook_url_invalid", url

    monkeypatch.setattr(settings, "environment", "production")
    response = client.post(
        "/v1/webhooks/subscriptions", json={"url": "http://example.com/x"}, headers={"X-API-Key": admin}
    )
    assert response.json()["code"] == "webhook_url_https_required"


def test_target_that_became_private_is_refused_at_delivery(client, api_key, receiver, settings, monkeypatch):
    admin = new_key(client, "admin")
    subscription = subscribe(client, admin, receiver.url, event_types=["report.created"])
    monkeypatch.setattr(settings, "webhook_allowed_hosts", [])  # as if DNS now pointed inside
    submit(client, api_key, description=STREET_LIGHT)
    deliver(client)

    assert receiver.requests == []
    log = client.get(f"/v1/webhooks/subscriptions/{subscription['id']}/deliveries", headers={"X-API-Key": admin}).json()
    assert len(log["items"]) == 1 and log["items"][0]["error"].startswith("refused")
    assert [event.status for event in webhook_events(client, subscription["id"])] == ["failed"]


# IPv6 forms that carry a private IPv4 address inside them, or reach inside on their own.
INTERNAL_IPV6_TARGETS = (
    "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254 (cloud metadata)
    "64:ff9b:1::a00:1",  # NAT64 for local use
    "2002:a00:1::1",  # 6to4 of 10.0.0.1
    "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
    "::7f00:1",  # IPv4-compatible 127.0.0.1
    "::ffff:0:c0a8:101",  # IPv4-translated 192.168.1.1
    "::ffff:7f00:1",  # IPv4-mapped 127.0.0.1
    "fec0::1",  # site-local
)


def test_ipv6_forms_of_internal_addresses_are_refused_at_registration(client, settings, monkeypatch):
    admin = new_key(client, "admin")
    monkeypatch.setattr(settings, "webhook_allowed_hosts", [])
    for address in INTERNAL_IPV6_TARGETS:
        response = client.post(
            "/v1/webhooks/subscriptions", json={"url": f"http://[{address}]:8080/hook"}, headers={"X-API-Key": admin}
        )
        assert response.status_code == 422, address
        assert response.json()["code"] == "webhook_url_not_allowed", address
    # The same forms around a public address stay usable (a NAT64 network reaches the internet so).
    for address in ("64:ff9b::808:808", "2002:808:808::1"):
        response = client.post(
            "/v1/webhooks/subscriptions", json={"url": f"http://[{address}]/hook"}, headers={"X-API-Key": admin}
        )
        assert response.status_code == 201, (address, response.text)


@pytest.mark.parametrize("address", ["64:ff9b::7f00:1", "2002:7f00:1::1", "::ffff:0:7f00:1"])
def test_ipv6_form_of_an_internal_address_is_refused_before_each_attempt(
    client, api_key, settings, monkeypatch, address
):
    admin = new_key(client, "admin")
    monkeypatch.setattr(settings, "webhook_allowed_hosts", [address])  # registered while the operator allowed it
    subscription = subscribe(client, admin, f"http://[{address}]:9/hook", event_types=["report.created"])
    monkeypatch.setattr(settings, "webhook_allowed_hosts", [])
    submit(client, api_key, description=STREET_LIGHT)
    deliver(client)

    log = client.get(f"/v1/webhooks/subscriptions/{subscription['id']}/deliveries", headers={"X-API-Key": admin}).json()
    assert [item["error"].split(":")[0] for item in log["items"]] == ["refused"]
    assert [event.status for event in webhook_events(client, subscription["id"])] == ["failed"]


def test_sustained_failure_disables_the_subscription_and_the_owner_can_re_enable_it(
    client, api_key, receiver, settings, monkeypatch
):
    monkeypatch.setattr(settings, "webhook_disable_after_failures", 3)
    monkeypatch.setattr(settings, "webhook_retry_schedule_seconds", [0.05] * 10)
    app = new_key(client)
    subscription = subscribe(client, app, receiver.url, event_types=["report.created"])
    for _ in range(10):
        receiver.answer(503)
    submit(client, app, description=STREET_LIGHT)
    deliver(client)

    headers = {"X-API-Key": app}
    shown = client.get(f"/v1/webhooks/subscriptions/{subscription['id']}", headers=headers).json()
    assert shown["active"] is False
    assert shown["disabled_reason"] == "3 deliveries in a row failed (last: HTTP 503)."
    attempts_before = len(receiver.requests)
    assert attempts_before == 3
    # Nothing more goes out while disabled...
    submit(client, app, description=SIDEWALK)
    deliver(client)
    assert len(receiver.requests) == attempts_before

    # ...and re-enabling resumes with the event that was waiting.
    receiver.script.clear()
    enabled = client.patch(
        f"/v1/webhooks/subscriptions/{subscription['id']}", json={"active": True}, headers=headers
    ).json()
    assert (enabled["active"], enabled["disabled_reason"], enabled["consecutive_failures"]) == (True, None, 0)
    deliver(client)
    assert receiver.requests[-1].headers["webhook-id"] == receiver.requests[0].headers["webhook-id"]
    assert webhook_events(client, subscription["id"])[0].status == "delivered"


def test_delivery_log_lists_every_attempt_page_by_page(client, api_key, receiver):
    admin = new_key(client, "admin")
    subscription = subscribe(client, admin, receiver.url, event_types=["report.created"])
    receiver.answer(500, body=b"x" * 5000)
    submit(client, api_key, description=STREET_LIGHT)
    deliver(client)

    url = f"/v1/webhooks/subscriptions/{subscription['id']}/deliveries"
    first = client.get(url, params={"limit": 1}, headers={"X-API-Key": admin}).json()
    second = client.get(url, params={"limit": 1, "cursor": first["next_cursor"]}, headers={"X-API-Key": admin}).json()
    assert second["next_cursor"] is None
    newest, oldest = first["items"][0], second["items"][0]
    assert (oldest["attempt"], oldest["status_code"], oldest["succeeded"]) == (1, 500, False)
    assert len(oldest["response_excerpt"]) == 1024  # the first 1 KB, not the 5 KB sent
    assert (newest["attempt"], newest["status_code"], newest["succeeded"]) == (2, 200, True)
    assert newest["event_id"] == oldest["event_id"] and newest["event_type"] == "report.created"
    assert newest["latency_ms"] >= 0 and newest["attempted_at"]
    # Another caller cannot read it.
    stranger = new_key(client, name="stranger")
    assert client.get(url, headers={"X-API-Key": stranger}).status_code == 404


def test_redeliver_one_event_or_every_failed_one_since_a_time(client, api_key, receiver):
    admin = new_key(client, "admin")
    subscription = subscribe(client, admin, receiver.url, event_types=["report.created"])
    headers, base = {"X-API-Key": admin}, f"/v1/webhooks/subscriptions/{subscription['id']}"
    before = utcnow() - timedelta(seconds=1)
    receiver.answer(404)
    submit(client, api_key, description=STREET_LIGHT)
    submit(client, api_key, description=SIDEWALK)
    deliver(client)
    failed = client.get(f"{base}/events", params={"status": "failed"}, headers=headers).json()["items"]
    assert len(failed) == 1

    response = client.post(f"{base}/redeliver", params={"since": before.isoformat()}, headers=headers)
    assert (response.status_code, response.json()) == (202, {"scheduled": 1})
    deliver(client)
    assert receiver.requests[-1].headers["webhook-id"] == failed[0]["event_id"]

    delivered = client.get(f"{base}/events", params={"status": "delivered"}, headers=headers).json()["items"]
    assert len(delivered) == 2
    response = client.post(f"{base}/events/{delivered[0]['event_id']}/redeliver", headers=headers)
    assert response.status_code == 202
    deliver(client)
    assert receiver.requests[-1].headers["webhook-id"] == delivered[0]["event_id"]
    assert client.post(f"{base}/events/evt_nope/redeliver", headers=headers).status_code == 404


def test_lost_hand_off_is_recovered_by_the_sweep(client, api_key, receiver, settings):
    from workers.webhooks import sweep_webhooks

    admin = new_key(client, "admin")
    subscription = subscribe(client, admin, receiver.url, event_types=["report.created"])
    created = submit(client, api_key, description=STREET_LIGHT)
    client.portal.call(client.app.state.handoff.drain)
    # Redis loses what was queued (this test's queue and the stream's job).
    arq = client.app.state.arq
    job_key = "arq:job:" + outbox.deliver_job_id(subscription["id"], created["id"])
    assert client.portal.call(arq.exists, job_key) == 1
    client.portal.call(arq.delete, settings.webhook_queue_name, job_key)
    run_worker(client)
    assert receiver.requests == []

    assert client.portal.call(sweep_webhooks, worker_context(client)) == 1
    run_worker(client)
    assert receiver.types() == ["report.created"]


def test_deliveries_wait_in_a_queue_of_their_own_counted_by_the_metrics(client, api_key, receiver):
    from tests.test_ioc import sample

    admin = new_key(client, "admin")
    subscribe(client, admin, receiver.url, event_types=["report.created"])
    submit(client, api_key, description=STREET_LIGHT)
    client.portal.call(client.app.state.handoff.drain)
    text = client.get("/metrics").text
    assert sample(text, "intake_queue_depth") == 1  # the report's processing
    assert sample(text, "intake_webhook_queue_depth") == 1  # its report.created, apart from it
    run_worker(client)
    text = client.get("/metrics").text
    assert (sample(text, "intake_queue_depth"), sample(text, "intake_webhook_queue_depth")) == (0, 0)
    assert receiver.types() == ["report.created"]


def test_delivery_queued_with_the_reports_before_an_upgrade_is_still_delivered(client, api_key, receiver, settings):
    admin = new_key(client, "admin")
    subscription = subscribe(client, admin, receiver.url, event_types=["report.created"])
    created = submit(client, api_key, description=STREET_LIGHT)
    client.portal.call(client.app.state.handoff.drain)
    # As an earlier release queued it: on the reports' queue, where deliveries no longer go.
    arq = client.app.state.arq
    job_id = outbox.deliver_job_id(subscription["id"], created["id"])
    client.portal.call(arq.delete, settings.webhook_queue_name, "arq:job:" + job_id)
    args = (outbox.DELIVER_WEBHOOKS, subscription["id"], created["id"])
    assert client.portal.call(lambda: arq.enqueue_job(*args, _job_id=job_id, _queue_name=settings.queue_name))
    run_worker(client)
    assert receiver.types() == ["report.created"]
    assert [event.status for event in webhook_events(client, subscription["id"])] == ["delivered"]


def test_event_is_written_with_its_change_and_rolled_back_with_it(client, api_key, receiver):
    admin = new_key(client, "admin")
    subscription = subscribe(client, admin, receiver.url)
    created = submit(client, api_key, description=STREET_LIGHT)
    # In the outbox as soon as the report is committed, before any worker ran.
    assert [event.type for event in webhook_events(client, subscription["id"])] == ["report.created"]

    async def change_that_fails(session):
        report = (await session.exec(select(Report).where(Report.tracking_code == created["tracking_code"]))).one()
        await lifecycle.change(session, report, via=Via.PIPELINE, status="assigned")
        await session.flush()
        raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        in_app(client, change_that_fails)
    assert [event.type for event in webhook_events(client, subscription["id"])] == ["report.created"]


def test_no_subscription_no_outbox_rows(client, api_key):
    submit(client, api_key, description=STREET_LIGHT)
    run_worker(client)
    assert in_app(client, lambda s: s.exec(select(WebhookEvent))).all() == []


def test_subscription_crud_and_who_may_subscribe(client, receiver):
    admin = new_key(client, "admin")
    headers = {"X-API-Key": admin}
    created = subscribe(client, admin, receiver.url, description="city dashboard")
    assert created["secret"].startswith("whsec_") and created["scope"] == "all"
    assert len(created["event_types"]) == 16
    shown = client.get(f"/v1/webhooks/subscriptions/{created['id']}", headers=headers).json()
    assert "secret" not in shown
    changed = client.patch(
        f"/v1/webhooks/subscriptions/{created['id']}",
        json={"event_types": ["report.resolved"], "filters": {"jurisdiction_code": "BEN-THANH"}},
        headers=headers,
    ).json()
    assert changed["event_types"] == ["report.resolved"]
    assert changed["filters"]["jurisdiction_code"] == "BEN-THANH"
    bad = client.post(
        "/v1/webhooks/subscriptions", json={"url": receiver.url, "event_types": ["report.deleted"]}, headers=headers
    )
    assert bad.status_code == 422
    unknown = client.post(
        "/v1/webhooks/subscriptions", json={"url": receiver.url, "filters": {"service_code": "nope"}}, headers=headers
    )
    assert unknown.json()["code"] == "unknown_service_code"
    assert client.delete(f"/v1/webhooks/subscriptions/{created['id']}", headers=headers).status_code == 204
    assert client.get(f"/v1/webhooks/subscriptions/{created['id']}", headers=headers).status_code == 404

    viewer_key = new_key(client, "ioc_viewer")
    assert (
        client.post(
            "/v1/webhooks/subscriptions", json={"url": receiver.url}, headers={"X-API-Key": viewer_key}
        ).status_code
        == 403
    )
    assert client.get("/v1/webhooks/subscriptions").status_code == 401


def test_jurisdiction_filter_takes_a_ward_or_its_city(client, api_key, receiver):
    admin = new_key(client, "admin")
    for code in ("BEN-THANH", "HCM", "XUAN-HOA"):
        subscribe(client, admin, receiver.url, event_types=["report.assigned"], filters={"jurisdiction_code": code})
    submit(client, api_key, description=STREET_LIGHT)  # in Bến Thành ward, directly under the city
    deliver(client)
    assert receiver.types() == ["report.assigned", "report.assigned"]
    assert {r.payload["data"]["jurisdiction_code"] for r in receiver.requests} == {"BEN-THANH"}
    unknown = client.post(
        "/v1/webhooks/subscriptions",
        json={"url": receiver.url, "filters": {"jurisdiction_code": "Q99"}},
        headers={"X-API-Key": admin},
    )
    assert unknown.json()["code"] == "unknown_jurisdiction"


# --- pure rules -------------------------------------------------------------------------------------


def _event(type_: str, **fields) -> ReportEvent:
    return ReportEvent(report_id=UUID(int=1), type=type_, **fields)


def test_every_webhook_type_is_documented_and_subscribable():
    from service.lifecycle.events import WebhookType
    from service.webhooks.schemas import EventType

    assert set(EventType.__args__) == set(outbox.EVENT_TYPES) == {str(type_) for type_ in WebhookType}


def test_transfer_reaches_both_departments():
    item = Outgoing(
        "report.transferred",
        _event("transferred"),
        {"department_code": "ubnd-quan-1", "api_client_id": None},
        {"from_department": "chieu-sang", "to_department": "ubnd-quan-1"},
    )

    def dept(code):
        return SubscriptionView(
            UUID(int=2), frozenset({"report.transferred"}), "department", code, None, None, None, None
        )

    assert matches(dept("chieu-sang"), item, set()) and matches(dept("ubnd-quan-1"), item, set())
    assert not matches(dept("cap-nuoc"), item, set())


def test_failing_for_the_configured_time_disables(settings):
    now = utcnow()
    subscription = WebhookSubscription(
        url="https://x.example",
        owner_kind="api_client",
        owner_id=UUID(int=3),
        scope="all",
        secret="whsec_x",
        consecutive_failures=40,
    )
    failure = delivery.Outcome(status_code=502)
    subscription.failing_since = now - timedelta(seconds=settings.webhook_disable_after_seconds - 60)
    assert delivery.disable_reason(subscription, failure, now, settings) is None
    subscription.failing_since = now - timedelta(seconds=settings.webhook_disable_after_seconds)
    assert "failed since" in delivery.disable_reason(subscription, failure, now, settings)
    assert "410" in delivery.disable_reason(subscription, delivery.Outcome(status_code=410), now, settings)


def test_retry_schedule_backs_off_with_jitter_and_respects_retry_after(settings):
    schedule = settings.webhook_retry_schedule_seconds
    failure = delivery.Outcome(status_code=503)
    delays = [delivery.retry_delay(n, failure, settings) for n in range(1, len(schedule) + 2)]
    assert delays[-1] is None  # given up after the last retry
    for delay, base in zip(delays, schedule):
        assert base * (1 - settings.webhook_retry_jitter) <= delay <= base * (1 + settings.webhook_retry_jitter)
    assert delivery.retry_delay(1, delivery.Outcome(status_code=429, retry_after=120), settings) >= 120
    assert delivery.retry_delay(1, delivery.Outcome(status_code=404), settings) is None
    assert delivery.retry_delay(1, delivery.Outcome(error="timeout"), settings) is not None


# --- URLs that can never be reached, and failures nobody foresaw ---------------------------------------

UNUSABLE_URLS = (
    "http://1.1.1.1:99999/",  # no such port
    "http://127.0.0.1:0/",
    "http://127.0.0.1:-1/",
    "http://[::1]:70000/",
    "http://127.0.0.1:8742/a b",  # a space
    "http://127.0.0.1:8742/?q=a\u00a0b",  # a no-break space
    "http://127.0.0.1:8742/a\tb",
    "http://127.0.0.1:8742/\u200bhook",  # an invisible zero-width space
    "http://exa mple.org/hook",
    "http://a%20b.example/hook",
    "http://xn--/",  # punycode that decodes to nothing
    "http://xn--a/",
    "http://xn--zz.com/",
    "http://xn--ls8h.la/",  # an emoji name: IDNA 2008 has no such label
)


def test_url_with_an_impossible_port_a_space_or_broken_punycode_is_refused_at_registration_and_on_patch(client, receiver):
    admin = new_key(client, "admin")
    headers = {"X-API-Key": admin}
    subscription = subscribe(client, admin, receiver.url)
    for url in UNUSABLE_URLS:
        created = client.post("/v1/webhooks/subscriptions", json={"url": url}, headers=headers)
        assert (created.status_code, created.json()["code"]) == (422, "webhook_url_invalid"), url
        changed = client.patch(f"/v1/webhooks/subscriptions/{subscription['id']}", json={"url": url}, headers=headers)
        assert (changed.status_code, changed.json()["code"]) == (422, "webhook_url_invalid"), url
    assert [item["url"] for item in client.get("/v1/webhooks/subscriptions", headers=headers).json()["items"]] == [
        receiver.url
    ]
    # The edges of what is fine: the highest port, an encoded space, a name with a non-ASCII letter.
    for url in ("http://127.0.0.1:65535/hook", "http://127.0.0.1:1/a%20b", "https://bücher.example/hook"):
        changed = client.patch(f"/v1/webhooks/subscriptions/{subscription['id']}", json={"url": url}, headers=headers)
        assert changed.status_code in (200, 422), url
        assert changed.json().get("code") in (None, "webhook_url_unresolvable"), (url, changed.text)


def _add_subscription_as_before(client, url: str) -> tuple[UUID, str]:
    """An admin's subscription stored before its URL was checked as it is now (straight into the table)."""

    async def add(session):
        admin = await api_keys.create(session, name="admin", role="admin")
        subscription = WebhookSubscription(
            url=url,
            event_types=list(outbox.EVENT_TYPES),
            owner_kind="api_client",
            owner_id=admin.client.id,
            scope="all",
            secret="whsec_" + "A" * 43,
        )
        session.add(subscription)
        outbox.subscriptions_changed(session)
        await session.flush()
        return subscription.id, admin.key

    return in_app(client, add)


@pytest.mark.parametrize("url", ["http://1.1.1.1:99999/", "http://127.0.0.1:0/", "http://127.0.0.1:8742/a b"])
def test_stored_unusable_url_fails_each_event_in_the_log_and_is_disabled_in_the_end(
    client, api_key, settings, monkeypatch, url
):
    monkeypatch.setattr(settings, "webhook_disable_after_failures", 3)
    subscription_id, admin = _add_subscription_as_before(client, url)
    submit(client, api_key, description=STREET_LIGHT)
    deliver(client)  # returns: no job is left re-polling the stream

    base = f"/v1/webhooks/subscriptions/{subscription_id}"
    log = client.get(f"{base}/deliveries", headers={"X-API-Key": admin}).json()["items"]
    assert len(log) == 3 and all(not item["succeeded"] and item["error"] for item in log)
    shown = client.get(base, headers={"X-API-Key": admin}).json()
    assert (shown["active"], shown["consecutive_failures"]) == (False, 3)
    assert shown["disabled_reason"].startswith("3 deliveries in a row failed")
    # Nothing waits forever: what was tried is given up, the rest waits for the owner to fix the URL.
    statuses = [event.status for event in webhook_events(client, str(subscription_id))]
    assert statuses[:3] == ["failed"] * 3 and "pending" not in statuses[:3]
    assert client.portal.call(client.app.state.arq.zcard, settings.webhook_queue_name) == 0


def test_unreadable_retry_after_is_a_retried_failure_not_a_crashed_job(client, api_key, receiver):
    admin = new_key(client, "admin")
    subscription = subscribe(client, admin, receiver.url, event_types=["report.created"])
    receiver.answer(503, headers={"Retry-After": "Mon, 01 Jan 99999999999 00:00:00 GMT"})
    submit(client, api_key, description=STREET_LIGHT)
    deliver(client)

    log = client.get(f"/v1/webhooks/subscriptions/{subscription['id']}/deliveries", headers={"X-API-Key": admin})
    assert [(item["status_code"], item["succeeded"]) for item in reversed(log.json()["items"])] == [
        (503, False),
        (200, True),
    ]
    assert [event.status for event in webhook_events(client, subscription["id"])] == ["delivered"]


# --- changes racing a delete ----------------------------------------------------------------------------


def at_once(client, *requests: tuple[str, str, dict], stagger: float = 0.0) -> list:
    """The requests sent together on the app's own event loop, each with its own database connection;
    the last one `stagger` seconds after the others."""

    async def burst():
        transport = httpx.ASGITransport(app=client.app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:

            async def send(method: str, path: str, kwargs: dict, pause: float):
                await asyncio.sleep(pause)
                return await http.request(method, path, **kwargs)

            pauses = [0.0] * (len(requests) - 1) + [stagger]
            return await asyncio.gather(
                *(send(*request, pause) for request, pause in zip(requests, pauses, strict=True))
            )

    return client.portal.call(burst)


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("PATCH", "", {"event_types": ["report.resolved"], "active": False}),
        ("POST", "/rotate-secret", {"overlap_seconds": 60}),
        ("DELETE", "", None),
    ],
    ids=["patch", "rotate-secret", "delete"],
)
def test_change_racing_a_delete_of_the_subscription_is_done_first_or_finds_nothing(
    client, receiver, method, suffix, body
):
    admin = new_key(client, "admin")
    headers = {"X-API-Key": admin}
    draw = random.Random(11)
    for _ in range(60):
        path = f"/v1/webhooks/subscriptions/{subscribe(client, admin, receiver.url)['id']}"
        deleted, change = at_once(
            client,
            ("DELETE", path, {"headers": headers}),
            (method, path + suffix, {"headers": headers, **({"json": body} if body else {})}),
            stagger=draw.uniform(0, 0.004),  # the DELETE commits at different moments of the change
        )
        if change.status_code == 404:
            assert change.json()["code"] == "webhook_subscription_not_found"
            # …then the delete went first, or (two deletes) this one was second.
            assert deleted.status_code == 204 if method != "DELETE" else deleted.status_code in (204, 404)
        else:
            assert change.status_code in (200, 204), change.text
            assert deleted.status_code == (204 if method != "DELETE" else 404), deleted.text
        assert client.get(path, headers=headers).status_code == 404
    assert client.get("/v1/webhooks/subscriptions", headers=headers).json()["items"] == []


def test_redelivery_racing_a_delete_of_the_subscription_is_done_first_or_finds_nothing(client, api_key, receiver):
    admin = new_key(client, "admin")
    headers = {"X-API-Key": admin}
    created = submit(client, api_key, description=STREET_LIGHT)
    for _ in range(20):
        subscription = subscribe(client, admin, receiver.url, event_types=["report.commented"])
        staff_does(client, created["tracking_code"], ("public_reply", {"message": "Đội chiếu sáng sẽ đến."}))
        [event] = webhook_events(client, subscription["id"])
        path = f"/v1/webhooks/subscriptions/{subscription['id']}"
        redelivered, everything, deleted = at_once(
            client,
            ("POST", f"{path}/events/{event.event_id}/redeliver", {"headers": headers}),
            ("POST", f"{path}/redeliver", {"headers": headers, "params": {"since": "2020-01-01T00:00:00Z"}}),
            ("DELETE", path, {"headers": headers}),
        )
        assert deleted.status_code == 204
        for answer in (redelivered, everything):
            assert answer.status_code in (202, 404), answer.text
            if answer.status_code == 404:
                assert answer.json()["code"] == "webhook_subscription_not_found"
        assert webhook_events(client, subscription["id"]) == []


def test_delivery_racing_a_delete_of_its_subscription_ends_quietly(client, api_key, receiver, settings):
    """Whenever the DELETE lands (before the lease, during the attempt, while it is recorded), the
    stream's run ends without an error and the subscription is gone with everything it had."""
    admin = new_key(client, "admin")
    headers = {"X-API-Key": admin}
    created = submit(client, api_key, description=STREET_LIGHT)
    draw = random.Random(7)

    async def race(subscription_id: str, pause: float):
        async def delete_later():
            await asyncio.sleep(pause)
            transport = httpx.ASGITransport(app=client.app, client=("127.0.0.1", 40000))
            async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
                return await http.delete(f"/v1/webhooks/subscriptions/{subscription_id}", headers=headers)

        async with delivery.build_http_client(settings) as http:
            run = delivery.run_stream(
                client.app.state.sessions,
                http,
                settings,
                UUID(subscription_id),
                UUID(created["id"]),
                holder="test",
                budget_seconds=5,
            )
            return await asyncio.gather(run, delete_later(), return_exceptions=True)

    for round_ in range(40):
        subscription = subscribe(client, admin, receiver.url, event_types=["report.commented"])
        staff_does(client, created["tracking_code"], ("public_reply", {"message": f"Lần {round_}"}))
        run, deleted = client.portal.call(race, subscription["id"], draw.uniform(0, 0.03))
        assert not isinstance(run, BaseException), repr(run)
        assert run.outcome in ("drained", "inactive"), run
        assert deleted.status_code == 204
        assert webhook_events(client, subscription["id"]) == []


def test_staff_comment_at_the_moment_a_subscription_is_deleted_is_saved(client, api_key, receiver):
    from tests.test_tickets import make_user

    admin = new_key(client, "admin")
    staff = make_user(client, "admin.staff", "admin")
    created = submit(client, api_key, description=STREET_LIGHT)
    kept = subscribe(client, admin, receiver.url, event_types=["report.commented"])
    for round_ in range(30):
        subscription = subscribe(client, admin, receiver.url, event_types=["report.commented"])
        comment, deleted = at_once(
            client,
            (
                "POST",
                f"/v1/tickets/{created['id']}/comments",
                {"headers": staff, "json": {"body": f"Đội chiếu sáng trả lời lần {round_}", "visibility": "public"}},
            ),
            ("DELETE", f"/v1/webhooks/subscriptions/{subscription['id']}", {"headers": {"X-API-Key": admin}}),
        )
        assert (comment.status_code, deleted.status_code) == (201, 204), (comment.text, deleted.text)
        assert webhook_events(client, subscription["id"]) == []
    # The other subscription heard every comment.
    assert len(webhook_events(client, kept["id"])) == 30
