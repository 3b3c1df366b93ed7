"""Security headers on every response, and CORS closed unless origins are configured.

No cache may store an answer given to credentials (an API key, a bearer token, a citizen token), nor
an answer to a write (sign-in and refresh hand out tokens, intake a citizen token, Open311 takes its
key in the form): `Cache-Control: no-store` replaces whatever the route set.
"""

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Scope

from service.settings import Settings

BASE_HEADERS = {
    b"x-content-type-options": b"nosniff",
    b"x-frame-options": b"DENY",
    b"referrer-policy": b"no-referrer",
    b"cross-origin-opener-policy": b"same-origin",
    b"permissions-policy": b"camera=(), microphone=(), geolocation=()",
}
# The API answers JSON; the few HTML pages (the docs, the IOC dashboard) load scripts, styles and
# images from this origin only: the docs assets are served by the service itself (service/api_docs.py).
# Inline script and style: FastAPI's docs pages start Swagger UI with an inline script, and Swagger UI
# and ReDoc set styles inline. `data:` images are Swagger UI's icons; `blob:` workers are ReDoc's
# search index, built in the page.
CONTENT_SECURITY_POLICY = (
    b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    b"script-src 'self' 'unsafe-inline'; worker-src 'self' blob:; connect-src 'self'; "
    b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

SECURITY_HEADERS = (*BASE_HEADERS.items(), (b"content-security-policy", CONTENT_SECURITY_POLICY))
HSTS_HEADERS = (*SECURITY_HEADERS, (b"strict-transport-security", b"max-age=31536000; includeSubDomains"))

CREDENTIAL_HEADERS = frozenset({b"authorization", b"x-api-key", b"x-citizen-token"})
CACHEABLE_METHODS = frozenset({"GET", "HEAD"})


def private(scope: Scope) -> bool:
    """An answer no cache may keep: to a write, or to a request that carried credentials."""
    return scope["method"] not in CACHEABLE_METHODS or any(name in CREDENTIAL_HEADERS for name, _ in scope["headers"])


def with_security_headers(headers: list[tuple[bytes, bytes]], *, private: bool, hsts: bool) -> list:
    """The answer's headers with the security headers it lacks (service.edge adds them to every answer)."""
    if private:
        headers = [(name, value) for name, value in headers if name.lower() != b"cache-control"]
        headers.append((b"cache-control", b"no-store"))
    present = {name.lower() for name, _ in headers}
    extra = HSTS_HEADERS if hsts else SECURITY_HEADERS
    headers += [(name, value) for name, value in extra if name not in present]
    return headers


def install(app: FastAPI, settings: Settings) -> None:
    """CORS, when origins are configured (the headers themselves are added by service.edge)."""
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "X-API-Key",
                "Content-Type",
                "Idempotency-Key",
                "Accept-Language",
                "X-Citizen-Token",
                "If-None-Match",
                "X-Request-ID",
            ],
            expose_headers=["Location", "ETag", "Retry-After", "X-Request-ID", "Idempotent-Replayed"],
            max_age=600,
        )
