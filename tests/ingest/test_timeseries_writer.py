"""The batching writer loses nothing: a store that is down gets the batches later, in order, from disk.

Runs against the real InfluxDB (each test in a database of its own). "Down" is a store pointed at a port where
nothing listens; "back" is the writer given the real store again, as when InfluxDB returns."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from django.db import connections

from ingest.bar_feed import flush
from tests.conftest import free_port
from tests.waiting import until
from timeseries import Point
from timeseries.influx import InfluxStore
from timeseries.relational import RelationalStore
from timeseries.writer import TimeSeriesWriter

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def point(i: int, close: str = "100.5", revision: int = 0) -> Point:
    return Point(
        "bars", T0 + timedelta(minutes=i), {"close": Decimal(close), "revision": revision}, {"symbol": "BTC/USD"}
    )


@pytest.fixture
def influx() -> Iterator[InfluxStore]:
    database = f"galfriday_writer_{uuid.uuid4().hex[:10]}"
    store = InfluxStore(url=os.environ.get("INFLUXDB_URL", "http://127.0.0.1:8086"), database=database, timeout=5)
    yield store
    httpx.post(f"{store.url}/query", params={"q": f'DROP DATABASE "{database}"'}, timeout=5)
    store.close()


def dead_store() -> InfluxStore:
    return InfluxStore(url=f"http://127.0.0.1:{free_port()}", database="nowhere", timeout=0.5)


class GatedStore:
    """A store whose writes wait (in the writer's thread) until the test opens the gate."""

    def __init__(self, store: InfluxStore, gate: threading.Event) -> None:
        self.store = store
        self.gate = gate

    def write_batch(self, points: list[Point]) -> None:
        if not self.gate.wait(10):
            raise AssertionError("the gate was never opened")
        self.store.write_batch(points)


def all_points(store: InfluxStore | RelationalStore) -> list[Point]:
    return store.query_range("bars", T0 - timedelta(days=1), T0 + timedelta(days=1))


pytestmark = pytest.mark.services("influxdb")


async def test_full_batch_is_written_by_the_run_loop(influx: InfluxStore, tmp_path: Path) -> None:
    writer = TimeSeriesWriter(influx, spool_dir=tmp_path, max_batch=50, max_delay=60)
    task = asyncio.create_task(writer.run())
    for i in range(50):
        writer.add(point(i))
    await asyncio.wait_for(until(lambda: writer.stats.points_written == 50), timeout=10)
    task.cancel()
    assert len(await asyncio.to_thread(all_points, influx)) == 50
    assert writer.stats.batches_written == 1


async def test_old_enough_batch_is_written_without_being_full(influx: InfluxStore, tmp_path: Path) -> None:
    writer = TimeSeriesWriter(influx, spool_dir=tmp_path, max_batch=1000, max_delay=0.05)
    task = asyncio.create_task(writer.run())
    writer.add(point(0))
    await asyncio.wait_for(until(lambda: writer.stats.points_written == 1), timeout=10)
    task.cancel()


async def test_store_down_spools_to_disk_then_replays_everything_in_order(influx: InfluxStore, tmp_path: Path) -> None:
    writer = TimeSeriesWriter(dead_store(), spool_dir=tmp_path, max_batch=10)
    for i in range(10):
        writer.add(point(i, "1.0"))
    await writer.flush()
    writer.add(point(0, "2.0", revision=1))  # a newer revision of a spooled point, while the store is still down
    await writer.flush()
    assert writer.stats.points_spooled == 11
    assert len(writer.spooled_files()) == 2
    assert writer.stats.write_failures >= 2

    writer.store = influx  # InfluxDB is back
    writer.add(point(0, "3.0", revision=2))  # the newest value must win after the replay
    await writer.flush()
    assert writer.spooled_files() == []
    assert writer.stats.points_replayed == 11
    points = await asyncio.to_thread(all_points, influx)
    assert len(points) == 10
    assert points[0].fields == {"close": Decimal("3.0"), "revision": 2}
    assert {p.fields["close"] for p in points[1:]} == {Decimal("1.0")}


async def test_spool_left_by_a_previous_process_is_replayed_by_the_next(influx: InfluxStore, tmp_path: Path) -> None:
    first = TimeSeriesWriter(dead_store(), spool_dir=tmp_path)
    for i in range(5):
        first.add(point(i))
    await first.close()  # the process stops while InfluxDB is down: the points stay on disk
    assert len(first.spooled_files()) == 1

    second = TimeSeriesWriter(influx, spool_dir=tmp_path)
    await second.flush()
    assert second.stats.points_replayed == 5
    assert len(await asyncio.to_thread(all_points, influx)) == 5


async def test_rejected_batch_goes_to_dead_letter_with_its_reason(influx: InfluxStore, tmp_path: Path) -> None:
    writer = TimeSeriesWriter(influx, spool_dir=tmp_path)
    writer.add(Point("conflict", T0, {"x": 1}))
    await writer.flush()
    writer.add(Point("conflict", T0 + timedelta(seconds=1), {"x": "text"}))  # a field type conflict: HTTP 400
    await writer.flush()
    assert writer.stats.points_dead_lettered == 1
    assert writer.spooled_files() == []
    [reason] = list((tmp_path / "dead-letter").glob("*.reason"))
    assert "conflict" in reason.read_text()


@pytest.mark.django_db(transaction=True)
async def test_writer_works_with_the_relational_store(tmp_path: Path) -> None:
    store = RelationalStore()
    writer = TimeSeriesWriter(store, spool_dir=tmp_path, on_thread_exit=connections.close_all)
    for i in range(3):
        writer.add(point(i))
    await writer.close()
    assert len(await asyncio.to_thread(all_points, store)) == 3


async def test_a_flush_whose_caller_is_cancelled_still_writes_the_batch_it_took(
    influx: InfluxStore, tmp_path: Path
) -> None:
    """The ingest worker's flushes (`ingest.bar_feed.flush`) finish even when the task that asked is cancelled, as
    the worker's stop cancels its tasks: the batch a flush took out of the queue is written, not dropped."""
    writer = TimeSeriesWriter(dead_store(), spool_dir=tmp_path, max_batch=1000, max_delay=60)
    writer.add(point(0))
    await writer.flush()  # the store is down: spooled, so the next flush replays the spool first (and waits there)
    assert len(writer.spooled_files()) == 1
    gate = threading.Event()
    writer.store = GatedStore(influx, gate)  # every write waits for the gate: the flush is in flight at the cancel
    writer.add(point(1))
    caller = asyncio.create_task(flush(writer, only={"bars"}))
    # The flush takes the new bar out of the queue, then waits on the spool's replay (in a thread, at the gate).
    await until(lambda: writer.pending == 0, 10, "the flush to take the batch")
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    gate.set()
    await writer.flush()  # waits for the flush in progress (the writer's lock), as the worker's close does
    assert [p.time for p in all_points(influx)] == [T0, T0 + timedelta(minutes=1)]
    assert writer.spooled_files() == []
