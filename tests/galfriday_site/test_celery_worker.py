"""Tasks really executed by a real Celery worker (celery's pytest worker), over Redis and over the embedded
SQLAlchemy/SQLite transport, with the project's queues and routing."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker

from galfriday_site.celery import make_celery_app
from galfriday_site.tasks import ping


def _round_trip(app: Celery, queues: str = "default") -> None:
    token = uuid.uuid4().hex
    with start_worker(app, pool="solo", perform_ping_check=False, queues=queues.split(","), shutdown_timeout=10):
        result = app.send_task("galfriday_site.ping", args=[token])
        answer = result.get(timeout=30)
        assert answer["token"] == token
        assert answer["host"]
        assert result.state == "SUCCESS"


@pytest.mark.services("redis")
def test_real_worker_executes_task_over_redis() -> None:
    url = os.environ["REDIS_URL"]
    app = make_celery_app("galfriday_redis_test", broker_url=url, result_backend=url)
    _round_trip(app)


def test_real_worker_executes_task_over_embedded_transport(tmp_path: Path) -> None:
    app = make_celery_app(
        "galfriday_embedded_test",
        broker_url=f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}",
        result_backend=f"db+sqlite:///{tmp_path / 'results.sqlite3'}",
    )
    _round_trip(app)


@pytest.mark.services("redis")
def test_tasks_route_to_their_named_queue() -> None:
    url = os.environ["REDIS_URL"]
    app = make_celery_app("galfriday_routing_test", broker_url=url, result_backend=url)
    assert app.amqp.router.route({}, "trading.tasks.submit_order")["queue"].name == "trading"
    assert app.amqp.router.route({}, "reconciliation.tasks.run")["queue"].name == "reconciliation"
    assert app.amqp.router.route({}, "models_registry.tasks.train")["queue"].name == "lifecycle"
    # A worker that listens only to `trading` executes a task sent to `trading`.
    token = uuid.uuid4().hex
    with start_worker(app, pool="solo", perform_ping_check=False, queues=["trading"], shutdown_timeout=10):
        result = app.send_task("galfriday_site.ping", args=[token], queue="trading")
        assert result.get(timeout=30)["token"] == token


def test_ping_task_logic_called_directly() -> None:
    assert ping("abc")["token"] == "abc"


def test_project_app_runs_tasks_late_acked_one_at_a_time() -> None:
    from galfriday_site.celery import app

    assert app.conf.task_acks_late is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.task_always_eager is False
    assert {q.name for q in app.conf.task_queues} == {"default", "trading", "ingest", "lifecycle", "reconciliation"}
