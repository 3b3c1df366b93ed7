"""The spec exactly as committed in openapi/openapi.json (stable key order, trailing newline)."""

import json
import secrets

from service.main import create_app
from service.settings import Settings


def render() -> str:
    # Fixed settings: the spec must not depend on whoever exports it.
    # A throwaway secret: the spec never depends on it, and exporting must not need or make one.
    app = create_app(
        Settings(_env_file=None, public_base_url="http://127.0.0.1:8000", secret_key=secrets.token_urlsafe(48))
    )
    return json.dumps(app.openapi(), indent=2, ensure_ascii=False, sort_keys=False) + "\n"
