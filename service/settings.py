"""Every setting comes from the environment (or a `.env` file); the README lists them all."""

import os
import secrets
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Defaults of earlier versions, public in the repository's history: never accepted as a secret.
PUBLIC_SECRET_KEYS = frozenset({"dev-only-secret-key-change-me-in-production"})

# Rough bounding box of Ho Chi Minh City since 1 July 2025 (lat/lon): the former Bình Dương and
# Bà Rịa–Vũng Tàu included, down to the Côn Đảo special zone. Used only while no boundary is imported.
HCMC_SERVICE_AREA = (8.55, 106.30, 11.55, 107.65)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    database_url: str = "sqlite:///./var/intake.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # arq queue name; tests use their own so they never meet a running dev worker
    queue_name: str = "intake:queue"
    media_dir: Path = Path("var/media")
    # Photo storage: the local folder MEDIA_DIR, or an S3-compatible object store (the bucket stays private).
    storage_backend: Literal["local", "s3"] = "local"
    s3_endpoint_url: str | None = None  # e.g. http://minio:9000; unset: AWS S3 itself
    # The host browsers use for presigned URLs when it differs from S3_ENDPOINT_URL (signatures cover the host).
    s3_public_endpoint_url: str | None = None
    s3_bucket: str = ""
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None  # unset: boto3's own chain (environment, instance role)
    s3_secret_access_key: str | None = None
    s3_addressing_style: Literal["path", "virtual", "auto"] = "path"
    s3_presign_seconds: int = Field(default=300, ge=10, le=7 * 24 * 3600)
    s3_max_connections: int = Field(default=20, ge=1)
    # How GET /v1/photos/{id} answers: streams the bytes, or redirects (307) to a presigned URL (s3 only).
    photo_delivery: Literal["stream", "redirect"] = "stream"
    public_base_url: str = "http://127.0.0.1:8000"
    # Signs staff tokens and citizen tokens. No default anyone could read: in production it must be set;
    # in development, unset, a random one is made on first start and kept in SECRET_KEY_FILE, so every
    # process started from the same folder (API, worker, CLI) uses the same one.
    secret_key: str = Field(default="", min_length=32, validate_default=False)  # filled in by _secrets()
    secret_key_file: Path = Path("var/secret_key")

    max_photos_per_report: int = Field(default=5, ge=0, le=20)
    max_photo_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # Width x height a photo may declare; checked from its header at intake (decompression bombs → 413).
    max_photo_pixels: int = Field(default=40_000_000, ge=1)
    # How long a request body may pause between chunks before it is given up (408, the connection closed):
    # a client that sends part of a body and stalls would otherwise hold its request, and a half-written
    # photo, for good (service/body_limits.py). A slow upload that keeps going is never cut off.
    body_idle_timeout_seconds: float = Field(default=30, gt=0)
    # (min_lat, min_lon, max_lat, max_lon): the service area of a city without imported boundaries; with
    # them, a point is inside when within jurisdiction_tolerance_m of one (service/jurisdictions/area.py).
    service_area: tuple[float, float, float, float] = HCMC_SERVICE_AREA

    # Connections each process keeps open, and how many more it may open for a burst. The extra ones are
    # closed as soon as they are returned, so a busy process that lives on overflow opens and closes a
    # connection (a PostgreSQL backend) per request: size the pool for the usual peak instead.
    db_pool_size: int = Field(default=20, ge=1)
    db_max_overflow: int = Field(default=0, ge=0)
    # How long opening a connection may take: with the database down or unreachable the API answers
    # 503 within about this long instead of holding the request (tests/test_faults.py).
    db_connect_timeout_seconds: float = Field(default=1.0, gt=0)
    # Test each pooled connection with a round trip before use. Off: a connection broken by a database
    # restart fails one request with 503 and the whole pool is replaced; on: that request reconnects,
    # at the price of one more round trip on every request. Turn on where idle connections get cut
    # (a firewall, a proxy with an idle timeout).
    db_pool_pre_ping: bool = False
    # DATABASE_URL (and DATABASE_READ_URL) points at PgBouncer in transaction mode: no prepared statement
    # may outlive its transaction there, so each statement is prepared anew in every transaction. Off (a
    # plain PostgreSQL): each connection keeps its prepared statements, and a statement run again is
    # neither parsed nor described again (service/db.py).
    db_pgbouncer: bool = False
    # Optional read replica (streaming replication): the IOC's aggregate queries go there; unset: the primary.
    database_read_url: str | None = None
    # Connections each process may open to Redis (queue, rate limits, IOC cache).
    redis_max_connections: int = Field(default=50, ge=2)
    # How long an API process waits to connect to Redis before it counts Redis as down (the hand-off then
    # leaves the work to the sweeps). A loaded machine may need more than the default second.
    redis_connect_timeout_seconds: float = Field(default=1, gt=0, le=30)
    # Freeze what start-up built and collect young objects less often (service/gc_tuning.py); the
    # tests turn it off, as they start many apps in one process.
    gc_tuning: bool = True
    # FastAPI's OpenTelemetry request traces and metrics, for an operator who runs a collector
    # (configure the SDK with the usual OTEL_* variables); Prometheus at /metrics works either way.
    opentelemetry: bool = False
    log_level: str = "INFO"
    log_json: bool = True

    catalogue_path: Path = Path("service/catalogue/catalogue.yaml")
    # The Alembic folder (env.py, versions/). Unset: the checkout's `alembic/`, else `./alembic` (the image's
    # /app): an installed package has no migrations beside it.
    migrations_dir: Path | None = None

    # Reports one API process commits together at most when many arrive at once (service/reports/writer.py).
    intake_batch_max: int = Field(default=64, ge=1, le=1000)
    # How long an API process trusts an API key it has checked. A revoked key stops working at once in
    # the process that revoked it and within this long everywhere else; 0 checks the database every time.
    api_key_cache_seconds: float = Field(default=10, ge=0)

    # The pipeline (see service/pipeline/).
    model_cache_dir: Path = Path("var/models")
    # Below this confidence (the classifier's estimated chance that its field is right) a report goes
    # to a human dispatcher (needs_triage) instead of being routed.
    classifier_threshold: float = Field(default=0.80, ge=0, le=1)
    duplicate_radius_m: float = Field(default=50, gt=0, le=170)
    duplicate_window_days: float = Field(default=7, gt=0)
    jurisdiction_tolerance_m: float = Field(default=150, ge=0)
    # A report still `received` this long after intake lost its hand-off; the sweep re-enqueues it.
    stale_report_seconds: float = Field(default=30, gt=0)
    # A report whose processing failed this many times (not counting outages) goes to a dispatcher.
    processing_max_failures: int = Field(default=3, ge=1)
    # The IOC rollup cron's time limit (arq's recovery of a killed worker's jobs waits for the longest limit).
    ioc_rollup_timeout_seconds: int = Field(default=120, gt=0)
    job_timeout_seconds: int = Field(default=60, gt=0)
    # Jobs one worker process runs at once (each may hold a database connection), and how often an
    # idle slot looks for the next job: a finished job's slot waits for the next poll.
    worker_max_jobs: int = Field(default=10, ge=1)
    worker_poll_seconds: float = Field(default=0.1, gt=0, le=5)
    # Reports one job processes in one transaction: its own, topped up with others waiting.
    worker_batch_max: int = Field(default=200, ge=1, le=500)

    # The SLA calendar: office hours in the city's zone; Vietnamese public holidays come from `holidays`.
    sla_timezone: str = "Asia/Ho_Chi_Minh"
    sla_working_weekdays: list[int] = [0, 1, 2, 3, 4]
    sla_working_periods: list[tuple[str, str]] = [("07:30", "11:30"), ("13:00", "17:00")]
    sla_extra_holidays: list[date] = []
    sla_extra_working_dates: list[date] = []
    sla_at_risk_ratio: float = Field(default=0.75, gt=0, le=1)
    # How long before a deadline its department is told it is near (webhooks report.acknowledge_due_soon,
    # report.due_soon): wall-clock minutes.
    acknowledge_due_soon_minutes: int = Field(default=60, ge=1)
    due_soon_minutes: int = Field(default=240, ge=1)

    # GET /metrics: open when empty (the Prometheus norm), else `Authorization: Bearer <token>`.
    metrics_token: str = ""
    # The source commit of this build, shown by intake_build_info on /metrics (the image sets it).
    build_commit: str = ""

    # Status webhooks (see service/webhooks/). Hosts (names or IPs) exempt from the private-address check.
    webhook_allowed_hosts: list[str] = []
    webhook_allow_private_networks: bool = False
    webhook_connect_timeout_seconds: float = Field(default=5, gt=0)
    webhook_read_timeout_seconds: float = Field(default=15, gt=0)
    # The whole attempt, so a receiver that trickles bytes cannot hold a worker.
    webhook_total_timeout_seconds: float = Field(default=30, gt=0)
    webhook_response_excerpt_bytes: int = Field(default=1024, ge=0, le=65536)
    # Delay before each retry; one more failure after the last gives the event up.
    webhook_retry_schedule_seconds: list[float] = [5, 30, 120, 600, 3600, 6 * 3600, 24 * 3600]
    webhook_retry_jitter: float = Field(default=0.2, ge=0, le=1)
    webhook_max_retry_after_seconds: float = Field(default=24 * 3600, ge=0)
    # A subscription failing this long (or this many times in a row, when set) is disabled.
    webhook_disable_after_seconds: float = Field(default=3 * 24 * 3600, gt=0)
    webhook_disable_after_failures: int | None = Field(default=None, ge=1)
    # After a rotation the old secret keeps signing (a second signature) for this long.
    webhook_secret_overlap_seconds: float = Field(default=24 * 3600, ge=0)
    # How long a process reuses the list of active webhook subscriptions when recording events. A
    # subscription created or changed through this process counts at once; elsewhere within this long.
    webhook_subscription_cache_seconds: float = Field(default=1, ge=0)
    # An event due this long without being sent lost its hand-off; the sweep queues it again.
    webhook_stale_seconds: float = Field(default=30, ge=0)
    # Deliveries one worker process runs at once. They wait on receivers, not on the CPU, and they have a
    # queue of their own (`webhook_queue_name`): report processing never waits behind them.
    webhook_max_jobs: int = Field(default=20, ge=1)

    # How long after resolution a citizen may reopen a report (once); then it closes by itself.
    reopen_window_days: int = Field(default=7, ge=0)

    # Browser origins allowed to call the API (CORS); empty: closed.
    cors_origins: list[str] = []

    # Abuse limits ("N/second|minute|hour|day"), counted in Redis across all API processes.
    # Per app key: one key serves every citizen of an app, so the default lets a city-wide storm
    # (20,000 reports in a few minutes) through; a key created with `--rate` has its own.
    rate_limit_intake_per_key: str = "50000/minute"
    rate_limit_intake_per_address: str = "120/minute"
    rate_limit_intake_per_reporter: str = "20/hour"
    # Where a phone number written without a country code is (ISO 3166 code): the per-reporter limit
    # counts "0912 345 678" and "+84 912 345 678" as one reporter.
    phone_region: str = Field(default="VN", pattern="^[A-Z]{2}$")
    rate_limit_sign_in: str = "10/15 minutes"
    # Looking a report up by tracking code, per client address; a code that does not exist counts
    # TRACKING_LOOKUP_MISS_COST times, since guessing codes is mostly misses.
    rate_limit_tracking_lookup: str = "120/minute"
    tracking_lookup_miss_cost: int = Field(default=10, ge=1)
    rate_limits_enabled: bool = True

    # Personal data (Decree 13/2023): Fernet keys, the first encrypts, all decrypt (rotation).
    pii_encryption_keys: list[str] = []
    # Reporter name, phone and email are erased this many days after a ticket closes.
    pii_retention_days: int = Field(default=90, ge=0)

    @field_validator("database_url", "database_read_url")
    @classmethod
    def _async_driver(cls, url: str | None, info: ValidationInfo) -> str | None:
        """Accept the plain URLs people paste (postgresql://, sqlite:///) and pick the async driver."""
        if not url:
            return None if info.field_name == "database_read_url" else url  # an empty DATABASE_READ_URL: no replica
        for plain, driver in (
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
            ("postgresql+psycopg://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if url.startswith(plain):
                return driver + url[len(plain) :]
        return url

    @model_validator(mode="after")
    def _bucket_for_s3(self) -> "Settings":
        if self.storage_backend == "s3" and not self.s3_bucket:
            raise ValueError("STORAGE_BACKEND=s3 needs S3_BUCKET")
        return self

    @model_validator(mode="after")
    def _secrets(self) -> "Settings":
        if self.secret_key in PUBLIC_SECRET_KEYS:
            raise ValueError("SECRET_KEY is a value published with the code: set a random one (openssl rand -hex 32)")
        if self.environment == "production":
            # Each on its own: the encryption key must not be derived from (and fall with) the signing key.
            missing = [
                name
                for name, value in (("SECRET_KEY", self.secret_key), ("PII_ENCRYPTION_KEYS", self.pii_encryption_keys))
                if not value
            ]
            if missing:
                raise ValueError(f"ENVIRONMENT=production needs {' and '.join(missing)} set explicitly (see README)")
        elif not self.secret_key:
            self.secret_key = kept_secret(self.secret_key_file)
        return self

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def webhook_queue_name(self) -> str:
        """The arq queue of webhook deliveries, apart from the reports' queue (`queue_name`)."""
        return f"{self.queue_name}:webhooks"


def kept_secret(path: Path) -> str:
    """The development secret kept at `path`, made (random, readable by the owner only) on first use.

    Written to a temporary file and linked into place, so processes starting at the same moment
    (`make run` starts the worker and the API together) all end up with the one that got there first."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(secrets.token_urlsafe(48) + "\n")
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another process made it first: use theirs
        finally:
            draft.unlink()
    secret = path.read_text().strip()
    if len(secret) < 32:
        raise ValueError(f"{path} does not hold a usable secret: delete it to have a new one made, or set SECRET_KEY")
    return secret


@lru_cache
def get_settings() -> Settings:
    return Settings()
