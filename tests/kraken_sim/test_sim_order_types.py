"""Issue #18 item 8, the order side: stop-loss and take-profit orders (REST and WebSocket, trigger on the last or
the index price) rest until the market reaches their trigger, then execute as market orders with Kraken's reports;
order values the simulator does not simulate are refused with Kraken's errors instead of accepted and ignored;
self-trade prevention in its three modes; TradeBalance. Real sockets, raw clients (tests/kraken_sim/conftest.py)."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

BTC = {"pair": "XBTUSD", "volume": "0.1"}


async def order(rest: Any, txid: str) -> dict[str, Any]:
    return dict((await rest.ok("QueryOrders", txid=txid, trades=True))[txid])


async def trade_at(admin: httpx.AsyncClient, kit: SimpleNamespace, price: str, qty: str = "0.01") -> None:
    """A participants' trade at ``price`` (the last price moves there)."""
    await kit.place(admin, "BTC/USD", "sell", price, qty)
    await kit.place(admin, "BTC/USD", "buy", price, qty)


# -- stop-loss and take-profit over REST ----------------------------------------------------------------------
async def test_sell_stop_loss_waits_below_the_market_then_sells_at_market_when_the_last_price_falls_to_it(
    rest: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    await trade_at(admin, kit, "60000.0")
    placed = await rest.ok("AddOrder", **BTC, type="sell", ordertype="stop-loss", price="59000.0")
    txid = placed["txid"][0]
    assert placed["descr"]["order"] == "sell 0.10000000 XBTUSD @ stop loss 59000.0"
    waiting = await order(rest, txid)
    assert (waiting["status"], waiting["vol_exec"], waiting["misc"]) == ("open", "0.00000000", "")
    assert (waiting["descr"]["ordertype"], waiting["descr"]["price"], waiting["trigger"]) == (
        "stop-loss",
        "59000.0",
        "last",
    )
    assert (await rest.ok("BalanceEx"))["XXBT"]["hold_trade"] == "0.1000000000"  # the base is held while it waits

    await kit.place(admin, "BTC/USD", "buy", "58900.0", "1")  # the bid it will sell into
    await trade_at(admin, kit, "59500.0")  # above the trigger: still waiting
    assert (await order(rest, txid))["status"] == "open"
    await trade_at(admin, kit, "59000.0")  # the last price reaches the trigger

    done = await order(rest, txid)
    assert (done["status"], done["vol_exec"], done["misc"], done["stopprice"]) == (
        "closed",
        "0.10000000",
        "stopped",
        "59000.00000",
    )
    fills = await rest.ok("QueryTrades", txid=",".join(done["trades"]))
    assert {t["price"] for t in fills.values()} == {"58900.00000"}  # a market sell into the best bid
    assert (await rest.ok("BalanceEx"))["XXBT"] == {"balance": "0.9000000000", "hold_trade": "0.0000000000"}


async def test_take_profit_sells_when_the_last_price_rises_to_it(
    rest: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    await trade_at(admin, kit, "60000.0")
    txid = (await rest.ok("AddOrder", **BTC, type="sell", ordertype="take-profit", price="61000.0"))["txid"][0]
    assert (await order(rest, txid))["descr"]["order"] == "sell 0.10000000 XBTUSD @ take profit 61000.0"
    await kit.place(admin, "BTC/USD", "buy", "60990.0", "1")
    await trade_at(admin, kit, "60999.9")
    assert (await order(rest, txid))["status"] == "open"
    await trade_at(admin, kit, "61000.0")
    done = await order(rest, txid)
    assert (done["status"], done["misc"], done["price"]) == ("closed", "touched", "60990.00000")


async def test_index_trigger_follows_the_book_not_the_last_trade(
    rest: Any, admin: httpx.AsyncClient, kit: SimpleNamespace, sim: Any
) -> None:
    """``trigger=index``: the simulator's index price is the book's mid; quotes move it without any trade."""
    await trade_at(admin, kit, "60000.0")
    on_index = (await rest.ok("AddOrder", **BTC, type="buy", ordertype="stop-loss", price="60100.0", trigger="index"))[
        "txid"
    ][0]
    on_last = (await rest.ok("AddOrder", **BTC, type="buy", ordertype="stop-loss", price="60100.0"))["txid"][0]
    await kit.place(admin, "BTC/USD", "sell", "60300.0", "1")  # the ask both will buy from; one side: no mid
    assert (await order(rest, on_index))["status"] == (await order(rest, on_last))["status"] == "open"
    await kit.place(admin, "BTC/USD", "buy", "60000.0", "0.5")  # mid 60150: above the index trigger, no trade

    first, second = sim.exchange.orders[on_index], sim.exchange.orders[on_last]
    assert (await order(rest, on_index))["price"] == "60300.00000"
    # The index order fired on the mid alone; its buy printed 60300, and that last price fired the other one.
    assert (first.trigger_last_price, second.trigger_last_price) == (Decimal("60150.0"), Decimal("60300.0"))
    assert first.triggered_ns < second.triggered_ns


async def test_a_trigger_the_market_has_already_reached_fires_at_once_and_a_waiting_one_can_be_canceled(
    rest: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    await trade_at(admin, kit, "60000.0")
    await kit.place(admin, "BTC/USD", "buy", "59990.0", "1")
    at_once = (await rest.ok("AddOrder", **BTC, type="sell", ordertype="stop-loss", price="60000.0"))["txid"][0]
    assert (await order(rest, at_once))["status"] == "closed"

    waiting = (await rest.ok("AddOrder", **BTC, type="buy", ordertype="stop-loss", price="65000.0"))["txid"][0]
    assert (await rest.ok("BalanceEx"))["ZUSD"]["hold_trade"] == "6526.0000"  # 0.1 x 65000 x 1.004
    assert (await rest.ok("CancelOrder", txid=waiting))["count"] == 1
    canceled = await order(rest, waiting)
    assert (canceled["status"], canceled["reason"]) == ("canceled", "User requested")
    assert (await rest.ok("BalanceEx"))["ZUSD"]["hold_trade"] == "0.0000"


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"price": "0"}, "EOrder:Invalid price"),
        ({"price": "59000.05"}, "EOrder:Invalid price:XXBTZUSD price can only be specified up to 1 decimals."),
        ({"price": "59000.0", "trigger": "mark"}, "EGeneral:Invalid arguments:trigger"),
        ({"price": "59000.0", "timeinforce": "IOC"}, "EGeneral:Invalid arguments:timeinforce"),
        ({"price": "59000.0", "oflags": "post"}, "EGeneral:Invalid arguments"),
        ({"price": "59000.0", "volume": "20"}, "EOrder:Insufficient funds"),
    ],
)
async def test_stop_orders_are_checked_like_limits_at_their_trigger_price(
    rest: Any, params: dict[str, Any], error: str
) -> None:
    body = await rest.private("AddOrder", **{**BTC, "type": "sell", "ordertype": "stop-loss", **params})
    assert body == {"error": [error]}
    assert (await rest.ok("OpenOrders"))["open"] == {}


# -- stop-loss over the WebSocket ------------------------------------------------------------------------------
async def test_ws_stop_loss_reports_its_trigger_then_fills_as_a_market_order(
    sim: Any, rest: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    await trade_at(admin, kit, "60000.0")
    await kit.place(admin, "BTC/USD", "buy", "58900.0", "1")
    token = await rest.ws_token()
    ws = await kit.open_ws(sim.ws_auth_url)
    try:
        await ws.request("subscribe", {"channel": "executions", "token": token})
        await ws.wait_for(lambda m: m.get("channel") == "executions" and m["type"] == "snapshot")
        req = await ws.request(
            "add_order",
            {
                "order_type": "stop-loss",
                "side": "sell",
                "order_qty": 0.1,
                "symbol": "BTC/USD",
                "triggers": {"reference": "last", "price": 59000.0},
                "token": token,
            },
        )
        ack = await ws.wait_for(lambda m: m.get("req_id") == req)
        assert ack["success"] is True, ack
        order_id = ack["result"]["order_id"]
        placed = [m["data"][0] for m in await ws.barrier() if m.get("channel") == "executions"]
        assert [e["exec_type"] for e in placed] == ["pending_new", "new"]
        assert placed[0]["order_type"] == "stop-loss"
        assert placed[0]["triggers"] == {
            "reference": "last",
            "price": Decimal("59000.0"),
            "price_type": "static",
            "status": "untriggered",
        }
        assert "limit_price" not in placed[0]

        await trade_at(admin, kit, "58950.0")
        reports = [m["data"][0] for m in await ws.barrier() if m.get("channel") == "executions"]
    finally:
        await ws.conn.close()
    assert [e["exec_type"] for e in reports] == ["status", "trade", "filled"]
    status, fill, filled = reports
    assert (status["order_id"], status["order_status"], status["order_type"]) == (order_id, "new", "market")
    assert status["triggers"]["status"] == "triggered"
    assert status["triggers"]["last_price"] == Decimal("58950.0")
    assert (fill["order_type"], fill["last_price"], fill["last_qty"], fill["liquidity_ind"]) == (
        "market",
        Decimal("58900.0"),
        Decimal("0.10000000"),
        "t",
    )
    assert filled["order_status"] == "filled"


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"order_type": "stop-loss"}, "EGeneral:Invalid arguments:triggers"),
        (
            {"order_type": "stop-loss", "triggers": {"price": 59000.0, "reference": "mark"}},
            "EGeneral:Invalid arguments:triggers.reference",
        ),
        (
            {"order_type": "stop-loss", "triggers": {"price": 59000.0, "price_type": "pct"}},
            "EGeneral:Invalid arguments:triggers.price_type",
        ),
        (
            {"order_type": "limit", "limit_price": 59000.0, "triggers": {"price": 1}},
            "EGeneral:Invalid arguments:triggers",
        ),
        ({"order_type": "limit", "limit_price": 59000.0, "reduce_only": True}, "EOrder:Reduce only:No position exists"),
        ({"order_type": "limit", "limit_price": 59000.0, "margin": True}, "EOrder:Cannot open position"),
        (
            {"order_type": "limit", "limit_price": 59000.0, "stp_type": "cancel-newest"},
            "EGeneral:Invalid arguments:stp_type",
        ),
    ],
)
async def test_ws_add_order_refuses_what_it_does_not_simulate(
    sim: Any, rest: Any, kit: SimpleNamespace, params: dict[str, Any], error: str
) -> None:
    token = await rest.ws_token()
    ws = await kit.open_ws(sim.ws_auth_url)
    try:
        req = await ws.request(
            "add_order", {"side": "sell", "order_qty": 0.1, "symbol": "BTC/USD", "token": token, **params}
        )
        refused = await ws.wait_for(lambda m: m.get("req_id") == req)
    finally:
        await ws.conn.close()
    assert (refused["success"], refused["error"]) == (False, error)
    assert sim.state()["orders"] == []


# -- order values the simulator does not simulate, over REST ---------------------------------------------------
@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"leverage": "2"}, "EOrder:Cannot open position"),
        ({"reduce_only": "true"}, "EOrder:Reduce only:No position exists"),
        ({"stptype": "cancel-everything"}, "EGeneral:Invalid arguments:stptype"),
        ({"stptype": "cancel_oldest"}, "EGeneral:Invalid arguments:stptype"),  # REST spells it with a hyphen
        ({"displayvol": "0.01"}, "EGeneral:Invalid arguments:displayvol"),
        ({"starttm": "+60"}, "EGeneral:Invalid arguments:starttm"),
        ({"expiretm": "+60"}, "EGeneral:Invalid arguments:expiretm"),
        ({"close[ordertype]": "limit", "close[price]": "70000.0"}, "EGeneral:Invalid arguments:close"),
    ],
)
async def test_rest_add_order_refuses_what_it_does_not_simulate(rest: Any, params: dict[str, Any], error: str) -> None:
    body = await rest.private("AddOrder", **BTC, type="buy", ordertype="limit", price="50000.0", **params)
    assert body == {"error": [error]}
    assert (await rest.ok("OpenOrders"))["open"] == {}


async def test_rest_add_order_takes_the_values_that_change_nothing(rest: Any) -> None:
    for params in ({"leverage": "none"}, {"reduce_only": "false"}, {"stptype": "cancel-newest"}, {"starttm": "0"}):
        body = await rest.private("AddOrder", **BTC, type="buy", ordertype="limit", price="50000.0", **params)
        assert body["error"] == [], params


# -- self-trade prevention -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("stptype", "resting_after", "incoming_after"),
    [
        (None, "open", "canceled"),  # Kraken's default: cancel-newest
        ("cancel-newest", "open", "canceled"),
        ("cancel-oldest", "canceled", "open"),
        ("cancel-both", "canceled", "canceled"),
    ],
)
async def test_self_trade_prevention_modes(
    rest: Any, stptype: str | None, resting_after: str, incoming_after: str
) -> None:
    resting = (await rest.ok("AddOrder", **BTC, type="sell", ordertype="limit", price="60000.0"))["txid"][0]
    extra = {"stptype": stptype} if stptype else {}
    incoming = (await rest.ok("AddOrder", **BTC, type="buy", ordertype="limit", price="60000.0", **extra))["txid"][0]
    states = {txid: await order(rest, txid) for txid in (resting, incoming)}
    assert (states[resting]["status"], states[incoming]["status"]) == (resting_after, incoming_after)
    for state in states.values():
        assert state["vol_exec"] == "0.00000000"  # never traded with itself
        if state["status"] == "canceled":
            assert state["reason"] == "Self trade prevention"


# -- TradeBalance ----------------------------------------------------------------------------------------------
async def test_trade_balance_values_the_account_in_the_asked_asset(
    rest: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    """USD 100000 + 1 BTC at 60000 + 10 ETH at 3000 (the last prices); an open buy of 0.1 BTC at 50000 is ``uv``."""
    await rest.ok("AddOrder", **BTC, type="buy", ordertype="limit", price="50000.0")
    usd = await rest.ok("TradeBalance")
    assert usd == {
        "eb": "190000.0000",
        "tb": "190000.0000",
        "m": "0.0000",
        "n": "0.0000",
        "c": "0.0000",
        "v": "0.0000",
        "e": "190000.0000",
        "mf": "190000.0000",
        "uv": "5000.0000",
    }
    btc = await rest.ok("TradeBalance", asset="XBT")
    assert (btc["eb"], btc["uv"]) == ("3.1666666667", "0.0833333333")
    await trade_at(admin, kit, "61000.0")
    assert (await rest.ok("TradeBalance", asset="ZUSD"))["eb"] == "191000.0000"
    assert await rest.private("TradeBalance", asset="DOGE") == {"error": ["EQuery:Unknown asset"]}
