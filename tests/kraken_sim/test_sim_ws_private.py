"""Private WebSocket v2: tokens, executions and balances (snapshots, sparse updates, sequences), and trading
over the socket (add_order / cancel_order), sharing the engine with REST."""

from __future__ import annotations

import re
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import httpx

RFC3339_US = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def executions(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in msgs if m.get("channel") == "executions"]


async def subscribe_executions(ws: Any, token: str, **params: Any) -> dict[str, Any]:
    await ws.request("subscribe", {"channel": "executions", "token": token, **params})
    return await ws.wait_for(lambda m: m.get("channel") == "executions" and m["type"] == "snapshot")


async def test_bad_token_is_an_invalid_session(ws_private: Any) -> None:
    await ws_private.send(
        {"method": "subscribe", "req_id": 42, "params": {"channel": "executions", "token": "not-a-token"}}
    )
    msg = await ws_private.wait_for(lambda m: "error" in m)
    assert msg["error"] == "ESession:Invalid session"
    assert (msg["channel"], msg["method"], msg["req_id"], msg["status"], msg["success"]) == (
        "executions",
        "subscribe",
        42,
        "error",
        False,
    )


async def test_public_channel_on_private_host_is_refused(ws_private: Any) -> None:
    await ws_private.send({"method": "subscribe", "params": {"channel": "book", "symbol": ["BTC/USD"]}})
    msg = await ws_private.wait_for(lambda m: "error" in m)
    assert msg["error"] == "Public market data subscriptions are unavailable on this endpoint. Try ws.kraken.com"


async def test_expired_token_cannot_subscribe_but_a_used_one_lives_with_its_connection(
    sim: Any, rest: Any, kit: SimpleNamespace
) -> None:
    now = [1000.0]
    sim.tokens.clock = lambda: now[0]
    token = await rest.ws_token()
    first = await kit.open_ws(sim.ws_auth_url)
    second = await kit.open_ws(sim.ws_auth_url)
    try:
        await subscribe_executions(first, token)
        now[0] += 901  # past the 15 minutes
        await first.request("subscribe", {"channel": "balances", "token": token})
        ok = await first.wait_for(lambda m: m.get("channel") == "balances")
        await second.request("subscribe", {"channel": "balances", "token": token})
        refused = await second.wait_for(lambda m: "error" in m)
    finally:
        await first.conn.close()
        await second.conn.close()
    assert ok["type"] == "snapshot"
    assert refused["error"] == "ESession:Invalid session"


async def test_executions_snapshot_lists_open_orders_with_sequence_one(rest: Any, ws_private: Any) -> None:
    await rest.ok(
        "AddOrder",
        pair="XBTUSD",
        type="buy",
        ordertype="limit",
        price="50000.0",
        volume="0.01",
        cl_ord_id="snap-1",
    )
    token = await rest.ws_token()
    await ws_private.request("subscribe", {"channel": "executions", "token": token})
    ack = await ws_private.wait_for(lambda m: m.get("method") == "subscribe")
    snap = await ws_private.wait_for(lambda m: m.get("channel") == "executions")
    assert ack["result"]["channel"] == "executions"
    assert ack["result"]["snap_orders"] is True
    assert (snap["type"], snap["sequence"]) == ("snapshot", 1)
    (order,) = snap["data"]
    assert (order["cl_ord_id"], order["order_status"], order["limit_price"]) == (
        "snap-1",
        "new",
        Decimal("50000.0"),
    )


async def test_order_lifecycle_updates_are_sparse_and_sequenced(
    rest: Any, ws_private: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    token = await rest.ws_token()
    await subscribe_executions(ws_private, token)
    (txid,) = (
        await rest.ok(
            "AddOrder",
            pair="XBTUSD",
            type="sell",
            ordertype="limit",
            price="61000.0",
            volume="0.02",
            userref=3,
        )
    )["txid"]
    await kit.place(admin, "BTC/USD", "buy", "61000.0", "0.005")  # partial fill
    await rest.ok("CancelOrder", txid=txid)
    updates = executions(await ws_private.barrier())
    assert [u["sequence"] for u in updates] == [2, 3, 4, 5]
    pending, new, trade, canceled = (u["data"][0] for u in updates)

    assert pending["exec_type"] == "pending_new"
    assert pending["order_id"] == txid
    assert (pending["symbol"], pending["side"], pending["order_qty"], pending["limit_price"]) == (
        "BTC/USD",
        "sell",
        Decimal("0.02"),
        Decimal("61000.0"),
    )
    assert set(new) == {"timestamp", "order_status", "exec_type", "order_userref", "order_id"}
    assert (new["exec_type"], new["order_userref"]) == ("new", 3)

    assert trade["exec_type"] == "trade"
    assert (trade["last_qty"], trade["last_price"], trade["cost"], trade["liquidity_ind"]) == (
        Decimal("0.005"),
        Decimal("61000.0"),
        Decimal("305"),
        "m",
    )
    assert trade["fees"] == [{"asset": "USD", "qty": Decimal("0.7625")}]  # 0.25 % maker
    assert (trade["order_status"], trade["cum_qty"]) == ("partially_filled", Decimal("0.005"))
    assert trade["exec_id"].startswith("T")
    assert isinstance(trade["trade_id"], int)

    assert "symbol" not in canceled
    assert "side" not in canceled
    assert (canceled["exec_type"], canceled["order_status"], canceled["reason"]) == (
        "canceled",
        "canceled",
        "User requested",
    )
    assert canceled["cum_qty"] == Decimal("0.005")
    assert all(RFC3339_US.match(u["data"][0]["timestamp"]) for u in updates)


async def test_a_fill_gives_two_ledger_updates_with_a_shared_ref_id(
    rest: Any, ws_private: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    token = await rest.ws_token()
    await ws_private.request("subscribe", {"channel": "balances", "token": token})
    snap = await ws_private.wait_for(lambda m: m.get("channel") == "balances")
    assert (snap["type"], snap["sequence"]) == ("snapshot", 1)
    usd = next(b for b in snap["data"] if b["asset"] == "USD")
    assert usd == {
        "asset": "USD",
        "asset_class": "currency",
        "balance": Decimal("100000"),
        "wallets": [{"type": "spot", "id": "main", "balance": Decimal("100000")}],
    }

    await kit.place(admin, "BTC/USD", "sell", "60000.0", "1")
    await rest.ok("AddOrder", pair="XBTUSD", type="buy", ordertype="market", volume="0.01")
    updates = [m for m in await ws_private.barrier() if m.get("channel") == "balances"]
    assert [u["sequence"] for u in updates] == [2, 3]
    btc, usd = (u["data"][0] for u in updates)
    assert btc["ref_id"] == usd["ref_id"]
    assert btc["ledger_id"] != usd["ledger_id"]
    assert (btc["asset"], btc["amount"], btc["fee"], btc["balance"]) == (
        "BTC",
        Decimal("0.01"),
        Decimal(0),
        Decimal("1.01"),
    )
    assert (usd["asset"], usd["amount"], usd["fee"], usd["balance"]) == (
        "USD",
        Decimal("-600"),
        Decimal("2.4"),
        Decimal("99397.6"),
    )
    assert usd["type"] == usd["category"] == "trade"


async def test_add_order_over_ws_answers_before_its_executions(rest: Any, ws_private: Any) -> None:
    token = await rest.ws_token()
    await subscribe_executions(ws_private, token)
    await ws_private.send(
        {
            "method": "add_order",
            "req_id": 123456789,
            "params": {
                "order_type": "limit",
                "side": "buy",
                "limit_price": 26500.4,
                "order_userref": 100054,
                "order_qty": 0.2,
                "symbol": "BTC/USD",
                "token": token,
            },
        }
    )
    msgs = await ws_private.barrier()
    response = msgs[0]
    assert response["method"] == "add_order"
    assert response["success"] is True
    assert response["req_id"] == 123456789
    assert response["result"]["order_userref"] == 100054
    order_id = response["result"]["order_id"]
    assert [m["data"][0]["exec_type"] for m in executions(msgs)] == ["pending_new", "new"]
    open_orders = (await rest.ok("OpenOrders"))["open"]
    assert open_orders[order_id]["descr"]["price"] == "26500.4"


async def test_add_order_over_ws_reports_errors_in_krakens_shape(rest: Any, ws_private: Any) -> None:
    token = await rest.ws_token()
    await ws_private.send(
        {
            "method": "add_order",
            "req_id": 7,
            "params": {
                "order_type": "limit",
                "side": "buy",
                "limit_price": 60000.0,
                "order_qty": 5,
                "symbol": "BTC/USD",
                "token": token,
            },
        }
    )
    msg = await ws_private.wait_for(lambda m: m.get("method") == "add_order")
    assert set(msg) == {"error", "method", "req_id", "success", "time_in", "time_out"}
    assert (msg["error"], msg["req_id"], msg["success"]) == ("EOrder:Insufficient funds", 7, False)


async def test_add_order_without_token_is_an_invalid_session(ws_private: Any) -> None:
    await ws_private.send(
        {
            "method": "add_order",
            "req_id": 8,
            "params": {"order_type": "market", "side": "buy", "order_qty": 0.1, "symbol": "BTC/USD"},
        }
    )
    msg = await ws_private.wait_for(lambda m: m.get("method") == "add_order")
    assert msg["error"] == "ESession:Invalid session"


async def test_trading_on_the_public_host_is_refused(ws_public: Any) -> None:
    await ws_public.send(
        {
            "method": "add_order",
            "params": {"order_type": "market", "side": "buy", "order_qty": 0.1, "symbol": "BTC/USD"},
        }
    )
    msg = await ws_public.wait_for(lambda m: m.get("method") == "add_order")
    assert msg["error"].startswith("Private data and trading are unavailable on this endpoint")


async def test_cancel_order_over_ws_answers_once_per_order(rest: Any, ws_private: Any) -> None:
    token = await rest.ws_token()
    await subscribe_executions(ws_private, token)
    ids = [
        (await rest.ok("AddOrder", pair="XBTUSD", type="buy", ordertype="limit", price="50000.0", volume="0.01"))[
            "txid"
        ][0]
        for _ in range(2)
    ]
    await rest.ok(
        "AddOrder",
        pair="XBTUSD",
        type="buy",
        ordertype="limit",
        price="50000.0",
        volume="0.01",
        cl_ord_id="by-client",
    )
    await ws_private.barrier()
    await ws_private.send(
        {
            "method": "cancel_order",
            "req_id": 5,
            "params": {"order_id": ids, "cl_ord_id": ["by-client"], "token": token},
        }
    )
    msgs = await ws_private.barrier()
    responses = [m for m in msgs if m.get("method") == "cancel_order"]
    assert [r["result"]["order_id"] for r in responses[:2]] == ids
    assert responses[2]["result"]["cl_ord_id"] == "by-client"
    assert all(r["success"] and r["req_id"] == 5 for r in responses)
    canceled = [m["data"][0] for m in executions(msgs)]
    assert [c["exec_type"] for c in canceled] == ["canceled"] * 3
    assert (await rest.ok("OpenOrders"))["open"] == {}


async def test_cancel_of_unknown_order_over_ws_is_an_error(rest: Any, ws_private: Any) -> None:
    token = await rest.ws_token()
    await ws_private.send(
        {
            "method": "cancel_order",
            "req_id": 6,
            "params": {"order_id": ["OAAAAA-BBBBB-CCCCCC"], "token": token},
        }
    )
    msg = await ws_private.wait_for(lambda m: m.get("method") == "cancel_order")
    assert (msg["error"], msg["success"]) == ("EOrder:Unknown order", False)


async def test_ws_and_rest_share_the_trading_counter(make_sim: Any, kit: SimpleNamespace) -> None:
    from kraken_sim import Tier

    sim = await make_sim(tier=Tier("t", Decimal(1000), Decimal(1), Decimal(2), Decimal("0.01"), 100))
    rest = kit.KrakenRest(sim.rest_url, sim.config.api_key, sim.config.api_secret)
    ws = await kit.open_ws(sim.ws_auth_url)
    try:
        await rest.ok("AddOrder", pair="XBTUSD", type="buy", ordertype="limit", price="50000.0", volume="0.01")
        await rest.ok("AddOrder", pair="XBTUSD", type="buy", ordertype="limit", price="50000.0", volume="0.01")
        token = await rest.ws_token()
        await ws.send(
            {
                "method": "add_order",
                "req_id": 1,
                "params": {
                    "order_type": "limit",
                    "side": "buy",
                    "limit_price": 50000.0,
                    "order_qty": 0.01,
                    "symbol": "BTC/USD",
                    "token": token,
                },
            }
        )
        msg = await ws.wait_for(lambda m: m.get("method") == "add_order")
    finally:
        await rest.aclose()
        await ws.conn.close()
    assert msg["error"] == "EOrder:Rate limit exceeded"


async def test_snap_trades_includes_past_fills(
    rest: Any, ws_private: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    await kit.place(admin, "ETH/USD", "sell", "3000.00", "1")
    await rest.ok("AddOrder", pair="ETHUSD", type="buy", ordertype="market", volume="0.5")
    token = await rest.ws_token()
    snap = await subscribe_executions(ws_private, token, snap_trades=True, snap_orders=False)
    (trade,) = snap["data"]
    assert (trade["exec_type"], trade["symbol"], trade["last_qty"], trade["liquidity_ind"]) == (
        "trade",
        "ETH/USD",
        Decimal("0.5"),
        "t",
    )
    assert trade["fees"] == [{"asset": "USD", "qty": Decimal("6")}]  # 1500 * 0.4 %
