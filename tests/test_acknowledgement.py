"""The acknowledgement deadline counts: a ticket no one takes into work in time is marked, heard,
escalated once, and shows in the IOC's acknowledgement compliance per department."""

from datetime import timedelta
from uuid import UUID

import pytest
from sqlmodel import select

from service.models import Report, ReportEvent
from service.models.types import utcnow
from tests.conftest import in_app, worker_context
from tests.test_ioc import DAY, HOUR, add_reports, clear_cache, drainage, lighting, report, summary, viewer  # noqa: F401
from tests.test_lifecycle import deliver, key, receiver, timeline  # noqa: F401
from tests.test_tickets import file_report, make_user, move
from tests.test_webhooks import subscribe

BEN_THANH_LATS = (10.7725, 10.7740, 10.7755)  # far enough apart not to be duplicates of each other


def sweep(client) -> int:
    from workers.lifecycle import sweep_sla

    return client.portal.call(sweep_sla, worker_context(client))


def set_fields(client, ticket: str, **fields) -> None:
    async def write(session):
        row = await session.get(Report, UUID(ticket))
        for name, value in fields.items():
            setattr(row, name, value)
        session.add(row)

    in_app(client, write)


def stored(client, ticket: str) -> Report:
    return in_app(client, lambda s: s.get(Report, UUID(ticket)))


def codes(client, ticket: str) -> list[str]:
    async def load(session):
        rows = await session.exec(
            select(ReportEvent).where(ReportEvent.report_id == UUID(ticket)).order_by(ReportEvent.id)
        )
        return [row.type for row in rows.all()]

    return in_app(client, load)


def test_ticket_not_taken_into_work_in_time_is_marked_heard_and_escalated_once(client, api_key, receiver):
    officer = make_user(client, "officer.lighting", "officer", "chieu-sang")
    subscribe(client, key(client, "admin"), receiver.url, event_types=["report.ack_overdue"])
    late, taken, waiting = (
        file_report(client, api_key, lat=lat, description=f"Đèn đường số {n} trước chợ Bến Thành tắt ba đêm nay")
        for n, lat in enumerate(BEN_THANH_LATS)
    )
    assert move(client, officer, taken["id"], to="in_progress").status_code == 200
    assert move(client, officer, waiting["id"], to="on_hold", question="Cột đèn số mấy?").status_code == 200
    now = utcnow()
    deadline = now - HOUR
    for ticket in (late, taken):
        set_fields(client, ticket["id"], acknowledge_due_at=deadline)
    # Put on hold before its deadline: the clock stopped with time left, so it is not late.
    set_fields(client, waiting["id"], acknowledge_due_at=deadline, on_hold_since=now - 2 * HOUR)

    assert sweep(client) == 1
    assert sweep(client) == 0  # marked once
    marked = stored(client, late["id"])
    assert marked.acknowledge_overdue_at is not None
    assert marked.escalated_to_department_code == "so-xay-dung"  # the lighting company's supervising unit
    assert codes(client, late["id"])[-2:] == ["ack_overdue", "escalated"]
    assert codes(client, late["id"]).count("ack_overdue") == 1 and codes(client, late["id"]).count("escalated") == 1
    for ticket in (taken, waiting):
        assert stored(client, ticket["id"]).acknowledge_overdue_at is None
        assert "ack_overdue" not in codes(client, ticket["id"]) and "escalated" not in codes(client, ticket["id"])

    entries = timeline(client, make_user(client, "sup", "admin"), late["id"], "en")
    flagged = next(entry for entry in entries if entry["code"] == "ack_overdue")
    assert flagged["message"] == "Not taken into work by its acknowledgement deadline"
    escalated = next(entry for entry in entries if entry["code"] == "escalated")
    assert escalated["data"] == {"from": "chieu-sang", "to": "so-xay-dung", "reason": "ack_overdue"}

    deliver(client)
    heard = [r.payload for r in receiver.requests]
    assert [(payload["type"], payload["data"]["tracking_code"]) for payload in heard] == [
        ("report.ack_overdue", late["tracking_code"]),
    ]
    assert heard[0]["data"]["event_code"] == "ack_overdue"
    assert heard[0]["data"]["acknowledge_due_at"] == deadline.isoformat().replace("+00:00", "Z")

    # Missing the resolve deadline later does not escalate it a second time.
    set_fields(client, late["id"], at_risk_at=now - 2 * HOUR, due_at=now - HOUR)
    assert sweep(client) == 1
    assert stored(client, late["id"]).sla_state == "overdue"
    assert codes(client, late["id"]).count("escalated") == 1


def test_on_hold_pauses_the_acknowledgement_clock_and_the_deadline_moves_later(client, api_key):
    officer = make_user(client, "officer.lighting", "officer", "chieu-sang")
    created = file_report(client, api_key)
    set_fields(client, created["id"], priority="urgent")  # a clock-hours policy: the pause is plain hours
    assert move(client, officer, created["id"], to="on_hold", question="Cột đèn số mấy?").status_code == 200
    now = utcnow()
    # One hour was left when it went on hold, two hours ago: the deadline passed during the pause.
    set_fields(client, created["id"], acknowledge_due_at=now - HOUR, on_hold_since=now - 2 * HOUR)
    assert sweep(client) == 0

    moved = client.post(
        f"/v1/tickets/{created['id']}/transfer",
        json={"department_code": "ubnd-phuong-ben-thanh", "reason": "Đèn trong hẻm do phường quản lý"},
        headers=officer,
    )
    assert moved.status_code == 200 and moved.json()["status"] == "assigned"
    # The clock runs again with the hour that was left.
    assert stored(client, created["id"]).acknowledge_due_at > utcnow() + HOUR / 2
    assert sweep(client) == 0
    set_fields(client, created["id"], acknowledge_due_at=utcnow() - timedelta(minutes=1))  # that hour passes
    assert sweep(client) == 1
    assert "ack_overdue" in codes(client, created["id"])


def test_ioc_shows_acknowledgement_compliance_per_department(client, viewer):  # noqa: F811
    clear_cache(client)
    n = utcnow()
    add_reports(
        client,
        # Công ty Chiếu sáng: on time, on the very deadline, late, and marked by the sweep; one not due yet.
        lighting(
            n - 10 * DAY,
            status="closed",
            acknowledge_due_at=n - 10 * DAY + 8 * HOUR,
            acknowledged_at=n - 10 * DAY + 2 * HOUR,
        ),
        lighting(
            n - 5 * DAY,
            status="in_progress",
            acknowledge_due_at=n - 5 * DAY + 8 * HOUR,
            acknowledged_at=n - 5 * DAY + 8 * HOUR,
        ),
        lighting(
            n - 9 * DAY, status="in_progress", acknowledge_due_at=n - 9 * DAY + 8 * HOUR, acknowledged_at=n - 8 * DAY
        ),
        lighting(
            n - 3 * DAY,
            status="assigned",
            acknowledge_due_at=n - 3 * DAY + 8 * HOUR,
            acknowledge_overdue_at=n - 3 * DAY + 9 * HOUR,
        ),
        lighting(n - 2 * HOUR, status="assigned", acknowledge_due_at=n + 6 * HOUR),
        # Công ty Thoát nước: two on time; one paused on hold before its deadline, one without a deadline.
        drainage(
            n - 6 * DAY,
            status="in_progress",
            acknowledge_due_at=n - 6 * DAY + 8 * HOUR,
            acknowledged_at=n - 6 * DAY + HOUR,
        ),
        drainage(
            n - 4 * DAY,
            status="resolved",
            acknowledge_due_at=n - 4 * DAY + 8 * HOUR,
            acknowledged_at=n - 4 * DAY + 7 * HOUR,
            resolved_at=n - 3 * DAY,
        ),
        drainage(n - 2 * DAY, status="on_hold", acknowledge_due_at=n - DAY, on_hold_since=n - 2 * DAY + HOUR),
        drainage(n - 7 * DAY, status="in_progress", acknowledged_at=n - 7 * DAY + HOUR),
        # The dispatchers never took this one: marked.
        report(
            n - DAY,
            status="needs_triage",
            department_code="dispatch-1022",
            jurisdiction_code="BEN-THANH",
            acknowledge_due_at=n - DAY + 8 * HOUR,
            acknowledge_overdue_at=n - DAY + 9 * HOUR,
        ),
    )

    body = summary(client, viewer)
    departments = {row["code"]: row for row in body["departments"]}

    def acknowledgement(code):
        row = departments[code]
        return row["acknowledge_on_time_pct"], row["acknowledged_on_time"], row["acknowledge_measured"]

    assert acknowledgement("chieu-sang") == (50.0, 2, 4)
    assert acknowledgement("thoat-nuoc") == (100.0, 2, 2)
    assert acknowledgement("dispatch-1022") == (0.0, 0, 1)
    assert body["acknowledgement"] == {"compliance_pct": 57.14, "on_time": 4, "late": 3, "measured": 7}

    # A window inside one day is read from the reports table alone: the same rule.
    clear_cache(client)
    short = summary(
        client, viewer, **{"from": (n - 9 * DAY - HOUR).isoformat(), "to": (n - 9 * DAY + HOUR).isoformat()}
    )
    assert short["acknowledgement"] == {"compliance_pct": 0.0, "on_time": 0, "late": 1, "measured": 1}
    # Departments with open work show up whatever the window; only the late one is measured in it.
    assert {acknowledgement_row(row) for row in short["departments"]} == {
        ("chieu-sang", 0.0, 0, 1),
        ("thoat-nuoc", None, 0, 0),
        ("dispatch-1022", None, 0, 0),
    }


def acknowledgement_row(row: dict) -> tuple:
    return row["code"], row["acknowledge_on_time_pct"], row["acknowledged_on_time"], row["acknowledge_measured"]


def test_sweep_mark_reaches_the_ioc_through_the_rollup(client, api_key, viewer):  # noqa: F811
    officer = make_user(client, "officer.lighting", "officer", "chieu-sang")
    created = file_report(client, api_key)
    two_days_ago = utcnow() - 2 * DAY  # a whole past day: read from the daily rollup
    set_fields(client, created["id"], created_at=two_days_ago, acknowledge_due_at=two_days_ago + 8 * HOUR)

    def lighting_row():
        clear_cache(client)
        body = summary(client, viewer, department="chieu-sang")
        return acknowledgement_row(body["departments"][0]), body["acknowledgement"]["measured"]

    assert lighting_row() == (("chieu-sang", None, 0, 0), 0)  # not known yet
    assert sweep(client) == 1
    assert lighting_row() == (("chieu-sang", 0.0, 0, 1), 1)
    # Taken into work at last: still late.
    assert move(client, officer, created["id"], to="in_progress").status_code == 200
    assert lighting_row() == (("chieu-sang", 0.0, 0, 1), 1)
    assert stored(client, created["id"]).acknowledged_at is not None


@pytest.mark.parametrize("restart", [True, False])
def test_a_later_deadline_clears_the_mark_only_when_the_clock_restarts(restart):
    from service.sla import rules
    from service.sla.service import calendar_from, start_clock
    from service.settings import get_settings

    start = utcnow()
    ticket = Report(
        tracking_code="T", description="x", acknowledge_due_at=start - HOUR, acknowledge_overdue_at=start - HOUR / 2
    )
    policy = rules.DEFAULT_POLICIES["urgent"]
    # A restart starts now (a transfer); triage starts again from intake, whose deadline already passed.
    start_clock(ticket, policy, calendar_from(get_settings()), start if restart else start - DAY, 0.75)
    assert (ticket.acknowledge_overdue_at is None) is restart
