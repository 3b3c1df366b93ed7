"""What every HTTP answer gets on its way out, in one ASGI layer: the request metrics, HEAD as GET, the
request id and the security headers, applied in that order (outermost first).

- HEAD is answered wherever GET is: the GET runs and its body is dropped, its headers (Content-Length
  included) kept, as HTTP asks. FastAPI's routes name GET only, so without this every HEAD was a 405.
- `X-Request-ID`: the client's when it is a valid id, else a new one; on every log line of the request
  (service.logs), in problem details, and on the answer.
- The security headers and the no-store rule: service.http_security.
- Requests counted and timed by route template: service.metrics.

Each was a middleware of its own, and each layer wraps the request and every message of its answer
again: on the intake path the four layers cost more than some of the work they wrapped.
"""

import itertools
import logging
import os
import secrets
import time
from uuid import UUID

from asgi_correlation_id import correlation_id
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import errors, http_security
from service.metrics import HttpMetrics

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = b"x-request-id"


def _valid_request_id(value: str) -> bool:
    """Any UUID, or 32 hex digits (nginx's $request_id, OpenTelemetry trace ids), as asgi-correlation-id took."""
    try:
        return bool(UUID(value, version=4))
    except ValueError:
        return False


class _RequestIds:
    """New request ids: 32 hex digits, a random half drawn once per process and a count, so that ids
    are unique across processes without a system call for randomness (or for the process id) on every
    request. A forked child draws its own half."""

    def __init__(self) -> None:
        self._draw()
        os.register_at_fork(after_in_child=self._draw)

    def _draw(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._numbers = itertools.count()

    def new(self) -> str:
        return f"{self._prefix}{next(self._numbers) & 0xFFFFFFFFFFFFFFFF:016x}"


_request_ids = _RequestIds()


def request_id_of(scope: Scope) -> str:
    """The client's `X-Request-ID` when it is valid, else a new one, written into the request's headers."""
    given = next((value for name, value in scope["headers"] if name == REQUEST_ID_HEADER), None)
    text = given.decode("latin-1") if given is not None else None
    if text and _valid_request_id(text):
        return text
    request_id = _request_ids.new()
    if text:
        log.warning("Generated new request ID (%s), since request header value failed validation", request_id)
    scope["headers"] = [
        *((name, value) for name, value in scope["headers"] if name != REQUEST_ID_HEADER),
        (REQUEST_ID_HEADER, request_id.encode("latin-1")),
    ]
    return request_id


class Edge:
    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app, self.hsts = app, hsts
        self.metrics = HttpMetrics()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            correlation_id.set(request_id_of(scope))
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering
        head = scope["method"] == "HEAD"
        correlation_id.set(request_id_of(scope))
        private = http_security.private(scope)
        hsts = self.hsts

        answered = False

        async def edge_send(message: Message) -> None:
            nonlocal status, answered
            kind = message["type"]
            if kind == "http.response.start":
                status, answered = message["status"], True
                headers = http_security.with_security_headers(
                    list(message.get("headers", [])), private=private, hsts=hsts
                )
                if request_id := correlation_id.get():
                    headers.append((REQUEST_ID_HEADER, request_id.encode("latin-1")))
                message["headers"] = headers
            elif head and kind == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        # HEAD runs as a GET on a copy: the server reads the original's method to know no body follows.
        inner = {**scope, "method": "GET"} if head else scope
        try:
            await self.app(inner, receive, edge_send)
        except Exception as exc:
            if answered:
                raise
            # Answered here rather than by Starlette's ServerErrorMiddleware, which sits outside this
            # layer: the 500 then carries the security headers and the request id like any answer.
            response = await errors.answer_unexpected(Request(inner), exc)
            await response(inner, receive, edge_send)
        finally:
            if head:  # what routing found (the route, for the metrics) goes back to the original
                for key, value in inner.items():
                    scope.setdefault(key, value)
            self.metrics.observe(scope, status, time.perf_counter() - started)
