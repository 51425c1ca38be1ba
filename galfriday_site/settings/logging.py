"""Logging configuration: one event per line; JSON in production, readable text in development."""

from __future__ import annotations

from typing import Any


def build_logging(*, level: str, fmt: str) -> dict[str, Any]:
    if fmt not in {"json", "console"}:
        raise ValueError(f"LOG_FORMAT must be 'json' or 'console', not {fmt!r}")
    formatters: dict[str, Any] = {
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s %(message)s %(process)d",
            "rename_fields": {"asctime": "ts", "levelname": "level", "name": "logger"},
            "timestamp": False,
        },
        "console": {"format": "%(asctime)s %(levelname)-7s %(name)s: %(message)s"},
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": formatters,
        "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": fmt}},
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            "django": {"level": level, "propagate": True},
            "django.db.backends": {"level": "WARNING", "propagate": True},
            "celery": {"level": level, "propagate": True},
            "httpx": {"level": "WARNING", "propagate": True},
            "websockets": {"level": "WARNING", "propagate": True},
        },
    }
