"""A direct way in for the few routes that take the request alone and return a Response themselves.

Such a route (intake's POST /v1/reports) needs nothing of FastAPI's per-request work: no parameters to
solve, no body to parse, no response model to serialise. Yet every request paid for matching it among
every route of the API, for the exit stacks of dependencies it does not have, and for the handler that
would have solved them: as much CPU as intake's own validation and checks.

This layer, the innermost middleware, sends the request of such a route straight to its endpoint.
Everything a client sees stays the same: the route is still registered (OpenAPI, 405 on other methods,
the router for any other path), the app's own exception handlers answer its errors (found as Starlette's
ExceptionMiddleware finds them, without its layer around every message of the answer: an endpoint that
returns its Response has raised all it will before the answer starts; an unexpected error goes on to
service.edge.Edge), and `scope["route"]` is set as routing sets it, for the metrics and the logs. A route given here that does have parameters (or
an app with dependencies of its own) is refused at the first request rather than served without them.
"""

from collections.abc import Awaitable, Callable

from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette._utils import is_async_callable  # what ExceptionMiddleware decides a handler's kind by
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import get_route_path
from starlette.types import ASGIApp, ExceptionHandler, Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]


class _Handlers:
    """The app's exception handlers as Starlette's ExceptionMiddleware gets them (`Exception` and 500 are
    left to the outer layers, as Starlette hands them to its ServerErrorMiddleware), looked up as it does:
    an HTTPException's status first, then the exception's classes, nearest first."""

    def __init__(self, app: FastAPI) -> None:
        handlers = {kind: handler for kind, handler in app.exception_handlers.items() if kind not in (500, Exception)}
        self.by_status = {kind: handler for kind, handler in handlers.items() if isinstance(kind, int)}
        self.by_class = {kind: handler for kind, handler in handlers.items() if not isinstance(kind, int)}
        # FastAPI always has its own, where ExceptionMiddleware would otherwise bring one.
        if HTTPException not in self.by_class:
            raise RuntimeError("the app has no handler for HTTPException")

    def find(self, exc: Exception) -> ExceptionHandler | None:
        handler = self.by_status.get(exc.status_code) if isinstance(exc, HTTPException) else None
        if handler is None:
            handler = next((self.by_class[kind] for kind in type(exc).__mro__ if kind in self.by_class), None)
        return handler


class DirectRoutes:
    """`routes`: the routes to take directly, as their router holds them (a router included in the app
    without a prefix of its own, so that their paths are the app's)."""

    def __init__(self, app: ASGIApp, *, api: FastAPI, routes: list[APIRoute]) -> None:
        self.app, self.api, self.routes = app, api, routes
        self._direct: dict[tuple[str, str], tuple[APIRoute, ASGIApp]] | None = None

    def _build(self) -> dict[tuple[str, str], tuple[APIRoute, ASGIApp]]:
        # Read at the first request: the app's exception handlers are all in place by then.
        handlers = _Handlers(self.api)
        direct: dict[tuple[str, str], tuple[APIRoute, ASGIApp]] = {}
        for route in self.routes:
            if _has_parameters(route) or self.api.router.dependencies:
                # Taken directly, they would be skipped without a word: such a route goes through the router.
                raise RuntimeError(f"{route.path} has parameters for FastAPI to solve: it cannot be taken directly")
            for method in route.methods or ():
                direct[(method, route.path)] = (route, _call(route.endpoint, handlers))
        return direct

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            direct = self._direct if self._direct is not None else self._set_up()
            found = direct.get((scope["method"], get_route_path(scope)))
            if found is not None:
                route, app = found
                scope["route"], scope["endpoint"], scope["path_params"] = route, route.endpoint, {}
                scope.setdefault("router", self.api.router)
                await app(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _set_up(self) -> dict[tuple[str, str], tuple[APIRoute, ASGIApp]]:
        self._direct = self._build()
        return self._direct


def _has_parameters(route: APIRoute) -> bool:
    dependant = route.dependant
    return bool(
        dependant.dependencies
        or dependant.path_params
        or dependant.query_params
        or dependant.header_params
        or dependant.cookie_params
        or dependant.body_params
    )


def _call(endpoint: Endpoint, handlers: _Handlers) -> ASGIApp:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        try:
            response = await endpoint(request)
        except Exception as exc:
            handler = handlers.find(exc)
            if handler is None:
                raise
            if is_async_callable(handler):
                answer = await handler(request, exc)  # type: ignore[arg-type]  # an http handler, not a websocket's
            else:
                answer = await run_in_threadpool(handler, request, exc)
            exc.__traceback__ = None  # as Starlette: a reused exception must not gather tracebacks
            if answer is None:
                return
            response = answer
        await response(scope, receive, send)

    return app
