"""The FastAPI application factory; the lifespan builds the shared resources into app.state."""

from contextlib import asynccontextmanager

from arq.connections import ArqRedis
from fastapi import FastAPI
from redis.asyncio import BlockingConnectionPool

from service import api_docs, health, http_security, metrics, privacy
from service.auth import routes as auth_routes
from service.body_limits import BodyLimits
from service.catalogue import routes as catalogue_routes
from service.db import create_engine, session_factory
from service.direct_routes import DirectRoutes
from service.edge import Edge
from service.errors import answer_errors_as, install_error_handlers
from service.gc_tuning import tune_after_start_up
from service.handoff import Handoff
from service.ioc import routes as ioc_routes
from service.jurisdictions import routes as jurisdiction_routes
from service.open311 import routes as open311_routes
from service.open311.errors import problem_as_errors
from service.photos import routes as photo_routes
from service.photos.storage import build_storage
from service.ratelimit import RateLimiter
from service.reports import routes as report_routes
from service.reports.writer import IntakeWriter
from service.settings import Settings, get_settings
from service.tickets import routes as ticket_routes
from service.webhooks import outbox
from service.webhooks import routes as webhook_routes

API_DESCRIPTION = """
Citizen-feedback intake for a city: residents report what is broken (with photos and a location),
the service classifies, routes and tracks each report to its deadline.

Errors always come as RFC 9457 problem details (`application/problem+json`) with a machine-readable
`code`; send `Accept-Language: vi` for Vietnamese messages. Under `/open311/` they come as the
GeoReport v2 error list instead, in the format the path names.

Dates and times in query parameters: with an offset, that instant; without one, the city's wall
clock (`SLA_TIMEZONE`, Asia/Ho_Chi_Minh); a bare date (`2026-12-01`) is that whole day in the city,
its first instant as a lower bound and included in full as an upper bound.
"""


def redis_pool(settings: Settings) -> BlockingConnectionPool:
    """At most REDIS_MAX_CONNECTIONS per process; a burst waits (2 s at most) for a free connection."""
    return BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=2,
        socket_connect_timeout=settings.redis_connect_timeout_seconds,
        socket_timeout=2,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.engine = create_engine(settings)
        app.state.sessions = session_factory(app.state.engine)
        # IOC reads go to the replica when DATABASE_READ_URL is set, else to the primary.
        app.state.read_engine = (
            create_engine(settings, settings.database_read_url) if settings.database_read_url else app.state.engine
        )
        app.state.read_sessions = session_factory(app.state.read_engine)
        # Connects lazily: the API starts and takes reports even while Redis is down.
        app.state.arq = ArqRedis.from_pool(redis_pool(settings))  # aclose() closes the pool too
        app.state.rate_limiter = RateLimiter.from_url(
            settings.redis_url,
            prefix=f"{settings.queue_name}:limits",
            connect_timeout=settings.redis_connect_timeout_seconds,
        )
        # Jobs and webhook streams, after each commit.
        app.state.handoff = Handoff(app.state.arq, settings.queue_name, settings.webhook_queue_name)
        outbox.configure(
            app.state.engine,
            settings.public_base_url,
            subscription_cache_seconds=settings.webhook_subscription_cache_seconds,
        )
        app.state.intake_writer = IntakeWriter(
            app.state.sessions, handoff=app.state.handoff, batch_max=settings.intake_batch_max
        )
        app.state.intake_writer.start()
        if settings.gc_tuning:
            tune_after_start_up()
        try:
            yield
        finally:
            await app.state.intake_writer.close()
            await app.state.handoff.drain()
            await app.state.arq.aclose()
            await app.state.rate_limiter.aclose()
            await app.state.engine.dispose()
            if app.state.read_engine is not app.state.engine:
                await app.state.read_engine.dispose()

    app = FastAPI(
        title="Citizen Feedback Intake",
        version="0.1.0",
        description=API_DESCRIPTION,
        lifespan=lifespan,
        # Served by service/api_docs.py from assets the service holds itself (no CDN).
        docs_url=None,
        redoc_url=None,
        # FastAPI's OpenTelemetry hooks look the providers up on every request (3 % of an intake
        # request's time); off unless an operator has an OpenTelemetry collector to feed.
        telemetry=None if settings.opentelemetry else {"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    privacy.configure(settings.pii_encryption_keys, settings.secret_key)
    app.state.storage = build_storage(settings)
    # Innermost: intake's route straight to its endpoint, past the router (service/direct_routes.py).
    app.add_middleware(DirectRoutes, api=app, routes=report_routes.direct_routes())
    app.add_middleware(BodyLimits, settings=settings)
    http_security.install(app, settings)  # CORS, when configured
    # Added last, so outermost: the time its metrics measure includes every other middleware's.
    app.add_middleware(Edge, hsts=settings.environment == "production")
    install_error_handlers(app)
    answer_errors_as(app, "/open311/", problem_as_errors)
    app.include_router(health.router)
    app.include_router(auth_routes.router)
    app.include_router(report_routes.router)
    app.include_router(catalogue_routes.router)
    app.include_router(ticket_routes.router)
    app.include_router(ticket_routes.departments_router)
    app.include_router(photo_routes.router)
    app.include_router(ioc_routes.router)
    app.include_router(ioc_routes.page_router)
    app.include_router(jurisdiction_routes.router)
    app.include_router(open311_routes.router)
    app.include_router(metrics.router)
    app.include_router(webhook_routes.router)
    api_docs.install(app)
    return app
