"""Staff sign-in: the OAuth2 token endpoint (password and refresh_token grants), refresh, and who am I."""

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field
from sqlmodel.ext.asyncio.session import AsyncSession

from service.auth import grants, users
from service.auth.subject import CurrentSubject
from service.db import SessionDep
from service.errors import ErrorCode, TokenProblem, Unauthenticated, problem_responses
from service.ratelimit import client_address

router = APIRouter(prefix="/v1/auth", tags=["auth"])


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int
    refresh_token: str


class RefreshRequest(BaseModel):
    refresh_token: str = Field(min_length=10, max_length=200)


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
    settings = request.app.state.settings
    limits = _sign_in_limits(request, grant.username) if settings.rate_limits_enabled else []
    for scope, identity in limits:
        await request.app.state.rate_limiter.check(settings.rate_limit_sign_in, scope, identity)
    pair = await users.sign_in(
        session, username=grant.username, password=grant.password, secret_key=settings.secret_key
    )
    if pair is None:
        for scope, identity in limits:
            await request.app.state.rate_limiter.count(settings.rate_limit_sign_in, scope, identity)
        raise Unauthenticated(
            ErrorCode.INVALID_CREDENTIALS,
            headers={"WWW-Authenticate": "Bearer"},
            extensions=grants.oauth2_error("invalid_grant", ErrorCode.INVALID_CREDENTIALS),
        )
    return _answer(pair)


def _sign_in_limits(request: Request, username: str) -> list[tuple[str, str]]:
    return [("sign-in-failures:user", username.strip().lower()), ("sign-in-failures:address", client_address(request))]


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
