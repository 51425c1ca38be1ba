"""REST trading: AddOrder validation, holds, fills and fees, cancels, history, and Kraken's rate limits."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from kraken_sim import Tier

BTC_LIMIT = {"pair": "XBTUSD", "type": "buy", "ordertype": "limit"}


async def add(rest: Any, **params: Any) -> dict[str, Any]:
    return await rest.private("AddOrder", **{**BTC_LIMIT, **params})


@pytest.mark.parametrize(
    ("params", "error"),
    [
        (
            {"price": "60000.05", "volume": "0.01"},
            "EOrder:Invalid price:XXBTZUSD price can only be specified up to 1 decimals.",
        ),
        ({"price": "0", "volume": "0.01"}, "EOrder:Invalid price"),
        ({"price": "60000.0", "volume": "0.00004"}, "EOrder:Order minimum not met"),
        ({"price": "5000.0", "volume": "0.00005"}, "EOrder:Cost minimum not met"),
        ({"price": "60000.0", "volume": "2"}, "EOrder:Insufficient funds"),
        ({"price": "60000.0", "volume": "2", "type": "sell"}, "EOrder:Insufficient funds"),
        ({"price": "60000.0", "volume": "0.01", "pair": "XBTJPY"}, "EQuery:Unknown asset pair"),
        ({"price": "60000.0"}, "EGeneral:Invalid arguments"),
        ({"price": "60000.0", "volume": "0.01", "ordertype": "trailing-stop"}, "EGeneral:Invalid arguments"),
        ({"price": "60000.0", "volume": "0.01", "type": "hold"}, "EGeneral:Invalid arguments"),
        ({"price": "60000.0", "volume": "0.000000001"}, "EGeneral:Invalid arguments"),
    ],
)
async def test_add_order_rejections_use_krakens_error_strings(rest: Any, params: dict[str, Any], error: str) -> None:
    body = await add(rest, **params)
    assert body == {"error": [error]}
    assert (await rest.ok("OpenOrders"))["open"] == {}


async def test_eth_price_precision_is_two_decimals(rest: Any) -> None:
    body = await rest.private("AddOrder", pair="ETHUSD", type="buy", ordertype="limit", price="2000.123", volume="0.01")
    assert body == {"error": ["EOrder:Invalid price:XETHZUSD price can only be specified up to 2 decimals."]}
    ok = await rest.private("AddOrder", pair="ETHUSD", type="buy", ordertype="limit", price="2000.12", volume="0.01")
    assert ok["error"] == []


async def test_resting_buy_holds_quote_including_the_taker_fee(rest: Any) -> None:
    await rest.ok("AddOrder", **BTC_LIMIT, price="60000.0", volume="1")
    ex = await rest.ok("BalanceEx")
    assert ex["ZUSD"] == {"balance": "100000.0000", "hold_trade": "60240.0000"}
    # 39760 left: 0.7 BTC at 60000 with fee needs 42168.
    body = await add(rest, price="60000.0", volume="0.7")
    assert body == {"error": ["EOrder:Insufficient funds"]}


async def test_resting_sell_holds_base(rest: Any) -> None:
    await rest.ok("AddOrder", **{**BTC_LIMIT, "type": "sell"}, price="70000.0", volume="0.6")
    assert (await rest.ok("BalanceEx"))["XXBT"]["hold_trade"] == "0.6000000000"
    body = await add(rest, type="sell", price="70000.0", volume="0.5")
    assert body == {"error": ["EOrder:Insufficient funds"]}


async def test_add_order_response_and_open_order_shape(rest: Any) -> None:
    result = await rest.ok("AddOrder", **BTC_LIMIT, price="27500.0", volume="1.25", userref=42)
    assert result["descr"] == {"order": "buy 1.25000000 XBTUSD @ limit 27500.0"}
    (txid,) = result["txid"]
    assert len(txid) == 19
    assert txid[6] == "-"
    assert txid[12] == "-"
    info = (await rest.ok("OpenOrders"))["open"][txid]
    assert info["status"] == "open"
    assert info["userref"] == 42
    assert info["vol"] == "1.25000000"
    assert info["vol_exec"] == "0.00000000"
    assert info["descr"]["pair"] == "XBTUSD"
    assert info["descr"]["price"] == "27500.0"


async def test_validate_only_returns_description_without_txid(rest: Any) -> None:
    result = await rest.ok("AddOrder", **BTC_LIMIT, price="50000.0", volume="0.1", validate="true")
    assert result == {"descr": {"order": "buy 0.10000000 XBTUSD @ limit 50000.0"}}
    assert (await rest.ok("OpenOrders"))["open"] == {}


async def test_resting_order_filled_by_the_market_shows_everywhere_with_maker_fee(
    rest: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    (txid,) = (await rest.ok("AddOrder", **BTC_LIMIT, price="60000.0", volume="0.01"))["txid"]
    await kit.place(admin, "BTC/USD", "sell", "60000.0", "0.01")  # a participant hits our bid

    order = (await rest.ok("QueryOrders", txid=txid, trades="true"))[txid]
    assert order["status"] == "closed"
    assert (order["vol_exec"], order["cost"], order["fee"], order["price"]) == (
        "0.01000000",
        "600.00000",
        "1.50000",
        "60000.00000",
    )
    (trade_txid,) = order["trades"]

    trades = await rest.ok("TradesHistory")
    assert trades["count"] == 1
    trade = trades["trades"][trade_txid]
    assert trade["ordertxid"] == txid
    assert trade["pair"] == "XXBTZUSD"
    assert (trade["price"], trade["vol"], trade["cost"], trade["fee"]) == (
        "60000.00000",
        "0.01000000",
        "600.00000",
        "1.50000",
    )
    assert trade["maker"] is True

    balance = await rest.ok("Balance")
    assert balance["ZUSD"] == "99398.5000"  # 100000 - 600 - 0.25 % maker fee
    assert balance["XXBT"] == "1.0100000000"
    assert (await rest.ok("BalanceEx"))["ZUSD"]["hold_trade"] == "0.0000"

    ledger = (await rest.ok("Ledgers"))["ledger"]
    entries = sorted(ledger.values(), key=lambda e: e["asset"])
    assert [e["refid"] for e in entries] == [trade_txid, trade_txid]
    assert [(e["asset"], e["amount"], e["fee"]) for e in entries] == [
        ("XXBT", "0.0100000000", "0.0000000000"),
        ("ZUSD", "-600.0000", "1.5000"),
    ]


async def test_market_order_walks_the_book_and_pays_taker_fee(
    rest: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    await kit.place(admin, "BTC/USD", "sell", "60010.0", "0.005")
    await kit.place(admin, "BTC/USD", "sell", "60020.0", "0.1")
    (txid,) = (await rest.ok("AddOrder", pair="XBTUSD", type="buy", ordertype="market", volume="0.01"))["txid"]
    order = (await rest.ok("QueryOrders", txid=txid))[txid]
    assert order["status"] == "closed"
    assert (order["cost"], order["fee"], order["price"]) == ("600.15000", "2.40060", "60015.00000")
    trades = (await rest.ok("TradesHistory"))["trades"]
    assert len(trades) == 2
    assert all(t["maker"] is False for t in trades.values())
    assert (await rest.ok("Balance"))["ZUSD"] == "99397.4494"


async def test_ioc_limit_fills_what_it_can_and_cancels_the_rest(
    rest: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    await kit.place(admin, "BTC/USD", "sell", "60000.0", "0.004")
    (txid,) = (await rest.ok("AddOrder", **BTC_LIMIT, price="60000.0", volume="0.01", timeinforce="IOC"))["txid"]
    order = (await rest.ok("QueryOrders", txid=txid))[txid]
    assert order["status"] == "canceled"
    assert order["vol_exec"] == "0.00400000"
    assert (await rest.ok("OpenOrders"))["open"] == {}


async def test_post_only_that_would_take_is_canceled_with_krakens_reason(
    rest: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    await kit.place(admin, "BTC/USD", "sell", "60000.0", "1")
    (txid,) = (await rest.ok("AddOrder", **BTC_LIMIT, price="60000.0", volume="0.01", oflags="post"))["txid"]
    order = (await rest.ok("QueryOrders", txid=txid))[txid]
    assert (order["status"], order["reason"], order["vol_exec"]) == (
        "canceled",
        "Post only order",
        "0.00000000",
    )
    resting = (await rest.ok("AddOrder", **BTC_LIMIT, price="59999.9", volume="0.01", oflags="post"))["txid"]
    assert (await rest.ok("OpenOrders"))["open"][resting[0]]["oflags"] == "fciq,post"


async def test_duplicate_cl_ord_id_of_an_open_order_is_rejected(rest: Any) -> None:
    await rest.ok("AddOrder", **BTC_LIMIT, price="50000.0", volume="0.01", cl_ord_id="gf-1")
    body = await add(rest, price="50000.0", volume="0.01", cl_ord_id="gf-1")
    assert body == {"error": ["EOrder:Duplicate order"]}


async def test_cancel_by_txid_cl_ord_id_and_userref(rest: Any) -> None:
    a = (await rest.ok("AddOrder", **BTC_LIMIT, price="50000.0", volume="0.01"))["txid"][0]
    await rest.ok("AddOrder", **BTC_LIMIT, price="50000.0", volume="0.01", cl_ord_id="client-7")
    await rest.ok("AddOrder", **BTC_LIMIT, price="50000.0", volume="0.01", userref=9)
    await rest.ok("AddOrder", **BTC_LIMIT, price="50000.0", volume="0.01", userref=9)
    assert await rest.ok("CancelOrder", txid=a) == {"count": 1, "pending": False}
    assert await rest.ok("CancelOrder", cl_ord_id="client-7") == {"count": 1, "pending": False}
    assert await rest.ok("CancelOrder", txid="9") == {"count": 2, "pending": False}
    assert (await rest.ok("OpenOrders"))["open"] == {}
    closed = (await rest.ok("QueryOrders", txid=a))[a]
    assert (closed["status"], closed["reason"]) == ("canceled", "User requested")
    assert (await rest.ok("BalanceEx"))["ZUSD"]["hold_trade"] == "0.0000"


async def test_cancel_of_unknown_or_closed_order_is_unknown_order(rest: Any) -> None:
    assert await rest.private("CancelOrder", txid="OAAAAA-BBBBB-CCCCCC") == {"error": ["EOrder:Unknown order"]}
    a = (await rest.ok("AddOrder", **BTC_LIMIT, price="50000.0", volume="0.01"))["txid"][0]
    await rest.ok("CancelOrder", txid=a)
    assert await rest.private("CancelOrder", txid=a) == {"error": ["EOrder:Unknown order"]}


async def test_cancel_all_counts_open_orders(rest: Any) -> None:
    for _ in range(3):
        await rest.ok("AddOrder", **BTC_LIMIT, price="50000.0", volume="0.01")
    assert await rest.ok("CancelAll") == {"count": 3}
    assert await rest.ok("CancelAll") == {"count": 0}


async def test_closed_orders_are_paginated_by_50_with_a_total_count(rest: Any) -> None:
    for _ in range(55):
        await rest.ok("AddOrder", **BTC_LIMIT, price="50000.0", volume="0.0001")
    await rest.ok("CancelAll")
    first = await rest.ok("ClosedOrders")
    second = await rest.ok("ClosedOrders", ofs=50)
    assert (len(first["closed"]), first["count"]) == (50, 55)
    assert (len(second["closed"]), second["count"]) == (5, 55)
    assert not set(first["closed"]) & set(second["closed"])


async def test_rest_counter_rejects_calls_beyond_the_tier_maximum(make_sim: Any, kit: SimpleNamespace) -> None:
    sim = await make_sim(tier=Tier("t", Decimal(15), Decimal("0.33"), Decimal(60), Decimal(1), 60))
    rest = kit.KrakenRest(sim.rest_url, sim.config.api_key, sim.config.api_secret)
    try:
        answers = [await rest.private("Balance") for _ in range(16)]
    finally:
        await rest.aclose()
    assert all(a["error"] == [] for a in answers[:15])
    assert answers[15] == {"error": ["EAPI:Rate limit exceeded"]}


@pytest.mark.parametrize(("cost", "allowed"), [(2, 7), (4, 3)])
async def test_trade_history_calls_cost_the_configured_amount(
    make_sim: Any, kit: SimpleNamespace, cost: int, allowed: int
) -> None:
    sim = await make_sim(
        tier=Tier("t", Decimal(15), Decimal("0.01"), Decimal(60), Decimal(1), 60), history_call_cost=cost
    )
    rest = kit.KrakenRest(sim.rest_url, sim.config.api_key, sim.config.api_secret)
    try:
        answers = [await rest.private("TradesHistory") for _ in range(allowed + 1)]
    finally:
        await rest.aclose()
    assert all(a["error"] == [] for a in answers[:allowed])
    assert answers[allowed] == {"error": ["EAPI:Rate limit exceeded"]}


async def test_trading_counter_limits_adds_per_pair(make_sim: Any, kit: SimpleNamespace) -> None:
    sim = await make_sim(tier=Tier("t", Decimal(1000), Decimal(1), Decimal(5), Decimal("0.01"), 100))
    rest = kit.KrakenRest(sim.rest_url, sim.config.api_key, sim.config.api_secret)
    try:
        answers = [await add(rest, price="50000.0", volume="0.001") for _ in range(6)]
        other_pair = await rest.private(
            "AddOrder", pair="ETHUSD", type="buy", ordertype="limit", price="2000.00", volume="0.01"
        )
    finally:
        await rest.aclose()
    assert all(a["error"] == [] for a in answers[:5])
    assert answers[5] == {"error": ["EOrder:Rate limit exceeded"]}
    assert other_pair["error"] == []


async def test_cancelling_a_young_order_costs_eight(make_sim: Any, kit: SimpleNamespace) -> None:
    sim = await make_sim(tier=Tier("t", Decimal(1000), Decimal(1), Decimal(10), Decimal("0.01"), 100))
    rest = kit.KrakenRest(sim.rest_url, sim.config.api_key, sim.config.api_secret)
    try:
        a = (await rest.ok("AddOrder", **BTC_LIMIT, price="50000.0", volume="0.001"))["txid"][0]
        b = (await rest.ok("AddOrder", **BTC_LIMIT, price="50000.0", volume="0.001"))["txid"][0]
        first = await rest.private("CancelOrder", txid=a)  # 2 + 8 = 10: at the threshold
        second = await rest.private("CancelOrder", txid=b)  # 18: over it
    finally:
        await rest.aclose()
    assert first["error"] == []
    assert second == {"error": ["EOrder:Rate limit exceeded"]}


async def test_open_orders_per_pair_are_limited(make_sim: Any, kit: SimpleNamespace) -> None:
    sim = await make_sim(tier=Tier("t", Decimal(1000), Decimal(1), Decimal(1000), Decimal(1), 3))
    rest = kit.KrakenRest(sim.rest_url, sim.config.api_key, sim.config.api_secret)
    try:
        answers = [await add(rest, price="50000.0", volume="0.001") for _ in range(4)]
    finally:
        await rest.aclose()
    assert [a["error"] for a in answers] == [[], [], [], ["EOrder:Orders limit exceeded"]]
