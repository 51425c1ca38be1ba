"""Public WebSocket v2: status, acks, errors, ping, heartbeat, and the book/trade/ticker/ohlc/instrument
channels, with book checksums verified by an independent reference book."""

from __future__ import annotations

import re
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

RFC3339_US = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


async def test_status_arrives_first_with_a_64_bit_connection_id(sim: Any) -> None:
    import json

    import websockets

    async with websockets.connect(sim.ws_url) as conn:
        raw = await conn.recv()
    msg = json.loads(raw)
    assert msg["channel"] == "status"
    assert msg["type"] == "update"
    (data,) = msg["data"]
    assert (data["system"], data["api_version"]) == ("online", "v2")
    assert 2**63 <= data["connection_id"] < 2**64
    assert re.search(r'"connection_id":\d{19,20}[,}]', raw)


async def test_subscribe_acks_once_per_symbol_and_echoes_req_id(ws_public: Any) -> None:
    await ws_public.send(
        {
            "method": "subscribe",
            "req_id": 77,
            "params": {"channel": "ticker", "symbol": ["BTC/USD", "ETH/USD"]},
        }
    )
    msgs = await ws_public.barrier()
    acks = [m for m in msgs if m.get("method") == "subscribe"]
    assert [a["result"]["symbol"] for a in acks] == ["BTC/USD", "ETH/USD"]
    for ack in acks:
        assert ack["req_id"] == 77
        assert ack["success"] is True
        assert ack["result"]["event_trigger"] == "trades"
        assert ack["result"]["snapshot"] is True
        assert RFC3339_US.match(ack["time_in"])
        assert RFC3339_US.match(ack["time_out"])
    assert sorted(m["data"][0]["symbol"] for m in msgs if m.get("channel") == "ticker") == [
        "BTC/USD",
        "ETH/USD",
    ]


async def test_unsupported_symbol_gets_the_recorded_error(ws_public: Any) -> None:
    await ws_public.send({"method": "subscribe", "params": {"channel": "book", "symbol": ["XBT/USD"]}})
    msg = await ws_public.wait_for(lambda m: "error" in m)
    assert msg["error"] == "Currency pair not supported XBT/USD"
    assert (msg["method"], msg["success"], msg["symbol"]) == ("subscribe", False, "XBT/USD")
    assert "req_id" not in msg


async def test_unsubscribe_without_subscription_is_not_found_with_method_subscribe(ws_public: Any) -> None:
    await ws_public.send(
        {"method": "unsubscribe", "req_id": 123456789, "params": {"channel": "book", "symbol": ["BTC/USD"]}}
    )
    msg = await ws_public.wait_for(lambda m: "error" in m)
    assert (msg["error"], msg["method"], msg["req_id"], msg["symbol"]) == (
        "Subscription Not Found",
        "subscribe",
        123456789,
        "BTC/USD",
    )


async def test_unsubscribe_acks_and_stops_updates(
    ws_public: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    await ws_public.request("subscribe", {"channel": "book", "symbol": ["BTC/USD"], "depth": 25})
    await ws_public.request("unsubscribe", {"channel": "book", "symbol": ["BTC/USD"], "depth": 25})
    msgs = await ws_public.barrier()
    unsub = [m for m in msgs if m.get("method") == "unsubscribe"]
    assert unsub[0]["result"] == {"channel": "book", "depth": 25, "symbol": "BTC/USD"}
    await kit.place(admin, "BTC/USD", "buy", "50000.0", "1")
    assert not [m for m in await ws_public.barrier() if m.get("channel") == "book"]


async def test_private_channel_on_public_host_is_refused(ws_public: Any) -> None:
    await ws_public.send({"method": "subscribe", "params": {"channel": "executions", "token": "x"}})
    msg = await ws_public.wait_for(lambda m: "error" in m)
    assert msg["error"] == "Private data and trading are unavailable on this endpoint. Try ws-auth.kraken.com"
    assert (msg["method"], msg["success"]) == ("subscribe", False)


async def test_ping_gets_pong_with_req_id_and_times(ws_public: Any) -> None:
    await ws_public.send({"method": "ping", "req_id": 101})
    msg = await ws_public.wait_for(lambda m: m.get("method") == "pong")
    assert msg["req_id"] == 101
    assert RFC3339_US.match(msg["time_in"])
    assert RFC3339_US.match(msg["time_out"])


async def test_heartbeat_flows_only_when_subscribed_and_idle(make_sim: Any, kit: SimpleNamespace) -> None:
    sim = await make_sim(heartbeat_interval=0.2)
    ws = await kit.open_ws(sim.ws_url)
    try:
        await ws.send({"method": "ping", "req_id": 1})
        before = await ws.collect_until(lambda m: m.get("method") == "pong")
        await ws.request("subscribe", {"channel": "book", "symbol": ["ETH/USD"]})
        msgs = await ws.collect_until(lambda m: m.get("channel") == "heartbeat", timeout=3.0)
    finally:
        await ws.conn.close()
    assert [m.get("method") for m in before] == ["pong"]
    assert [m.get("channel") or m.get("method") for m in msgs] == ["subscribe", "book", "heartbeat"]


async def test_no_heartbeat_while_market_data_flows(make_sim: Any, kit: SimpleNamespace) -> None:
    sim = await make_sim(market="generate", rate=300.0, heartbeat_interval=0.5)
    ws = await kit.open_ws(sim.ws_url)
    try:
        await ws.request("subscribe", {"channel": "book", "symbol": ["BTC/USD"], "depth": 1000})
        msgs = [(await ws.recv())[0] for _ in range(400)]  # over a second of updates
    finally:
        await ws.conn.close()
    assert sum(m.get("channel") == "book" for m in msgs) >= 399
    assert not [m for m in msgs if m.get("channel") == "heartbeat"]


async def test_book_update_after_insert_does_not_delete_the_level_pushed_out(
    ws_public: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    for i in range(1, 11):
        await kit.place(admin, "BTC/USD", "sell", f"600{i:02d}.0", "0.5")
    await kit.place(admin, "BTC/USD", "buy", "59990.0", "1")
    await ws_public.request("subscribe", {"channel": "book", "symbol": ["BTC/USD"], "depth": 10})
    snapshot = await ws_public.wait_for(lambda m: m.get("type") == "snapshot")
    ref = kit.ReferenceBook(10, 1, 8)
    assert ref.apply(snapshot["data"][0], snapshot=True)

    placed = await kit.place(admin, "BTC/USD", "sell", "60000.5", "0.25")
    update = await ws_public.wait_for(lambda m: m.get("type") == "update")
    data = update["data"][0]
    assert data["asks"] == [{"price": Decimal("60000.5"), "qty": Decimal("0.25")}]
    assert data["bids"] == []
    assert ref.apply(data, snapshot=False)

    r = await admin.post("/_sim/market", json={"action": "cancel", "order_id": placed["order_id"]})
    assert r.status_code == 200
    update = await ws_public.wait_for(lambda m: m.get("type") == "update")
    data = update["data"][0]
    # The deleted level goes, and the level that comes back into the top 10 is sent again.
    assert data["asks"] == [
        {"price": Decimal("60000.5"), "qty": Decimal(0)},
        {"price": Decimal("60010.0"), "qty": Decimal("0.5")},
    ]
    assert ref.apply(data, snapshot=False)


async def test_generated_book_checksums_verify_over_thousands_of_messages(make_sim: Any, kit: SimpleNamespace) -> None:
    sim = await make_sim(market="generate", rate=2000.0)
    shallow = await kit.open_ws(sim.ws_url)
    deep = await kit.open_ws(sim.ws_url)
    try:
        await shallow.request("subscribe", {"channel": "book", "symbol": ["BTC/USD", "ETH/USD"], "depth": 10})
        await deep.request("subscribe", {"channel": "book", "symbol": ["BTC/USD"], "depth": 100})
        precision = {"BTC/USD": (1, 8), "ETH/USD": (2, 8)}
        books = {("s", s): kit.ReferenceBook(10, *precision[s]) for s in precision}
        books[("d", "BTC/USD")] = kit.ReferenceBook(100, 1, 8)
        counts = {"updates": 0, "bad": 0}
        token = {
            "BTC/USD": re.compile(r'"price":\d+\.\d{1}[,}]'),
            "ETH/USD": re.compile(r'"price":\d+\.\d{2}[,}]'),
        }
        qty_token = re.compile(r'"qty":\d+\.\d{8}[,}]')

        seen = {"s": 0, "d": 0}
        targets = {"s": 2000, "d": 600}

        def done() -> bool:
            return all(seen[t] >= targets[t] for t in targets)

        async def consume(ws: Any, tag: str) -> None:
            # Both keep reading until both reach their target, so neither socket backs up.
            while not done():
                msg, raw = await ws.recv(timeout=5.0)
                if msg.get("channel") != "book":
                    continue
                data = msg["data"][0]
                symbol = data["symbol"]
                ok = books[(tag, symbol)].apply(data, snapshot=msg["type"] == "snapshot")
                counts["bad"] += not ok
                levels = len(data["bids"]) + len(data["asks"])
                assert len(token[symbol].findall(raw)) == levels, raw
                assert len(qty_token.findall(raw)) == levels, raw
                if msg["type"] == "update":
                    counts["updates"] += 1
                    seen[tag] += 1

        import asyncio

        await asyncio.gather(consume(shallow, "s"), consume(deep, "d"))
        assert counts["updates"] >= 2600
        assert counts["bad"] == 0
        assert len(books[("d", "BTC/USD")].bids) > 10  # the deep view really is deeper than the checksum
    finally:
        await shallow.conn.close()
        await deep.conn.close()


async def test_trade_channel_has_no_snapshot_by_default_and_reports_taker_side(
    ws_public: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    await ws_public.request("subscribe", {"channel": "trade", "symbol": ["BTC/USD"]})
    ack = await ws_public.wait_for(lambda m: m.get("method") == "subscribe")
    assert ack["result"] == {"channel": "trade", "snapshot": False, "symbol": "BTC/USD"}
    await kit.place(admin, "BTC/USD", "sell", "60000.0", "0.00044780")
    await kit.place(admin, "BTC/USD", "buy", "60000.0", "0.00044780")
    msgs = await ws_public.barrier()
    trades = [m for m in msgs if m.get("channel") == "trade"]
    assert [m["type"] for m in trades] == ["update"]
    (trade,) = trades[0]["data"]
    assert (trade["side"], trade["ord_type"], trade["price"]) == ("buy", "limit", Decimal("60000.0"))
    assert isinstance(trade["trade_id"], int)
    assert RFC3339_US.match(trade["timestamp"])


async def test_trailing_zeros_are_kept_on_the_wire(
    ws_public: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    await ws_public.request("subscribe", {"channel": "trade", "symbol": ["BTC/USD"]})
    await kit.place(admin, "BTC/USD", "sell", "83744.3", "0.00044780")
    await kit.place(admin, "BTC/USD", "buy", "83744.3", "0.00044780")
    _, raw = await ws_public.wait_for_raw(lambda m: m.get("channel") == "trade")
    assert '"price":83744.3,"qty":0.00044780,' in raw


async def test_ticker_snapshot_and_update_on_trade(
    ws_public: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    await kit.place(admin, "ETH/USD", "buy", "2999.50", "2")
    await kit.place(admin, "ETH/USD", "sell", "3000.50", "3")
    await ws_public.request("subscribe", {"channel": "ticker", "symbol": ["ETH/USD"]})
    snap = await ws_public.wait_for(lambda m: m.get("channel") == "ticker")
    data = snap["data"][0]
    assert snap["type"] == "snapshot"
    assert (data["bid"], data["bid_qty"], data["ask"], data["ask_qty"]) == (
        Decimal("2999.50"),
        Decimal("2"),
        Decimal("3000.50"),
        Decimal("3"),
    )
    await kit.place(admin, "ETH/USD", "buy", "3000.50", "1")
    update = await ws_public.wait_for(lambda m: m.get("channel") == "ticker")
    data = update["data"][0]
    assert update["type"] == "update"
    assert (data["last"], data["ask_qty"], data["volume"]) == (Decimal("3000.50"), Decimal("2"), Decimal("1"))


async def test_ohlc_subscription_warns_and_candles_carry_interval_begin(
    ws_public: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    await ws_public.request("subscribe", {"channel": "ohlc", "symbol": ["BTC/USD"], "interval": 5})
    ack = await ws_public.wait_for(lambda m: m.get("method") == "subscribe")
    assert ack["result"]["warnings"] == ["timestamp is deprecated, use interval_begin"]
    assert ack["result"]["interval"] == 5
    await kit.place(admin, "BTC/USD", "sell", "60000.0", "0.1")
    await kit.place(admin, "BTC/USD", "buy", "60000.0", "0.1")
    msg = await ws_public.wait_for(lambda m: m.get("channel") == "ohlc" and m["type"] == "update")
    (candle,) = msg["data"]
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d[05]:00\.000000000Z$", candle["interval_begin"])
    assert (candle["open"], candle["close"], candle["volume"], candle["trades"], candle["interval"]) == (
        Decimal("60000.0"),
        Decimal("60000.0"),
        Decimal("0.1"),
        1,
        5,
    )


async def test_instrument_snapshot_data_is_an_object_of_assets_and_pairs(ws_public: Any) -> None:
    await ws_public.request("subscribe", {"channel": "instrument"})
    msg = await ws_public.wait_for(lambda m: m.get("channel") == "instrument")
    assert msg["type"] == "snapshot"
    pairs = {p["symbol"]: p for p in msg["data"]["pairs"]}
    assert {a["id"] for a in msg["data"]["assets"]} == {"BTC", "ETH", "USD"}
    btc = pairs["BTC/USD"]
    assert (btc["price_precision"], btc["qty_precision"], btc["price_increment"], btc["qty_min"]) == (
        1,
        8,
        Decimal("0.1"),
        Decimal("0.00005"),
    )


async def test_connection_without_subscription_or_requests_is_closed_when_idle(
    make_sim: Any, kit: SimpleNamespace
) -> None:
    import asyncio

    import websockets

    sim = await make_sim(idle_timeout=0.3)
    quiet = await kit.open_ws(sim.ws_url)
    busy = await kit.open_ws(sim.ws_url)
    await busy.request("subscribe", {"channel": "instrument"})
    with pytest.raises(websockets.ConnectionClosed):
        await asyncio.wait_for(quiet.conn.recv(), 5)
    await busy.send({"method": "ping", "req_id": 5})
    pong = await busy.wait_for(lambda m: m.get("method") == "pong")
    await busy.conn.close()
    assert pong["req_id"] == 5
