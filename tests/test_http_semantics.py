"""HTTP as clients and caches read it: what may be stored, and which methods a path takes."""

from service.auth import users
from tests.conftest import in_app
from tests.factories import report_body

PASSWORD = "a long staff password"


def test_no_authenticated_answer_may_be_stored_by_a_cache(client, api_key):
    in_app(client, lambda s: users.create(s, username="cache.admin", password=PASSWORD, role="admin"))
    signed_in = client.post("/v1/auth/token", data={"username": "cache.admin", "password": PASSWORD})
    bearer = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
    created = client.post("/v1/reports", json=report_body(), headers={"X-API-Key": api_key})
    code, citizen = created.json()["tracking_code"], {"X-Citizen-Token": created.json()["citizen_token"]}

    answers = {
        "sign-in (tokens)": signed_in,
        "refresh (tokens)": client.post("/v1/auth/refresh", json={"refresh_token": signed_in.json()["refresh_token"]}),
        "intake (citizen token)": created,
        "API key": client.get("/v1/auth/me", headers={"X-API-Key": api_key}),
        "bearer": client.get("/v1/tickets", headers=bearer),
        "bearer, IOC figures": client.get("/v1/ioc/summary", headers=bearer),
        "bearer, error": client.get("/v1/tickets/NOPE-0000", headers=bearer),
        "citizen token": client.get(f"/v1/reports/{code}", headers=citizen),
    }
    for name, answer in answers.items():
        assert answer.status_code < 500, (name, answer.text)
        assert answer.headers.get("cache-control") == "no-store", name

    # Public answers keep their own caching rules.
    assert "no-store" not in client.get("/open311/v2/services.json").headers.get("cache-control", "")


def test_method_not_allowed_lists_every_method_the_path_takes(client, api_key):
    # GET and POST are two routes on this path; both belong in Allow.
    answer = client.delete("/v1/webhooks/subscriptions", headers={"X-API-Key": api_key})
    assert answer.status_code == 405
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert {method.strip() for method in answer.headers["allow"].split(",")} == {"GET", "HEAD", "POST"}

    # A path with one route, and one whose routes take GET, PATCH and DELETE.
    assert {m.strip() for m in client.put("/v1/auth/me").headers["allow"].split(",")} == {"GET", "HEAD"}
    many = client.put("/v1/webhooks/subscriptions/00000000-0000-0000-0000-000000000000", headers={"X-API-Key": api_key})
    assert many.status_code == 405
    assert {m.strip() for m in many.headers["allow"].split(",")} == {"GET", "HEAD", "PATCH", "DELETE"}

    # Open311's catch-all ("no such resource") answers every other path under /open311/v2, GET and POST;
    # on a resource's own path it takes nothing, so Allow names only that resource's methods.
    discovery = client.options("/open311/v2/discovery.xml")
    assert discovery.status_code == 405
    assert {m.strip() for m in discovery.headers["allow"].split(",")} == {"GET", "HEAD"}
    assert {m.strip() for m in client.put("/open311/v2/requests.json").headers["allow"].split(",")} == {
        "GET",
        "HEAD",
        "POST",
    }


def test_head_answers_wherever_get_does_with_the_same_headers_and_no_body(client, api_key):
    created = client.post("/v1/reports", json=report_body(), headers={"X-API-Key": api_key}).json()
    citizen = {"X-Citizen-Token": created["citizen_token"]}
    for path, headers in (
        ("/healthz", {}),
        ("/v1/categories", {}),
        ("/docs", {}),
        (f"/v1/reports/{created['tracking_code']}", citizen),
        ("/open311/v2/services.json", {}),
    ):
        got, head = client.get(path, headers=headers), client.head(path, headers=headers)
        assert got.status_code == 200 and head.status_code == 200, (path, head.status_code)
        assert head.content == b"", path
        per_request = {"date", "x-request-id"}
        assert {k: v for k, v in head.headers.items() if k not in per_request} == {
            k: v for k, v in got.headers.items() if k not in per_request
        }, path
        assert int(head.headers["content-length"]) == len(got.content), path

    # Counted in /metrics as HEAD under the route's template, like any other method.
    metrics = client.get("/metrics").text
    assert 'http_requests_total{method="HEAD",route="/v1/reports/{tracking_code}",status="2xx"}' in metrics

    # Where GET is allowed, so is HEAD; where it is not, HEAD is a 405 like GET.
    assert {m.strip() for m in client.put("/v1/auth/me").headers["allow"].split(",")} == {"GET", "HEAD"}
    refused = client.head("/v1/auth/token")
    assert refused.status_code == 405 and refused.content == b""
    assert {m.strip() for m in refused.headers["allow"].split(",")} == {"POST"}
