"""Limits on what a request body may be, enforced while it streams in, for every route.

JSON bodies are capped small and checked for nesting depth before any parser sees them; multipart
bodies are capped at what the photo limits allow. Counting happens on the wire, so a chunked upload
without Content-Length is cut off as soon as it passes the cap, not after it has filled the disk.
"""

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.errors import FieldError, problem_response
from service.settings import Settings

MAX_JSON_BYTES = 256 * 1024
MAX_FORM_FIELDS_BYTES = 256 * 1024
MAX_JSON_DEPTH = 16


class BodyTooLarge(Exception):
    def __init__(self, limit: int):
        self.limit = limit


class JsonTooDeep(Exception):
    pass


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """True when brackets nest deeper than `limit` (outside strings). Linear, no recursion."""
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

    def _limit_for(self, scope: Scope) -> tuple[int, bool]:
        content_type = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip().lower()
        if content_type == b"multipart/form-data":
            return self.multipart_limit, False
        return MAX_JSON_BYTES, content_type.endswith(b"json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self._limited(scope, receive, tracking_send)
        except (BodyTooLarge, JsonTooDeep) as exc:
            if started:
                raise
            request = Request(scope)
            if isinstance(exc, BodyTooLarge):
                response = problem_response(request, 413, "payload_too_large", f"The body may be at most {exc.limit} bytes.")
            else:
                response = problem_response(
                    request, 422, "validation_error", f"JSON may nest at most {MAX_JSON_DEPTH} levels.",
                    errors=[FieldError(field="body", code="json_too_deep", message=f"at most {MAX_JSON_DEPTH} levels")],
                )
            await response(scope, receive, send)

    async def _limited(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit, is_json = self._limit_for(scope)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge(limit)
        if is_json:
            receive = await self._checked_json(receive, limit)
            await self.app(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        await self.app(scope, counting_receive, send)

    async def _checked_json(self, receive: Receive, limit: int) -> Receive:
        """Read the (small) JSON body whole, check it, then hand it on unchanged."""
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
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
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

