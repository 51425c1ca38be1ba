"""WebSocket client under every fault the simulator offers (injected over its /_sim admin endpoints), each
followed by recovery with nothing left inconsistent: dropped connections, silence, corrupted checksums,
skipped private sequences, system status changes, withheld executions, and orders/fills placed outside our
system."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from ingest.kraken.errors import MarketRestricted, ServiceUnavailable
from ingest.kraken.ws.reconnect import ReconnectPolicy
from ingest.kraken.ws.types import ReconcileRequest

SYMBOLS = ("BTC/USD", "ETH/USD")
PRECISIONS = {"BTC/USD": (1, 8), "ETH/USD": (2, 8)}


async def assert_books_match_the_exchange(client: Any, sim_admin: Any, exchange_book: Any, depth: int) -> None:
    """Move the market, then every book must still verify and equal the exchange's book."""
    await sim_admin.market("step", steps=300)
    await client.ping()
    for symbol in SYMBOLS:
        book = client.book(symbol)
        assert book is not None, symbol
        assert book.synced, symbol
        bids, asks = exchange_book(symbol, depth)
        assert (book.bids, book.asks) == (bids, asks), symbol


def snapshots(recorder: Any, channel: str) -> list[Any]:
    return [m for m in recorder.messages.get(channel, []) if m.type == "snapshot"]


@pytest.mark.parametrize("mode", ["abort", "close"])
async def test_dropped_connections_reconnect_resubscribe_everything_and_resync_books(
    make_ws: Any, sim_admin: Any, exchange_book: Any, mode: str
) -> None:
    client, recorder = make_ws()
    await client.subscribe_book(SYMBOLS, depth=25, precisions=PRECISIONS)
    await client.subscribe_trades(["BTC/USD"])
    await client.subscribe_executions()
    await client.subscribe_balances()
    await recorder.until(lambda: all(recorder.snapshots.get(s) == 1 for s in SYMBOLS), what="first snapshots")
    old_ids = (client.connection_id("public"), client.connection_id("private"))

    assert (await sim_admin.fault("drop_connections", scope="all", mode=mode))["affected"] == 2

    def recovered() -> bool:
        reconnects = [r for r in recorder.reconciles if r.reason == "reconnect"]
        return all(recorder.snapshots.get(s) == 2 for s in SYMBOLS) and len(reconnects) == 2

    await recorder.until(recovered, what="books resynced and private channels resubscribed")
    assert client.stats.reconnects == 2
    assert {r.channel for r in recorder.reconciles} == {"executions", "balances"}
    assert client.connection_id("public") not in old_ids
    assert client.connection_id("private") not in old_ids
    for endpoint in ("public", "private"):
        transitions = [(old, new) for name, old, new in recorder.states if name == endpoint]
        assert ("connected", "reconnecting") in transitions
        assert transitions[-1] == ("reconnecting", "connected")
    assert client.connection_state.value == "connected"
    state = await sim_admin.state()
    subscribed = sorted((s["channel"], s["symbol"] or "") for c in state["connections"] for s in c["subscriptions"])
    assert subscribed == [
        ("balances", ""),
        ("book", "BTC/USD"),
        ("book", "ETH/USD"),
        ("executions", ""),
        ("trade", "BTC/USD"),
    ]
    await assert_books_match_the_exchange(client, sim_admin, exchange_book, 25)
    assert client.stats_snapshot()["book_totals"]["checksum_mismatches"] == 0


async def test_silence_trips_the_watchdog_which_reconnects_and_resyncs(
    make_ws: Any, sim_admin: Any, exchange_book: Any
) -> None:
    client, recorder = make_ws(watchdog_timeout_s=0.6, idle_ping_after_s=0.2)
    await client.subscribe_book(SYMBOLS, depth=10, precisions=PRECISIONS)
    await recorder.until(lambda: all(recorder.snapshots.get(s) == 1 for s in SYMBOLS), what="snapshots")
    silenced = client.connection_id("public")

    # Hold everything (heartbeats, pongs) on this connection for far longer than the watchdog allows.
    await sim_admin.fault("silence", seconds=30, scope="public", connection_id=silenced, mode="hold")

    await recorder.until(lambda: all(recorder.snapshots.get(s) == 2 for s in SYMBOLS), what="resync after watchdog")
    assert client.stats.watchdog_reconnects == 1
    assert client.stats.idle_pings >= 1  # it asked before giving up
    assert client.connection_id("public") != silenced
    await assert_books_match_the_exchange(client, sim_admin, exchange_book, 10)


async def test_corrupted_checksum_resyncs_that_symbol_from_a_fresh_snapshot(
    make_ws: Any, sim_admin: Any, exchange_book: Any
) -> None:
    client, recorder = make_ws()
    await client.subscribe_book(SYMBOLS, depth=10, precisions=PRECISIONS)
    await recorder.until(lambda: all(recorder.snapshots.get(s) == 1 for s in SYMBOLS), what="snapshots")

    await sim_admin.fault("corrupt_checksum", symbol="BTC/USD", count=1)
    await sim_admin.market("step", steps=200)
    await recorder.until(lambda: recorder.snapshots.get("BTC/USD") == 2, what="fresh BTC/USD snapshot")

    stats = client.stats_snapshot()
    assert stats["checksum_failures"] == 1
    assert stats["book_resyncs"] == 1
    assert stats["books"]["BTC/USD"]["checksum_mismatches"] == 1
    assert stats["books"]["ETH/USD"]["checksum_mismatches"] == 0
    assert recorder.snapshots["ETH/USD"] == 1  # the other symbol was not touched
    await assert_books_match_the_exchange(client, sim_admin, exchange_book, 10)
    assert client.stats_snapshot()["books"]["BTC/USD"]["checksum_mismatches"] == 1  # no further failure


@pytest.mark.parametrize("channel", ["executions", "balances"])
async def test_skipped_private_sequence_is_a_gap_reported_and_resubscribed(
    make_ws: Any, sim_admin: Any, channel: str
) -> None:
    client, recorder = make_ws()
    await client.subscribe_executions()
    await client.subscribe_balances()
    await recorder.until(lambda: snapshots(recorder, "executions") and snapshots(recorder, "balances"))

    assert (await sim_admin.fault("skip_sequence", channel=channel))["affected"] == 1
    order = {"symbol": "BTC/USD", "side": "buy", "order_type": "market", "order_qty": Decimal("0.01")}
    first = await client.add_order(**order)  # pending_new, new, trade, filled + two ledger entries

    await recorder.until(lambda: len(snapshots(recorder, channel)) == 2, what="fresh snapshot after the gap")
    assert recorder.gaps == [(channel, 2, 3)]
    assert ReconcileRequest("gap", channel, 2, 3) in recorder.reconciles
    assert client.stats.gaps == 1
    assert client.stats.private_resyncs == 1

    second = await client.add_order(**order)
    await client.ping(endpoint="private")
    assert client.stats.gaps == 1  # the resubscribed channel is in sequence again
    assert [e.exec_type for e in recorder.executions(second.order_id)] == ["pending_new", "new", "trade", "filled"]
    if channel == "executions":
        # The event carrying the skipped number was still delivered (nothing is dropped by the client).
        assert [e.exec_type for e in recorder.executions(first.order_id)][0] == "pending_new"
    state = await sim_admin.state()
    (private,) = [c for c in state["connections"] if c["private"]]
    assert {s["channel"] for s in private["subscriptions"]} == {"executions", "balances"}


@pytest.mark.parametrize(
    ("status", "error", "error_type"),
    [
        ("maintenance", "EService:Unavailable", ServiceUnavailable),
        ("cancel_only", "EService:Market in cancel_only mode", MarketRestricted),
        ("post_only", "EService:Market in post_only mode", MarketRestricted),
    ],
)
async def test_system_status_is_exposed_and_add_order_is_refused_with_the_typed_error(
    make_ws: Any, sim_admin: Any, status: str, error: str, error_type: type[Exception]
) -> None:
    client, recorder = make_ws()
    await client.subscribe_executions()
    await recorder.until(lambda: client.exchange_status.value == "online")

    await sim_admin.fault("system_status", status=status)
    await recorder.until(lambda: client.exchange_status.value == status, what=f"status {status}")
    assert recorder.statuses[-1] == ("online", status)

    limit = {"symbol": "BTC/USD", "side": "buy", "order_type": "limit", "order_qty": Decimal("0.01")}
    with pytest.raises(error_type) as refused:
        await client.add_order(**limit, limit_price=Decimal("50000.0"), cl_ord_id="refused-1")
    assert refused.value.error == error  # type: ignore[attr-defined]
    if error_type is MarketRestricted:
        assert refused.value.mode == status  # type: ignore[attr-defined]
    if status == "post_only":
        accepted = await client.add_order(**limit, limit_price=Decimal("50000.0"), post_only=True, cl_ord_id="po-1")
        assert accepted.order_id

    await sim_admin.fault("system_status", status="online")
    await recorder.until(lambda: client.exchange_status.value == "online", what="back online")
    orders = (await sim_admin.state())["orders"]
    assert [o["cl_ord_id"] for o in orders] == (["po-1"] if status == "post_only" else [])


async def test_reconnect_during_maintenance_waits_at_least_the_maintenance_delay(make_ws: Any, sim_admin: Any) -> None:
    policy = ReconnectPolicy(
        initial_delay_s=0.01, max_delay_s=0.05, quick_retry_max_delay_s=0.01, after_maintenance_delay_s=0.3
    )
    client, recorder = make_ws(reconnect=policy)
    await client.connect()
    await sim_admin.fault("system_status", status="maintenance")
    await recorder.until(lambda: client.exchange_status.value == "maintenance")
    await sim_admin.fault("drop_connections", scope="public")
    await recorder.until(lambda: client.stats.reconnects == 1 and client.public_state.value == "connected")
    assert client.stats.last_reconnect_delay_s >= 0.3


@pytest.mark.parametrize("consume_sequence", [True, False])
async def test_withheld_executions_are_revealed_by_the_gap_path_or_by_rest(
    make_ws: Any, sim_admin: Any, rest: Any, consume_sequence: bool
) -> None:
    client, recorder = make_ws()
    await client.subscribe_executions()
    await recorder.until(lambda: len(snapshots(recorder, "executions")) == 1)

    await sim_admin.fault("withhold_executions", count=2, consume_sequence=consume_sequence)
    ack = await client.add_order(
        symbol="BTC/USD",
        side="buy",
        order_type="limit",
        order_qty=Decimal("0.01"),
        limit_price=Decimal("50000.0"),
        cl_ord_id="withheld-1",
    )  # its pending_new and new are withheld
    if consume_sequence:
        # The loss is visible as a gap: reported, resubscribed, and the fresh snapshot shows the order live.
        await client.cancel_order(order_id=ack.order_id)
        await recorder.until(lambda: len(snapshots(recorder, "executions")) == 2, what="fresh snapshot")
        assert recorder.gaps == [("executions", 2, 4)]
        assert [e.exec_type for e in recorder.executions(ack.order_id)][:1] == ["canceled"]
    else:
        # Without a sequence gap the loss is invisible on the socket: only REST reveals the truth.
        await client.ping(endpoint="private")
        assert recorder.executions(ack.order_id) == []
        assert client.stats.gaps == 0
        (order,) = (await rest.open_orders(cl_ord_id="withheld-1")).values()
        assert (order.txid, order.status, order.cl_ord_id) == (ack.order_id, "open", "withheld-1")
        await client.cancel_order(order_id=ack.order_id)
        await client.ping(endpoint="private")
        assert [e.exec_type for e in recorder.executions(ack.order_id)] == ["canceled"]
    info = await rest.query_orders([ack.order_id])
    assert info[ack.order_id].status == "canceled"


async def test_withheld_execution_with_a_gap_leaves_the_open_order_in_the_fresh_snapshot(
    make_ws: Any, sim_admin: Any
) -> None:
    client, recorder = make_ws()
    await client.subscribe_executions()
    await recorder.until(lambda: len(snapshots(recorder, "executions")) == 1)
    await sim_admin.fault("withhold_executions", count=1, consume_sequence=True)
    ack = await client.add_order(
        symbol="ETH/USD", side="sell", order_type="limit", order_qty=Decimal("0.5"), limit_price=Decimal("4000.00")
    )
    await recorder.until(lambda: len(snapshots(recorder, "executions")) == 2, what="fresh snapshot")
    assert recorder.gaps == [("executions", 2, 3)]
    fresh = snapshots(recorder, "executions")[-1]
    (live,) = [e for e in fresh.items if e.order_id == ack.order_id]
    assert (live.order_status, live.symbol, live.limit_price) == ("new", "ETH/USD", Decimal("4000.00"))


async def test_external_order_and_fill_on_our_account_are_seen_on_executions_and_balances(
    make_ws: Any, sim_admin: Any
) -> None:
    client, recorder = make_ws()
    await client.subscribe_executions()
    await client.subscribe_balances()
    await recorder.until(lambda: snapshots(recorder, "executions") and snapshots(recorder, "balances"))

    placed = await sim_admin.fault("external_order", symbol="ETH/USD", side="sell", qty="1.5", price="4000.00")
    order_id = placed["order_id"]
    await recorder.until(lambda: [e.exec_type for e in recorder.executions(order_id)] == ["pending_new", "new"])
    pending = recorder.executions(order_id)[0]
    assert (pending.symbol, pending.side, pending.order_qty, pending.cl_ord_id) == (
        "ETH/USD",
        "sell",
        Decimal("1.5"),
        None,
    )

    fill = await sim_admin.fault("external_fill", order_id=order_id, qty="0.5")
    ledger = lambda: [b for b in recorder.items("balances") if b.ledger_id is not None]  # noqa: E731
    await recorder.until(lambda: len(ledger()) == 2, what="two ledger entries")
    (trade,) = [e for e in recorder.executions(order_id) if e.exec_type == "trade"]
    assert (trade.exec_id, trade.last_qty, trade.last_price, trade.liquidity_ind) == (
        fill["txid"],
        Decimal("0.5"),
        Decimal("4000.00"),
        "m",
    )
    assert trade.order_status == "partially_filled"
    by_asset = {b.asset: b for b in ledger()}
    eth, usd = by_asset["ETH"], by_asset["USD"]
    assert eth.ref_id == usd.ref_id
    assert (eth.asset, eth.amount, eth.balance) == ("ETH", Decimal("-0.5"), Decimal("9.5"))
    assert (usd.asset, usd.amount, usd.fee) == ("USD", Decimal("2000"), Decimal("5"))  # 0.25 % maker fee
    assert usd.balance == Decimal("100000") + Decimal("2000") - Decimal("5")
