"""Closed 1-minute bars are checked against the exchange's own `ohlc` channel: equal bars pass, a bar that
misses trades (the simulator withholds one trade message, an injected mismatch) is counted, visible in health,
recorded, and repaired from REST so the stored series equals the simulator's candles.

The simulator runs in-process with its clock pinned minute by minute (its `Clock.set_override`), so five
exchange minutes pass in a few seconds of test time; the worker closes bars on the exchange's clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer
from django.db import connections

from ingest.models import BackfillRecord
from ingest.worker import IngestWorker
from kraken_sim import SimConfig, Simulator
from tests.ingest.simtruth import NS, stored_bars
from tests.ingest.test_gaps import SYMBOLS, config, start
from tests.kraken.conftest import SIM_UNLIMITED
from tests.waiting import until
from timeseries.relational import RelationalStore

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def sim():  # type: ignore[no-untyped-def]
    simulator = Simulator(SimConfig(market="generate", rate=0.0, warmup_steps=0, tier=SIM_UNLIMITED))
    await simulator.start()
    yield simulator
    await simulator.stop()


def first_minute() -> datetime:
    now = datetime.now(UTC)
    return now.replace(second=0, microsecond=0) + timedelta(minutes=2)


_pins = count()


async def trade_in_minute(sim: Simulator, minute: datetime, steps: int = 6) -> None:
    """Pin the exchange clock inside `minute` (a little later each time) and let the market trade there, until
    both symbols have traded in it."""
    for _ in range(200):
        sim.clock.set_override(int((minute + timedelta(seconds=10)).timestamp()) * NS + next(_pins) * 1_000_000)
        sim.market.step()
        await asyncio.sleep(0.05)
        steps -= 1
        if steps <= 0 and all(traded(sim, s, minute) for s in SYMBOLS):
            return
    raise AssertionError("the market did not trade")


def candles(sim: Simulator, symbol: str) -> dict[datetime, object]:
    return {datetime.fromtimestamp(c.begin_ns // NS, UTC): c for c in sim.exchange.marketdata[symbol].candles[1]}


def traded(sim: Simulator, symbol: str, minute: datetime) -> bool:
    candle = candles(sim, symbol).get(minute)
    return candle is not None and candle.count > 0  # type: ignore[attr-defined]


async def test_bars_are_checked_against_the_exchange_ohlc_and_a_mismatch_is_repaired(
    sim: Simulator, tmp_path: Path
) -> None:
    worker = IngestWorker(
        config(sim, tmp_path, bar_intervals=(60,), ohlc_wait_s=30.0),
        store=RelationalStore(),
        channel_layer=InMemoryChannelLayer(),
    )
    stop, task = await start(worker)
    base = first_minute()
    minutes = [base + timedelta(minutes=i) for i in range(5)]
    try:
        for i, minute in enumerate(minutes):
            if i == 1:  # the injected mismatch: the socket misses one BTC/USD trade message in minute 1
                sim.faults.withhold_market("trade", "BTC/USD", 1)
                while not traded(sim, "BTC/USD", minute):
                    await trade_in_minute(sim, minute, steps=1)
                assert sim.faults.describe()["withhold_market"] == {}, "the trade message was withheld"
            await trade_in_minute(sim, minute)
        await until(
            lambda: worker.counters["ohlc_repairs"] >= 1 and not worker.ohlc_check.pending,
            what="bars checked and repaired",
        )
    finally:
        sim.clock.set_override(None)
        stop.set()
        await asyncio.wait_for(task, timeout=20)

    health = worker.health()
    assert health["ohlc_check"]["mismatches"] == 1
    assert health["ohlc_check"]["checked"] == len(SYMBOLS) * (len(minutes) - 1)
    assert health["ohlc_check"]["repairs"] == 1

    # Every closed bar equals the exchange's candle for its minute, the repaired one included.
    store = RelationalStore()
    for symbol in SYMBOLS:
        points = {p.time: p.fields for p in await sync_to_async(stored_bars)(store, symbol, "1m")}
        truth = candles(sim, symbol)
        for minute in minutes[:-1]:
            fields, candle = points[minute], truth[minute]
            assert fields["trades"] == candle.count, (symbol, minute)  # type: ignore[attr-defined]
            assert fields["volume"] == candle.volume, (symbol, minute)  # type: ignore[attr-defined]
            assert (fields["open"], fields["high"], fields["low"], fields["close"]) == (
                candle.open,  # type: ignore[attr-defined]
                candle.high,  # type: ignore[attr-defined]
                candle.low,  # type: ignore[attr-defined]
                candle.close,  # type: ignore[attr-defined]
            ), (symbol, minute)
        assert points[minutes[1]]["revision"] >= 1 if symbol == "BTC/USD" else True

    [record] = await sync_to_async(list)(BackfillRecord.objects.filter(reason="ohlc_mismatch"))
    assert (record.symbol, record.gap_start, record.status) == ("BTC/USD", minutes[1], "done")
    assert record.trades_added >= 1
    await sync_to_async(connections.close_all)()


async def test_a_gap_older_than_rest_trades_reach_is_filled_from_ohlc(tmp_path: Path) -> None:
    # The exchange keeps only its last 20 public trades (Kraken keeps them all, but serving hours of them page by
    # page is what OHLC is for): after a long stop, Trades cannot reach the start of the gap.
    sim = Simulator(SimConfig(market="generate", rate=0.0, warmup_steps=0, tier=SIM_UNLIMITED, trade_tape_size=20))
    await sim.start()
    base = first_minute()
    minutes = [base + timedelta(minutes=i) for i in range(8)]
    store = RelationalStore()
    try:
        worker = IngestWorker(
            config(sim, tmp_path, bar_intervals=(60,)), store=store, channel_layer=InMemoryChannelLayer()
        )
        stop, task = await start(worker)
        for minute in minutes[:3]:
            await trade_in_minute(sim, minute)
        await until(lambda: worker.checkpoint.saved.get("BTC/USD@60", ("",))[0] == minutes[1].isoformat(), what="ckpt")
        stop.set()
        await asyncio.wait_for(task, timeout=20)

        # While nobody listens: minutes 2-4 trade far more than the tape keeps, minute 5 a little.
        for minute in minutes[2:5]:
            await trade_in_minute(sim, minute, steps=60)
        await trade_in_minute(sim, minutes[5], steps=1)
        for symbol in SYMBOLS:
            tape = sim.exchange.marketdata[symbol].tape
            assert tape[0].ts_ns < int(minutes[5].timestamp()) * NS, "the tape must start before minute 5"
            assert tape[0].ts_ns > int(minutes[2].timestamp()) * NS + 10 * NS, "Trades cannot reach minute 2"

        worker = IngestWorker(
            config(sim, tmp_path, bar_intervals=(60,)), store=store, channel_layer=InMemoryChannelLayer()
        )
        stop, task = await start(worker)
        for minute in minutes[6:]:
            await trade_in_minute(sim, minute)
        await until(lambda: not worker.ohlc_check.pending, what="bars checked")
    finally:
        sim.clock.set_override(None)
        stop.set()
        await asyncio.wait_for(task, timeout=20)
        await sim.stop()

    for symbol in SYMBOLS:
        points = {p.time: p.fields for p in await sync_to_async(stored_bars)(store, symbol, "1m")}
        truth = candles(sim, symbol)
        assert sorted(points) == minutes[:7], "one bar per minute, no hole"
        for minute in minutes[:7]:
            fields, candle = points[minute], truth[minute]
            assert (
                fields["open"],
                fields["high"],
                fields["low"],
                fields["close"],
                fields["volume"],
                fields["trades"],
            ) == (
                candle.open,  # type: ignore[attr-defined]
                candle.high,  # type: ignore[attr-defined]
                candle.low,  # type: ignore[attr-defined]
                candle.close,  # type: ignore[attr-defined]
                candle.volume,  # type: ignore[attr-defined]
                candle.count,  # type: ignore[attr-defined]
            ), (symbol, minute)
    assert worker.counters["ohlc_mismatches"] == 0
    records = await sync_to_async(list)(BackfillRecord.objects.filter(reason="startup").order_by("-started_at"))
    second = records[: len(SYMBOLS)]
    assert {r.source for r in second} == {"trades+ohlc"}
    assert all(r.ohlc_bars >= 2 and r.status == "done" for r in second), [(r.ohlc_bars, r.status) for r in second]
    await sync_to_async(connections.close_all)()
