"""Structured JSON logs with the request id on every line (API and worker alike)."""

import logging
import logging.config

from asgi_correlation_id import CorrelationIdFilter


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
        },
    }
    logging.config.dictConfig(config)
    return config
