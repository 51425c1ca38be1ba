"""`TimeSeriesWriter.flush(only=...)` writes a closed bar ahead of the trades queued with it (the decision
pipeline waits for the bar only), keeps the rest in order for the next batch, and a flush after close keeps the
points on disk for the next run. Against the real InfluxDB, each test in a database of its own."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from ingest.bars import trade_point
from ingest.kraken.messages import Trade
from timeseries import Point
from timeseries.influx import InfluxStore
from timeseries.writer import TimeSeriesWriter

T0 = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)
pytestmark = pytest.mark.services("influxdb")


@pytest.fixture
def influx() -> Iterator[InfluxStore]:
    database = f"galfriday_priority_{uuid.uuid4().hex[:10]}"
    store = InfluxStore(url=os.environ.get("INFLUXDB_URL", "http://127.0.0.1:8086"), database=database, timeout=5)
    yield store
    httpx.post(f"{store.url}/query", params={"q": f'DROP DATABASE "{database}"'}, timeout=5)
    store.close()


def trade(i: int, at: datetime) -> Trade:
    return Trade("BTC/USD", "buy", Decimal("60000.1") + i, Decimal("0.01"), "market", 1000 + i, at)


def bar(close: str, revision: int = 0) -> Point:
    return Point("bars", T0, {"close": Decimal(close), "revision": revision}, {"symbol": "BTC/USD", "interval": "1m"})


def everything(store: InfluxStore, measurement: str) -> list[Point]:
    return store.query_range(measurement, T0 - timedelta(days=1), T0 + timedelta(days=1))


async def test_only_the_bars_are_written_first_and_the_trades_follow_in_order(
    influx: InfluxStore, tmp_path: Path
) -> None:
    writer = TimeSeriesWriter(influx, spool_dir=tmp_path, max_delay=60)
    for i in range(100):
        writer.add(trade_point(trade(i, T0 + timedelta(milliseconds=i))))
    writer.add(bar("1.0"))
    writer.add(trade_point(trade(100, T0 + timedelta(seconds=1))))
    writer.add(bar("2.0", revision=1))  # a revision of the same bar: the newest must win

    await writer.flush(only={"bars"})
    assert writer.pending == 101  # the trades, still queued
    [stored] = await asyncio.to_thread(everything, influx, "bars")
    assert stored.fields == {"close": Decimal("2.0"), "revision": 1}
    assert await asyncio.to_thread(everything, influx, "trades") == []

    await writer.flush()
    trades = await asyncio.to_thread(everything, influx, "trades")
    assert [p.fields["trade_id"] for p in trades] == list(range(1000, 1101))
    assert trades[0].fields["price"] == Decimal("60000.1")
    assert trades[0].tags == {"symbol": "BTC/USD", "slot": "40"}
    assert writer.stats.points_written == 103
    assert writer.pending == 0


async def test_trades_sharing_a_microsecond_are_all_kept(influx: InfluxStore, tmp_path: Path) -> None:
    writer = TimeSeriesWriter(influx, spool_dir=tmp_path)
    for i in range(5):  # one taker order's fills: one timestamp, consecutive ids
        writer.add(trade_point(trade(i, T0)))
    await writer.flush()
    trades = await asyncio.to_thread(everything, influx, "trades")
    assert sorted(p.fields["trade_id"] for p in trades) == [1000, 1001, 1002, 1003, 1004]


async def test_a_flush_after_close_keeps_the_points_on_disk(influx: InfluxStore, tmp_path: Path) -> None:
    writer = TimeSeriesWriter(influx, spool_dir=tmp_path)
    await writer.close()
    writer.add(bar("3.0"))  # e.g. a bar closed by the last heartbeat of a stopping worker
    await writer.flush()
    assert writer.stats.points_spooled == 1
    assert len(writer.spooled_files()) == 1

    store = InfluxStore(url=influx.url, database=influx.database, timeout=5)  # the closed writer closed its store
    following = TimeSeriesWriter(store, spool_dir=tmp_path)  # the next run replays it
    await following.flush()
    [stored] = await asyncio.to_thread(everything, store, "bars")
    assert stored.fields["close"] == Decimal("3.0")
    await following.close()
