"""Structured JSON logs with the request id on every line (API and worker alike)."""

import logging
import logging.config

from asgi_correlation_id import CorrelationIdFilter


# aiosqlite (DEBUG) and SQLAlchemy's engine (INFO) log every statement with its parameters: password
# and token hashes, webhook secrets, encrypted contact data. httpx (INFO) logs each webhook target URL,
# which may carry the subscriber's own token; httpcore and hpack (DEBUG) log headers.
QUIET_LOGGERS = {
    "aiosqlite": "WARNING",
    "sqlalchemy.engine": "WARNING",
    "sqlalchemy.pool": "WARNING",
    "httpx": "WARNING",
    "httpcore": "WARNING",
    "hpack": "WARNING",
    "python_multipart": "INFO",
}


def _number(level: str | int) -> int:
    number = logging.getLevelName(level.upper()) if isinstance(level, str) else level
    return number if isinstance(number, int) else logging.INFO


def configure_logging(level: str = "INFO", json_output: bool = True) -> dict:
    """Configure the root logger and return the dict config, so uvicorn can be given the same one."""
    formatter = (
        {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(correlation_id)s",
            "rename_fields": {
                "asctime": "time", "levelname": "level", "name": "logger", "correlation_id": "request_id"
            },
        }
        if json_output
        else {"format": "%(asctime)s %(levelname)s [%(correlation_id)s] %(name)s: %(message)s"}
    )
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": CorrelationIdFilter, "default_value": "-"}},
        "formatters": {"default": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["request_id"],
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.error": {"handlers": ["stderr"], "level": level, "propagate": False},
            "uvicorn.access": {"handlers": ["stderr"], "level": level, "propagate": False},
            "arq": {"handlers": ["stderr"], "level": level, "propagate": False},
            # Libraries that log data, not events: never below these levels, whatever LOG_LEVEL says.
            **{name: {"level": max(_number(floor), _number(level))} for name, floor in QUIET_LOGGERS.items()},
        },
    }
    logging.config.dictConfig(config)
    return config
