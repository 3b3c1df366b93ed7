"""The token endpoint's form (RFC 6749): which grant it asks for, with its fields checked.

POST /v1/auth/token takes two grants, told apart by `grant_type`: `password` (§4.3.2; the default
when it is left out, as it always was here) and `refresh_token` (§6). Which fields are required
depends on the grant, so the form is read and checked here rather than by FastAPI's Form parameters,
and the OpenAPI spec says the same as a oneOf of the two shapes (REQUEST_BODY).

Refusals are our problem details with RFC 6749 §5.2's `error` and `error_description` added as
extension members: one body that our clients read by `code` and OAuth2 clients by `error`.
"""

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.errors import MESSAGES, AppError, ErrorCode, InvalidFields, Unprocessable

FORM_MEDIA_TYPE = "application/x-www-form-urlencoded"


class PasswordGrant(BaseModel):
    """Sign in with a staff user's name and password."""

    # Other parameters (scope, client_id, client_secret) are taken and ignored: a token carries its
    # user's role, and there is no client registration.
    model_config = ConfigDict(title="PasswordGrant", extra="ignore")

    grant_type: Literal["password"] = "password"
    username: str = Field(min_length=1)
    password: str = Field(min_length=1, json_schema_extra={"format": "password"})


class RefreshTokenGrant(BaseModel):
    """Trade a refresh token for a new pair, as POST /v1/auth/refresh does (each works once)."""

    model_config = ConfigDict(title="RefreshTokenGrant", extra="ignore")

    grant_type: Literal["refresh_token"]
    refresh_token: str = Field(min_length=10, max_length=200)


GRANTS: dict[str, type[PasswordGrant] | type[RefreshTokenGrant]] = {
    "password": PasswordGrant,
    "refresh_token": RefreshTokenGrant,
}

REQUEST_BODY = {
    "required": True,
    "content": {FORM_MEDIA_TYPE: {"schema": {"oneOf": [grant.model_json_schema() for grant in GRANTS.values()]}}},
}


def oauth2_error(error: str, code: ErrorCode) -> dict[str, Any]:
    """The OAuth2 members of a refusal; error_description is the English message (RFC 6749 allows
    only ASCII there)."""
    return {"error": error, "error_description": MESSAGES[code][0]}


def parse(fields: Iterable[tuple[str, Any]]) -> PasswordGrant | RefreshTokenGrant:
    """The grant a token request's form asks for, or the refusal to raise."""
    given: dict[str, Any] = {}
    repeated = []
    for name, value in fields:
        if isinstance(value, str) and value == "":
            continue  # RFC 6749 §3.1: a parameter sent without a value is as if it were left out
        if name in given:
            repeated.append(name)  # §3.1 again: no parameter may be sent more than once
        given[name] = value
    if repeated:
        errors = [{"type": "repeated", "loc": (name,), "msg": "Sent more than once."} for name in sorted(set(repeated))]
        raise InvalidFields(errors, extensions=oauth2_error("invalid_request", ErrorCode.VALIDATION_ERROR))
    # No database stores NUL: refused here alike on every backend (PostgreSQL would refuse it only
    # when the name reaches a query; SQLite would look it up and answer a wrong password).
    unstorable = sorted(name for name, value in given.items() if isinstance(value, str) and "\x00" in value)
    if unstorable:
        refusal = Unprocessable(
            ErrorCode.TEXT_NOT_STORABLE,
            unstorable[0],
            fields=[(name, ErrorCode.TEXT_NOT_STORABLE, "NUL (\\u0000) is not allowed in text") for name in unstorable],
        )
        refusal.extensions = oauth2_error("invalid_request", ErrorCode.TEXT_NOT_STORABLE)
        raise refusal
    grant_type = given.get("grant_type", "password")
    grant = GRANTS.get(grant_type) if isinstance(grant_type, str) else None
    if grant is None:
        raise AppError(
            ErrorCode.UNSUPPORTED_GRANT_TYPE,
            extensions=oauth2_error("unsupported_grant_type", ErrorCode.UNSUPPORTED_GRANT_TYPE),
        )
    try:
        return grant.model_validate(given)
    except ValidationError as exc:
        raise InvalidFields(
            [dict(error) for error in exc.errors(include_url=False, include_context=False)],
            extensions=oauth2_error("invalid_request", ErrorCode.VALIDATION_ERROR),
        ) from exc
