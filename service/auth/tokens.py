"""Short-lived access tokens (JWT, HS256) and single-use refresh tokens for staff."""

import hashlib
import secrets
from datetime import timedelta
from uuid import UUID

import jwt

from service.models.types import utcnow

ACCESS_TOKEN_MINUTES = 15
REFRESH_TOKEN_DAYS = 14
ALGORITHM = "HS256"
AUDIENCE = "intake-staff"


def issue_access_token(
    secret_key: str, user_id: UUID, role: str, department_code: str | None, family_id: UUID | None = None
) -> tuple[str, int]:
    """`fam` names the refresh-token family (the sign-in) it came from: revoking the family ends it too."""
    now = utcnow()
    expires_in = ACCESS_TOKEN_MINUTES * 60
    claims = {
        "sub": str(user_id),
        "fam": str(family_id) if family_id else None,
        "role": role,
        "dept": department_code,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + timedelta(seconds=expires_in),
    }
    return jwt.encode(claims, secret_key, algorithm=ALGORITHM), expires_in


def decode_access_token(token: str, secret_key: str) -> dict:
    return jwt.decode(token, secret_key, algorithms=[ALGORITHM], audience=AUDIENCE, options={"require": ["exp", "sub"]})


def new_refresh_token() -> tuple[str, str]:
    """(the token to give out, its hash to store)."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
