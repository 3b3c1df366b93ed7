"""Staff sign-in: the OAuth2 password flow, refresh, and who am I."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
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


def _answer(pair: users.TokenPair) -> TokenResponse:
    return TokenResponse(access_token=pair.access_token, expires_in=pair.expires_in, refresh_token=pair.refresh_token)


@router.post("/token", response_model=TokenResponse, summary="Sign in (OAuth2 password flow)", responses=problem_responses(401, 422, 429))
async def token(request: Request, session: SessionDep, form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> TokenResponse:
    settings = request.app.state.settings
    if settings.rate_limits_enabled:
        # Against password guessing: per account and per address, counted before the password is checked.
        await request.app.state.rate_limiter.hit(settings.rate_limit_sign_in, "sign-in:user", form.username.lower())
        await request.app.state.rate_limiter.hit(settings.rate_limit_sign_in, "sign-in:address", client_address(request))
    pair = await users.sign_in(
        session, username=form.username, password=form.password, secret_key=request.app.state.settings.secret_key
    )
    if pair is None:
        raise Unauthenticated("invalid_credentials", headers={"WWW-Authenticate": "Bearer"})
    return _answer(pair)


@router.post("/refresh", response_model=TokenResponse, summary="Trade a refresh token for a new pair", responses=problem_responses(401, 422))
async def refresh(body: RefreshRequest, request: Request, session: SessionDep) -> TokenResponse:
    pair = await users.refresh(session, token=body.refresh_token, secret_key=request.app.state.settings.secret_key)
    if pair is None:
        raise Unauthenticated("invalid_token", headers={"WWW-Authenticate": "Bearer"})
    return _answer(pair)


@router.get("/me", response_model=Me, summary="Who the token or key belongs to", responses=problem_responses(401))
async def me(subject: CurrentSubject) -> Me:
    return Me(kind=subject.kind, name=subject.name, role=subject.role, department_code=subject.department_code)
