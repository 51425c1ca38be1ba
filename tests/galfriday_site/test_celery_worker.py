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
from galfriday_site.periodic import PERIODIC_TASKS
from galfriday_site.tasks import ping
from models_registry.tasks import train_model_task
from reconciliation.tasks import reconciliation_run_task
from trading.tasks import decide_on_bar, execute_order

# The queue of each app's tasks, by kind of work (CELERY_TASK_ROUTES); the site's own tasks run on `default`.
QUEUE_OF_APP = {
    "trading": "trading",
    "ingest": "ingest",
    "models_registry": "lifecycle",
    "experiments": "lifecycle",
    "reconciliation": "reconciliation",
    "galfriday_site": "default",
    "notifications": "default",
    "alerting": "default",
}


def _queue_of(app: Celery, task_name: str) -> str:
    queue: str = app.amqp.router.route({}, task_name)["queue"].name
    return queue


def _registered_project_tasks(app: Celery) -> list[str]:
    app.loader.import_default_modules()  # the apps' tasks modules (autodiscovery)
    return sorted(name for name in app.tasks if not name.startswith("celery."))


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
    assert _queue_of(app, decide_on_bar.name) == "trading"
    assert _queue_of(app, execute_order.name) == "trading"
    assert _queue_of(app, reconciliation_run_task.name) == "reconciliation"
    assert _queue_of(app, train_model_task.name) == "lifecycle"
    assert _queue_of(app, ping.name) == "default"
    # A worker that listens only to `trading` executes a task sent to `trading`.
    token = uuid.uuid4().hex
    with start_worker(app, pool="solo", perform_ping_check=False, queues=["trading"], shutdown_timeout=10):
        result = app.send_task("galfriday_site.ping", args=[token], queue="trading")
        assert result.get(timeout=30)["token"] == token


def test_every_registered_task_routes_to_the_queue_of_its_app() -> None:
    from galfriday_site.celery import app

    names = _registered_project_tasks(app)
    assert {ping.name, decide_on_bar.name, reconciliation_run_task.name, train_model_task.name} <= set(names)
    assert {name: _queue_of(app, name) for name in names} == {name: QUEUE_OF_APP[name.split(".")[0]] for name in names}


def test_tasks_sent_by_name_are_registered(settings) -> None:  # type: ignore[no-untyped-def]
    """The ingest worker and beat send tasks by name: a name no worker knows would be lost silently."""
    from galfriday_site.celery import app

    names = set(_registered_project_tasks(app))
    assert settings.INGEST_BAR_CLOSED_TASK in names
    assert settings.INGEST_RECONCILE_TASK in names
    assert {spec.task for spec in PERIODIC_TASKS} <= set(app.tasks)  # celery.backend_cleanup is Celery's own


def test_ping_task_logic_called_directly() -> None:
    assert ping("abc")["token"] == "abc"


def test_project_app_runs_tasks_late_acked_one_at_a_time() -> None:
    from galfriday_site.celery import app

    assert app.conf.task_acks_late is True
    assert app.conf.worker_prefetch_multiplier == 1
    assert app.conf.task_reject_on_worker_lost is True
    assert app.conf.task_always_eager is False
    assert {q.name for q in app.conf.task_queues} == {"default", "trading", "ingest", "lifecycle", "reconciliation"}
