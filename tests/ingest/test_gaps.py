"""Gap repair against the real simulator over loopback: after a restart or a dropped socket the worker fetches
what it missed from REST (Trades), so the stored bars equal the simulator's own trade record with no hole and no
duplicate, and every repair is recorded.

The simulator runs in-process (port 0) with no background market: the test steps it, so trades happen exactly
while the worker is stopped or disconnected."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer
from django.db import connections

from ingest.kraken.ws.types import ConnectionState
from ingest.models import BackfillRecord
from ingest.worker import IngestConfig, IngestWorker
from kraken_sim import SimConfig, Simulator
from tests.ingest.simtruth import assert_series_equals_tape, stored_bars, tape_by_interval, tape_within
from tests.kraken.conftest import SIM_UNLIMITED
from tests.waiting import until
from timeseries.relational import RelationalStore

pytestmark = pytest.mark.django_db(transaction=True)
SYMBOLS = ["BTC/USD", "ETH/USD"]


@pytest.fixture
async def sim():  # type: ignore[no-untyped-def]
    simulator = Simulator(SimConfig(market="generate", rate=0.0, warmup_steps=0, tier=SIM_UNLIMITED))
    await simulator.start()
    yield simulator
    await simulator.stop()


def config(sim: Simulator, var_dir: Path, **overrides: object) -> IngestConfig:
    cfg = IngestConfig(
        symbols=SYMBOLS,
        rest_url=sim.rest_url,
        ws_url=sim.ws_url,
        ws_auth_url=sim.ws_auth_url,
        var_dir=var_dir,
        bar_intervals=(1,),
        bar_grace_s=0.2,
        heartbeat_s=0.2,
        quote_flush_s=0.5,
    )
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


async def start(worker: IngestWorker) -> tuple[asyncio.Event, asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await until(
        lambda: (
            worker.ws.public_state == ConnectionState.CONNECTED and not worker.gap_repair.repairing and worker.started
        ),
        what="worker connected and start-up repair done",
    )
    return stop, task


async def trade_for(sim: Simulator, seconds: float, steps_per_second: int = 10) -> None:
    for _ in range(int(seconds * steps_per_second)):
        sim.market.step()
        await asyncio.sleep(1 / steps_per_second)


async def finish(sim: Simulator, worker: IngestWorker, stop: asyncio.Event, task: asyncio.Task[None]) -> None:
    """Let the last traded second pass its end and grace on the exchange clock, then stop cleanly."""
    last = max(sim.exchange.marketdata[s].tape[-1].ts_ns for s in SYMBOLS if sim.exchange.marketdata[s].tape)
    await until(
        lambda: all(
            b.next_to_close is None or b.next_to_close.timestamp() * 1e9 > last for b in worker.builders.values()
        ),
        what="last bars closed",
    )
    stop.set()
    await asyncio.wait_for(task, timeout=20)


def check_series(sim: Simulator) -> int:
    store = RelationalStore()
    compared = 0
    for symbol in SYMBOLS:
        points = stored_bars(store, symbol, "1s")
        tape = tape_by_interval(sim, symbol, 1)
        assert len(sim.exchange.marketdata[symbol].tape) < 1000, "the tape overflowed: the reference is incomplete"
        compared += assert_series_equals_tape(points, tape, 1)
        # Every trade the exchange made inside the stored span is in a bar exactly once.
        first, last = points[0].time, points[-1].time
        assert sum(p.fields["trades"] for p in points) == tape_within(tape, first, last)
    return compared


async def test_restart_backfills_what_traded_while_the_worker_was_stopped(sim: Simulator, tmp_path: Path) -> None:
    layer = InMemoryChannelLayer()
    worker = IngestWorker(config(sim, tmp_path), store=RelationalStore(), channel_layer=layer)
    stop, task = await start(worker)
    await trade_for(sim, 1.5)
    await finish(sim, worker, stop, task)

    await trade_for(sim, 2.0)  # the market runs while nobody listens

    worker = IngestWorker(config(sim, tmp_path), store=RelationalStore(), channel_layer=layer)
    stop, task = await start(worker)
    await trade_for(sim, 1.5)
    await finish(sim, worker, stop, task)

    compared = await sync_to_async(check_series)(sim)
    assert compared >= 5
    records = await sync_to_async(list)(BackfillRecord.objects.filter(reason="startup").order_by("started_at"))
    assert len(records) == 2 * len(SYMBOLS)
    second_run = records[len(SYMBOLS) :]
    assert all(r.status == "done" and r.source == "trades" for r in second_run)
    assert sum(r.trades_added for r in second_run) > 0, "the stopped period's trades came from REST"
    await sync_to_async(connections.close_all)()


async def test_dropped_socket_is_repaired_from_rest(sim: Simulator, tmp_path: Path) -> None:
    worker = IngestWorker(config(sim, tmp_path), store=RelationalStore(), channel_layer=InMemoryChannelLayer())
    stop, task = await start(worker)
    await trade_for(sim, 1.0)

    assert sim.faults.drop_connections(scope="public", mode="abort") >= 1
    for _ in range(15):  # trades the socket cannot deliver: the connection is gone
        sim.market.step()
    await until(lambda: worker.ws.stats.reconnects >= 1, what="reconnect")
    await until(
        lambda: worker.ws.public_state == ConnectionState.CONNECTED and not worker.gap_repair.repairing,
        what="repair done",
    )
    await trade_for(sim, 1.0)
    await finish(sim, worker, stop, task)

    compared = await sync_to_async(check_series)(sim)
    assert compared >= 3
    records = await sync_to_async(list)(BackfillRecord.objects.filter(reason="reconnect"))
    assert {r.symbol for r in records} == set(SYMBOLS)
    assert all(r.status == "done" for r in records)
    assert sum(r.trades_added for r in records) > 0, "the trades made while disconnected came from REST"
    status = worker.health()
    assert status["reconnects"] >= 1
    assert status["gaps"]["backfills"] >= 2 * len(SYMBOLS)
    await sync_to_async(connections.close_all)()
