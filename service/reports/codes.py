"""Tracking codes a citizen can read out over the phone, and the secret token that goes with them."""

import base64
import hashlib
import hmac
import re
import secrets
from functools import lru_cache
from uuid import UUID

# No 0/O, 1/I/L: nothing a caller can mishear or misread.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8


def new_tracking_code() -> str:
    # One draw of the whole code (uniform over the 31^8 codes) rather than one system call per character.
    number = secrets.randbelow(len(ALPHABET) ** CODE_LENGTH)
    raw = []
    for _ in range(CODE_LENGTH):
        number, index = divmod(number, len(ALPHABET))
        raw.append(ALPHABET[index])
    return f"{''.join(raw[:4])}-{''.join(raw[4:])}"


def normalise_tracking_code(text: str) -> str | None:
    """Accept what people type: lower case, spaces, no dash, O for 0 and I/L for 1 are not in the alphabet."""
    raw = re.sub(r"[^0-9A-Za-z]", "", text).upper()
    if len(raw) != CODE_LENGTH or any(ch not in ALPHABET for ch in raw):
        return None
    return f"{raw[:4]}-{raw[4:]}"


@lru_cache(maxsize=8)
def _keyed(secret_key: str) -> "hmac.HMAC":
    return hmac.new(secret_key.encode(), digestmod=hashlib.sha256)


def citizen_token(secret_key: str, report_id: UUID) -> str:
    """Derived, not stored: the same report always gets the same token, so an idempotent retry returns it too."""
    keyed = _keyed(secret_key).copy()  # the key's own hashing done once, not per token
    keyed.update(f"citizen:{report_id}".encode())
    return base64.urlsafe_b64encode(keyed.digest()[:24]).decode().rstrip("=")


def verify_citizen_token(secret_key: str, report_id: UUID, token: str) -> bool:
    # As bytes: compare_digest refuses str with non-ASCII characters, which a header may well carry.
    return hmac.compare_digest(citizen_token(secret_key, report_id).encode(), token.encode())
