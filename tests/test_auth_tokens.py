"""Staff sign-in and tokens: a refresh token is spent once, a stolen one betrays itself, guessing is
limited but signing in is not, and no token we did not issue gets past the door."""

import asyncio
import uuid
from datetime import timedelta

import httpx
import jwt
import pytest
from fastapi.testclient import TestClient

from service.auth import users
from service.auth.passwords import hash_password
from service.auth.tokens import ALGORITHM, AUDIENCE
from service.main import create_app
from service.models.types import utcnow
from tests.conftest import in_app, limits_app

PASSWORD = "a long staff password"


def make_user(client, username: str = "dispatcher.one", role: str = "dispatcher") -> None:
    in_app(client, lambda s: users.create(s, username=username, password=PASSWORD, role=role))


def sign_in(client, username: str = "dispatcher.one", password: str = PASSWORD):
    return client.post("/v1/auth/token", data={"username": username, "password": password})


def refresh(client, token: str):
    return client.post("/v1/auth/refresh", json={"refresh_token": token})


def concurrently(
    client: TestClient, count: int, method: str, path: str, *, address: str = "127.0.0.1", **kwargs
) -> list[httpx.Response]:
    """`count` requests at once on the app's own event loop (each with its own database connection),
    coming from `address`."""

    async def burst() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app, client=(address, 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            return await asyncio.gather(*(http.request(method, path, **kwargs) for _ in range(count)))

    return client.portal.call(burst)


def test_concurrent_refreshes_of_one_token_succeed_exactly_once(client):
    make_user(client)
    token = sign_in(client).json()["refresh_token"]

    answers = concurrently(client, 10, "POST", "/v1/auth/refresh", json={"refresh_token": token})

    assert sorted(answer.status_code for answer in answers) == [200] + [401] * 9
    assert all(answer.json()["code"] == "invalid_token" for answer in answers if answer.status_code == 401)
    # The nine others presented a spent token: whoever holds the winner's tokens must sign in again.
    winner = next(answer for answer in answers if answer.status_code == 200).json()
    assert refresh(client, winner["refresh_token"]).status_code == 401
    assert client.get("/v1/auth/me", headers={"Authorization": f"Bearer {winner['access_token']}"}).status_code == 401


def test_reusing_a_spent_refresh_token_revokes_every_token_issued_from_it(client):
    make_user(client)
    first = sign_in(client).json()["refresh_token"]
    second = refresh(client, first).json()["refresh_token"]
    latest = refresh(client, second).json()
    other_device = sign_in(client).json()
    assert me(client, latest["access_token"]).status_code == 200

    # Someone replays the first token (stolen earlier): the whole chain it started is now dead,
    # the access token of its latest pair included...
    assert refresh(client, first).status_code == 401
    assert refresh(client, latest["refresh_token"]).status_code == 401
    assert me(client, latest["access_token"]).status_code == 401
    # ...but a separate sign-in (another device) is its own family and keeps working.
    assert me(client, other_device["access_token"]).status_code == 200
    assert refresh(client, other_device["refresh_token"]).status_code == 200


def me(client, access_token: str):
    return client.get("/v1/auth/me", headers={"Authorization": f"Bearer {access_token}"})


def test_an_expired_or_unknown_refresh_token_is_refused(client):
    make_user(client)
    token = sign_in(client).json()["refresh_token"]

    async def expire(session):
        from sqlalchemy import update

        from service.models import RefreshToken

        await session.exec(update(RefreshToken).values(expires_at=utcnow() - timedelta(seconds=1)))

    in_app(client, expire)
    assert refresh(client, token).status_code == 401
    assert refresh(client, "not-a-token-we-ever-issued").status_code == 401


def test_a_signed_token_whose_subject_is_not_a_user_id_is_401_not_500(settings, client):
    now = utcnow()
    for subject in ("admin", "", "1" * 100):
        forged = jwt.encode(
            {
                "sub": subject,
                "role": "admin",
                "dept": None,
                "aud": AUDIENCE,
                "iat": now,
                "exp": now + timedelta(minutes=5),
            },
            settings.secret_key,
            algorithm=ALGORITHM,
        )
        answer = client.get("/v1/auth/me", headers={"Authorization": f"Bearer {forged}"})
        assert answer.status_code == 401, (subject, answer.text)
        assert answer.json()["code"] == "invalid_token"
    bad_family = jwt.encode(
        {
            "sub": str(uuid.uuid4()),
            "fam": "not-a-family",
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + timedelta(minutes=5),
        },
        settings.secret_key,
        algorithm=ALGORITHM,
    )
    assert client.get("/v1/auth/me", headers={"Authorization": f"Bearer {bad_family}"}).status_code == 401
    # A well-formed id of nobody is refused the same way.
    nobody = jwt.encode(
        {"sub": str(uuid.uuid4()), "aud": AUDIENCE, "iat": now, "exp": now + timedelta(minutes=5)},
        settings.secret_key,
        algorithm=ALGORITHM,
    )
    assert client.get("/v1/auth/me", headers={"Authorization": f"Bearer {nobody}"}).status_code == 401


def test_many_good_sign_ins_from_one_office_never_lock_anyone_out(settings, client):
    for number in range(4):
        make_user(client, f"officer.{number}", "dispatcher")
    with limits_app(settings, rate_limit_sign_in="10/15 minutes") as office:
        codes = [sign_in(office, f"officer.{n % 4}").status_code for n in range(25)]
        assert codes == [200] * 25
        # Refreshing is not signing in, and a handful of typos stays under the limit.
        assert [sign_in(office, "officer.0", "typo typo typo").status_code for _ in range(3)] == [401] * 3
        assert sign_in(office, "officer.0").status_code == 200


def test_failed_sign_ins_lock_the_account_with_retry_after(settings, client):
    make_user(client, "victim")
    make_user(client, "colleague")
    with limits_app(settings, rate_limit_sign_in="5/15 minutes") as limited:
        # A guesser from many addresses still hits the per-account limit.
        codes = [
            concurrently(
                limited,
                1,
                "POST",
                "/v1/auth/token",
                address=f"203.0.113.{n}",
                data={"username": "victim", "password": f"guess {n}"},
            )[0].status_code
            for n in range(6)
        ]
        assert codes == [401] * 5 + [429]
        locked = sign_in(limited, "victim")  # even the right password waits, so the guesser learns nothing
        assert locked.status_code == 429
        assert int(locked.headers["retry-after"]) > 0
        assert locked.json()["code"] == "rate_limited"
        # The lock is on that account: a colleague at the same desk signs in.
        assert sign_in(limited, "colleague").status_code == 200


def test_wrong_sign_ins_are_still_limited_while_redis_is_down(settings, client):
    """The limits on failed sign-ins fall back on the API process's own count: an outage of Redis must not
    open the door to guessing passwords (intake's limits fail open: a city would rather take a report)."""
    make_user(client, "victim")
    make_user(client, "colleague")
    down = settings.model_copy(
        update={"redis_url": "redis://127.0.0.1:1/0", "rate_limit_sign_in": "3/15 minutes", "queue_name": "no-redis"}
    )
    with TestClient(create_app(down)) as outage:
        # Staff still sign in.
        assert concurrently(outage, 1, "POST", "/v1/auth/token", data=form("colleague"))[0].status_code == 200
        # A guesser moving from address to address still hits the per-account limit...
        codes = [
            concurrently(
                outage, 1, "POST", "/v1/auth/token", address=f"203.0.113.{n}", data=form("victim", f"guess {n}")
            )[0].status_code
            for n in range(4)
        ]
        assert codes == [401, 401, 401, 429]
        locked = concurrently(outage, 1, "POST", "/v1/auth/token", address="198.51.100.7", data=form("victim"))[0]
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
        # ...and one address guessing across accounts hits its own.
        for name in ("colleague", "dave", "erin"):
            concurrently(outage, 1, "POST", "/v1/auth/token", address="198.51.100.9", data=form(name, "wrong"))
        assert (
            concurrently(outage, 1, "POST", "/v1/auth/token", address="198.51.100.9", data=form("colleague"))[
                0
            ].status_code
            == 429
        )
        # Whoever did nothing wrong is not locked out.
        assert concurrently(outage, 1, "POST", "/v1/auth/token", data=form("colleague"))[0].status_code == 200


def form(username: str, password: str = PASSWORD) -> dict:
    return {"username": username, "password": password}


def test_failed_sign_ins_lock_the_address_for_every_account(settings, client):
    for name in ("alice", "bob", "carol"):
        make_user(client, name)
    with limits_app(settings, rate_limit_sign_in="4/15 minutes") as limited:
        # One guess each on many accounts: the per-account limits never fill, the address's does.
        codes = [sign_in(limited, name, "wrong password").status_code for name in ("alice", "bob", "carol", "dave")]
        assert codes == [401] * 4
        refused = sign_in(limited, "carol")
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) > 0


def test_a_valid_token_beside_an_unknown_api_key_is_refused(client, api_key):
    make_user(client)
    access_token = sign_in(client).json()["access_token"]
    bearer = {"Authorization": f"Bearer {access_token}"}
    assert client.get("/v1/auth/me", headers=bearer).status_code == 200
    # An unknown key, an empty one, a real one: two credentials every time. And a real key beside a
    # malformed Authorization header.
    for headers in [{**bearer, "X-API-Key": key} for key in ("not-a-key", "", api_key)] + [
        {"Authorization": "garbage", "X-API-Key": api_key}
    ]:
        answer = client.get("/v1/auth/me", headers=headers)
        assert answer.status_code == 401, (headers, answer.text)
        assert answer.json()["code"] == "ambiguous_credentials"
    assert client.get("/v1/auth/me", headers={"X-API-Key": api_key}).status_code == 200


def test_sign_in_form_declares_it_needs_a_username_and_password(client):
    body = client.get("/openapi.json").json()["paths"]["/v1/auth/token"]["post"]["requestBody"]
    password_grant, refresh_grant = body["content"]["application/x-www-form-urlencoded"]["schema"]["oneOf"]
    assert password_grant["required"] == ["username", "password"]
    assert (
        password_grant["properties"]["username"]["minLength"] == 1
        and password_grant["properties"]["password"]["minLength"] == 1
    )
    # A form cannot send null; the grant type is a plain string, "password" when left out.
    assert password_grant["properties"]["grant_type"] == {
        "type": "string",
        "const": "password",
        "title": "Grant Type",
        "default": "password",
    }
    assert refresh_grant["required"] == ["grant_type", "refresh_token"]
    answer = client.post("/v1/auth/token", data={"username": "", "password": ""})
    assert answer.status_code == 422
    assert {error["field"] for error in answer.json()["errors"]} == {"username", "password"}
    assert answer.json()["error"] == "invalid_request"


def refresh_grant(client, token: str):
    return client.post("/v1/auth/token", data={"grant_type": "refresh_token", "refresh_token": token})


def test_token_endpoint_refresh_token_grant_works_once(client):
    make_user(client)
    first = sign_in(client).json()

    renewed = refresh_grant(client, first["refresh_token"])

    assert renewed.status_code == 200, renewed.text
    pair = renewed.json()
    assert pair["token_type"] == "bearer" and pair["expires_in"] == 15 * 60
    assert pair["refresh_token"] != first["refresh_token"]
    assert renewed.headers["cache-control"] == "no-store"  # RFC 6749 §5.1
    assert me(client, pair["access_token"]).json()["name"] == "dispatcher.one"
    # The spent token is refused in the OAuth2 shape as well as ours.
    again = refresh_grant(client, first["refresh_token"])
    assert again.status_code == 401
    assert again.headers["content-type"] == "application/problem+json"
    assert again.json()["code"] == "invalid_token"
    assert again.json()["error"] == "invalid_grant"
    assert again.json()["error_description"].isascii()


def test_token_endpoint_refresh_reuse_revokes_the_family_like_the_refresh_endpoint(client):
    make_user(client)
    first = sign_in(client).json()["refresh_token"]
    second = refresh_grant(client, first).json()["refresh_token"]
    latest = refresh(client, second).json()  # the two endpoints spend tokens of one family alike
    other_device = sign_in(client).json()

    assert refresh_grant(client, first).status_code == 401  # replayed
    assert refresh_grant(client, latest["refresh_token"]).json()["error"] == "invalid_grant"
    assert me(client, latest["access_token"]).status_code == 401
    assert me(client, other_device["access_token"]).status_code == 200
    assert refresh_grant(client, other_device["refresh_token"]).status_code == 200


def test_token_endpoint_refuses_an_unsupported_grant_type_with_400(client):
    make_user(client)
    for grant_type in ("client_credentials", "authorization_code", "PASSWORD"):
        answer = client.post(
            "/v1/auth/token", data={"grant_type": grant_type, "username": "dispatcher.one", "password": PASSWORD}
        )
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.json()["code"] == "unsupported_grant_type"
        assert answer.json()["error"] == "unsupported_grant_type"
    vietnamese = client.post("/v1/auth/token", data={"grant_type": "implicit"}, headers={"Accept-Language": "vi"})
    assert vietnamese.json()["title"].startswith("Điểm cấp mã")


def test_token_endpoint_password_grant_says_invalid_grant_and_takes_the_explicit_grant_type(client):
    make_user(client)
    explicit = client.post(
        "/v1/auth/token", data={"grant_type": "password", "username": "dispatcher.one", "password": PASSWORD}
    )
    assert explicit.status_code == 200
    wrong = sign_in(client, password="not the password")
    assert wrong.status_code == 401
    assert (wrong.json()["code"], wrong.json()["error"]) == ("invalid_credentials", "invalid_grant")
    assert wrong.headers["www-authenticate"] == "Bearer"


def test_token_endpoint_refuses_a_parameter_sent_twice(client):
    make_user(client)
    answer = client.post(
        "/v1/auth/token",
        content="username=dispatcher.one&username=admin&password=x",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 422
    assert answer.json()["error"] == "invalid_request"
    assert [error["field"] for error in answer.json()["errors"]] == ["username"]


def test_token_endpoint_refuses_nul_in_a_field_with_422_text_not_storable_on_every_backend(client):
    make_user(client)
    for body in (
        "username=%00&password=x",
        "username=dispatcher.one&password=a%00b",
        "grant_type=refresh_token&refresh_token=%00%00%00%00%00%00%00%00%00%00",
    ):
        answer = client.post(
            "/v1/auth/token", content=body, headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert answer.status_code == 422, (body, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        assert (answer.json()["code"], answer.json()["error"]) == ("text_not_storable", "invalid_request")
        assert [error["code"] for error in answer.json()["errors"]] == ["text_not_storable"]
    # Not counted as a failed sign-in: the right password still works at once.
    assert sign_in(client).status_code == 200


def test_a_burst_of_wrong_sign_ins_from_one_address_is_still_limited(settings, client, caplog):
    # Password checks are slow on purpose: while they run, the limiter's own checks must stay answered.
    with limits_app(settings, rate_limit_sign_in="10/15 minutes") as limited:
        codes = [
            answer.status_code
            for _ in range(5)
            for answer in concurrently(
                limited,
                10,
                "POST",
                "/v1/auth/token",
                address="198.51.100.7",
                data={"username": "ghost", "password": "wrong-password-123"},
            )
        ]
    assert set(codes) == {401, 429}
    assert codes.count(401) <= 20  # the limit, and at most one burst that asked before any failure counted
    assert "rate limiter: Redis unavailable" not in caplog.text


def test_a_username_differing_only_in_case_from_a_taken_one_is_refused(client):
    make_user(client, "off_light", "dispatcher")
    for look_alike in ("OFF_LIGHT", "Off_Light", "off_light"):
        with pytest.raises(ValueError, match="is taken"):
            make_user(client, look_alike, "admin")
    assert sign_in(client, "off_light").status_code == 200
    # No second account behind the look-alike name: it signs in to the one account.
    assert me(client, sign_in(client, "OFF_LIGHT").json()["access_token"]).json()["name"] == "off_light"
    with pytest.raises(ValueError, match="is taken"):
        make_user(client, " off_light ", "admin")


def test_a_username_typed_on_a_phone_signs_in(client):
    """A phone's keyboard capitalises the first letter and adds a space after a suggested word."""
    make_user(client, "officer.lan", "dispatcher")
    for typed in ("Officer.lan", "officer.lan ", " OFFICER.LAN"):
        answer = sign_in(client, typed)
        assert answer.status_code == 200, (typed, answer.text)
        assert me(client, answer.json()["access_token"]).json()["name"] == "officer.lan"
    assert sign_in(client, "Officer.lan", "wrong password").status_code == 401


def test_of_two_accounts_made_before_names_were_case_blind_the_exact_spelling_signs_in(client):
    from service.models import StaffUser

    async def twins(session):
        for name in ("Hoa", "hoa"):
            session.add(StaffUser(username=name, password_hash=hash_password(PASSWORD), role="dispatcher"))

    in_app(client, twins)
    for name in ("Hoa", "hoa"):
        assert me(client, sign_in(client, name).json()["access_token"]).json()["name"] == name
