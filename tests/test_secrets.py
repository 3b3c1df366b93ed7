"""No secret ships with the code: development makes its own and keeps it, production must be given both."""

import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from service import privacy
from service.auth.tokens import ALGORITHM, AUDIENCE
from service.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
OLD_PUBLIC_DEFAULT = "dev-only-secret-key-change-me-in-production"


@pytest.fixture
def no_secrets_in_environment(monkeypatch):
    for name in ("SECRET_KEY", "PII_ENCRYPTION_KEYS", "ENVIRONMENT", "SECRET_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)


def test_development_makes_a_random_secret_on_first_start_and_keeps_it(tmp_path, no_secrets_in_environment):
    kept = tmp_path / "var" / "secret_key"
    first = Settings(_env_file=None, secret_key_file=kept)
    assert len(first.secret_key) >= 32 and first.secret_key != OLD_PUBLIC_DEFAULT
    assert kept.stat().st_mode & 0o777 == 0o600  # nobody else on the machine reads it
    assert Settings(_env_file=None, secret_key_file=kept).secret_key == first.secret_key  # the next start
    elsewhere = Settings(_env_file=None, secret_key_file=tmp_path / "other" / "secret_key")
    assert elsewhere.secret_key != first.secret_key  # another checkout, another secret
    # An explicit SECRET_KEY wins over the kept one.
    assert Settings(_env_file=None, secret_key_file=kept, secret_key="s" * 40).secret_key == "s" * 40


def test_the_old_published_default_is_refused_everywhere(no_secrets_in_environment):
    for environment in ("development", "production"):
        with pytest.raises(ValidationError, match="published"):
            Settings(
                _env_file=None,
                environment=environment,
                secret_key=OLD_PUBLIC_DEFAULT,
                pii_encryption_keys=[Fernet.generate_key().decode()],
            )


def test_a_token_signed_with_the_old_default_is_refused(client):
    forged = jwt.encode(
        {"sub": "00000000-0000-0000-0000-000000000001", "role": "admin", "aud": AUDIENCE, "exp": 4102444800},
        OLD_PUBLIC_DEFAULT,
        algorithm=ALGORITHM,
    )
    assert client.get("/v1/auth/me", headers={"Authorization": f"Bearer {forged}"}).status_code == 401


def test_production_refuses_to_start_without_each_secret_on_its_own(tmp_path, no_secrets_in_environment):
    fernet_key = Fernet.generate_key().decode()
    kept = tmp_path / "secret_key"
    with pytest.raises(ValidationError) as no_signing_key:
        Settings(_env_file=None, environment="production", pii_encryption_keys=[fernet_key], secret_key_file=kept)
    assert "SECRET_KEY" in str(no_signing_key.value) and "PII_ENCRYPTION_KEYS" not in str(no_signing_key.value)
    with pytest.raises(ValidationError) as no_encryption_key:
        Settings(_env_file=None, environment="production", secret_key="p" * 40, secret_key_file=kept)
    assert "PII_ENCRYPTION_KEYS" in str(no_encryption_key.value)
    assert not kept.exists()  # production never makes a secret of its own

    # Given both, contact data is encrypted with the given key, not one derived from SECRET_KEY.
    settings = Settings(_env_file=None, environment="production", secret_key="p" * 40, pii_encryption_keys=[fernet_key])
    privacy.configure(settings.pii_encryption_keys, settings.secret_key)
    try:
        token = privacy.encrypt("0903 123 456")
        assert Fernet(fernet_key.encode()).decrypt(token.encode()) == b"0903 123 456"
    finally:
        privacy._cipher = None  # the next app configures its own


def test_processes_started_together_from_one_folder_share_the_secret(tmp_path):
    """`make run` starts the CLI commands, the worker and the API from the repository folder at once."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("SECRET_KEY", "PII_ENCRYPTION_KEYS", "ENVIRONMENT", "SECRET_KEY_FILE")
    }
    environment["PYTHONPATH"] = str(ROOT)
    read = "from service.settings import get_settings; print(get_settings().secret_key)"
    processes = [
        subprocess.Popen([sys.executable, "-c", read], cwd=tmp_path, env=environment, stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    secrets = {process.communicate(timeout=60)[0].strip() for process in processes}
    assert len(secrets) == 1 and len(secrets.pop()) >= 32
    assert (tmp_path / "var" / "secret_key").exists()
    assert sorted(os.listdir(tmp_path / "var")) == ["secret_key"]  # no drafts left behind
