"""Staff sign-in: the OAuth2 token endpoint (password and refresh_token grants), refresh, sign-out,
the user's own password, and who am I."""

from typing import Annotated

from fastapi import APIRouter, Body, Request, Response
from pydantic import BaseModel, Field
from sqlmodel.ext.asyncio.session import AsyncSession

from service.auth import grants, users
from service.auth.passwords import MIN_PASSWORD_LENGTH
from service.auth.subject import AuthSubject, CurrentSubject
from service.db import SessionDep
from service.errors import ErrorCode, Forbidden, TokenProblem, Unauthenticated, Unprocessable, problem_responses
from service.ratelimit import client_address

router = APIRouter(prefix="/v1/auth", tags=["auth"])


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    refresh_token: str


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=10, max_length=200)


class SignOut(BaseModel):
    everywhere: bool = Field(
        default=False, description="End every sign-in of yours (every device), not only the one of this token"
    )


# A password is hashed, never stored: the upper bound only keeps argon2's work per request bounded.
MAX_PASSWORD_LENGTH = 1024


class PasswordChange(BaseModel):
    current_password: str = Field(
        min_length=1, max_length=MAX_PASSWORD_LENGTH, json_schema_extra={"format": "password"}
    )
    new_password: str = Field(
        min_length=MIN_PASSWORD_LENGTH, max_length=MAX_PASSWORD_LENGTH, json_schema_extra={"format": "password"}
    )


class Me(BaseModel):
    kind: str
    name: str
    role: str
    department_code: str | None


def _answer(pair: users.TokenPair) -> TokenResponse:
    return TokenResponse(access_token=pair.access_token, expires_in=pair.expires_in, refresh_token=pair.refresh_token)


def _token_problems(*statuses: int) -> dict[int | str, dict]:
    """Problem details that are also OAuth2 error responses (service/auth/grants.py)."""
    return {
        status: {"model": TokenProblem, "content": {"application/problem+json": {}}, "description": "Problem details"}
        for status in statuses
    }


@router.post(
    "/token",
    response_model=TokenResponse,
    summary="Sign in (OAuth2 password flow), or refresh (refresh_token grant)",
    responses={**_token_problems(400, 401, 422), **problem_responses(429)},
    openapi_extra={"requestBody": grants.REQUEST_BODY},
)
async def token(request: Request, session: SessionDep) -> TokenResponse:
    """`grant_type=password` (or left out) signs in with `username` and `password`;
    `grant_type=refresh_token` with `refresh_token` answers as POST /v1/auth/refresh does. Refusals
    carry OAuth2's `error` beside `code`: `invalid_grant` (401: a wrong password, or a refresh token
    unknown, expired or spent), `unsupported_grant_type` (400), `invalid_request` (422: a field
    missing, invalid or sent twice).

    Failed sign-ins are limited per account and per address (RATE_LIMIT_SIGN_IN each); once either
    is spent, every attempt on it answers 429 until the window frees up, the right password too, so
    a guesser learns nothing. Successful sign-ins are never counted."""
    grant = grants.parse((await request.form()).multi_items())
    secret_key = request.app.state.settings.secret_key
    if isinstance(grant, grants.RefreshTokenGrant):
        return await _refreshed(session, grant.refresh_token, secret_key, refused_as_oauth2=True)
    return await _signed_in(request, session, grant)


async def _signed_in(request: Request, session: AsyncSession, grant: grants.PasswordGrant) -> TokenResponse:
    limits = await _guess_allowed(request, grant.username)
    pair = await users.sign_in(
        session, username=grant.username, password=grant.password, secret_key=request.app.state.settings.secret_key
    )
    if pair is None:
        await _count_wrong_guess(request, limits)
        raise Unauthenticated(
            ErrorCode.INVALID_CREDENTIALS,
            headers={"WWW-Authenticate": "Bearer"},
            extensions=grants.oauth2_error("invalid_grant", ErrorCode.INVALID_CREDENTIALS),
        )
    return _answer(pair)


async def _guess_allowed(request: Request, username: str) -> list[tuple[str, str]]:
    """429 once the wrong passwords given for this account, or from this address, are spent
    (RATE_LIMIT_SIGN_IN each); the limits to count a wrong one against."""
    settings = request.app.state.settings
    if not settings.rate_limits_enabled:
        return []
    limits = [
        ("sign-in-failures:user", username.strip().lower()),
        ("sign-in-failures:address", client_address(request)),
    ]
    for scope, identity in limits:
        await request.app.state.rate_limiter.check(settings.rate_limit_sign_in, scope, identity)
    return limits


async def _count_wrong_guess(request: Request, limits: list[tuple[str, str]]) -> None:
    for scope, identity in limits:
        await request.app.state.rate_limiter.count(request.app.state.settings.rate_limit_sign_in, scope, identity)


@router.post(
    "/refresh",
    response_model=TokenResponse,
    summary="Trade a refresh token for a new pair",
    responses=problem_responses(401, 422),
)
async def refresh(body: RefreshRequest, request: Request, session: SessionDep) -> TokenResponse:
    """Each refresh token works once. Presenting a spent one again revokes every refresh token
    rotated from the same sign-in: the holder of the newest one must sign in again. (The same as
    POST /v1/auth/token with `grant_type=refresh_token`.)"""
    return await _refreshed(session, body.refresh_token, request.app.state.settings.secret_key)


async def _refreshed(
    session: AsyncSession, refresh_token: str, secret_key: str, *, refused_as_oauth2: bool = False
) -> TokenResponse:
    pair = await users.refresh(session, token=refresh_token, secret_key=secret_key)
    if pair is users.RefreshRefused.REUSED:
        await session.commit()  # the revocation stands although the answer is an error
    if isinstance(pair, users.RefreshRefused):
        raise Unauthenticated(
            ErrorCode.INVALID_TOKEN,
            headers={"WWW-Authenticate": "Bearer"},
            extensions=grants.oauth2_error("invalid_grant", ErrorCode.INVALID_TOKEN) if refused_as_oauth2 else None,
        )
    return _answer(pair)


@router.get("/me", response_model=Me, summary="Who the token or key belongs to", responses=problem_responses(401))
async def me(subject: CurrentSubject) -> Me:
    return Me(kind=subject.kind, name=subject.name, role=subject.role, department_code=subject.department_code)


def _staff(subject: AuthSubject) -> AuthSubject:
    if subject.kind != "staff":
        raise Forbidden(ErrorCode.STAFF_ONLY)
    return subject


@router.post(
    "/sign-out",
    status_code=204,
    summary="Sign out: end this sign-in, or every one of yours",
    responses=problem_responses(401, 403, 422),
)
async def sign_out(
    subject: CurrentSubject, session: SessionDep, body: Annotated[SignOut | None, Body()] = None
) -> Response:
    """Ends the sign-in the access token came from: the token itself and every refresh token rotated
    from the same sign-in stop working at once (401 `invalid_token`). `{"everywhere": true}` ends
    every sign-in of the user, on every device. The body may be left out. A token already signed out
    is refused (401), as any dead token is."""
    staff = _staff(subject)
    everywhere = body is not None and body.everywhere
    await users.end_sign_ins(session, staff.id, only=None if everywhere or staff.sign_in is None else staff.sign_in)
    return Response(status_code=204)


@router.post(
    "/password",
    status_code=204,
    summary="Change your own password",
    responses=problem_responses(401, 403, 422, 429),
)
async def change_password(
    body: PasswordChange, subject: CurrentSubject, request: Request, session: SessionDep
) -> Response:
    """Needs the current password (422 `wrong_password` on `current_password` when it is wrong). A
    wrong one counts against the same limits as a wrong sign-in (429 once spent), so a stolen access
    token cannot be used to guess the password. Every other sign-in of the user ends; the one of this
    token goes on."""
    staff = _staff(subject)
    limits = await _guess_allowed(request, staff.name)
    changed = await users.change_password(
        session, staff.id, current=body.current_password, new=body.new_password, keep_sign_in=staff.sign_in
    )
    if not changed:
        await _count_wrong_guess(request, limits)
        raise Unprocessable(ErrorCode.WRONG_PASSWORD, "current_password")
    return Response(status_code=204)
