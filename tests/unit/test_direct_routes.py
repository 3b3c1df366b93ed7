"""A route taken directly (service/direct_routes.py) answers as through the router, and one with
parameters for FastAPI to solve is refused rather than served without them."""

import pytest
from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from service.direct_routes import DirectRoutes


class Refused(Exception):
    pass


class RefusedLoudly(Refused):
    pass


class Ignored(Exception):
    pass


def app_with(endpoint) -> FastAPI:
    app = FastAPI()
    app.add_api_route("/things", endpoint, methods=["POST"])
    app.add_api_route("/things", lambda: {"listed": True}, methods=["GET"])

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        return JSONResponse({"code": "refused"}, status_code=409)

    @app.exception_handler(RefusedLoudly)
    def refused_loudly(request: Request, exc: RefusedLoudly) -> Response:  # a plain function: run in a thread
        return JSONResponse({"code": "refused loudly"}, status_code=409)

    @app.exception_handler(418)
    async def teapot(request: Request, exc: HTTPException) -> Response:
        return JSONResponse({"code": "teapot", "detail": exc.detail}, status_code=418)

    routes = [route for route in app.routes if isinstance(route, APIRoute) and route.endpoint is endpoint]
    app.add_middleware(DirectRoutes, api=app, routes=routes)
    return app


def test_a_direct_route_answers_and_its_errors_go_to_the_apps_handlers():
    raised = {
        "refuse": Refused(),
        "loudly": RefusedLoudly(),  # its own handler, nearer than its parent's
        "teapot": HTTPException(418, "short and stout"),  # by its status
        "missing": HTTPException(404, "no such thing"),  # FastAPI's handler of HTTPException
        "ignored": Ignored(),  # no handler: the outer layers answer 500
    }

    async def take(request: Request) -> Response:
        body = await request.json()
        if body.get("raise"):
            raise raised[body["raise"]]
        return JSONResponse({"route": request.scope["route"].path, "got": body}, status_code=201)

    with TestClient(app_with(take), raise_server_exceptions=False) as client:
        taken = client.post("/things", json={"a": 1})
        assert taken.status_code == 201
        assert taken.json() == {"route": "/things", "got": {"a": 1}}
        assert client.post("/things", json={"raise": "refuse"}).json() == {"code": "refused"}
        assert client.post("/things", json={"raise": "loudly"}).json() == {"code": "refused loudly"}
        assert client.post("/things", json={"raise": "teapot"}).json() == {
            "code": "teapot",
            "detail": "short and stout",
        }
        missing = client.post("/things", json={"raise": "missing"})
        assert (missing.status_code, missing.json()) == (404, {"detail": "no such thing"})
        assert client.post("/things", json={"raise": "ignored"}).status_code == 500
        assert client.get("/things").json() == {"listed": True}  # other methods go through the router


def test_a_route_with_parameters_cannot_be_taken_directly():
    async def take(request: Request, tenant: str = Header()) -> Response:
        return Response(status_code=201)

    with TestClient(app_with(take)) as client, pytest.raises(RuntimeError, match="cannot be taken directly"):
        client.post("/things", headers={"tenant": "a"})
