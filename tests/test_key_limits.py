"""Intake limits per app key: one key serves a whole app's citizens, so each key has its own rate."""

import os
import subprocess
import uuid

from fastapi.testclient import TestClient
from limits import parse

from service.auth import api_keys
from service.main import create_app
from service.settings import Settings
from tests.conftest import in_app
from tests.factories import report_body
from tests.processes import INTAKE, settings_environment


def fresh_limits(settings, **limits) -> TestClient:
    tight = settings.model_copy(update={"queue_name": f"key-limits-{uuid.uuid4().hex[:8]}", **limits})
    return TestClient(create_app(tight))


def test_key_created_with_its_own_rate_is_limited_at_that_rate(settings, client):
    slow = in_app(client, lambda s: api_keys.create(s, name="small app", rate_limit="3/minute")).key
    default = in_app(client, lambda s: api_keys.create(s, name="city app")).key
    with fresh_limits(settings, rate_limit_intake_per_key="1000/minute") as app:
        codes = [app.post("/v1/reports", json=report_body(), headers={"X-API-Key": slow}).status_code for _ in range(4)]
        assert codes == [201, 201, 201, 429]
        # The other key keeps the default, far above 3.
        codes = [
            app.post("/v1/reports", json=report_body(), headers={"X-API-Key": default}).status_code for _ in range(5)
        ]
        assert codes == [201] * 5


def test_intake_apikey_create_takes_a_rate(settings, client):
    env = {**os.environ, **settings_environment(settings)}
    created = subprocess.run(
        [INTAKE, "apikey", "create", "--name", "district app", "--rate", "2/minute"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    key = created.stdout.strip()
    listed = subprocess.run([INTAKE, "apikey", "list"], env=env, capture_output=True, text=True, check=True).stdout
    assert "2/minute" in listed
    with fresh_limits(settings) as app:
        codes = [app.post("/v1/reports", json=report_body(), headers={"X-API-Key": key}).status_code for _ in range(3)]
    assert codes == [201, 201, 429]

    refused = subprocess.run(
        [INTAKE, "apikey", "create", "--name", "x", "--rate", "lots"], env=env, capture_output=True, text=True
    )
    assert refused.returncode == 2 and "not a rate" in refused.stderr


def test_default_key_limit_lets_a_city_wide_storm_through():
    # 20,000 reports within a few minutes through one app's key; the abuse work is per address and reporter.
    per_key = parse(Settings(_env_file=None).rate_limit_intake_per_key)
    assert per_key.amount / per_key.get_expiry() * 60 >= 20_000
