"""Liveness and readiness for load balancers and orchestrators."""

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

router = APIRouter(tags=["operations"])

CHECK_TIMEOUT_SECONDS = 1.0


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict:
    return {"status": "ok"}


async def _check_database(request: Request) -> None:
    async with request.app.state.engine.connect() as connection:
        await connection.execute(text("SELECT 1"))


async def _check_redis(request: Request) -> None:
    await request.app.state.arq.ping()


@router.get(
    "/readyz",
    summary="The database and Redis answer",
    responses={503: {"description": "A dependency is down", "content": {"application/json": {}}}},
)
async def readyz(request: Request) -> JSONResponse:
    checks = {}
    for name, check in (("database", _check_database), ("redis", _check_redis)):
        try:
            await asyncio.wait_for(check(request), CHECK_TIMEOUT_SECONDS)
            checks[name] = "ok"
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", whatever its kind
            checks[name] = f"unavailable: {type(exc).__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks}, status_code=200 if ready else 503
    )
