"""The simulator's dead man's switch (REST ``CancelAllOrdersAfter``, WS v2 ``cancel_all_orders_after``): open
orders are canceled when the countdown expires, not while it keeps being pushed back, and not after it is
disarmed with 0. Real sockets, raw clients (tests/kraken_sim/conftest.py); timeouts of 1-2 s (Kraken's unit is
whole seconds), so each waiting test takes a couple of seconds."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from tests.kraken_sim.conftest import open_ws


async def _resting_buy(rest: Any, price: str = "90.0") -> str:
    result = await rest.ok("AddOrder", pair="XBTUSD", type="buy", ordertype="limit", price=price, volume="0.1")
    return str(result["txid"][0])


async def _status(rest: Any, txid: str) -> str:
    return str((await rest.ok("QueryOrders", txid=txid))[txid]["status"])


def _rfc3339(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def test_rest_switch_cancels_every_open_order_when_it_expires(sim: Any, rest: Any) -> None:
    first, second = await _resting_buy(rest), await _resting_buy(rest, "91.0")
    armed = await rest.ok("CancelAllOrdersAfter", timeout=1)
    assert (_rfc3339(armed["triggerTime"]) - _rfc3339(armed["currentTime"])).total_seconds() == 1
    assert sim.state()["dead_man_switch"]["trigger"] is not None

    await asyncio.sleep(1.6)

    assert (await _status(rest, first), await _status(rest, second)) == ("canceled", "canceled")
    state = sim.state()
    assert state["dead_man_switch"] == {"trigger": None, "fired": 1}  # off after firing until re-armed
    assert all(o["reason"] == "User requested" for o in state["orders"])


async def test_rest_switch_pushed_back_in_time_does_not_fire(sim: Any, rest: Any) -> None:
    txid = await _resting_buy(rest)
    await rest.ok("CancelAllOrdersAfter", timeout=2)
    for _ in range(3):  # refreshed every second: the 2 s countdown never runs out
        await asyncio.sleep(1.0)
        await rest.ok("CancelAllOrdersAfter", timeout=2)
    assert await _status(rest, txid) == "open"
    disarmed = await rest.ok("CancelAllOrdersAfter", timeout=0)
    assert disarmed["triggerTime"] == "0"
    await asyncio.sleep(2.5)  # past the last trigger: disarmed, so nothing happens
    assert await _status(rest, txid) == "open"
    assert sim.state()["dead_man_switch"] == {"trigger": None, "fired": 0}


async def test_ws_switch_fires_and_bad_arguments_change_nothing(sim: Any, rest: Any) -> None:
    txid = await _resting_buy(rest)
    token = await rest.ws_token()
    ws = await open_ws(sim.ws_auth_url)
    try:
        req = await ws.request("cancel_all_orders_after", {"timeout": "soon", "token": token})
        refused = await ws.wait_for(lambda m: m.get("req_id") == req)
        assert (refused["success"], refused["error"]) == (False, "EGeneral:Invalid arguments")
        req = await ws.request("cancel_all_orders_after", {"timeout": 60, "token": "not-a-token"})
        refused = await ws.wait_for(lambda m: m.get("req_id") == req)
        assert refused["error"] == "ESession:Invalid session"
        assert sim.state()["dead_man_switch"]["trigger"] is None

        req = await ws.request("cancel_all_orders_after", {"timeout": 1, "token": token})
        ack = await ws.wait_for(lambda m: m.get("req_id") == req)
        assert (ack["method"], ack["success"]) == ("cancel_all_orders_after", True)
        result = ack["result"]
        assert (_rfc3339(result["triggerTime"]) - _rfc3339(result["currentTime"])).total_seconds() == 1
    finally:
        await ws.conn.close()
    await asyncio.sleep(1.6)
    assert await _status(rest, txid) == "canceled"
    assert sim.state()["dead_man_switch"]["fired"] == 1
