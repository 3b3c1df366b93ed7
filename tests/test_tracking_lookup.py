"""Following a report by tracking code: codes are short enough to guess, so lookups are limited per
address (a miss costs more than a hit), and a report its citizen kept private shows its details only
to whoever holds the citizen token."""

import xml.etree.ElementTree as ET


from service.lifecycle.events import STATUS_WORDS
from service.reports.codes import new_tracking_code
from service.settings import Settings
from tests.conftest import limits_app, run_worker
from tests.factories import jpeg_bytes, report_body

PRIVATE_TEXT = "Hàng xóm số 14 Nguyễn Trãi mở karaoke tới 2 giờ sáng, tôi ở số 16 ngay bên cạnh"


def test_guessing_tracking_codes_is_cut_off_with_429_and_retry_after(settings, client, api_key):
    code = client.post("/v1/reports", json=report_body(), headers={"X-API-Key": api_key}).json()["tracking_code"]
    with limits_app(settings, rate_limit_tracking_lookup="30/minute", tracking_lookup_miss_cost=10) as app:
        misses = [app.get(f"/v1/reports/{guess}").status_code for guess in ("2222-2222", "3333-3333", "4444-4444")]
        assert misses == [404, 404, 404]
        refused = app.get(f"/v1/reports/{code}")  # three misses spent the whole budget, even for a real code
        assert refused.status_code == 429
        assert refused.headers["content-type"].startswith("application/problem+json")
        assert refused.json()["code"] == "rate_limited" and int(refused.headers["retry-after"]) > 0


def test_guessing_codes_through_open311_is_cut_off_as_on_v1(settings):
    # The limits a deployment has unless it sets its own.
    defaults = {
        name: Settings.model_fields[name].default for name in ("rate_limit_tracking_lookup", "tracking_lookup_miss_cost")
    }
    with limits_app(settings, **defaults) as app:
        answers = [app.get(f"/open311/v2/requests/{new_tracking_code()}.json") for _ in range(60)]
    statuses = [answer.status_code for answer in answers]
    assert statuses == [404] * 12 + [429] * 48  # 120 lookups a minute, a miss counting as 10
    refused = answers[-1]
    assert refused.headers["content-type"].startswith("application/json") and int(refused.headers["retry-after"]) > 0
    assert refused.json()[0]["code"] == 429  # the spec's error list, not problem details


def test_open311_and_v1_lookups_spend_one_budget_per_address(settings, client, api_key):
    code = client.post("/v1/reports", json=report_body(), headers={"X-API-Key": api_key}).json()["tracking_code"]
    with limits_app(settings, rate_limit_tracking_lookup="30/minute", tracking_lookup_miss_cost=10) as app:
        assert app.get("/open311/v2/requests/2222-2222.json").status_code == 404
        assert app.get("/v1/reports/3333-3333").status_code == 404
        assert app.get("/open311/v2/requests/4444-4444.xml").status_code == 404
        # Three misses, one through /v1, spent the budget of both doors, even for a real code.
        refused = app.get(f"/open311/v2/requests/{code}.xml")
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        assert refused.headers["content-type"].startswith("text/xml")
        assert ET.fromstring(refused.content).findtext("error/code") == "429"
        refused = app.get(f"/v1/reports/{code}")
        assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
    with limits_app(settings, rate_limit_tracking_lookup="30/minute", tracking_lookup_miss_cost=10) as app:
        assert [app.get(f"/v1/reports/{guess}").status_code for guess in ("2222-2222", "3333-3333")] == [404, 404]
        assert app.get("/open311/v2/requests/4444-4444.json").status_code == 404
        assert app.get(f"/open311/v2/requests/{code}.json").status_code == 429


def test_a_citizen_following_its_own_report_is_not_cut_off_early(settings, client, api_key):
    code = client.post("/v1/reports", json=report_body(), headers={"X-API-Key": api_key}).json()["tracking_code"]
    with limits_app(settings, rate_limit_tracking_lookup="30/minute", tracking_lookup_miss_cost=10) as app:
        assert [app.get(f"/v1/reports/{code}").status_code for _ in range(30)] == [200] * 30
        assert app.get(f"/v1/reports/{code}").status_code == 429


def test_non_public_report_shows_details_only_with_its_citizen_token(client, api_key):
    created = client.post(
        "/v1/reports",
        data={**report_body(description=PRIVATE_TEXT, is_public="false", address="16 Nguyễn Trãi, Quận 1")},
        files=[("photos", ("door.jpg", jpeg_bytes(), "image/jpeg"))],
        headers={"X-API-Key": api_key},
    ).json()
    run_worker(client)
    url = f"/v1/reports/{created['tracking_code']}"

    anonymous = client.get(url)
    assert anonymous.status_code == 200
    seen = anonymous.json()
    assert seen["details_withheld"] is True
    assert seen["status"] != "received" and seen["department"] is not None  # how it is getting on
    assert seen["description"] is None and seen["title"] is None
    assert seen["lat"] is None and seen["lon"] is None and seen["address"] is None
    # Only the city's own words about its progress, nothing a person wrote.
    city_words = {"Đã tiếp nhận phản ánh", *(vi for vi, _ in STATUS_WORDS.values())}
    assert seen["photos"] == [] and all(entry["message"] in city_words for entry in seen["timeline"])
    assert "Nguyễn Trãi" not in anonymous.text

    own = client.get(url, headers={"X-Citizen-Token": created["citizen_token"]}).json()
    assert own["details_withheld"] is False
    assert own["description"] == PRIVATE_TEXT and own["lat"] is not None and len(own["photos"]) == 1

    for wrong_token in ("not-the-token", "tøken".encode("latin-1")):  # a header may carry any byte
        wrong = client.get(url, headers={"X-Citizen-Token": wrong_token})
        assert wrong.status_code == 401 and wrong.json()["code"] == "invalid_citizen_token"


def test_public_report_shows_its_details_to_anyone(client, api_key):
    created = client.post("/v1/reports", json=report_body(), headers={"X-API-Key": api_key}).json()
    seen = client.get(f"/v1/reports/{created['tracking_code']}").json()
    assert seen["details_withheld"] is False and seen["description"] and seen["lat"] is not None
