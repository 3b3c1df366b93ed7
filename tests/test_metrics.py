"""/metrics tells the HTTP rate, errors and latency of each route, by its template (so what clients
put in a path never makes a new series), and which build is running."""

import platform
import uuid
from importlib.metadata import version

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.main import create_app
from tests.factories import report_body


def scrape(client) -> dict[str, list]:
    """Samples by name: [(labels, value), ...]."""
    answer = client.get("/metrics")
    assert answer.status_code == 200
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def total(samples, name: str, **labels) -> float:
    return sum(v for found, v in samples.get(name, []) if all(found.get(key) == want for key, want in labels.items()))


def routes(samples) -> set[str]:
    return {labels["route"] for labels, _ in samples.get("http_requests_total", [])}


def test_requests_are_counted_per_route_template_method_and_status_class(client):
    before = scrape(client)
    codes = ["ZZZZ-0001", "ZZZZ-0002", "ZZZZ-0003"]
    for code in codes:
        assert client.get(f"/v1/reports/{code}").status_code == 404
    assert client.get("/healthz").status_code == 200
    assert client.delete("/healthz").status_code == 405

    after = scrape(client)

    report = {"route": "/v1/reports/{tracking_code}", "method": "GET"}
    assert (
        total(after, "http_requests_total", **report, status="4xx")
        - total(before, "http_requests_total", **report, status="4xx")
        == 3
    )
    healthz = {"route": "/healthz", "method": "GET", "status": "2xx"}
    assert total(after, "http_requests_total", **healthz) - total(before, "http_requests_total", **healthz) == 1
    refused = {"route": "/healthz", "method": "DELETE", "status": "4xx"}
    assert total(after, "http_requests_total", **refused) - total(before, "http_requests_total", **refused) == 1
    # The tracking codes themselves are in no label.
    assert not any(code in route for code in codes for route in routes(after))



def test_reports_filed_are_counted_under_the_intake_route_like_any_other(client, api_key):
    before = scrape(client)
    headers = {"X-API-Key": api_key}
    assert client.post("/v1/reports", json=report_body(), headers=headers).status_code == 201
    assert client.post("/v1/reports", json=report_body(description="short"), headers=headers).status_code == 422
    assert client.post("/v1/reports", json=report_body()).status_code == 401

    after = scrape(client)

    intake = {"route": "/v1/reports", "method": "POST"}
    for status, count in (("2xx", 1), ("4xx", 2)):
        grown = total(after, "http_requests_total", **intake, status=status) - total(
            before, "http_requests_total", **intake, status=status
        )
        assert grown == count, status
    count = "http_request_duration_seconds_count"
    assert total(after, count, **intake) - total(before, count, **intake) == 3

def test_latency_histogram_per_route_and_method(client):
    before = scrape(client)
    for _ in range(2):
        client.get("/v1/reports/ZZZZ-0009")

    after = scrape(client)

    labels = {"route": "/v1/reports/{tracking_code}", "method": "GET"}
    count = "http_request_duration_seconds_count"
    assert total(after, count, **labels) - total(before, count, **labels) == 2
    assert total(after, "http_request_duration_seconds_sum", **labels) > total(
        before, "http_request_duration_seconds_sum", **labels
    )
    buckets = {
        found["le"] for found, _ in after["http_request_duration_seconds_bucket"] if found["route"] == labels["route"]
    }
    assert {"0.005", "0.1", "1.0", "10.0", "+Inf"} <= buckets
    # No status label on the histogram: one latency series per route and method.
    assert all("status" not in found for found, _ in after["http_request_duration_seconds_bucket"])


def test_a_404_for_a_random_path_makes_no_new_label(client):
    client.get("/nothing/here")  # the unmatched series exists from here on
    before = scrape(client)
    random_paths = [f"/{uuid.uuid4().hex}/{uuid.uuid4().hex}" for _ in range(5)]
    for path in random_paths:
        assert client.get(path).status_code == 404

    after = scrape(client)

    assert routes(after) == routes(before)
    unmatched = {"route": "(unmatched)", "method": "GET", "status": "4xx"}
    assert total(after, "http_requests_total", **unmatched) - total(before, "http_requests_total", **unmatched) == 5
    text = client.get("/metrics").text
    assert not any(path.strip("/").split("/")[0] in text for path in random_paths)


def test_an_unknown_method_is_counted_as_other(client):
    before = scrape(client)
    client.request("PURGE", "/healthz")

    after = scrape(client)

    other = {"route": "/healthz", "method": "other"}
    assert total(after, "http_requests_total", **other) - total(before, "http_requests_total", **other) == 1


def test_the_spec_and_docs_assets_are_counted_by_their_templates(client):
    before = scrape(client)
    client.get("/openapi.json")
    client.get("/docs/assets/favicon.png")
    client.get(f"/docs/assets/{uuid.uuid4().hex}.js")  # a 404 inside the mount stays in the mount's series

    after = scrape(client)

    spec = {"route": "/openapi.json", "method": "GET", "status": "2xx"}
    assert total(after, "http_requests_total", **spec) - total(before, "http_requests_total", **spec) == 1
    assets = {"route": "/docs/assets/{path}", "method": "GET"}
    assert total(after, "http_requests_total", **assets) - total(before, "http_requests_total", **assets) == 2


def test_an_unhandled_error_is_counted_as_5xx_under_its_route(settings):
    app = create_app(settings)

    @app.get("/test-only/explode/{what}")
    async def explode(what: str) -> None:
        raise RuntimeError(what)

    with TestClient(app, raise_server_exceptions=False) as broken:
        before = scrape(broken)
        assert broken.get("/test-only/explode/now").status_code == 500
        after = scrape(broken)

    labels = {"route": "/test-only/explode/{what}", "method": "GET", "status": "5xx"}
    assert total(after, "http_requests_total", **labels) - total(before, "http_requests_total", **labels) == 1


def test_build_info_names_the_version_python_and_commit(settings):
    with TestClient(create_app(settings.model_copy(update={"build_commit": "3f2c1ab"}))) as built:
        samples = scrape(built)

    ((labels, one),) = samples["intake_build_info"]
    assert one == 1
    assert labels == {"version": version("citizen-intake"), "python": platform.python_version(), "commit": "3f2c1ab"}


def test_build_info_without_a_commit_still_answers(client):
    ((labels, one),) = scrape(client)["intake_build_info"]
    assert one == 1 and labels["commit"] == "" and labels["version"] == version("citizen-intake")
