"""WebSocket client, public endpoint, against the local simulator over real loopback sockets: books with
every checksum verified (depth 10 and deeper), the other market-data channels, status, the book stream."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

SYMBOLS = ("BTC/USD", "ETH/USD")


async def drive_until_verified(client: Any, sim_admin: Any, target: int) -> None:
    """Step the simulator's market (seeded generator) until the client has verified ``target`` book
    messages; a ping barrier after each batch guarantees every message sent before it was processed."""
    for _ in range(50):
        await sim_admin.market("step", steps=500)
        await client.ping()
        if client.stats_snapshot()["book_totals"]["checksums_verified"] >= target:
            return
    raise AssertionError("the simulator produced too few book messages")


@pytest.mark.parametrize("depth", [10, 100])
async def test_thousands_of_book_messages_all_verify_and_books_equal_the_exchange(
    make_ws: Any, sim_admin: Any, exchange_book: Any, depth: int
) -> None:
    client, recorder = make_ws()
    # depth 10: precisions from the instrument channel; deeper: given by the caller.
    precisions = None if depth == 10 else {"BTC/USD": (1, 8), "ETH/USD": (2, 8)}
    await client.subscribe_book(SYMBOLS, depth=depth, precisions=precisions)
    await recorder.until(lambda: all(recorder.snapshots.get(s) == 1 for s in SYMBOLS), what="snapshots")

    await drive_until_verified(client, sim_admin, 3000)

    stats = client.stats_snapshot()
    assert stats["book_totals"]["checksums_verified"] >= 3000
    assert stats["book_totals"]["checksums_verified"] == stats["book_totals"]["messages"]
    assert stats["book_totals"]["checksum_mismatches"] == 0
    assert stats["checksum_failures"] == stats["book_resyncs"] == stats["books_not_synced"] == 0
    assert stats["malformed"] == {}
    assert stats["unknown"] == {}
    assert recorder.book_events == stats["book_totals"]["messages"]
    for symbol in SYMBOLS:
        book = client.book(symbol)
        assert book is not None
        assert book.synced
        assert book.depth == depth
        bids, asks = exchange_book(symbol, depth)
        assert book.bids == bids
        assert book.asks == asks
        assert len(book.bids) >= 10
        assert len(book.asks) >= 10
        if depth > 10:  # the deeper book really holds more than the checksummed top 10
            assert len(book.bids) > 10
            assert len(book.asks) > 10
    if depth == 10:
        assert client.instrument_precisions("BTC/USD") == (1, 8)
        assert client.instrument_precisions("ETH/USD") == (2, 8)
    assert stats["lag"]["book"]["count"] > 0


async def test_market_data_channels_deliver_typed_messages(make_ws: Any, sim_admin: Any) -> None:
    client, recorder = make_ws()
    await client.subscribe_trades(["BTC/USD"], snapshot=True)
    await client.subscribe_ticker(["BTC/USD"])
    await client.subscribe_ohlc(["BTC/USD"], interval=1)
    await client.subscribe_instrument()
    await recorder.until(lambda: {"trade", "ticker", "ohlc", "instrument"} <= set(recorder.messages), what="snapshots")
    await sim_admin.place("BTC/USD", "sell", "60000.0", "0.5")
    await sim_admin.place("BTC/USD", "buy", "60000.0", "0.2")  # trades against the resting sell
    await client.ping()

    trades = [t for t in recorder.items("trade") if t.price == Decimal("60000.0")]
    assert [(t.symbol, t.side, t.qty) for t in trades] == [("BTC/USD", "buy", Decimal("0.20000000"))]
    assert str(trades[0].qty) == "0.20000000"  # exact wire precision, never a float
    ticker = recorder.items("ticker")[-1]
    assert ticker.last == Decimal("60000.0")
    assert isinstance(ticker.bid, Decimal)
    candle = recorder.items("ohlc")[-1]
    assert candle.close == Decimal("60000.0")
    assert candle.interval == 1
    (instrument,) = recorder.items("instrument")[:1]
    assert {p.symbol for p in instrument.pairs} >= set(SYMBOLS)
    assert client.stats.messages["trade"] >= 2
    assert client.stats.messages["ohlc"] >= 2


async def test_status_is_exposed_on_connect(make_ws: Any) -> None:
    client, recorder = make_ws()
    assert client.exchange_status.value == "unknown"
    assert client.connection_state.value == "closed"
    await client.connect()
    await recorder.until(lambda: client.exchange_status.value == "online", what="status")
    assert recorder.statuses == [("unknown", "online")]
    assert client.connection_state.value == "connected"
    assert ("public", "connecting", "connected") in recorder.states
    assert 2**63 <= (client.connection_id("public") or 0) < 2**64


async def test_book_stream_yields_verified_tops_of_book(make_ws: Any, sim_admin: Any, exchange_book: Any) -> None:
    client, recorder = make_ws()
    stream = client.book_stream(["BTC/USD"])
    await client.subscribe_book(["BTC/USD", "ETH/USD"], depth=10)
    first = await anext(stream)
    assert first.symbol == "BTC/USD"
    assert first.snapshot
    await sim_admin.market("step", steps=300)
    await client.ping()
    latest = await anext(stream)  # many updates happened: the stream conflated them into the latest
    bids, asks = exchange_book("BTC/USD", 1)
    assert (latest.bid, latest.ask) == (bids[0], asks[0])
    assert not latest.snapshot
    assert latest.exchange_ts_ns > 0
    assert latest.received_ns >= latest.exchange_ts_ns
    assert stream.conflated > 0
    stream.close()
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_unknown_symbol_subscription_is_refused_with_krakens_error(make_ws: Any) -> None:
    from ingest.kraken.errors import KrakenError

    client, _ = make_ws()
    with pytest.raises(KrakenError, match="Currency pair not supported XBT/USD"):
        await client.subscribe_book(["XBT/USD"], precisions={"XBT/USD": (1, 8)})
    assert client.book("XBT/USD") is None
    assert client.stats.subscribe_errors == 1


async def test_unsubscribe_stops_updates_and_forgets_the_subscription(make_ws: Any, sim_admin: Any, sim: Any) -> None:
    client, recorder = make_ws()
    await client.subscribe_book(["BTC/USD"], depth=10, precisions={"BTC/USD": (1, 8)})
    await client.subscribe_trades(["BTC/USD"])
    await client.unsubscribe_book(["BTC/USD"])
    await client.unsubscribe("trade", ["BTC/USD"])
    before = client.stats.messages.get("book", 0)
    await sim_admin.market("step", steps=200)
    await client.ping()
    assert client.stats.messages.get("book", 0) == before
    assert client.book("BTC/USD") is None
    (connection,) = (await sim_admin.state())["connections"]
    assert connection["subscriptions"] == []


async def test_close_cancels_every_task_closes_both_sockets_and_refuses_further_use(
    make_ws: Any, sim_admin: Any
) -> None:
    import asyncio

    from ingest.kraken.errors import NotConnected

    client, recorder = make_ws()
    await client.subscribe_book(["BTC/USD"], precisions={"BTC/USD": (1, 8)})
    await client.subscribe_executions()
    stream = client.book_stream()
    assert len((await sim_admin.state())["connections"]) == 2

    await client.close()

    assert client.connection_state.value == "closed"
    assert [t for t in asyncio.all_tasks() if t.get_name().startswith("kraken-ws")] == []
    assert recorder.states[-2:] in (
        [("public", "connected", "closed"), ("private", "connected", "closed")],
        [("private", "connected", "closed"), ("public", "connected", "closed")],
    )
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    with pytest.raises(NotConnected):
        await client.subscribe_trades(["BTC/USD"])

    async def exchange_forgot_us() -> None:  # the server notices the close handshake on its own schedule
        while (await sim_admin.state())["connections"]:
            continue

    await asyncio.wait_for(exchange_forgot_us(), 5)
