"""The ingest worker against the real simulator over loopback: bars equal what the exchange sent, executions
reach orders and fills, balances and quotes are stored, events are published, and the heartbeat is written.

The simulator runs in-process (port 0); its market is stepped by the test, and its own record of the messages
it sent is the reference."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer
from django.db import connections

from ingest.kraken.auth import sign
from ingest.models import IngestStatus
from ingest.worker import IngestConfig, IngestWorker
from kraken_sim import SimConfig, Simulator
from tests.kraken.conftest import SIM_UNLIMITED
from tests.waiting import until
from timeseries.relational import RelationalStore
from trading.models import Balance, Fill, Instrument, MarketQuote, Order

pytestmark = pytest.mark.django_db(transaction=True)

API_KEY = "kraken-sim-key"
API_SECRET = "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="


async def private_post(sim: Simulator, method: str, data: dict[str, str], nonce: int) -> dict[str, Any]:
    body = "&".join(f"{k}={v}" for k, v in {"nonce": str(nonce), **data}.items())
    path = f"/0/private/{method}"
    headers = {
        "API-Key": API_KEY,
        "API-Sign": sign(path, nonce, body, API_SECRET),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    async with httpx.AsyncClient() as client:
        response = await client.post(sim.rest_url + path, content=body, headers=headers)
    return dict(response.json())


@pytest.fixture
async def sim():  # type: ignore[no-untyped-def]
    simulator = Simulator(
        SimConfig(market="generate", rate=0.0, warmup_steps=0, tier=SIM_UNLIMITED, record_messages=True)
    )
    await simulator.start()
    yield simulator
    await simulator.stop()


def config(sim: Simulator, var_dir: Path) -> IngestConfig:
    return IngestConfig(
        symbols=["BTC/USD", "ETH/USD"],
        rest_url=sim.rest_url,
        ws_url=sim.ws_url,
        ws_auth_url=sim.ws_auth_url,
        api_key=API_KEY,
        api_secret=API_SECRET,
        var_dir=var_dir,
        bar_intervals=(1,),
        bar_grace_s=0.2,
        heartbeat_s=0.2,
        quote_flush_s=0.1,
        # The truth below is what the simulator sent on this socket; gap repair would add trades the exchange made
        # around the subscription (fetched from REST), which is right but not in that truth. Repair has its own
        # tests against the simulator's full record (test_gaps.py, test_ohlc_check.py).
        gap_repair=False,
    )


async def test_worker_turns_the_exchange_stream_into_bars_orders_balances_and_events(
    sim: Simulator, tmp_path: Path
) -> None:
    layer = InMemoryChannelLayer()
    listener = await layer.new_channel()
    await layer.group_add("market.BTC-USD", listener)
    await layer.group_add("orders", listener)
    enqueued: list[tuple[str, list[Any]]] = []
    cfg = config(sim, tmp_path)
    cfg.bar_closed_task = "trading.tasks.decide_on_bar"
    worker = IngestWorker(
        cfg, store=RelationalStore(), channel_layer=layer, enqueue=lambda t, a: enqueued.append((t, a))
    )
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    await until(
        lambda: worker.ws.connection_state.value == "connected" and set(worker.ws.books) >= {"BTC/USD", "ETH/USD"}
    )

    # Three seconds of market: trades land in several 1-second bars.
    for _ in range(30):
        sim.market.step()
        await asyncio.sleep(0.1)
    # Our own order, marketable: executions and balances follow on the private channels.
    best_ask = Decimal(sim.state(include_messages=False)["market"]["BTC/USD"]["best_ask"])
    answer = await private_post(
        sim,
        "AddOrder",
        {
            "pair": "XBTUSD",
            "type": "buy",
            "ordertype": "limit",
            "price": str(best_ask + 50),
            "volume": "0.01",
            "cl_ord_id": "ingest-test-1",
        },
        nonce=time.time_ns() * 10,
    )
    assert answer["error"] == [], answer
    await until(lambda: worker.counters["executions_applied"] >= 2)
    await asyncio.sleep(1.5)  # let the last bars pass their end and grace on the exchange clock
    sim.market.step()
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.wait_for(running, timeout=15)

    # Orders and fills as the exchange says.
    truth = sim.state(include_messages=True)
    [order_truth] = [o for o in truth["orders"] if o["cl_ord_id"] == "ingest-test-1"]
    order = await sync_to_async(Order.objects.get)(exchange_order_id=order_truth["order_id"])
    assert order.state == "filled"
    assert order.filled_qty == Decimal(order_truth["filled"])
    fills = await sync_to_async(list)(Fill.objects.filter(order=order))
    assert sum(f.quantity for f in fills) == Decimal(order_truth["filled"])
    balances = {b.asset: b.total for b in await sync_to_async(list)(Balance.objects.all())}
    assert balances["BTC"] == Decimal(truth["balances"]["BTC"]["balance"])
    assert balances["USD"] == Decimal(truth["balances"]["USD"]["balance"])
    assert await sync_to_async(MarketQuote.objects.filter(instrument__symbol="BTC/USD").exists)()
    assert await sync_to_async(Instrument.objects.filter(symbol="ETH/USD", price_precision=2).exists)()

    # Every stored 1-second bar equals the trades the simulator sent in that second.
    sent: dict[tuple[str, datetime], list[tuple[Decimal, Decimal]]] = defaultdict(list)
    for record in truth["market_messages"]:
        message = json.loads(record["message"], parse_float=Decimal)
        if message.get("channel") != "trade" or message.get("type") != "update":
            continue
        for t in message["data"]:
            moment = datetime.fromisoformat(t["timestamp"].replace("Z", "+00:00"))
            sent[(t["symbol"], moment.replace(microsecond=0))].append((t["price"], t["qty"]))
    store = RelationalStore()
    bars = await sync_to_async(store.query_range)(
        "bars", datetime.now(UTC) - timedelta(hours=1), datetime.now(UTC) + timedelta(hours=1)
    )
    traded = [b for b in bars if b.fields["trades"]]
    assert len(traded) >= 3
    for bar in traded:
        trades = sent[(bar.tags["symbol"], bar.time)]
        assert bar.fields["trades"] == len(trades), bar
        assert bar.fields["volume"] == sum(q for _, q in trades), bar
        assert bar.fields["high"] == max(p for p, _ in trades)
        assert bar.fields["low"] == min(p for p, _ in trades)

    # A closed bar was stored before its decision task was enqueued; events reached the groups.
    assert enqueued
    assert all(task == "trading.tasks.decide_on_bar" for task, _ in enqueued)
    kinds = set()
    while True:
        try:
            message = await asyncio.wait_for(layer.receive(listener), timeout=0.05)
        except TimeoutError:
            break
        kinds.add(message["event"]["kind"])
    assert {"book.top", "trade", "bar", "order"} <= kinds
    status = await sync_to_async(IngestStatus.objects.get)()
    assert status.stats["ingest"]["bars_closed"] >= 3
    assert status.stats["ws"]["book_totals"]["checksum_mismatches"] == 0
    assert status.stats["ws"]["book_totals"]["checksums_verified"] > 0
    await sync_to_async(connections.close_all)()  # the test's own queries ran in asgiref's worker thread


async def test_a_blocked_broker_does_not_stop_the_stream_and_a_stop_waits_for_the_queued_tasks(
    sim: Simulator, tmp_path: Path
) -> None:
    """The decision tasks leave off the event loop: a broker that blocks (Celery's publish retries wait for seconds
    when Redis is slow or gone) must not stop the market stream, and a stop while it blocks loses none of the
    tasks queued behind it. The enqueue function blocks until the test lets it go (a stand-in for the broker: the
    test decides when it answers)."""
    release = threading.Event()
    calls: list[tuple[str, list[Any], str]] = []

    def blocking_enqueue(task: str, args: list[Any]) -> None:
        calls.append((task, args, threading.current_thread().name))
        release.wait(timeout=30)  # the "broker" answers when the test says so

    cfg = config(sim, tmp_path)
    cfg.bar_closed_task = "trading.tasks.decide_on_bar"
    worker = IngestWorker(cfg, store=RelationalStore(), channel_layer=InMemoryChannelLayer(), enqueue=blocking_enqueue)
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    answer = threading.Timer(1.0, release.set)
    try:
        await until(lambda: worker.ws.connection_state.value == "connected" and set(worker.ws.books) >= {"BTC/USD"})
        # Market until the first closed bar's task is handed over (and blocks).
        for _ in range(100):
            sim.market.step()
            await asyncio.sleep(0.05)
            if calls:
                break
        assert calls, "no bar closed"
        assert calls[0][2].startswith("ingest-enqueue")  # not the event loop's thread
        # While the broker blocks, the stream goes on: trades are read and bars keep closing.
        trades, bars = worker.counters["trades"], worker.counters["bars_closed"]
        for _ in range(30):
            sim.market.step()
            await asyncio.sleep(0.1)
        assert worker.counters["trades"] > trades
        assert worker.counters["bars_closed"] > bars
        assert worker.counters["decisions_enqueued"] == 0  # the first hand-over still waits
        assert len(calls) == 1  # one at a time
        # Stop while the broker still blocks; it answers a second later: the stop waits for the queue.
        closed_at_stop = worker.counters["bars_closed"]
        answer.start()
        stop.set()
        await asyncio.wait_for(running, timeout=20)
    finally:
        answer.cancel()
        release.set()
        stop.set()
        await asyncio.wait_for(running, timeout=20)
    assert worker.counters["enqueue_failures"] == 0
    assert len(calls) >= closed_at_stop > 1  # every bar closed by then (interval 1 s: all of them) was enqueued
    assert worker.counters["decisions_enqueued"] == len(calls)
    # Every task went out once, in the order its bar closed (per symbol, bar start times ascend).
    for symbol in ("BTC/USD", "ETH/USD"):
        starts = [args[1] for _, args, _ in calls if args[0] == symbol]
        assert starts == sorted(starts)
        assert len(starts) == len(set(starts))
