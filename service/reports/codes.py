"""Tracking codes a citizen can read out over the phone, and the secret token that goes with them."""

import binascii
import hashlib
import hmac
import re
from functools import lru_cache
from uuid import UUID

from service.random_ids import random_bytes

# No 0/O, 1/I/L: nothing a caller can mishear or misread.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE_LENGTH = 8


_CODES = len(ALPHABET) ** CODE_LENGTH  # 31^8, just under 2^40
_CODE_BYTES = 5
# Every two-character pair, so a code is spelled in four look-ups; the first character is the lower digit.
_PAIRS = [ALPHABET[pair % len(ALPHABET)] + ALPHABET[pair // len(ALPHABET)] for pair in range(len(ALPHABET) ** 2)]


def new_tracking_code() -> str:
    """Uniform over the 31^8 codes: 40 random bits, drawn again when they name no code (about 1 in 4.5)."""
    while (number := int.from_bytes(random_bytes(_CODE_BYTES))) >= _CODES:
        pass
    number, first = divmod(number, len(_PAIRS))
    number, second = divmod(number, len(_PAIRS))
    fourth, third = divmod(number, len(_PAIRS))
    return f"{_PAIRS[first]}{_PAIRS[second]}-{_PAIRS[third]}{_PAIRS[fourth]}"


def normalise_tracking_code(text: str) -> str | None:
    """Accept what people type: lower case, spaces, no dash, O for 0 and I/L for 1 are not in the alphabet."""
    raw = re.sub(r"[^0-9A-Za-z]", "", text).upper()
    if len(raw) != CODE_LENGTH or any(ch not in ALPHABET for ch in raw):
        return None
    return f"{raw[:4]}-{raw[4:]}"


_BLOCK = hashlib.sha256().block_size
_TOKEN_BYTES = 24  # a multiple of 3: its base64 has no padding to strip
_URL_SAFE = bytes.maketrans(b"+/", b"-_")


@lru_cache(maxsize=8)
def _keyed(secret_key: str) -> tuple["hashlib._Hash", "hashlib._Hash"]:
    """HMAC-SHA256's inner and outer hashes with the key already in (RFC 2104, as `hmac` computes them):
    a token then costs two copies and three updates, not `hmac`'s Python wrapper around the same."""
    key = secret_key.encode()
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    return hashlib.sha256(key.translate(hmac.trans_36)), hashlib.sha256(key.translate(hmac.trans_5C))


def citizen_token(secret_key: str, report_id: UUID) -> str:
    """Derived, not stored: the same report always gets the same token, so an idempotent retry returns it too."""
    inner_key, outer_key = _keyed(secret_key)
    inner, outer = inner_key.copy(), outer_key.copy()
    inner.update(f"citizen:{report_id}".encode())
    outer.update(inner.digest())
    return binascii.b2a_base64(outer.digest()[:_TOKEN_BYTES], newline=False).translate(_URL_SAFE).decode()


def verify_citizen_token(secret_key: str, report_id: UUID, token: str) -> bool:
    # As bytes: compare_digest refuses str with non-ASCII characters, which a header may well carry.
    return hmac.compare_digest(citizen_token(secret_key, report_id).encode(), token.encode())
