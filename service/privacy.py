"""Reporters' personal data (Decree 13/2023): encrypted at rest, readable only through this module.

Name, phone and email are stored as Fernet tokens (AES-128-CBC + HMAC). Keys come from settings
(PII_ENCRYPTION_KEYS: the first encrypts, all decrypt, so keys can be rotated). In development,
without them, a key is derived from SECRET_KEY; production refuses to start without them
(service/settings.py), so whoever learns the signing key cannot also read the contact data.
"""

import base64
import hashlib
import hmac
import logging
from typing import Any

import phonenumbers
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import Text, TypeDecorator

log = logging.getLogger(__name__)

_cipher: MultiFernet | None = None
_lookup_key: bytes = b""


def derive_key(secret: str) -> str:
    digest = hashlib.sha256(f"pii-encryption:{secret}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()


def configure(keys: list[str], secret_key: str) -> None:
    """Called once at start-up by the API, the worker and the CLI."""
    global _cipher, _lookup_key
    _cipher = MultiFernet([Fernet(key) for key in (keys or [derive_key(secret_key)])])
    _lookup_key = hashlib.sha256(f"pii-lookup:{secret_key}".encode()).digest()


def _require() -> MultiFernet:
    if _cipher is None:
        from service.settings import get_settings

        settings = get_settings()
        configure(settings.pii_encryption_keys, settings.secret_key)
    assert _cipher is not None  # set by configure()
    return _cipher


def encrypt(value: str) -> str:
    return _require().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _require().decrypt(token.encode()).decode()
    except InvalidToken:
        # A value written before encryption was switched on, or with a key no longer configured.
        log.warning("personal data field could not be decrypted")
        return "[unreadable]"


def phone_identity(phone: str, region: str) -> str:
    """One phone however it is written ("0912 345 678", "+84912345678", "84 912.345.678"): its E.164 form."""
    try:
        return phonenumbers.format_number(phonenumbers.parse(phone, region), phonenumbers.PhoneNumberFormat.E164)
    except phonenumbers.NumberParseException:
        return "".join(character for character in phone if character.isdigit())


def lookup_hash(value: str) -> str:
    """A keyed hash for counting per reporter (rate limits) without keeping the contact itself."""
    return hmac.new(_lookup_key or b"unset", value.strip().lower().encode(), hashlib.sha256).hexdigest()[:32]


class EncryptedString(TypeDecorator):
    """A text column holding an encrypted value; Python sees the plain text."""

    impl = Text
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else encrypt(value)

    def process_result_value(self, value: str | None, dialect: Any) -> str | None:
        return None if value is None else decrypt(value)
