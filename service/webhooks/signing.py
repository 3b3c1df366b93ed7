"""Standard Webhooks signing: `webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC>`.

The `standardwebhooks` library signs `{id}.{timestamp}.{body}` with each secret; during a rotation's
overlap both the new and the previous secret sign, space-separated, as the spec allows.
"""

import base64
import secrets as random
from datetime import UTC, datetime

from standardwebhooks import Webhook

SECRET_PREFIX = "whsec_"
SECRET_BYTES = 32  # the spec asks for 24 to 64 random bytes


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(random.token_bytes(SECRET_BYTES)).decode()


def active_secrets(
    secret: str, previous_secret: str | None, previous_expires_at: datetime | None, now: datetime
) -> list[str]:
    """The secrets that sign now: the current one, and the previous one until its overlap ends."""
    if previous_secret and previous_expires_at and previous_expires_at > now:
        return [secret, previous_secret]
    return [secret]


def signature_headers(*, message_id: str, body: str, secrets: list[str], at: datetime | None = None) -> dict[str, str]:
    at = (at or datetime.now(UTC)).astimezone(UTC)
    signatures = [Webhook(secret).sign(msg_id=message_id, timestamp=at, data=body) for secret in secrets]
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": " ".join(signatures),
    }
