"""Dates in filters mean what a clerk in the city means by them, on every endpoint, and never a 500."""

import csv
import io
from datetime import UTC, datetime

import pytest

from service.auth import api_keys
from tests.conftest import in_app
from tests.test_ioc import add_reports, clear_cache, lighting, refresh_rollup

# Around 20 November 2026 in Ho Chi Minh City (UTC+7).
BEFORE_THE_DAY = datetime(2026, 11, 19, 16, 30, tzinfo=UTC)  # 19 Nov, 23:30 city time
EARLY_ON_THE_DAY = datetime(2026, 11, 19, 17, 30, tzinfo=UTC)  # 20 Nov, 00:30 city time
LATE_ON_THE_DAY = datetime(2026, 11, 20, 16, 30, tzinfo=UTC)  # 20 Nov, 23:30 city time
AFTER_THE_DAY = datetime(2026, 11, 20, 17, 30, tzinfo=UTC)  # 21 Nov, 00:30 city time


@pytest.fixture
def reports(client) -> dict[datetime, str]:
    """Tracking codes by creation time, public and routed to street lighting."""
    clear_cache(client)
    rows = [
        lighting(moment, status="assigned", is_public=True)
        for moment in (BEFORE_THE_DAY, EARLY_ON_THE_DAY, LATE_ON_THE_DAY, AFTER_THE_DAY)
    ]
    add_reports(client, *rows)
    return {row.created_at: row.tracking_code for row in rows}


@pytest.fixture
def admin(client) -> dict:
    key = in_app(client, lambda s: api_keys.create(s, name="time admin", role="admin")).key
    return {"X-API-Key": key}


def listed(client, admin, **params) -> set[str]:
    answer = client.get("/v1/tickets", params=params, headers=admin)
    assert answer.status_code == 200, answer.text
    return {item["tracking_code"] for item in answer.json()["items"]}


def test_ticket_filters_read_dates_and_plain_times_in_city_time(client, admin, reports):
    the_day = {reports[EARLY_ON_THE_DAY], reports[LATE_ON_THE_DAY]}
    # A bare date is the whole day in the city, as a lower and as an upper bound.
    assert listed(client, admin, created_from="2026-11-20", created_to="2026-11-20") == the_day
    # A time without an offset is the city's wall clock; with one, that instant.
    assert listed(client, admin, created_from="2026-11-20T23:00:00") == {
        reports[LATE_ON_THE_DAY],
        reports[AFTER_THE_DAY],
    }
    assert listed(client, admin, created_to="2026-11-20T00:00:00+07:00") == {reports[BEFORE_THE_DAY]}
    assert listed(client, admin, created_to="2026-11-19T17:00:00Z") == {reports[BEFORE_THE_DAY]}

    exported = client.get(
        "/v1/tickets/export.csv", params={"created_from": "2026-11-20", "created_to": "2026-11-20"}, headers=admin
    )
    assert exported.status_code == 200, exported.text
    assert {
        row["tracking_code"] for row in csv.DictReader(io.StringIO(exported.content.decode("utf-8-sig")))
    } == the_day


@pytest.mark.parametrize(
    "value", ["yesterday", "2026-13-01", "2026-11-31", "0001-01-01", "9999-12-31T23:59:59", "20261120"]
)
def test_a_date_that_is_not_one_is_422_on_every_endpoint(client, admin, value):
    for path, name in (
        ("/v1/tickets", "created_from"),
        ("/v1/tickets/export.csv", "created_to"),
        ("/v1/ioc/summary", "from"),
        ("/v1/ioc/summary", "to"),
    ):
        answer = client.get(path, params={name: value}, headers=admin)
        assert answer.status_code == 422, (path, name, answer.text)
        assert answer.json()["errors"][0]["field"] == name
    open311 = client.get("/open311/v2/requests.json", params={"start_date": value})
    assert open311.status_code == 400, open311.text


def test_ioc_window_of_one_day_given_as_dates(client, admin, reports):
    refresh_rollup(client)
    summary = client.get("/v1/ioc/summary", params={"from": "2026-11-20", "to": "2026-11-20"}, headers=admin)
    assert summary.status_code == 200, summary.text
    assert summary.json()["counts"]["received"] == 2


def test_open311_dates_follow_the_same_rule(client, reports):
    answer = client.get("/open311/v2/requests.json", params={"start_date": "2026-11-20", "end_date": "2026-11-20"})
    assert answer.status_code == 200, answer.text
    assert {item["service_request_id"] for item in answer.json()} == {
        reports[EARLY_ON_THE_DAY],
        reports[LATE_ON_THE_DAY],
    }
    answer = client.get(
        "/open311/v2/requests.json", params={"start_date": "2026-11-20T23:00:00", "end_date": "2026-11-21T01:00:00"}
    )
    assert {item["service_request_id"] for item in answer.json()} == {reports[LATE_ON_THE_DAY], reports[AFTER_THE_DAY]}


@pytest.mark.parametrize("page", [str(10**25), "1000001", "99999999999999999999"])
def test_open311_page_beyond_any_listing_is_400_not_500(client, page):
    answer = client.get("/open311/v2/requests.json", params={"page": page})
    assert answer.status_code == 400, answer.text
    assert "page" in answer.json()[0]["description"]
    assert client.get("/open311/v2/requests.json", params={"page": "1000000"}).json() == []


def test_webhook_redelivery_takes_the_same_dates(client, admin, monkeypatch):
    monkeypatch.setattr(client.app.state.settings, "webhook_allowed_hosts", ["127.0.0.1"])
    created = client.post("/v1/webhooks/subscriptions", json={"url": "http://127.0.0.1:9/hook"}, headers=admin)
    assert created.status_code == 201, created.text
    redeliver = f"/v1/webhooks/subscriptions/{created.json()['id']}/redeliver"
    for since in ("2026-11-20", "2026-11-20T08:00:00", "2026-11-20T08:00:00Z"):
        assert client.post(redeliver, params={"since": since}, headers=admin).status_code == 202
    assert client.post(redeliver, params={"since": "last week"}, headers=admin).status_code == 422


def test_a_window_that_ends_before_it_starts_or_is_empty_is_422_on_every_endpoint(client, admin):
    instant = "2026-12-01T01:00:00Z"
    for path, start, end in (
        ("/v1/tickets", "created_from", "created_to"),
        ("/v1/tickets/export.csv", "created_from", "created_to"),
        ("/v1/ioc/summary", "from", "to"),
    ):
        for first, last in (("2026-12-10", "2026-12-01"), (instant, instant)):
            answer = client.get(path, params={start: first, end: last}, headers=admin)
            assert answer.status_code == 422, (path, answer.text)
            assert answer.json()["code"] == "invalid_window" and answer.json()["errors"][0]["field"] == start
    for first, last in (("2026-12-10", "2026-12-01"), (instant, instant)):
        open311 = client.get("/open311/v2/requests.json", params={"start_date": first, "end_date": last})
        assert open311.status_code == 400, open311.text
        assert "end_date must be later than start_date" in open311.text  # not "before" for the same instant
