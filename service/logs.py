"""Structured JSON logs with the request id on every line (API and worker alike)."""

import logging
import logging.config
import re

from asgi_correlation_id import CorrelationIdFilter

# SQLAlchemy's error text: "[parameters: (...)]" on one line (repr keeps it on one).
SQL_PARAMETERS = re.compile(r"\[parameters: [^\n]*\]")


def scrub(text: str) -> str:
    return SQL_PARAMETERS.sub("[parameters hidden]", text)


class ScrubSqlParameters(logging.Filter):
    """Our engines hide parameters; this keeps any other engine's (Alembic, a script) out of the logs too."""

    _formatter = logging.Formatter()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info:
            record.exc_text = scrub(self._formatter.formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = scrub(record.exc_text)
        message = record.getMessage()
        if "[parameters: " in message:
            record.msg, record.args = scrub(message), None
        return True


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
                "asctime": "time",
                "levelname": "level",
                "name": "logger",
                "correlation_id": "request_id",
            },
        }
        if json_output
        else {"format": "%(asctime)s %(levelname)s [%(correlation_id)s] %(name)s: %(message)s"}
    )
    config = {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {
            "request_id": {"()": CorrelationIdFilter, "default_value": "-"},
            "scrub_sql_parameters": {"()": ScrubSqlParameters},
        },
        "formatters": {"default": formatter},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "default",
                "filters": ["request_id", "scrub_sql_parameters"],
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
