"""The trade flood (the ingest benchmarks' load): what a subscriber receives equals the simulator's own record,
message for message, and bad arguments are refused with a clear error. (Its rate is measured in bench/, not
here.)"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx

from kraken_sim import Simulator
from tests.kraken_sim.conftest import open_ws


async def _subscribe_trades(sim: Simulator, symbols: list[str]) -> Any:
    ws = await open_ws(sim.ws_url)
    await ws.request("subscribe", {"channel": "trade", "symbol": symbols})
    for _ in symbols:
        await ws.wait_for(lambda m: m.get("method") == "subscribe")
    return ws


async def test_flood_sends_what_it_records(sim: Simulator, admin: httpx.AsyncClient) -> None:
    ws = await _subscribe_trades(sim, ["BTC/USD", "ETH/USD"])
    body = {"action": "flood", "symbols": ["BTC/USD", "ETH/USD"], "rate": 2000, "seconds": 0.5}
    body["trades_per_message"] = 2
    answer = (await admin.post("/_sim/market", json=body)).json()
    assert answer["ok"]
    assert answer["running"]

    received: list[dict[str, Any]] = []
    while True:
        status = (await admin.get("/_sim/flood", params={"seconds": 0})).json()
        if not status["running"]:
            break
        await asyncio.sleep(0.05)
    sent = status["messages_sent"]
    assert sent > 100
    while len(received) < sent:
        msg, _ = await ws.recv()
        if msg.get("channel") == "trade":
            received.append(msg)
    await ws.conn.close()

    record = (await admin.get("/_sim/flood")).json()
    assert record["trades_sent"] == 2 * sent
    # Rebuild the simulator's per-second record from the wire and compare it field by field.
    rebuilt: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    last_ids: dict[str, int] = {}
    for msg in received:
        assert msg["type"] == "update"
        assert len(msg["data"]) == 2
        assert msg["data"][0]["timestamp"] == msg["data"][1]["timestamp"]  # one message, one exchange time
        for trade in msg["data"]:
            symbol = trade["symbol"]
            assert trade["trade_id"] == last_ids.get(symbol, trade["trade_id"] - 1) + 1  # no gap, no repeat
            last_ids[symbol] = trade["trade_id"]
            second = str(int(datetime.fromisoformat(trade["timestamp"].replace("Z", "+00:00")).timestamp()))
            price, qty = Decimal(trade["price"]), Decimal(trade["qty"])
            rec = rebuilt[symbol].get(second)
            if rec is None:
                rec = rebuilt[symbol][second] = {
                    "count": 0, "open": price, "high": price, "low": price, "volume": Decimal(0),
                    "notional": Decimal(0), "first_id": trade["trade_id"],
                }  # fmt: skip
            rec["count"] += 1
            rec["high"], rec["low"], rec["close"] = max(rec["high"], price), min(rec["low"], price), price
            rec["volume"] += qty
            rec["notional"] += price * qty
            rec["last_id"] = trade["trade_id"]
    assert set(rebuilt) == {"BTC/USD", "ETH/USD"}
    for symbol, seconds in record["symbols"].items():
        assert set(seconds) == set(rebuilt[symbol])
        for second, rec in seconds.items():
            mine = rebuilt[symbol][second]
            assert rec["count"] == mine["count"]
            assert (rec["first_id"], rec["last_id"]) == (mine["first_id"], mine["last_id"])
            for key in ("open", "high", "low", "close", "volume", "notional"):
                assert Decimal(rec[key]) == mine[key], (symbol, second, key)


async def test_flood_to_nobody_is_not_counted_as_sent(sim: Simulator, admin: httpx.AsyncClient) -> None:
    body = {"action": "flood", "symbols": ["BTC/USD"], "rate": 1000, "seconds": 0.2}
    assert (await admin.post("/_sim/market", json=body)).json()["ok"]
    await asyncio.sleep(0.4)
    status = (await admin.get("/_sim/flood")).json()
    assert status["messages_sent"] == 0
    assert status["messages_unheard"] > 0
    assert status["symbols"] == {"BTC/USD": {}}


async def test_flood_stop_ends_it_early(sim: Simulator, admin: httpx.AsyncClient) -> None:
    ws = await _subscribe_trades(sim, ["BTC/USD"])
    body = {"action": "flood", "symbols": ["BTC/USD"], "rate": 500, "seconds": 60}
    assert (await admin.post("/_sim/market", json=body)).json()["running"]
    await ws.wait_for(lambda m: m.get("channel") == "trade")
    stopped = (await admin.post("/_sim/market", json={"action": "flood_stop"})).json()
    await asyncio.sleep(0.05)
    status = (await admin.get("/_sim/flood", params={"seconds": 0})).json()
    assert not status["running"]
    assert status["messages_sent"] >= stopped["messages_sent"] >= 1
    await ws.conn.close()


async def test_bad_flood_arguments_are_refused(sim: Simulator, admin: httpx.AsyncClient) -> None:
    cases = [
        ({"symbols": ["XBT/EUR"]}, "unknown symbol"),
        ({"rate": 0}, "rate"),
        ({"seconds": -1}, "seconds"),
        ({"trades_per_message": 0}, "trades_per_message"),
        ({"symbols": "BTC/USD"}, "symbols"),
        ({"rate": "fast"}, "flood"),
    ]
    for extra, text in cases:
        response = await admin.post("/_sim/market", json={"action": "flood", **extra})
        assert response.status_code == 400, extra
        assert text in response.json()["error"], (extra, response.json())
    status = (await admin.get("/_sim/flood", params={"seconds": 0})).json()
    assert not status["running"]
    assert status["messages_sent"] == 0
