"""HEAD answered wherever GET is: the GET runs and its body is dropped, its headers (Content-Length
included) kept, as HTTP asks. FastAPI's routes name GET only, so without this every HEAD was a 405."""

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HeadAsGet:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        # A copy: the server reads the original's method to know no body follows the headers.
        as_get = {**scope, "method": "GET"}
        try:
            await self.app(as_get, receive, send_headers_only)
        finally:
            # What routing found (the route, for the request metrics outside) goes back to the original.
            for key, value in as_get.items():
                scope.setdefault(key, value)
