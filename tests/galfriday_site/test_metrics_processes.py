"""`/metrics` shows what other processes counted: a real Celery worker process on Redis (prefork, its own child
process runs the task) and a plain Python process, both writing to the multiprocess directory
(PROMETHEUS_MULTIPROC_DIR) that the web side reads. Plus Celery's queue depths and the workers online, asked of the
same Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from galfriday_site.celery import make_celery_app
from tests.conftest import ROOT
from tests.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services("postgres", "redis")]


def samples(client: Client) -> dict[str, list[tuple[dict[str, str], float]]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return out


def value(metrics: dict[str, list[tuple[dict[str, str], float]]], metric: str, **labels: str) -> float | None:
    found = [v for lbl, v in metrics.get(metric, []) if all(lbl.get(k) == x for k, x in labels.items())]
    return sum(found) if found else None


def process_env(multiproc: Path, tmp_path: Path) -> dict[str, str]:
    db = connection.settings_dict
    return {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "GALFRIDAY_VAR_DIR": str(tmp_path / "process-var"),
        "GALFRIDAY_ENV_FILE": "/dev/null",
        "DJANGO_SETTINGS_MODULE": "galfriday_site.settings",
        "GALFRIDAY_RECONCILIATION_ON_WORKER_START": "false",
    }


@pytest.fixture
def multiproc(tmp_path: Path, settings: Any) -> Path:
    path = tmp_path / "prometheus"
    path.mkdir()
    settings.PROMETHEUS_MULTIPROC_DIR = str(path)
    return path


@pytest.fixture
def worker(multiproc: Path, tmp_path: Path) -> Iterator[str]:
    """A Celery worker as production runs it (`celery -A galfriday_site worker`, prefork, one child), consuming
    only the `default` queue; yields its name once it answers a ping."""
    name = f"metrics-test-{uuid.uuid4().hex[:8]}@localhost"
    log = tmp_path / "worker.log"
    process = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "galfriday_site", "worker", "-Q", "default",
            "--concurrency", "1", "-n", name, "--loglevel", "INFO", "--without-mingle", "--without-gossip",
        ],
        cwd=ROOT,
        env=process_env(multiproc, tmp_path),
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    app = make_celery_app("metrics_ping", broker_url=os.environ["REDIS_URL"], result_backend=os.environ["REDIS_URL"])
    try:
        wait_for(
            lambda: app.control.ping(destination=[name], timeout=0.5) or process.poll() is not None,
            90,
            "the worker to answer a ping",
        )
        assert process.poll() is None, log.read_text()[-3000:]
        yield name
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_metrics_show_task_outcomes_counted_in_a_worker_process(worker: str, multiproc: Path) -> None:
    url = os.environ["REDIS_URL"]
    app = make_celery_app("metrics_client", broker_url=url, result_backend=url)
    app.control.purge()
    client = Client()
    before = samples(client)
    assert value(before, "galfriday_celery_tasks_total", task="galfriday_site.ping") is None

    token = uuid.uuid4().hex
    assert app.send_task("galfriday_site.ping", args=[token], queue="default").get(timeout=60)["token"] == token
    # Sent to a queue this worker does not consume: it waits there.
    app.send_task("galfriday_site.ping", args=["waiting"], queue="lifecycle")

    metrics = wait_for(
        lambda: (
            (m := samples(client))
            and value(m, "galfriday_celery_tasks_total", task="galfriday_site.ping", outcome="success") == 1.0
            and m
        ),
        30,
        "the worker's task outcome in /metrics",
    )
    assert value(metrics, "galfriday_celery_queue_depth", queue="lifecycle") == 1.0
    assert value(metrics, "galfriday_celery_queue_depth", queue="default") == 0.0
    assert value(metrics, "galfriday_celery_worker_up", worker=worker) == 1.0
    assert (value(metrics, "galfriday_celery_workers_online") or 0) >= 1
    assert ({"collector": "celery_queues"}, 1.0) not in metrics.get("galfriday_metrics_collector_failed", [])
    assert any(multiproc.iterdir())  # the worker wrote its samples there; this process never did
    app.control.purge()


def test_metrics_add_up_counters_of_processes_that_have_exited(multiproc: Path, tmp_path: Path) -> None:
    """A module's event counter (`core.metrics.ProcessCounters`) incremented in two other processes, both gone:
    /metrics shows their sum, and this process's own count of it has not moved."""
    from trading import execution

    own = execution.counters["rejected_by_exchange"]  # what earlier tests in this process counted
    script = textwrap.dedent(
        """
        import django
        django.setup()
        from trading import execution
        execution.counters["rejected_by_exchange"] += 2
        """
    )
    for _ in range(2):
        subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=process_env(multiproc, tmp_path), check=True)
    metrics = samples(Client())
    assert value(metrics, "galfriday_events_total", component="trading.execution", name="rejected_by_exchange") == 4.0
    assert execution.counters["rejected_by_exchange"] == own


def test_without_a_shared_directory_metrics_show_this_process_counters(settings: Any) -> None:
    from trading import execution

    settings.PROMETHEUS_MULTIPROC_DIR = ""
    before = value(samples(Client()), "galfriday_events_total", component="trading.execution", name="order_busy") or 0
    execution.counters["order_busy"] += 1
    after = value(samples(Client()), "galfriday_events_total", component="trading.execution", name="order_busy")
    assert after == before + 1
