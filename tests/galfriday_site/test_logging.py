from __future__ import annotations

import io
import json
import logging
import logging.config
import os
from collections.abc import Iterator
from decimal import Decimal

import pytest
from celery.contrib.testing.worker import start_worker

from galfriday_site.celery import make_celery_app
from galfriday_site.health import run_health_checks
from galfriday_site.settings.logging import ConsoleFormatter, QuietPeriodicTasks, build_logging
from tests.conftest import free_port
from tests.waiting import wait_for


def test_json_logging_writes_one_json_object_per_line_with_extra_ids() -> None:
    config = build_logging(level="INFO", fmt="json")
    stream = io.StringIO()
    config["handlers"]["stderr"] = {"class": "logging.StreamHandler", "formatter": "json", "stream": stream}
    config["root"]["handlers"] = ["stderr"]
    logging.config.dictConfig(config)
    try:
        logging.getLogger("trading.execution").info("order submitted", extra={"order_id": 42, "decision": "d-1"})
    finally:
        logging.config.dictConfig(build_logging(level="INFO", fmt="console"))
    [line] = stream.getvalue().splitlines()
    record = json.loads(line)
    assert record["message"] == "order submitted"
    assert record["level"] == "INFO"
    assert record["logger"] == "trading.execution"
    assert (record["order_id"], record["decision"]) == (42, "d-1")
    assert record["ts"]


def test_unknown_log_format_is_refused() -> None:
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        build_logging(level="INFO", fmt="xml")


# --- console format: one line per event with its fields ----------------------------------------------------------


def _console_line(logger_name: str, message: str, **fields: object) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ConsoleFormatter())
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        logger.warning(message, extra=fields)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_console_line_carries_the_event_fields_not_just_the_message() -> None:
    text = _console_line(
        "trading.pipeline",
        "decision recorded",
        symbol="BTC/USD",
        decision_id="BTC/USD:2026-12-07T18:00:00+00:00:v3",
        model_version=3,
        expected_edge=Decimal("0.00120000"),
        reason="no quote yet",
        probabilities={"up": 0.61, "down": 0.39},
    )
    [line] = text.splitlines()
    assert "WARNING trading.pipeline: decision recorded " in line
    assert "symbol=BTC/USD" in line
    assert "decision_id=BTC/USD:2026-12-07T18:00:00+00:00:v3" in line
    assert "model_version=3" in line
    assert "expected_edge=0.00120000" in line  # Decimal as written, never a float
    assert 'reason="no quote yet"' in line  # quoted when it has spaces
    assert 'probabilities={"down":0.39,"up":0.61}' in line


def test_console_line_without_fields_is_the_message_and_a_traceback_stays_below() -> None:
    assert _console_line("trading.execution", "order sent").rstrip().endswith("trading.execution: order sent")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ConsoleFormatter())
    logger = logging.getLogger("trading.execution")
    logger.addHandler(handler)
    try:
        try:
            raise RuntimeError("exchange unreachable")
        except RuntimeError:
            logger.exception("send failed", extra={"order_id": 42})
    finally:
        logger.removeHandler(handler)
    first, *rest = stream.getvalue().splitlines()
    assert first.endswith("send failed order_id=42")
    assert rest[0].startswith("Traceback")
    assert "RuntimeError: exchange unreachable" in rest[-1]


def test_console_is_the_development_default() -> None:
    assert build_logging(level="INFO", fmt="console")["handlers"]["stderr"]["formatter"] == "console"


# --- the every-few-seconds periodic tasks: DEBUG when nothing happened --------------------------------------------


class _Capture(logging.Handler):
    """The project's handler chain (its filter), keeping what would be written."""

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(QuietPeriodicTasks())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self, task: str) -> list[tuple[str, str]]:
        return [(r.name, r.levelname) for r in self.records if task in r.getMessage()]


@pytest.fixture
def captured() -> Iterator[_Capture]:
    capture = _Capture()
    root = logging.getLogger()
    celery_logger = logging.getLogger("celery")
    previous = celery_logger.level
    celery_logger.setLevel(logging.INFO)  # as LOG_LEVEL=INFO configures it
    root.addHandler(capture)
    try:
        yield capture
    finally:
        root.removeHandler(capture)
        celery_logger.setLevel(previous)


@pytest.mark.django_db(transaction=True)
@pytest.mark.services("redis")
def test_an_idle_paper_sweep_logs_at_debug_and_other_tasks_at_info(captured: _Capture, settings) -> None:  # type: ignore[no-untyped-def]
    """A real worker (in a thread, on Redis) runs the every-5-s paper sweep with nothing resting, and a ping: the
    worker's lines about the sweep are not shown at INFO; the ping's are."""
    settings.TRADING_MODE = "paper"
    url = os.environ["REDIS_URL"]
    app = make_celery_app("galfriday_quiet_logs", broker_url=url, result_backend=url)
    app.control.purge()
    with start_worker(
        app, pool="solo", perform_ping_check=False, queues=["trading", "default"], shutdown_timeout=10, loglevel="INFO"
    ):
        # The worker's start ran django.setup() again, whose logging configuration replaced the root's handlers.
        logging.getLogger().addHandler(captured)
        sweep = app.send_task("trading.tasks.paper_broker_sweep", queue="trading")
        assert sweep.get(timeout=60)["filled"] == []
        assert app.send_task("galfriday_site.ping", args=["t"], queue="default").get(timeout=60)["token"] == "t"
        wait_for(lambda: ("celery.app.trace", "INFO") in captured.lines("galfriday_site.ping["), 10, "the ping's line")
    assert ("celery.app.trace", "INFO") in captured.lines("galfriday_site.ping[")
    assert captured.lines("trading.tasks.paper_broker_sweep[") == []


def _celery_record(name: str, msg: str, args: object) -> logging.LogRecord:
    record = logging.getLogger(name).makeRecord(name, logging.INFO, __file__, 1, msg, (), None)
    record.args = args  # type: ignore[assignment]  # Celery passes one dict (or beat a tuple) as the format arguments
    return record


def test_a_periodic_run_that_did_something_stays_at_info(captured: _Capture) -> None:
    from celery.app.trace import LOG_SUCCESS

    def success(name: str, result: dict[str, object]) -> logging.LogRecord:
        args = {"id": "1", "name": name, "return_value": repr(result), "runtime": 0.01, "args": "()", "kwargs": "{}"}
        return _celery_record("celery.app.trace", LOG_SUCCESS, args)

    sweep = "trading.tasks.paper_broker_sweep"
    monitor = "trading.tasks.risk_monitor_run"
    logger = logging.getLogger("celery.app.trace")
    for record in (
        success(sweep, {"filled": [7], "busy": [], "books": 1}),  # a fill: shown
        success(monitor, {"status": "breach", "breaches": ["max_drawdown"], "halted": True}),  # a halt: shown
        success(monitor, {"status": "ok", "breaches": [], "halted": False}),  # nothing: DEBUG, hidden at INFO
        success(sweep, {"filled": [], "busy": [], "books": 0}),  # nothing: hidden
        success("alerting.tasks.alert_rules_evaluate", {"drawdown": {"raised": 0, "resolved": 0}}),  # hidden
    ):
        logger.handle(record)
    assert [r.levelname for r in captured.records] == ["INFO", "INFO"]
    beat = logging.getLogger("celery.beat")
    beat.handle(
        _celery_record("celery.beat", "Scheduler: Sending due task %s (%s)", ("galfriday: risk monitor", monitor))
    )
    beat.handle(_celery_record("celery.beat", "Scheduler: Sending due task %s (%s)", ("galfriday: drift", "x.drift")))
    assert [r.getMessage() for r in captured.records[2:]] == ["Scheduler: Sending due task galfriday: drift (x.drift)"]


def test_idle_periodic_lines_show_at_debug_when_the_log_level_is_debug(captured: _Capture) -> None:
    logging.getLogger("celery").setLevel(logging.DEBUG)
    logging.getLogger("celery.beat").handle(
        _celery_record(
            "celery.beat",
            "Scheduler: Sending due task %s (%s)",
            ("galfriday: paper broker sweep", "trading.tasks.paper_broker_sweep"),
        )
    )
    assert [r.levelname for r in captured.records] == ["DEBUG"]


# --- a failed health check names its component ---------------------------------------------------------------------


@pytest.mark.django_db
def test_a_failed_health_check_names_the_component_in_its_line(settings) -> None:  # type: ignore[no-untyped-def]
    """The broker pointed at a loopback port nothing listens on: the warning line says `broker` without its fields."""
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"
    settings.HEALTH_CHECK_TIMEOUT = 1.0
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))  # the message alone, no fields
    health_logger = logging.getLogger("galfriday_site.health")
    health_logger.addHandler(handler)
    try:
        report = {c.name: c for c in run_health_checks()}
    finally:
        health_logger.removeHandler(handler)
    assert not report["broker"].ok
    [line] = [ln for ln in stream.getvalue().splitlines() if "health check failed" in ln and "broker" in ln]
    assert line.startswith("WARNING health check failed: broker: ")
