"""Staff sign-in: the OAuth2 password flow, refresh, and who am I."""

from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, Field

from service.auth import users
from service.auth.subject import CurrentSubject
from service.db import SessionDep
from service.errors import Unauthenticated, problem_responses
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


class SignInForm(OAuth2PasswordRequestForm):
    """OAuth2's password form, declaring what it refuses: FastAPI reads an empty form field as a
    missing one (422), so the spec says a username and a password have at least one character."""

    # (OAuth2PasswordRequestForm's own grant_type is nullable, which a form cannot send.)

    def __init__(
        self,
        *,
        # Optional, but never null: a form has no null, and the text "null" is refused like any other.
        grant_type: Annotated[str, Form(pattern="^password$")] = "password",
        username: Annotated[str, Form(min_length=1)],
        password: Annotated[str, Form(min_length=1, json_schema_extra={"format": "password"})],
        scope: Annotated[str, Form()] = "",
        client_id: Annotated[str | None, Form()] = None,
        client_secret: Annotated[str | None, Form(json_schema_extra={"format": "password"})] = None,
    ):
        super().__init__(
            grant_type=grant_type,
            username=username,
            password=password,
            scope=scope,
            client_id=client_id,
            client_secret=client_secret,
        )


def _answer(pair: users.TokenPair) -> TokenResponse:
    return TokenResponse(access_token=pair.access_token, expires_in=pair.expires_in, refresh_token=pair.refresh_token)


@router.post(
    "/token",
    response_model=TokenResponse,
    summary="Sign in (OAuth2 password flow)",
    responses=problem_responses(401, 422, 429),
)
async def token(request: Request, session: SessionDep, form: Annotated[SignInForm, Depends()]) -> TokenResponse:
    """Failed attempts are limited per account and per address (RATE_LIMIT_SIGN_IN each); once either
    is spent, every attempt on it answers 429 until the window frees up, the right password too, so
    a guesser learns nothing. Successful sign-ins are never counted."""
    settings = request.app.state.settings
    limits = _sign_in_limits(request, form.username) if settings.rate_limits_enabled else []
    for scope, identity in limits:
        await request.app.state.rate_limiter.check(settings.rate_limit_sign_in, scope, identity)
    pair = await users.sign_in(session, username=form.username, password=form.password, secret_key=settings.secret_key)
    if pair is None:
        for scope, identity in limits:
            await request.app.state.rate_limiter.count(settings.rate_limit_sign_in, scope, identity)
        raise Unauthenticated("invalid_credentials", headers={"WWW-Authenticate": "Bearer"})
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
    rotated from the same sign-in: the holder of the newest one must sign in again."""
    pair = await users.refresh(session, token=body.refresh_token, secret_key=request.app.state.settings.secret_key)
    if pair is users.RefreshRefused.REUSED:
        await session.commit()  # the revocation stands although the answer is an error
    if isinstance(pair, users.RefreshRefused):
        raise Unauthenticated("invalid_token", headers={"WWW-Authenticate": "Bearer"})
    return _answer(pair)


@router.get("/me", response_model=Me, summary="Who the token or key belongs to", responses=problem_responses(401))
async def me(subject: CurrentSubject) -> Me:
    return Me(kind=subject.kind, name=subject.name, role=subject.role, department_code=subject.department_code)
