"""Every setting comes from the environment (or a `.env` file); the README lists them all."""

from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Rough bounding box of Ho Chi Minh City (lat/lon), used to refuse points far outside the city.
HCMC_SERVICE_AREA = (10.30, 106.30, 11.20, 107.10)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    database_url: str = "sqlite:///./var/intake.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # arq queue name; tests use their own so they never meet a running dev worker
    queue_name: str = "intake:queue"
    media_dir: Path = Path("var/media")
    public_base_url: str = "http://127.0.0.1:8000"
    secret_key: str = "dev-only-secret-change-me"

    max_photos_per_report: int = Field(default=5, ge=0, le=20)
    max_photo_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    # (min_lat, min_lon, max_lat, max_lon)
    service_area: tuple[float, float, float, float] = HCMC_SERVICE_AREA

    db_pool_size: int = 10
    db_max_overflow: int = 10
    log_level: str = "INFO"
    log_json: bool = True

    catalogue_path: Path = Path("service/catalogue/catalogue.yaml")

    # The pipeline (see service/pipeline/).
    model_cache_dir: Path = Path("var/models")
    # Below this confidence a report goes to a human dispatcher (needs_triage) instead of being routed.
    classifier_threshold: float = Field(default=0.5, ge=0, le=1)
    duplicate_radius_m: float = Field(default=50, gt=0, le=170)
    duplicate_window_days: float = Field(default=7, gt=0)
    jurisdiction_tolerance_m: float = Field(default=150, ge=0)
    # A report still `received` this long after intake lost its hand-off; the sweep re-enqueues it.
    stale_report_seconds: float = Field(default=30, gt=0)
    job_timeout_seconds: int = Field(default=60, gt=0)

    # The SLA calendar: office hours in the city's zone; Vietnamese public holidays come from `holidays`.
    sla_timezone: str = "Asia/Ho_Chi_Minh"
    sla_working_weekdays: list[int] = [0, 1, 2, 3, 4]
    sla_working_periods: list[tuple[str, str]] = [("07:30", "11:30"), ("13:00", "17:00")]
    sla_extra_holidays: list[date] = []
    sla_extra_working_dates: list[date] = []
    sla_at_risk_ratio: float = Field(default=0.75, gt=0, le=1)

    @field_validator("database_url")
    @classmethod
    def _async_driver(cls, url: str) -> str:
        """Accept the plain URLs people paste (postgresql://, sqlite:///) and pick the async driver."""
        for plain, driver in (
            ("postgresql://", "postgresql+asyncpg://"),
            ("postgres://", "postgresql+asyncpg://"),
            ("postgresql+psycopg://", "postgresql+asyncpg://"),
            ("sqlite://", "sqlite+aiosqlite://"),
        ):
            if url.startswith(plain):
                return driver + url[len(plain) :]
        return url

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()
