"""Staff accounts day to day: signing out (here or everywhere), changing one's own password, and what an
administrator does from the command line (list, change a role or department, deactivate, reset a
password, end someone's sign-ins). Whatever takes access away takes it away at once: the tokens
already handed out stop working."""

import logging
import os
import subprocess

import pytest

from service.auth import users
from tests.conftest import in_app, limits_app
from tests.processes import INTAKE, settings_environment

PASSWORD = "a long staff password"
NEW_PASSWORD = "another long password"


def make_user(client, username: str = "officer.lan", role: str = "dispatcher", department: str | None = None) -> None:
    in_app(
        client, lambda s: users.create(s, username=username, password=PASSWORD, role=role, department_code=department)
    )


def sign_in(client, username: str = "officer.lan", password: str = PASSWORD):
    return client.post("/v1/auth/token", data={"username": username, "password": password})


def bearer(pair: dict) -> dict:
    return {"Authorization": f"Bearer {pair['access_token']}"}


def me(client, pair: dict):
    return client.get("/v1/auth/me", headers=bearer(pair))


def refreshed(client, pair: dict):
    return client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})


def change_password(client, pair: dict, current: str = PASSWORD, new: str = NEW_PASSWORD):
    return client.post(
        "/v1/auth/password", json={"current_password": current, "new_password": new}, headers=bearer(pair)
    )


def test_signing_out_ends_this_sign_in_at_once_but_not_another_device(client):
    make_user(client)
    desk, phone = sign_in(client).json(), sign_in(client).json()
    rotated = refreshed(client, desk).json()  # the desk's sign-in, one refresh later

    answer = client.post("/v1/auth/sign-out", headers=bearer(rotated))

    assert answer.status_code == 204 and answer.content == b""
    # Every token of the desk's sign-in is dead: the access tokens before and after the refresh, and
    # the refresh token a thief might have copied from the desk.
    for pair in (desk, rotated):
        assert me(client, pair).status_code == 401
    assert refreshed(client, rotated).status_code == 401
    # The phone is its own sign-in.
    assert me(client, phone).status_code == 200
    assert refreshed(client, phone).status_code == 200
    # Signing out again with the dead token is refused, not an error of the server.
    again = client.post("/v1/auth/sign-out", headers=bearer(rotated))
    assert again.status_code == 401 and again.json()["code"] == "invalid_token"


def test_signing_out_everywhere_ends_every_sign_in_of_the_user_only(client):
    make_user(client)
    make_user(client, "colleague")
    desk, phone = sign_in(client).json(), sign_in(client).json()
    colleague = sign_in(client, "colleague").json()

    assert client.post("/v1/auth/sign-out", json={"everywhere": True}, headers=bearer(phone)).status_code == 204

    for pair in (desk, phone):
        assert me(client, pair).status_code == 401
        assert refreshed(client, pair).status_code == 401
    assert me(client, colleague).status_code == 200
    # Signing in again works as before.
    assert me(client, sign_in(client).json()).status_code == 200


def test_sign_out_refuses_a_body_that_is_not_its_shape(client):
    make_user(client)
    pair = sign_in(client).json()
    answer = client.post("/v1/auth/sign-out", json={"everywhere": "perhaps"}, headers=bearer(pair))
    assert answer.status_code == 422 and answer.json()["code"] == "validation_error"
    assert me(client, pair).status_code == 200  # nothing was ended


def test_an_api_key_has_no_sign_in_to_end_nor_a_password(client, api_key):
    key = {"X-API-Key": api_key}
    for path, body in (
        ("/v1/auth/sign-out", None),
        ("/v1/auth/password", {"current_password": "x", "new_password": NEW_PASSWORD}),
    ):
        answer = client.post(path, json=body, headers=key)
        assert answer.status_code == 403, (path, answer.text)
        assert answer.json()["code"] == "staff_only"
    assert client.post("/v1/auth/sign-out").status_code == 401  # and nobody at all is asked to sign in


def test_changing_ones_password_keeps_this_sign_in_and_ends_the_others(client):
    make_user(client)
    desk, stolen = sign_in(client).json(), sign_in(client).json()

    assert change_password(client, desk).status_code == 204

    assert sign_in(client).status_code == 401  # the old password is gone
    assert sign_in(client, password=NEW_PASSWORD).status_code == 200
    # Whoever signed in with the leaked password is out, refresh token and all...
    assert me(client, stolen).status_code == 401
    assert refreshed(client, stolen).status_code == 401
    # ...while the user who changed it carries on, and can go on refreshing.
    assert me(client, desk).status_code == 200
    assert me(client, refreshed(client, desk).json()).status_code == 200


def test_a_wrong_current_password_or_a_short_new_one_changes_nothing(client):
    make_user(client)
    desk, phone = sign_in(client).json(), sign_in(client).json()

    wrong = change_password(client, desk, current="not my password")
    assert wrong.status_code == 422
    assert wrong.json()["code"] == "wrong_password"
    assert [error["field"] for error in wrong.json()["errors"]] == ["current_password"]

    short = change_password(client, desk, new="short")
    assert short.status_code == 422
    assert short.json()["code"] == "validation_error"
    assert "new_password" in [error["field"] for error in short.json()["errors"]]

    missing = client.post("/v1/auth/password", json={"new_password": NEW_PASSWORD}, headers=bearer(desk))
    assert missing.status_code == 422

    # The password and both sign-ins are as they were.
    assert sign_in(client).status_code == 200
    assert me(client, phone).status_code == 200


def test_wrong_current_passwords_count_as_wrong_sign_ins(settings, client):
    """A stolen access token must not become a way around the sign-in limits to guess the password."""
    make_user(client)
    with limits_app(settings, rate_limit_sign_in="3/15 minutes") as limited:
        pair = sign_in(limited).json()
        codes = [change_password(limited, pair, current=f"guess {n}").status_code for n in range(4)]
        assert codes == [422, 422, 422, 429]
        # The account is locked for sign-ins as after three wrong passwords at the sign-in form.
        assert sign_in(limited).status_code == 429
        # The right current password waits too: the guesser learns nothing.
        assert change_password(limited, pair).status_code == 429
    assert sign_in(client).status_code == 200  # (an app without limits) the password did not change


def test_deactivating_ends_every_token_and_reactivating_does_not_bring_them_back(client):
    make_user(client)
    pair = sign_in(client).json()

    in_app(client, lambda s: users.change_account(s, "officer.lan", active=False))
    assert me(client, pair).status_code == 401
    assert refreshed(client, pair).status_code == 401
    assert sign_in(client).status_code == 401

    in_app(client, lambda s: users.change_account(s, "OFFICER.LAN", active=True))  # names are case-blind here
    assert me(client, pair).status_code == 401  # issued before the deactivation: stays dead
    assert refreshed(client, pair).status_code == 401
    assert me(client, sign_in(client).json()).status_code == 200


def test_a_new_role_or_department_ends_the_sign_ins_and_a_new_one_carries_it(client):
    make_user(client, "officer.mai", role="officer", department="chieu-sang")
    before = sign_in(client, "officer.mai").json()
    assert me(client, before).json()["department_code"] == "chieu-sang"

    in_app(client, lambda s: users.change_account(s, "officer.mai", department_code="thoat-nuoc"))

    assert me(client, before).status_code == 401
    after = sign_in(client, "officer.mai").json()
    assert me(client, after).json() | {"name": None} == {
        "kind": "staff",
        "name": None,
        "role": "officer",
        "department_code": "thoat-nuoc",
    }
    in_app(client, lambda s: users.change_account(s, "officer.mai", role="supervisor"))
    assert me(client, after).status_code == 401
    assert me(client, sign_in(client, "officer.mai").json()).json()["role"] == "supervisor"
    # A new name changes no access: the sign-in goes on.
    latest = sign_in(client, "officer.mai").json()
    in_app(client, lambda s: users.change_account(s, "officer.mai", full_name="Nguyễn Thị Mai"))
    assert me(client, latest).status_code == 200


def test_account_changes_that_would_leave_a_user_invalid_are_refused(client):
    make_user(client, "officer.mai", role="officer", department="chieu-sang")
    for change, message in (
        ({"department_code": ""}, "belongs to a department"),  # an officer without a department
        ({"department_code": "no-such-department"}, "unknown department"),
        ({"role": "mayor"}, "unknown staff role"),
    ):
        with pytest.raises(ValueError, match=message):
            in_app(client, lambda s, change=change: users.change_account(s, "officer.mai", **change))
    with pytest.raises(LookupError):
        in_app(client, lambda s: users.change_account(s, "nobody", active=False))
    # Nothing of it stuck.
    pair = sign_in(client, "officer.mai").json()
    assert me(client, pair).json()["department_code"] == "chieu-sang"


def test_who_lost_or_changed_access_is_in_the_log_without_any_secret(client, caplog):
    caplog.set_level(logging.INFO, logger="service.auth.users")
    make_user(client)
    first = sign_in(client).json()
    second = refreshed(client, first).json()
    assert change_password(client, second).status_code == 204
    in_app(client, lambda s: users.reset_password(s, "officer.lan", "a third long password"))
    in_app(client, lambda s: users.change_account(s, "officer.lan", full_name="Lan"))  # no access changed
    in_app(client, lambda s: users.change_account(s, "officer.lan", active=False))
    assert sign_in(client, password="a third long password").status_code == 401  # deactivated

    lines = [record.getMessage() for record in caplog.records if record.name == "service.auth.users"]
    assert lines == [
        "staff officer.lan changed their password; their other sign-ins ended",
        "staff officer.lan: password set by an administrator; every sign-in ended",
        "staff officer.lan changed: role, department, active ('dispatcher', None, True) -> "
        "('dispatcher', None, False); sign-ins ended: True; open tickets given back: 0",
    ]
    for secret in (PASSWORD, NEW_PASSWORD, "a third long password", first["refresh_token"], second["access_token"]):
        assert secret not in caplog.text


def test_a_replayed_refresh_token_is_a_warning_in_the_log(client, caplog):
    caplog.set_level(logging.INFO, logger="service.auth.users")
    make_user(client)
    first = sign_in(client).json()
    refreshed(client, first)
    assert refreshed(client, first).status_code == 401  # copied, or raced: the sign-in is revoked
    (warning,) = [record for record in caplog.records if record.levelno == logging.WARNING]
    assert warning.getMessage().startswith("a spent refresh token was presented again: sign-in ")
    assert first["refresh_token"] not in caplog.text


def test_administrators_manage_staff_from_the_command_line(settings, client):
    env = {**os.environ, **settings_environment(settings), "INTAKE_PASSWORD": PASSWORD}

    def intake(*args: str, password: str | None = None) -> subprocess.CompletedProcess:
        run_env = env if password is None else {**env, "INTAKE_PASSWORD": password}
        return subprocess.run([INTAKE, "user", *args], env=run_env, capture_output=True, text=True, timeout=60)

    created = intake("create", "--username", "dispatcher.hoa", "--role", "dispatcher", "--full-name", "Trần Hoa")
    assert created.returncode == 0, created.stderr
    pair = sign_in(client, "dispatcher.hoa").json()

    listed = intake("list")
    assert listed.returncode == 0, listed.stderr
    line = next(line for line in listed.stdout.splitlines() if line.startswith("dispatcher.hoa\t"))
    assert line.split("\t")[:4] == ["dispatcher.hoa", "dispatcher", "-", "active"]
    assert "Trần Hoa" in line and "never" not in line  # she has signed in

    # A lost phone: her sign-ins end, her password stays.
    ended = intake("sign-out", "dispatcher.hoa")
    assert ended.returncode == 0, ended.stderr
    assert me(client, pair).status_code == 401
    pair = sign_in(client, "dispatcher.hoa").json()

    # She forgot her password: an administrator sets a new one, and every sign-in ends.
    reset = intake("set-password", "dispatcher.hoa", password=NEW_PASSWORD)
    assert reset.returncode == 0, reset.stderr
    assert me(client, pair).status_code == 401
    assert sign_in(client, "dispatcher.hoa").status_code == 401
    pair = sign_in(client, "dispatcher.hoa", NEW_PASSWORD).json()
    short = intake("set-password", "dispatcher.hoa", password="short")
    assert short.returncode == 2 and "at least" in short.stderr

    # She moves to street lighting as an officer, then leaves the city's service.
    moved = intake("change", "dispatcher.hoa", "--role", "officer", "--department", "chieu-sang")
    assert moved.returncode == 0, moved.stderr
    assert me(client, pair).status_code == 401
    assert me(client, sign_in(client, "dispatcher.hoa", NEW_PASSWORD).json()).json()["role"] == "officer"
    refused = intake("change", "dispatcher.hoa", "--department", "")
    assert refused.returncode == 2 and "belongs to a department" in refused.stderr
    gone = intake("change", "dispatcher.hoa", "--deactivate")
    assert gone.returncode == 0, gone.stderr
    assert sign_in(client, "dispatcher.hoa", NEW_PASSWORD).status_code == 401
    assert "\tdeactivated\t" in intake("list").stdout

    for command in (("change", "nobody", "--deactivate"), ("sign-out", "nobody"), ("set-password", "nobody")):
        unknown = intake(*command)
        assert unknown.returncode == 1 and "no staff user" in unknown.stderr, command
