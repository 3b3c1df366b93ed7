"""Limits on what a request body may be, enforced while it streams in, for every route.

JSON bodies are capped small and checked for nesting depth before any parser sees them; multipart
bodies are capped at what the photo limits allow. Counting happens on the wire, so a chunked upload
without Content-Length is cut off as soon as it passes the cap, not after it has filled the disk.

No text of a request may carry a NUL character (PostgreSQL cannot store one, and no citizen types
one): a path, a query or a JSON body with one is refused with 422 before any route sees it. A JSON
string with half of a UTF-16 surrogate pair (`\\ud800`) is refused the same way: no UTF-8 encodes it.

A body that stops arriving is given up: each wait for the next chunk of an unfinished body may last
BODY_IDLE_TIMEOUT_SECONDS, then the answer is 408 and the connection is closed. uvicorn has no such
limit, and a client that sends half a body and waits (one of many, slowloris) would hold its request,
and for a photo a half-written file, for as long as it liked. A slow client that keeps sending is not
cut off; nor is the wait for a hang-up once the body is in (a streaming answer listens for one).
"""

import asyncio
import re

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import ErrorCode, FieldError, problem_response
from service.settings import Settings

MAX_JSON_BYTES = 256 * 1024
MAX_FORM_FIELDS_BYTES = 256 * 1024
MAX_JSON_DEPTH = 16


def _first_header(scope: Scope, name: bytes) -> bytes:
    """The first value of a header, as Starlette's `request.headers.get` (and so the routes) read it: a
    request that repeats Content-Type must be limited as the type the route will parse."""
    for key, value in scope["headers"]:
        if key == name:
            return value
    return b""


class BodyTooLarge(Exception):
    def __init__(self, limit: int):
        self.limit = limit


class JsonTooDeep(Exception):
    pass


class BodyIdle(Exception):
    """No chunk of an unfinished body came within the idle timeout. Not a TimeoutError: the app answers
    those 503, as an outage of ours."""

    def __init__(self, seconds: float):
        self.seconds = seconds


NUL_MESSAGE = "NUL (\\u0000) is not allowed in text"
SURROGATE_MESSAGE = "a lone UTF-16 surrogate (\\ud800 to \\udfff without its pair) is not allowed in text"
_HIGH, _LOW = range(0xD800, 0xDC00), range(0xDC00, 0xE000)


class UnstorableText(Exception):
    """Text no database can store (NUL, a lone surrogate): a 422 naming where it was."""

    def __init__(self, where: str, message: str = NUL_MESSAGE):
        self.where, self.message = where, message


def unstorable_json_text(body: bytes) -> str | None:
    """Why a JSON string in the body cannot be stored as text, or None: the escape \\u0000 (a raw NUL
    byte is invalid JSON already), or a surrogate escape without its pair (no UTF-8 encodes it; every
    database driver and encoder downstream fails on it). Linear; a body without such escapes is not walked."""
    if b"\\u0000" not in body and not re.search(rb"\\u[dD][89a-fA-F]", body):
        return None
    in_string, escaped, index, pending_high = False, False, 0, False
    while index < len(body):
        byte = body[index]
        if in_string and escaped:
            escaped = False
            code = _hex(body[index + 1 : index + 5]) if byte == 0x75 else None  # \uXXXX
            if code == 0:
                return NUL_MESSAGE
            if pending_high != (code in _LOW):
                return SURROGATE_MESSAGE
            pending_high = code in _HIGH
            index += 5 if code is not None else 1
            continue
        if pending_high and byte != 0x5C:  # a high surrogate not followed at once by an escape
            return SURROGATE_MESSAGE
        if in_string:
            if byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        index += 1
    return None


def _hex(digits: bytes) -> int | None:
    try:
        return int(digits, 16)
    except ValueError:  # invalid JSON: its parser says so
        return None


# Open311 answers every error in its own format, from its own routes (service/open311/errors.py).
OWN_ERROR_FORMAT_PREFIXES = ("/open311/",)


def url_has_nul(scope: Scope) -> bool:
    if scope.get("path", "").startswith(OWN_ERROR_FORMAT_PREFIXES):
        return False
    return "\x00" in scope.get("path", "") or b"%00" in scope.get("query_string", b"")


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """True when brackets nest deeper than `limit` (outside strings). Linear, no recursion."""
    if body.count(b"{") + body.count(b"[") <= limit:  # every body of a usual form: no byte-by-byte walk
        return False
    depth, in_string, escaped = 0, False, False
    for byte in body:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x7B, 0x5B):  # { [
            depth += 1
            if depth > limit:
                return True
        elif byte in (0x7D, 0x5D):
            depth -= 1
    return False


class BodyLimits:
    def __init__(self, app: ASGIApp, *, settings: Settings):
        self.app = app
        self.multipart_limit = settings.max_photos_per_report * settings.max_photo_bytes + MAX_FORM_FIELDS_BYTES
        self.idle_timeout = settings.body_idle_timeout_seconds

    def _limit_for(self, scope: Scope) -> tuple[int, bool]:
        content_type = _first_header(scope, b"content-type").split(b";")[0].strip().lower()
        if content_type == b"multipart/form-data":
            return self.multipart_limit, False
        return MAX_JSON_BYTES, content_type.endswith(b"json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if url_has_nul(scope):
            await _nul_response(scope, "url")(scope, receive, send)
            return
        if scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        limit, is_json = self._limit_for(scope)
        try:
            declared = _first_header(scope, b"content-length") or None
            if declared and declared.isdigit() and int(declared) > limit:
                raise BodyTooLarge(limit)
            if is_json:
                # Read and checked whole before the app runs: nothing of it is refused later, so its
                # answer goes out without a layer around each of its messages.
                checked = await self._checked_json(scope, receive, limit)
        except (BodyTooLarge, JsonTooDeep, UnstorableText, BodyIdle) as exc:
            await _refusal(scope, exc)(scope, receive, send)
            return
        if is_json:
            await self.app(scope, checked, send)
            return
        started, received, finished, idle_timeout = False, 0, False, self.idle_timeout

        async def counting_receive() -> Message:
            nonlocal received, finished
            if finished:  # the body is in: what is awaited now is the hang-up, as late as the answer lasts
                return await receive()
            try:
                async with asyncio.timeout(idle_timeout):
                    message = await receive()
            except TimeoutError:
                raise BodyIdle(idle_timeout) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
                finished = not message.get("more_body", False)
            else:
                finished = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except (BodyTooLarge, BodyIdle) as exc:
            if started:
                raise
            await _refusal(scope, exc)(scope, receive, send)

    async def _checked_json(self, scope: Scope, receive: Receive, limit: int) -> Receive:
        """Read the (small) JSON body whole, check it, then hand it on unchanged."""
        chunks, size, more, idle_timeout = [], 0, True, self.idle_timeout
        while more:
            try:
                async with asyncio.timeout(idle_timeout):
                    message = await receive()
            except TimeoutError:
                raise BodyIdle(idle_timeout) from None
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(limit)
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if json_depth_exceeds(body, MAX_JSON_DEPTH):
            raise JsonTooDeep()
        if (problem := unstorable_json_text(body)) and not scope["path"].startswith(OWN_ERROR_FORMAT_PREFIXES):
            raise UnstorableText("body", problem)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay


def _refusal(scope: Scope, exc: BodyTooLarge | JsonTooDeep | UnstorableText | BodyIdle):
    if isinstance(exc, UnstorableText):
        return _nul_response(scope, exc.where, exc.message)
    if isinstance(exc, BodyIdle):
        # Closed, so that a stalled client holds no connection either (RFC 9110 §15.5.9: a server
        # that answers 408 should close).
        return problem_response(
            Request(scope),
            408,
            ErrorCode.REQUEST_TIMEOUT,
            f"No part of the body arrived for {exc.seconds:g} seconds.",
            headers={"Connection": "close"},
        )
    if isinstance(exc, BodyTooLarge):
        return problem_response(Request(scope), 413, "payload_too_large", f"The body may be at most {exc.limit} bytes.")
    return problem_response(
        Request(scope),
        422,
        "validation_error",
        f"JSON may nest at most {MAX_JSON_DEPTH} levels.",
        errors=[FieldError(field="body", code="json_too_deep", message=f"at most {MAX_JSON_DEPTH} levels")],
    )


def _nul_response(scope: Scope, where: str, message: str = NUL_MESSAGE):
    return problem_response(
        Request(scope),
        422,
        "text_not_storable",
        errors=[FieldError(field=where, code="text_not_storable", message=message)],
    )
