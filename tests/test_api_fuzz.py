"""Property-based API testing: schemathesis reads the committed spec (openapi/openapi.json), generates
requests for every operation — valid and invalid, JSON, form and multipart, with and without real
credentials — and sends them to a real `intake serve` on the test PostgreSQL.

Every check schemathesis has runs (`--checks all`): every answer must be a non-5xx, with a status
code the spec lists for that operation, the content type it declares, a body matching the declared
schema and the declared headers; a request the spec calls invalid is refused and one it calls valid
is accepted (less the refusals listed, with their reasons, in REFUSALS_OF_WELL_FORMED_REQUESTS); an
operation that needs credentials refuses the same request without them and with invalid ones; an
undeclared method answers 405 with an Allow header naming exactly the declared ones. Real resources are
created first (a processed report with a photo and its ticket, staff of every role, keys of every
role, webhook subscriptions with an event), and about half of the generated identifiers, sign-in
fields and key fields are swapped for real ones, so the 2xx answers are checked too, not only the
404s and 401s that random values give.

Bounded for `make test` on two cores: a fixed number of examples per operation, derandomized (the same
requests on every run, so a failure reproduces), no Hypothesis example database. PostgreSQL only.
"""

import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from fastapi.testclient import TestClient
from schemathesis.checks import CHECKS as REGISTERED_CHECKS
from schemathesis.checks import is_check_class, load_all_checks, max_response_time, not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation.meta import CoveragePhaseData, CoverageScenario
from sqlalchemy import text

from service.auth import api_keys, users
from service.db import metadata
from service.main import create_app
from tests.conftest import CATALOGUE_TABLES, in_app, run_in_session, run_worker
from tests.factories import BEN_THANH_MARKET, jpeg_bytes, report_body
from tests.processes import live_api

ROOT = Path(__file__).resolve().parent.parent
SPEC = ROOT / "openapi" / "openapi.json"
EXAMPLES_PER_OPERATION = 30

# Every check schemathesis has (`--checks all`), read from its own registry so a check a new version
# adds runs here too, plus max_response_time (its default 10 s limit: far beyond any answer on
# loopback). use_after_free and ensure_resource_availability judge a sequence of calls and
# object_level_authorization needs identities configured in schemathesis: they stay enabled, and act
# in stateful runs only. Nothing is excluded as a whole:
EXCLUDED_CHECKS: dict[str, str] = {}
load_all_checks()
CHECKS = [
    check
    for check in [*REGISTERED_CHECKS.get_all(), max_response_time]
    if not is_check_class(check) and check.__name__ not in EXCLUDED_CHECKS
]

# positive_data_acceptance expects a schema-valid request to be accepted (2xx, 3xx), or refused only
# for credentials (401, 403), a missing resource (404), a conflicting state (409) or a limit (429).
# Where the spec cannot express what makes a well-formed request unacceptable, the operation may also
# answer these, and only these (the check still holds for every other status). Text with NUL, which
# no database stores, is refused with 422 wherever the operation takes text (listed as "NUL"):
REFUSALS_OF_WELL_FORMED_REQUESTS: dict[str, tuple[list[int], str]] = {
    "POST /v1/reports": ([422], "a location outside the city, an unknown service code, bytes that are no image"),
    "POST /v1/reports/{tracking_code}/replies": ([422], "bytes that are no image; a message of only spaces"),
    "POST /v1/tickets/{ticket}/photos": (
        [412, 422],
        "bytes that are no image; a message of only spaces; a stale If-Match",
    ),
    "GET /v1/tickets": (
        [422],
        "a made-up cursor; an impossible date (2026-02-31) or an end before the start; an unknown status or assignee",
    ),
    "GET /v1/tickets/export.csv": (
        [422],
        "an impossible date or an end before the start; an unknown status or assignee; NUL",
    ),
    "POST /v1/tickets/{ticket}/transitions": ([412, 422], "a stale If-Match; a field the target status requires"),
    "POST /v1/tickets/{ticket}/triage": ([412, 422], "a stale If-Match; an unknown service code"),
    "POST /v1/tickets/{ticket}/transfer": ([412, 422], "a stale If-Match; an unknown department; NUL"),
    "POST /v1/tickets/{ticket}/comments": ([412], "a stale If-Match"),
    "POST /v1/tickets/{ticket}/assignee": ([412, 422], "a stale If-Match; an unknown or ineligible assignee"),
    "POST /v1/tickets/{ticket}/claim": ([412], "a stale If-Match"),
    "POST /v1/tickets/{ticket}/unclaim": ([412], "a stale If-Match"),
    "POST /v1/tickets/bulk": ([422], "NUL (each ticket's own refusal is in the 200's results)"),
    "POST /v1/auth/password": ([422], "a wrong current password"),
    "GET /v1/ioc/summary": ([422], "an impossible date or an empty range"),
    "GET /v1/ioc/timeseries": ([422], "an impossible date, an empty range or too many buckets"),
    "GET /v1/ioc/hotspots": ([422], "an impossible date or an empty range"),
    "POST /open311/v2/requests.{response_format}": ([400], "a location outside the city, an unknown service code"),
    "GET /open311/v2/requests.{response_format}": ([400], "an impossible date or an end before the start"),
    "POST /v1/webhooks/subscriptions": (
        [422],
        "a target the SSRF rules refuse; an unknown department or service filter",
    ),
    "PATCH /v1/webhooks/subscriptions/{subscription_id}": ([422], "a target the SSRF rules refuse; an unknown filter"),
    "GET /v1/webhooks/subscriptions/{subscription_id}/deliveries": ([422], "a made-up cursor"),
    "GET /v1/webhooks/subscriptions/{subscription_id}/events": ([422], "a made-up cursor"),
    "POST /v1/webhooks/subscriptions/{subscription_id}/redeliver": ([422], "an impossible date"),
}
POSITIVE_DATA_ACCEPTANCE_DEFAULT = ["2xx", "3xx", 401, 403, 404, 409, 429]


def checks_for(case) -> list:
    """CHECKS, less any that cannot judge this one case; each such exclusion says why."""
    data = case.meta.phase.data if case.meta is not None else None
    if (
        isinstance(data, CoveragePhaseData)
        and data.scenario is CoverageScenario.VALID_OBJECT
        and data.parameter == "multipart/form-data"
    ):
        # schemathesis's coverage phase makes this scenario only as a valid value (a PositiveValue in
        # its coverage generator), yet marks a multipart body so made invalid ("object with valid
        # 'photos' value: near-boundary items array": 4 photos of at most 5, all fields valid). The
        # 201 is right, so negative_data_rejection has nothing to judge here; every other check runs.
        return [check for check in CHECKS if check.__name__ != "negative_data_rejection"]
    return CHECKS


PASSWORD = "fuzzing password 123"
# Webhook targets on the discard port of loopback, allowed for the server under test only; no worker
# ever runs for it, so nothing is delivered anyway.
HOOK_URL = "http://127.0.0.1:9/hooks/fuzz"


def fuzz_config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": 1022,
            "generation": {"max-examples": EXAMPLES_PER_OPERATION, "deterministic": True, "database": "none"},
            # Stateful (link-following) runs are another mode; here each operation is tested on its own.
            "phases": {"stateful": {"enabled": False}},
            "operations": [
                {
                    "include-name": label,
                    "checks": {
                        "positive_data_acceptance": {
                            "expected-statuses": [*POSITIVE_DATA_ACCEPTANCE_DEFAULT, *statuses]
                        }
                    },
                }
                for label, (statuses, _reason) in REFUSALS_OF_WELL_FORMED_REQUESTS.items()
            ],
        }
    )


@dataclass
class Target:
    """The live server and the real things in its database that generated requests may name."""

    base_url: str
    credentials: dict[str, dict[str, str]]  # name -> headers
    path_values: dict[str, list[str]]
    deletable_subscriptions: list[str]  # DELETE takes these, so the others live for the rest of the run
    citizen_tokens: dict[str, str]  # tracking code -> X-Citizen-Token
    body_values: dict[str, list]


def _seed(client, base_url: str) -> Target:
    app_key = in_app(client, lambda s: api_keys.create(s, name="fuzz app")).key
    app = {"X-API-Key": app_key}
    # Three reports, far enough apart not to be duplicates: one for the ticket operations, one
    # resolved (rating, reopen), one on hold (replies).
    created, resolved, on_hold = (
        client.post(
            "/v1/reports",
            data=report_body(reporter_phone="0903111222", lat=BEN_THANH_MARKET[0] + n * 0.003),
            files=[("photos", ("a.jpg", jpeg_bytes(), "image/jpeg"))],
            headers=app,
        ).json()
        for n in range(3)
    )
    run_worker(client)  # classified, routed, photos processed; no subscription exists yet
    ticket = client.get(f"/v1/tickets/{created['tracking_code']}", headers=app).json()
    department = ticket["department_code"]

    async def people(session):
        for role in ("admin", "dispatcher"):
            await users.create(session, username=f"fuzz-{role}", password=PASSWORD, role=role)
        for role in ("supervisor", "officer"):
            await users.create(
                session, username=f"fuzz-{role}", password=PASSWORD, role=role, department_code=department
            )
        return {
            "ioc_key": (await api_keys.create(session, name="fuzz ioc", role="ioc_viewer")).key,
            "admin_key": (await api_keys.create(session, name="fuzz admin", role="admin")).key,
            "department_key": (
                await api_keys.create(session, name="fuzz dept", role="department_system", department_code=department)
            ).key,
        }

    credentials = {"app": app, **{name: {"X-API-Key": key} for name, key in in_app(client, people).items()}}
    refresh_tokens = []
    for role in ("admin", "dispatcher", "supervisor", "officer"):
        tokens = client.post("/v1/auth/token", data={"username": f"fuzz-{role}", "password": PASSWORD}).json()
        credentials[role] = {"Authorization": f"Bearer {tokens['access_token']}"}
        refresh_tokens.append(tokens["refresh_token"])

    admin = credentials["admin"]
    for report, change in (
        (resolved, {"to": "resolved", "public_reply": "Đã thay bóng đèn."}),
        (on_hold, {"to": "on_hold", "question": "Cột đèn số mấy ạ?"}),
    ):
        answer = client.post(f"/v1/tickets/{report['tracking_code']}/transitions", json=change, headers=admin)
        assert answer.status_code == 200, answer.text

    settings = client.app.state.settings
    allowed, settings.webhook_allowed_hosts = settings.webhook_allowed_hosts, ["127.0.0.1"]
    try:
        subscriptions = [
            client.post("/v1/webhooks/subscriptions", json={"url": HOOK_URL}, headers=app).json()["id"]
            for _ in range(4)
        ]
    finally:
        settings.webhook_allowed_hosts = allowed
    # A public reply: one event in each subscription's outbox, for the event and redelivery operations.
    client.post(
        f"/v1/tickets/{created['tracking_code']}/comments",
        json={"body": "Đã tiếp nhận", "visibility": "public"},
        headers=credentials["admin"],
    )
    events = client.get(f"/v1/webhooks/subscriptions/{subscriptions[0]}/events", headers=app).json()["items"]
    return Target(
        base_url=base_url,
        credentials=credentials,
        path_values={
            "tracking_code": [report["tracking_code"] for report in (created, resolved, on_hold)],
            "ticket": [created["tracking_code"], created["id"]],
            "service_request_id": [created["tracking_code"]],
            "token": [created["id"]],
            "photo_id": [ticket["photos"][0]["id"]],
            "subscription_id": subscriptions[:1],
            "event_id": [event["event_id"] for event in events],
            "service_code": ["street_lighting", "road_traffic"],
        },
        deletable_subscriptions=subscriptions[1:],
        citizen_tokens={report["tracking_code"]: report["citizen_token"] for report in (created, resolved, on_hold)},
        body_values={
            "assignee_username": ["fuzz-officer"],
            "department_code": [department],
            "service_code": ["street_lighting"],
            "duplicate_of": [created["tracking_code"]],
            "username": ["fuzz-admin", "fuzz-officer"],
            "password": [PASSWORD],
            "refresh_token": refresh_tokens,
            "api_key": [app_key],  # Open311 takes the key as a form field
            "lat": [BEN_THANH_MARKET[0]],
            "lon": [BEN_THANH_MARKET[1]],
            "long": [BEN_THANH_MARKET[1]],
            "url": [HOOK_URL],
        },
    )


class _Live:
    """What the generation hooks read: set by the `target` fixture before any case is drawn."""

    target: Target | None = None

    def __getattr__(self, name):
        return getattr(self.target, name)


LIVE = _Live()


@pytest.fixture(scope="module")
def target(settings, tmp_path_factory):
    """Seeded once per module (every operation is one test), then `intake serve` on the same database."""
    if settings.is_sqlite:
        pytest.skip("the API is fuzzed once, on PostgreSQL; the SQLite pass covers the same routes in-process")

    async def empty_tables(session) -> None:
        for table in reversed(metadata.sorted_tables):
            if table.name not in CATALOGUE_TABLES:
                await session.exec(text(f"DELETE FROM {table.name}"))

    run_in_session(settings, empty_tables)
    server = live_api(
        settings,
        tmp_path_factory.mktemp("fuzz"),
        queue_name=f"fuzz-{uuid.uuid4().hex[:8]}",  # no worker ever takes the jobs generated requests enqueue
        webhook_allowed_hosts=["127.0.0.1"],
    )
    with server as base_url, TestClient(create_app(settings)) as seeder:
        LIVE.target = _seed(seeder, base_url)
        try:
            yield LIVE.target
        finally:
            LIVE.target = None


schema = schemathesis.openapi.from_path(SPEC, config=fuzz_config())


def _pick(value, candidates: list):
    """About half of the generated values (chosen by their hash, so runs repeat) become a real one."""
    digest = zlib.crc32(repr(value).encode())
    return candidates[(digest >> 1) % len(candidates)] if digest % 2 == 0 else value


def use_real_values(case, target: Target) -> None:
    """About half the generated identifiers and body fields become real ones, where they were drawn
    valid: a value schemathesis made invalid stays as drawn, so negative_data_rejection may expect it
    refused (a real value swapped in would make the request valid behind the check's back)."""

    def drawn_invalid(location: ParameterLocation) -> bool:
        # The whole case, too: a request made invalid in one place is judged on what was drawn elsewhere.
        meta = case.meta
        return meta is not None and (meta.is_negative_at(location) or meta.generation.mode.is_negative)

    if case.path_parameters and not drawn_invalid(ParameterLocation.PATH):
        real = dict(target.path_values)
        if case.method.upper() == "DELETE":
            real["subscription_id"] = target.deletable_subscriptions
        case.path_parameters = {
            name: _pick(value, real[name]) if name in real else value for name, value in case.path_parameters.items()
        }
    if isinstance(case.body, dict) and not drawn_invalid(ParameterLocation.BODY):
        body = {
            name: _pick(value, target.body_values[name]) if name in target.body_values else value
            for name, value in case.body.items()
        }
        for field in ("photos", "media"):
            if field in body and zlib.crc32(repr(body[field]).encode()) % 2 == 0:
                photo = jpeg_bytes()  # a real photo, so multipart uploads get past the content check
                body[field] = [photo] if isinstance(body[field], list) else photo
        case.body = body


# Which credentials fit each part of the API. A case gets one of them, or (1 in 8) keeps whatever the
# generator made up, so the 401 answers are checked too.
CREDENTIALS_FOR = [
    ("/v1/tickets", ("admin", "officer", "dispatcher", "supervisor", "department_key", "app")),
    ("/v1/ioc", ("ioc_key", "admin", "dispatcher")),
    ("/v1/webhooks", ("app", "admin_key", "department_key", "admin")),
    ("/v1/reports", ("app",)),
    ("/v1/auth/me", ("app", "officer", "ioc_key")),
    # Keys only: a staff token signed out or a password changed would end the shared fuzz sign-ins
    # (tests/test_staff_accounts.py works these with staff of their own).
    ("/v1/auth/sign-out", ("app", "ioc_key")),
    ("/v1/auth/password", ("app", "admin_key")),
]


def authorise(case, target: Target) -> dict[str, str]:
    """The real credentials for this case, sent as the caller's own headers (not generated ones), so
    ignored_auth knows them for valid and checks the same request without them and with invalid ones.
    Generated headers are never removed (schemathesis would then judge a request it did not send): a
    credential of the kind the case already carries overrides it, or none is added."""
    choice = zlib.crc32(repr((case.path_parameters, case.query, case.headers, case.body)).encode())
    generated = {name.lower() for name in case.headers or {}}
    credentials: dict[str, str] = {}
    if choice % 8:
        tracking_code = (case.path_parameters or {}).get("tracking_code")
        if tracking_code in target.citizen_tokens:
            credentials["X-Citizen-Token"] = target.citizen_tokens[tracking_code]
        for prefix, names in CREDENTIALS_FOR:
            if case.path.startswith(prefix):
                drawn = generated & {"authorization", "x-api-key"}
                fitting = (
                    [name for name in names if {h.lower() for h in target.credentials[name]} <= drawn]
                    if drawn
                    else names
                )
                if fitting:
                    credentials.update(target.credentials[fitting[(choice >> 3) % len(fitting)]])
                break
    # Half the retries a well-behaved client would make: the same key for the same request.
    idempotency = next((name for name in case.headers or {} if name.lower() == "idempotency-key"), None)
    if (
        idempotency
        and choice % 2
        and not (case.meta is not None and case.meta.is_negative_at(ParameterLocation.HEADER))
    ):
        credentials[idempotency] = f"fuzz-{choice:08x}"
    return credentials


@schema.parametrize()
def test_every_operation_answers_as_its_spec_says(case, target):
    use_real_values(case, target)
    credentials = authorise(case, target)
    case.call_and_validate(base_url=target.base_url, headers=credentials, checks=checks_for(case), timeout=30)


# --- answers the generator cannot provoke on the live server: a spent limit and an outage ----------------


def test_rate_limit_and_outage_answers_match_the_spec(settings, client, api_key):
    body = report_body()
    tight = settings.model_copy(
        update={"queue_name": f"fuzz-{uuid.uuid4().hex[:8]}", "rate_limit_intake_per_address": "1/minute"}
    )
    with TestClient(create_app(tight)) as limited:
        assert limited.post("/v1/reports", json=body, headers={"X-API-Key": api_key}).status_code == 201
        refused = limited.post("/v1/reports", json=body, headers={"X-API-Key": api_key})
    assert refused.status_code == 429
    schema["/v1/reports"]["POST"].Case(body=body, media_type="application/json").validate_response(
        refused, checks=CHECKS
    )

    # The database is down (nothing listens on port 1): the client is told to retry, as documented.
    down = settings.model_copy(update={"database_url": "postgresql+asyncpg://postgres@127.0.0.1:1/intake"})
    with TestClient(create_app(down), raise_server_exceptions=False) as outage:
        answer = outage.get("/v1/reports/7K3P-9QX2")
    assert answer.status_code == 503
    # not_a_server_error is left out for this one answer: a documented 503 with Retry-After is what an
    # outage must give; every other check (status documented, problem+json, schema, Retry-After) holds.
    schema["/v1/reports/{tracking_code}"]["GET"].Case(path_parameters={"tracking_code": "7K3P-9QX2"}).validate_response(
        answer, checks=[check for check in CHECKS if check is not not_a_server_error]
    )
    assert int(answer.headers["retry-after"]) >= 1
