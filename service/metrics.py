"""Prometheus metrics at GET /metrics.

What a process can count itself (reports it accepted; HTTP requests, their errors and latency, counted
by HttpMetrics below, for service.edge) is a prometheus-client counter or histogram; with several API processes set
PROMETHEUS_MULTIPROC_DIR and the counts of all of them are summed. What belongs to
the whole system is read at scrape time from where it is true: the queue depth from Redis, ticket
counts, SLA breaches and failed webhook deliveries from the database, and the job latency histogram from Redis, where every
worker process adds its observations (so it is one histogram however many workers run).
"""

import asyncio
import hmac
import logging
import os
import platform
from datetime import datetime
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.types import Scope

from service.db import metadata
from service.errors import Unauthenticated
from service.ioc.queries import overdue_condition
from service.models import Report
from service.models.report import CHANNELS, REPORT_STATUSES
from service.models.types import utcnow

log = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])

# Registered on the registry built for each scrape, not on the global default one.
REPORTS_RECEIVED = Counter(
    "intake_reports_received",
    "Reports accepted by POST /v1/reports (intake rate: use rate())",
    ["channel"],
    registry=None,
)
# Every series exists from the start, so rate() sees the first report; kept, not looked up per report.
_RECEIVED_BY_CHANNEL = {channel: REPORTS_RECEIVED.labels(channel=channel) for channel in CHANNELS}
# Seconds from a report's job being enqueued to its processing being committed.
JOB_LATENCY_BUCKETS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
REDIS_TIMEOUT_SECONDS = 0.5


HTTP_REQUESTS = Counter(
    "http_requests",
    "HTTP requests answered, by route template, method and status class (2xx, 4xx, 5xx…)",
    ["route", "method", "status"],
    registry=None,
)
HTTP_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HTTP_REQUEST_DURATION = Histogram(
    "http_request_duration_seconds",
    "Seconds from a request's arrival to the end of its answer, by route template and method",
    ["route", "method"],
    buckets=HTTP_LATENCY_BUCKETS,
    registry=None,
)
# Every path that matched no route (a scanner's guesses, typos) is counted under this one label, so
# what a client sends can never add series.
UNMATCHED_ROUTE = "(unmatched)"
COUNTED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpMetrics:
    """Counts every HTTP request by the template of the route that answered it (`/v1/tickets/{ticket}`,
    never the raw path), its method and status class, and times it: service.edge calls `observe` once
    each answer is sent, with the time from the request's arrival.

    The router records the route it picked in the scope: APIRoutes as scope["route"], plain routes and
    mounts (the spec, the docs assets) by their endpoint. Per request: one dictionary lookup for the
    label children, an increment and an observation; the children are looked up once per series and kept."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, str, int], tuple] = {}
        self._templates: dict[object, str] | None = None

    def observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path_format", None) or self._template_of(scope.get("endpoint"), scope)
        method = scope["method"] if scope["method"] in COUNTED_METHODS else "other"
        key = (route, method, status // 100)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (
                HTTP_REQUESTS.labels(route, method, f"{status // 100}xx"),
                HTTP_REQUEST_DURATION.labels(route, method),
            )
        series[0].inc()
        series[1].observe(seconds)

    def _template_of(self, endpoint: object, scope: Scope) -> str:
        if endpoint is None:
            return UNMATCHED_ROUTE
        if self._templates is None:  # the app's own routes, read once (they do not change after start-up)
            routes = getattr(scope.get("app"), "routes", [])
            self._templates = {
                getattr(route, "endpoint", None) or getattr(route, "app", None): route.path_format
                for route in routes
                if getattr(route, "path_format", None)
            }
        return self._templates.get(endpoint, UNMATCHED_ROUTE)


def report_received(channel: str) -> None:
    series = _RECEIVED_BY_CHANNEL.get(channel)
    (series if series is not None else REPORTS_RECEIVED.labels(channel=channel)).inc()


def job_latency_key(queue_name: str) -> str:
    return f"{queue_name}:metrics:job_latency"


async def observe_job_latency(redis, queue_name: str, enqueue_time: datetime | None) -> None:
    """Add one finished job to the shared histogram; never fails the job that calls it."""
    if enqueue_time is None:
        return
    seconds = max(0.0, (utcnow() - enqueue_time).total_seconds())
    bucket = next((str(le) for le in JOB_LATENCY_BUCKETS if seconds <= le), "+Inf")
    try:
        pipe = redis.pipeline(transaction=True)
        pipe.hincrby(job_latency_key(queue_name), f"le:{bucket}", 1)
        pipe.hincrbyfloat(job_latency_key(queue_name), "sum", seconds)
        await asyncio.wait_for(pipe.execute(), REDIS_TIMEOUT_SECONDS)
    except (RedisError, OSError, TimeoutError) as exc:
        log.warning("job latency not recorded: %s", type(exc).__name__)


async def _job_latency(redis, queue_name: str) -> HistogramMetricFamily | None:
    try:
        raw = await asyncio.wait_for(redis.hgetall(job_latency_key(queue_name)), REDIS_TIMEOUT_SECONDS)
    except (RedisError, OSError, TimeoutError):
        return None
    values = {key.decode() if isinstance(key, bytes) else key: value for key, value in raw.items()}
    cumulative, buckets = 0, []
    for le in [*map(str, JOB_LATENCY_BUCKETS), "+Inf"]:
        cumulative += int(values.get(f"le:{le}", 0))
        buckets.append((le, cumulative))
    family = HistogramMetricFamily(
        "intake_job_latency_seconds", "Seconds from a report job being enqueued to its result committed (all workers)"
    )
    family.add_metric([], buckets, sum_value=float(values.get("sum", 0)))
    return family


async def _queue_depth(redis, queue_name: str, name: str, documentation: str) -> GaugeMetricFamily | None:
    try:
        depth = await asyncio.wait_for(redis.zcard(queue_name), REDIS_TIMEOUT_SECONDS)
    except (RedisError, OSError, TimeoutError):
        return None
    return GaugeMetricFamily(name, documentation, value=depth)


async def _database_families(session: AsyncSession) -> list:
    by_status: dict[str, int] = dict(
        (await session.execute(select(col(Report.status), func.count()).group_by(col(Report.status)))).all()
    )
    tickets = GaugeMetricFamily("intake_tickets", "Reports by current status", labels=["status"])
    for status in REPORT_STATUSES:
        tickets.add_metric([status], by_status.get(status, 0))
    breaches = (await session.execute(select(func.count()).where(overdue_condition(utcnow())))).scalar_one()
    sla = GaugeMetricFamily(
        "intake_sla_breaches", "Open reports past their due time (on_hold excluded)", value=breaches
    )
    return [tickets, sla, await _webhook_failures(session)]


async def _webhook_failures(session: AsyncSession):
    """Failed delivery attempts (one row per HTTP attempt in the webhooks domain's table)."""
    attempts = metadata.tables.get("webhook_delivery_attempts")
    if attempts is None:  # a build without the webhooks domain
        return GaugeMetricFamily("intake_webhook_delivery_failures", "Failed webhook delivery attempts", value=0)
    failed = (
        await session.execute(select(func.count()).select_from(attempts).where(attempts.c.succeeded.is_(False)))
    ).scalar_one()
    return CounterMetricFamily("intake_webhook_delivery_failures", "Failed webhook delivery attempts", value=failed)


def _version() -> str:
    try:
        return installed_version("citizen-intake")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


VERSION = _version()


def build_info(commit: str) -> GaugeMetricFamily:
    family = GaugeMetricFamily(
        "intake_build_info",
        "The running build (always 1): version, Python, commit",
        labels=["version", "python", "commit"],
    )
    family.add_metric([VERSION, platform.python_version(), commit], 1)
    return family


class _Families:
    """A collector that hands prometheus-client families gathered beforehand (collect() is synchronous)."""

    def __init__(self, families: list) -> None:
        self.families = families

    def collect(self):
        return iter(self.families)


def _registry(families: list) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        for metric in (REPORTS_RECEIVED, HTTP_REQUESTS, HTTP_REQUEST_DURATION):
            registry.register(metric)
    registry.register(_Families(families))
    return registry


def _check_token(expected: str, authorization: str | None) -> None:
    if not expected:
        return
    scheme, _, given = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise Unauthenticated(
            "unauthenticated",
            "GET /metrics needs `Authorization: Bearer <METRICS_TOKEN>`.",
            headers={"WWW-Authenticate": "Bearer"},
        )


@router.get("/metrics", summary="Prometheus metrics (text exposition format)", response_class=Response)
async def metrics(request: Request, authorization: Annotated[str | None, Header()] = None) -> Response:
    state = request.app.state
    _check_token(state.settings.metrics_token, authorization)
    queue_name = state.settings.queue_name
    async with state.sessions() as session:
        families = [build_info(state.settings.build_commit), *await _database_families(session)]
    for family in (
        await _queue_depth(state.arq, queue_name, "intake_queue_depth", "Jobs waiting in the reports' arq queue"),
        await _queue_depth(
            state.arq,
            state.settings.webhook_queue_name,
            "intake_webhook_queue_depth",
            "Webhook delivery jobs queued or deferred for a retry (their own arq queue)",
        ),
        await _job_latency(state.arq, queue_name),
    ):
        if family is not None:
            families.append(family)
    return Response(generate_latest(_registry(families)), media_type=CONTENT_TYPE_LATEST)
