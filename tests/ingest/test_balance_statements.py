"""A trade is counted once in our balances, whichever comes first: the exchange's balance statement that already
holds it (a `balances` snapshot), or the trade's execution applied as a delta.

Found by the fault campaign (RELIABILITY.md): after a private-socket fault our balances were one sell apart from
the exchange's, fills and position right. The order of the private channels is not guaranteed after a delay or a
resubscription: here, against the real simulator over loopback and the ingest worker, the trade's execution is
withheld, a sequence gap on `balances` resubscribes that channel (its snapshot holds the trade), and only then a
gap on `executions` resubscribes the executions (their snapshot carries the trade, applied as a fill)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from channels.layers import InMemoryChannelLayer
from django.db import connections

from ingest.worker import IngestWorker
from kraken_sim import Simulator
from tests.ingest.test_worker import config, private_post, sim  # noqa: F401  (sim: the fixture)
from tests.waiting import until
from timeseries.relational import RelationalStore
from trading.models import Balance, Fill, Instrument
from trading.orders import order_create, order_mark_submitted

pytestmark = pytest.mark.django_db(transaction=True)


def local_balances() -> dict[str, Decimal]:
    return {b.asset: b.total for b in Balance.objects.all()}


async def db_until(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll a database condition from the event loop (the query runs in asgiref's thread)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await sync_to_async(check)():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def exchange_balances(simulator: Simulator) -> dict[str, Decimal]:
    return {a: Decimal(b["balance"]) for a, b in simulator.state(include_messages=False)["balances"].items()}


async def test_a_trade_in_the_balance_snapshot_is_not_counted_again_by_its_late_execution(
    sim: Simulator,  # noqa: F811
    tmp_path: Path,
) -> None:
    worker = IngestWorker(config(sim, tmp_path), store=RelationalStore(), channel_layer=InMemoryChannelLayer())
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await until(lambda: worker.ws.connection_state.value == "connected", 20, "connected")
        start = exchange_balances(sim)
        await db_until(lambda: all(local_balances().get(a) == start[a] for a in ("BTC", "USD")), "the snapshot")
        subscriptions_before = worker.ws.stats.private_resyncs

        def our_order() -> None:  # made and sent as the pipeline does: its executions are ours
            order = order_create(
                client_order_id="late-exec-1",
                instrument=Instrument.objects.get(symbol="BTC/USD"),
                side="sell",
                order_type="market",
                quantity=Decimal("0.01"),
            )
            order_mark_submitted(order_id=order.pk)

        await sync_to_async(our_order)()

        # The trade's executions do not come; a gap on `balances` (its next message, the trade's ledger entry)
        # resubscribes it: the new snapshot holds the trade.
        sim.faults.withhold_executions(count=10)
        sim.faults.skip_sequence("balances", 1)
        answer = await private_post(
            sim,
            "AddOrder",
            {"pair": "XBTUSD", "type": "sell", "ordertype": "market", "volume": "0.01", "cl_ord_id": "late-exec-1"},
            nonce=time.time_ns() * 10,
        )
        assert answer["error"] == [], answer
        after = exchange_balances(sim)
        assert after["BTC"] == start["BTC"] - Decimal("0.01")
        await until(lambda: worker.ws.stats.private_resyncs > subscriptions_before, 15, "the balances resync")
        await db_until(lambda: local_balances()["BTC"] == after["BTC"], "the snapshot holding the trade")
        assert not await sync_to_async(Fill.objects.exists)()

        # Then the execution: a gap on `executions` resubscribes it, and its snapshot carries the trade.
        sim.faults.clear()
        sim.faults.skip_sequence("executions", 1)
        answer = await private_post(
            sim,
            "AddOrder",
            {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "price": "1000", "volume": "0.01"},
            nonce=time.time_ns() * 10,
        )
        assert answer["error"] == [], answer
        await db_until(Fill.objects.exists, "the late fill")
        await asyncio.sleep(0.5)  # anything else the resubscription brings
        fill = await sync_to_async(Fill.objects.get)()
        assert fill.quantity == Decimal("0.01")
        final = await sync_to_async(local_balances)()
        assert (final["BTC"], final["USD"]) == (after["BTC"], after["USD"]), "the trade counted once"
    finally:
        stop.set()
        await asyncio.wait_for(running, timeout=15)
        await sync_to_async(connections.close_all)()
