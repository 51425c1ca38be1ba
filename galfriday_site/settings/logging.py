"""Logging configuration: one event per line; JSON in production, readable text in development.

- `json` (production): one JSON object per line, the event's fields (`extra=`) as keys.
- `console` (development, the default with DEBUG): one line per event, the message followed by the same fields as
  `key=value` (logfmt quoting), so `order sent order_id=42 decision=BTC/USD:2026-... via=ws` reads at a glance.

The periodic tasks that run every few seconds (`QUIET_PERIODIC_TASKS`) would be half of the log: Celery's lines
about them (beat sending, the worker receiving, the task succeeding) are logged at DEBUG when the run found nothing
to do, and at INFO as before when it did something (a fill, a breach, a halt) or failed.

Plain Python (no Django): the settings import it before the apps are loaded.
"""

from __future__ import annotations

import ast
import json
import logging
import weakref
from collections.abc import Callable
from decimal import Decimal
from typing import Any

# What a LogRecord carries of its own: everything else on it came from `extra=` (the event's fields).
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's coloured copy of the message
}


def _logfmt(value: Any) -> str:
    if isinstance(value, Decimal):
        text = format(value, "f")
    elif isinstance(value, str):
        text = value
    elif isinstance(value, bool | int | float) or value is None:
        return json.dumps(value)
    else:
        try:
            return json.dumps(value, default=str, separators=(",", ":"), sort_keys=True)
        except (TypeError, ValueError):
            text = repr(value)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text)
    return text


class ConsoleFormatter(logging.Formatter):
    """`<time> <LEVEL> <logger>: <message> key=value ...`: the event's fields on the same line, in the order given."""

    def __init__(self, fmt: str | None = None, datefmt: str | None = None, style: Any = "%", **kwargs: Any) -> None:
        super().__init__(fmt or "%(asctime)s %(levelname)-7s %(name)s: %(message)s", datefmt, style, **kwargs)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [
            f"{key}={_logfmt(value)}"
            for key, value in record.__dict__.items()
            # Celery passes its format arguments again as `data`: already in the message.
            if key not in _RECORD_ATTRIBUTES
            and not key.startswith("_")
            and not (key == "data" and value is record.args)
        ]
        if not fields:
            return line
        head, newline, rest = line.partition("\n")  # a traceback stays below the event's line
        return f"{head} {' '.join(fields)}{newline}{rest}"


def _risk_monitor_idle(result: dict[str, Any]) -> bool:
    return result.get("status") == "ok" and not result.get("breaches") and not result.get("halted")


def _paper_sweep_idle(result: dict[str, Any]) -> bool:
    return "skipped" in result or not result.get("filled")


def _alert_rules_idle(result: dict[str, Any]) -> bool:
    """alerting.tasks.alert_rules_evaluate: no alert fired or resolved and no rule failed (repeats are not news)."""
    return all(isinstance(r, dict) and not r.get("error") and not r.get("fired") and not r.get("resolved")
               for r in result.values())  # fmt: skip


# Periodic tasks run every few seconds (galfriday_site.periodic), and what their result looks like when the run found
# nothing to do.
QUIET_PERIODIC_TASKS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "trading.tasks.risk_monitor_run": _risk_monitor_idle,
    "trading.tasks.paper_broker_sweep": _paper_sweep_idle,
    "alerting.tasks.alert_rules_evaluate": _alert_rules_idle,
}


# Records already judged by any handler's filter: each handler sees the same record, demoted once (kept here rather
# than on the record, where it would read as a field of the event).
_JUDGED: weakref.WeakKeyDictionary[logging.LogRecord, bool] = weakref.WeakKeyDictionary()


class QuietPeriodicTasks(logging.Filter):
    """Celery's INFO lines about a quiet periodic task become DEBUG when nothing happened: beat sending it, the
    worker receiving it (what it did shows in the success line), and its success when its result says idle. A
    failure, a retry or a run that did something stays as logged. The record is then shown only if its logger
    is enabled for DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        quiet = _JUDGED.get(record)
        if quiet is None:
            quiet = _JUDGED[record] = record.levelno == logging.INFO and self._idle(record)
            if quiet:
                record.levelno, record.levelname = logging.DEBUG, logging.getLevelName(logging.DEBUG)
        return not quiet or logging.getLogger(record.name).isEnabledFor(logging.DEBUG)

    @staticmethod
    def _idle(record: logging.LogRecord) -> bool:
        args = record.args
        if record.name == "celery.beat":
            return isinstance(args, tuple) and len(args) == 2 and args[1] in QUIET_PERIODIC_TASKS
        if not isinstance(args, dict) or args.get("name") not in QUIET_PERIODIC_TASKS:
            return False
        if record.name == "celery.worker.strategy":
            return True
        if record.name == "celery.app.trace" and "return_value" in args:
            try:
                result = ast.literal_eval(str(args["return_value"]))
            except (ValueError, SyntaxError):  # truncated or not a literal: keep the line
                return False
            return isinstance(result, dict) and QUIET_PERIODIC_TASKS[str(args["name"])](result)
        return False


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
        "console": {"()": "galfriday_site.settings.logging.ConsoleFormatter"},
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": formatters,
        "filters": {"quiet_periodic_tasks": {"()": "galfriday_site.settings.logging.QuietPeriodicTasks"}},
        "handlers": {
            "stderr": {"class": "logging.StreamHandler", "formatter": fmt, "filters": ["quiet_periodic_tasks"]}
        },
        "root": {"handlers": ["stderr"], "level": level},
        "loggers": {
            "django": {"level": level, "propagate": True},
            "django.db.backends": {"level": "WARNING", "propagate": True},
            "celery": {"level": level, "propagate": True},
            "httpx": {"level": "WARNING", "propagate": True},
            "websockets": {"level": "WARNING", "propagate": True},
        },
    }
