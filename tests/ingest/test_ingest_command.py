"""The `ingest` command's hand-over to Celery (the worker itself is tested in test_worker.py and, as a process,
in test_ingest_process.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from galfriday_site.celery import app as celery_app
from ingest.management.commands.ingest import enqueue

TASK = "tests.ingest.no_such_task"  # never consumed: its messages are purged after the test


@pytest.fixture
def default_queue_purged() -> Iterator[None]:
    yield
    with celery_app.connection_for_write() as conn:
        conn.default_channel.queue_purge("default")


@pytest.mark.services("redis")
@pytest.mark.usefixtures("default_queue_purged")
def test_a_bar_is_handed_over_without_subscribing_to_its_result() -> None:
    consumer = celery_app.backend.result_consumer
    before = set(consumer.subscribed_to)
    enqueue(TASK, ["BTC/USD", "2026-12-07T21:00:00+00:00"])
    assert set(consumer.subscribed_to) == before  # no result channel: nothing here reads one

    with celery_app.connection_for_write() as conn:
        assert conn.default_channel.client.llen("default") == 1  # the task was sent

    plain = celery_app.send_task(TASK, args=["BTC/USD", "2026-12-07T21:01:00+00:00"])  # what a plain send does
    assert len(set(consumer.subscribed_to) - before) == 1
    consumer.cancel_for(plain.id)
