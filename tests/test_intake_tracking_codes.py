"""Tracking codes are drawn without a lookup; a clash with an existing report is caught and redrawn."""

from itertools import chain, repeat

from service.reports import service
from tests.factories import report_body


def test_clashing_tracking_code_is_redrawn_and_the_report_still_taken(client, api_key, monkeypatch):
    first = client.post("/v1/reports", json=report_body(), headers={"X-API-Key": api_key})
    assert first.status_code == 201
    taken = first.json()["tracking_code"]
    # The next draws: the code already taken (twice), then a fresh one.
    draws = chain([taken, taken], repeat("7K3P-9QX2"))
    monkeypatch.setattr(service, "new_tracking_code", lambda: next(draws))

    second = client.post(
        "/v1/reports",
        json=report_body(description="Ổ gà lớn giữa đường Lê Lợi, xe máy dễ té"),
        headers={"X-API-Key": api_key, "Idempotency-Key": "clash-1"},
    )
    assert second.status_code == 201, second.text
    assert second.json()["tracking_code"] == "7K3P-9QX2"
    assert client.get(f"/v1/reports/{taken}").json()["description"] == report_body()["description"]
    again = client.post(
        "/v1/reports",
        json=report_body(description="Ổ gà lớn giữa đường Lê Lợi, xe máy dễ té"),
        headers={"X-API-Key": api_key, "Idempotency-Key": "clash-1"},
    )
    assert again.status_code == 200 and again.json()["tracking_code"] == "7K3P-9QX2"
