"""A route taken directly (service/direct_routes.py) answers as through the router, and one with
parameters for FastAPI to solve is refused rather than served without them."""

import pytest
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from service.direct_routes import DirectRoutes


class Refused(Exception):
    pass


def app_with(endpoint) -> FastAPI:
    app = FastAPI()
    app.add_api_route("/things", endpoint, methods=["POST"])
    app.add_api_route("/things", lambda: {"listed": True}, methods=["GET"])

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Response:
        return JSONResponse({"code": "refused"}, status_code=409)

    routes = [route for route in app.routes if isinstance(route, APIRoute) and route.endpoint is endpoint]
    app.add_middleware(DirectRoutes, api=app, routes=routes)
    return app


def test_a_direct_route_answers_and_its_errors_go_to_the_apps_handlers():
    async def take(request: Request) -> Response:
        body = await request.json()
        if body.get("refuse"):
            raise Refused
        return JSONResponse({"route": request.scope["route"].path, "got": body}, status_code=201)

    with TestClient(app_with(take)) as client:
        taken = client.post("/things", json={"a": 1})
        assert taken.status_code == 201
        assert taken.json() == {"route": "/things", "got": {"a": 1}}
        assert client.post("/things", json={"refuse": True}).json() == {"code": "refused"}
        assert client.get("/things").json() == {"listed": True}  # other methods go through the router


def test_a_route_with_parameters_cannot_be_taken_directly():
    async def take(request: Request, tenant: str = Header()) -> Response:
        return Response(status_code=201)

    with TestClient(app_with(take)) as client, pytest.raises(RuntimeError, match="cannot be taken directly"):
        client.post("/things", headers={"tenant": "a"})
