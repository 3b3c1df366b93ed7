"""Password hashing with argon2id (the OWASP recommendation), rehashing when parameters change."""

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_hasher = PasswordHasher()
# Verified against when the username is unknown, so both paths cost the same time.
_DUMMY_HASH = _hasher.hash("not-a-real-password")
MIN_PASSWORD_LENGTH = 10
# argon2 is slow and memory-hungry on purpose: on the event loop, a burst of sign-ins stalled every
# request (and the rate limiter's Redis checks timed out, so its breaker switched the limits off).
# Here it runs beside the loop, two at a time, and a burst waits its turn.
_ARGON2_THREADS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="argon2")
T = TypeVar("T")


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


async def off_the_loop(work: Callable[..., T], *args: str | None) -> T:
    """`verify_password` or `hash_password` from a request, without holding up the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_ARGON2_THREADS, work, *args)
