"""Staff notifications: a department's officers, supervisors and system hear about their own tickets.

Real receivers on 127.0.0.1 (tests.test_webhooks.Receiver) get the signed events; the deadline sweep
is the worker's own cron job, called directly.
"""

from datetime import timedelta

import pytest
from sqlalchemy import update

from service.auth import users
from service.models import Report, StaffUser
from service.models.types import utcnow
from service.webhooks import outbox
from tests.conftest import in_app, worker_context
from tests.test_webhooks import (  # noqa: F401 - fast_webhooks: tiny retry delays, 127.0.0.1 allowed
    Receiver,
    deliver,
    fast_webhooks,
    new_key,
    submit,
    verified,
)

PASSWORD = "correct horse battery"
STREET_LIGHT = "Đèn đường trước chợ Bến Thành bị tắt ba đêm nay, tối om nguy hiểm"
OTHER_LIGHT = "Cột đèn trên đường Tôn Đức Thắng nghiêng sắp đổ, dây điện võng xuống lòng đường"
FAR = timedelta(days=30)


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make() -> Receiver:
        made.append(Receiver())
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def staff(client, username: str, role: str, department: str | None) -> dict:
    in_app(
        client, lambda s: users.create(s, username=username, password=PASSWORD, role=role, department_code=department)
    )
    response = client.post("/v1/auth/token", data={"username": username, "password": PASSWORD})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def subscribe(client, headers: dict, url: str, *event_types: str, **fields):
    body = {"url": url, **({"event_types": list(event_types)} if event_types else {}), **fields}
    return client.post("/v1/webhooks/subscriptions", json=body, headers=headers)


def file_lighting_report(client, api_key, *, elsewhere: bool = False) -> dict:
    """A street-lighting ticket of chieu-sang; `elsewhere` files another one, no duplicate of the first."""
    place = (
        {"description": OTHER_LIGHT, "lat": 10.7800, "lon": 106.7040} if elsewhere else {"description": STREET_LIGHT}
    )
    created = submit(client, api_key, service_code="street_lighting", **place)
    deliver(client)
    return created


def set_deadlines(client, tracking_code: str, **deadlines) -> None:
    async def work(session):
        await session.exec(update(Report).where(Report.tracking_code == tracking_code).values(**deadlines))

    in_app(client, work)


def announce_deadlines(client) -> int:
    from workers.lifecycle import announce_deadlines_near

    count = client.portal.call(announce_deadlines_near, worker_context(client))
    deliver(client)
    return count


def test_department_subscription_hears_a_new_ticket_and_not_other_departments(client, api_key, receivers):
    lighting, drainage, system = receivers(), receivers(), receivers()
    officer = staff(client, "officer.lighting", "officer", "chieu-sang")
    created = subscribe(client, officer, lighting.url, "report.assigned")
    assert created.status_code == 201, created.text
    assert (created.json()["scope"], created.json()["scope_department_code"]) == ("department", "chieu-sang")
    supervisor = staff(client, "supervisor.drainage", "supervisor", "thoat-nuoc")
    assert subscribe(client, supervisor, drainage.url, "report.assigned").status_code == 201
    lighting_system = {"X-API-Key": new_key(client, "department_system", "chieu-sang")}
    assert subscribe(client, lighting_system, system.url, "report.assigned").status_code == 201

    report = file_lighting_report(client, api_key)

    assert lighting.types() == ["report.assigned"] and system.types() == ["report.assigned"]
    payload = verified(lighting.requests[0], created.json()["secret"])
    assert payload["data"]["tracking_code"] == report["tracking_code"]
    assert payload["data"]["department"]["code"] == "chieu-sang"
    assert drainage.requests == []


def test_officer_cannot_subscribe_for_another_department(client, receivers):
    officer = staff(client, "officer.lighting", "officer", "chieu-sang")
    url = receivers().url

    refused = subscribe(client, officer, url, filters={"department_code": "thoat-nuoc"})
    assert refused.status_code == 403 and refused.json()["code"] == "webhook_scope_forbidden"
    mine = subscribe(client, officer, url, filters={"department_code": "chieu-sang"})
    assert mine.status_code == 201, mine.text
    changed = client.patch(
        f"/v1/webhooks/subscriptions/{mine.json()['id']}",
        json={"filters": {"department_code": "sawaco"}},
        headers=officer,
    )
    assert changed.status_code == 403 and changed.json()["code"] == "webhook_scope_forbidden"
    # Roles that work no department's tickets do not subscribe; a dispatcher works the whole city from the list.
    assert subscribe(client, staff(client, "ioc.wall", "ioc_viewer", None), url).status_code == 403
    assert subscribe(client, staff(client, "dispatcher.an", "dispatcher", None), url).status_code == 403
    # Each sees only its own subscriptions.
    other = staff(client, "officer.lighting.two", "officer", "chieu-sang")
    assert client.get(f"/v1/webhooks/subscriptions/{mine.json()['id']}", headers=other).status_code == 404


def test_staff_subscriptions_keep_the_url_safety_rules(client):
    officer = staff(client, "officer.lighting", "officer", "chieu-sang")
    for url in ("http://169.254.169.254/latest/meta-data", "http://10.0.0.7/hook", "file:///etc/passwd"):
        refused = subscribe(client, officer, url)
        assert refused.status_code == 422, (url, refused.text)


def test_department_hears_when_the_citizen_answers(client, api_key, receivers):
    receiver = receivers()
    officer = staff(client, "officer.lighting", "officer", "chieu-sang")
    secret = subscribe(client, officer, receiver.url, "report.citizen_replied", "report.status_changed").json()[
        "secret"
    ]
    report = file_lighting_report(client, api_key)
    asked = client.post(
        f"/v1/tickets/{report['id']}/transitions",
        headers=officer,
        json={"to": "on_hold", "question": "Cột đèn số mấy ạ?"},
    )
    assert asked.status_code == 200, asked.text
    answered = client.post(
        f"/v1/reports/{report['tracking_code']}/replies",
        json={"message": "Cột số 12"},
        headers={"X-Citizen-Token": report["citizen_token"]},
    )
    assert answered.status_code == 200, answered.text
    deliver(client)

    assert receiver.types() == [
        "report.status_changed",
        "report.status_changed",
        "report.citizen_replied",
        "report.status_changed",
    ]
    reply = verified(receiver.requests[2], secret)["data"]
    assert (reply["comment"], reply["photo_count"], reply["event_code"]) == ("Cột số 12", 0, "citizen_reply")
    back_to_work = receiver.requests[3].payload["data"]
    assert (back_to_work["previous_status"], back_to_work["status"]) == ("on_hold", "in_progress")


def test_resolve_deadline_near_is_sent_once(client, api_key, receivers, settings):
    receiver = receivers()
    officer = staff(client, "officer.lighting", "officer", "chieu-sang")
    secret = subscribe(client, officer, receiver.url, "report.due_soon").json()["secret"]
    report = file_lighting_report(client, api_key)
    now = utcnow()
    set_deadlines(client, report["tracking_code"], acknowledge_due_at=now + FAR, due_at=now + FAR)
    assert announce_deadlines(client) == 0

    due = now + timedelta(minutes=settings.due_soon_minutes - 30)
    set_deadlines(client, report["tracking_code"], due_at=due)
    assert announce_deadlines(client) == 1
    assert announce_deadlines(client) == 0  # already told
    assert receiver.types() == ["report.due_soon"]
    data = verified(receiver.requests[0], secret)["data"]
    assert data["due_at"] == due.isoformat().replace("+00:00", "Z")
    assert settings.due_soon_minutes - 31 <= data["minutes_left"] <= settings.due_soon_minutes - 30

    # A deadline that moves (the clock paused, a transfer) is a new deadline, told once again.
    set_deadlines(client, report["tracking_code"], due_at=due + timedelta(minutes=10))
    assert announce_deadlines(client) == 1
    assert announce_deadlines(client) == 0
    assert receiver.types() == ["report.due_soon", "report.due_soon"]
    timeline = client.get(f"/v1/tickets/{report['id']}", headers=officer).json()["timeline"]
    assert [event["code"] for event in timeline].count("due_soon") == 2


def test_acknowledge_deadline_near_is_sent_once_and_only_while_no_one_took_the_ticket(
    client, api_key, receivers, settings
):
    receiver = receivers()
    officer = staff(client, "officer.lighting", "officer", "chieu-sang")
    subscribe(client, officer, receiver.url, "report.acknowledge_due_soon", "report.due_soon")
    waiting, taken = file_lighting_report(client, api_key), file_lighting_report(client, api_key, elsewhere=True)
    soon = utcnow() + timedelta(minutes=settings.acknowledge_due_soon_minutes // 2)
    for report in (waiting, taken):
        set_deadlines(client, report["tracking_code"], acknowledge_due_at=soon, due_at=utcnow() + FAR)
    started = client.post(f"/v1/tickets/{taken['id']}/transitions", headers=officer, json={"to": "in_progress"})
    assert started.status_code == 200, started.text

    assert announce_deadlines(client) == 1
    assert announce_deadlines(client) == 0
    assert receiver.types() == ["report.acknowledge_due_soon"]
    data = receiver.requests[0].payload["data"]
    assert data["tracking_code"] == waiting["tracking_code"]
    assert data["acknowledge_due_at"] == soon.isoformat().replace("+00:00", "Z")


def test_no_deadline_notice_while_on_hold_or_once_past(client, api_key, receivers):
    receiver = receivers()
    officer = staff(client, "officer.lighting", "officer", "chieu-sang")
    subscribe(client, officer, receiver.url, "report.acknowledge_due_soon", "report.due_soon")
    on_hold, past = file_lighting_report(client, api_key), file_lighting_report(client, api_key, elsewhere=True)
    client.post(
        f"/v1/tickets/{on_hold['id']}/transitions",
        headers=officer,
        json={"to": "on_hold", "question": "Cột đèn số mấy ạ?"},
    )
    now = utcnow()
    set_deadlines(
        client,
        on_hold["tracking_code"],
        acknowledge_due_at=now + timedelta(minutes=5),
        due_at=now + timedelta(minutes=5),
    )
    set_deadlines(
        client, past["tracking_code"], acknowledge_due_at=now - timedelta(minutes=5), due_at=now - timedelta(minutes=1)
    )

    assert announce_deadlines(client) == 0
    assert receiver.requests == []


def test_department_subscription_hears_only_tickets_now_in_its_department(client, api_key, receivers, settings):
    lighting, drainage = receivers(), receivers()
    types = ("report.due_soon", "report.assigned")
    subscribe(client, staff(client, "officer.lighting", "officer", "chieu-sang"), lighting.url, *types)
    subscribe(client, staff(client, "officer.drainage", "officer", "thoat-nuoc"), drainage.url, *types)
    dispatcher = staff(client, "dispatcher.an", "dispatcher", None)
    report = file_lighting_report(client, api_key)
    moved = client.post(
        f"/v1/tickets/{report['id']}/transfer",
        headers=dispatcher,
        json={"department_code": "thoat-nuoc", "reason": "Cống nghẹt, không phải đèn"},
    )
    assert moved.status_code == 200, moved.text
    set_deadlines(
        client,
        report["tracking_code"],
        acknowledge_due_at=utcnow() + FAR,
        due_at=utcnow() + timedelta(minutes=settings.due_soon_minutes // 2),
    )
    announce_deadlines(client)

    assert lighting.types() == ["report.assigned"]
    assert drainage.types() == ["report.assigned", "report.due_soon"]


def test_staff_member_who_leaves_the_department_hears_no_more(client, api_key, receivers):
    officers, system = receivers(), receivers()
    subscribe(client, staff(client, "officer.lighting", "officer", "chieu-sang"), officers.url, "report.assigned")
    subscribe(client, {"X-API-Key": new_key(client, "department_system", "chieu-sang")}, system.url, "report.assigned")
    file_lighting_report(client, api_key)
    assert officers.types() == ["report.assigned"]

    async def move_to_drainage(session):
        await session.exec(
            update(StaffUser).where(StaffUser.username == "officer.lighting").values(department_code="thoat-nuoc")
        )
        outbox.forget_subscriptions()  # else the list cached for WEBHOOK_SUBSCRIPTION_CACHE_SECONDS

    in_app(client, move_to_drainage)
    file_lighting_report(client, api_key, elsewhere=True)
    assert system.types() == ["report.assigned", "report.assigned"]
    assert officers.types() == ["report.assigned"]
