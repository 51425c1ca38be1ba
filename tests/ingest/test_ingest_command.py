"""The `ingest` command's hand-over to Celery (the worker itself is tested in test_worker.py and, as a process,
in test_ingest_process.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from galfriday_site.celery import app as celery_app
from ingest.management.commands.ingest import enqueue

TASK = "tests.ingest.no_such_task"  # never consumed: its messages are purged after the test


@pytest.fixture
def default_queue() -> Iterator[Any]:
    with celery_app.connection_for_write() as conn:
        channel = conn.default_channel
        channel.queue_purge("default")
        yield channel
        channel.queue_purge("default")


@pytest.mark.services("redis")
def test_a_bar_is_handed_over_without_subscribing_to_its_result(
    default_queue: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = celery_app.backend
    subscribed: list[str] = []
    real = backend.on_task_call

    def spy(producer: Any, task_id: str) -> Any:  # the real backend's subscription, counted
        subscribed.append(task_id)
        return real(producer, task_id)

    monkeypatch.setattr(backend, "on_task_call", spy)
    enqueue(TASK, ["BTC/USD", "2026-12-07T21:00:00+00:00"])
    assert subscribed == []  # no result channel subscribed (and unsubscribed): nothing here reads one
    assert default_queue.client.llen("default") == 1  # the task was sent

    plain = celery_app.send_task(TASK, args=["BTC/USD", "2026-12-07T21:01:00+00:00"])  # what a plain send does
    assert subscribed == [plain.id]
