"""The simulator's dead man's switch (REST ``CancelAllOrdersAfter``, WS v2 ``cancel_all_orders_after``): open
orders are canceled when the countdown expires, not while it keeps being pushed back, and not after it is
disarmed with 0. Real sockets, raw clients (tests/kraken_sim/conftest.py). The countdown runs on the simulator's
clock, which ``POST /_sim/dead_man_switch {"advance": s}`` moves forward, so no test waits for it to run out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tests.kraken_sim.conftest import open_ws
from tests.waiting import until


async def _resting_buy(rest: Any, price: str = "90.0") -> str:
    result = await rest.ok("AddOrder", pair="XBTUSD", type="buy", ordertype="limit", price=price, volume="0.1")
    return str(result["txid"][0])


async def _status(rest: Any, txid: str) -> str:
    return str((await rest.ok("QueryOrders", txid=txid))[txid]["status"])


def _rfc3339(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


async def _advance(admin: Any, seconds: float) -> dict[str, Any]:
    r = await admin.post("/_sim/dead_man_switch", json={"advance": seconds})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_rest_switch_cancels_every_open_order_when_it_expires(sim: Any, rest: Any, admin: Any) -> None:
    first, second = await _resting_buy(rest), await _resting_buy(rest, "91.0")
    armed = await rest.ok("CancelAllOrdersAfter", timeout=10)
    assert (_rfc3339(armed["triggerTime"]) - _rfc3339(armed["currentTime"])).total_seconds() == 10
    assert sim.state()["dead_man_switch"]["trigger"] is not None

    short = await _advance(admin, 9)  # not yet: a second of the countdown is left
    assert (short["fired_now"], short["fired"]) == (False, 0)
    assert (await _status(rest, first), await _status(rest, second)) == ("open", "open")

    expired = await _advance(admin, 1)

    assert (expired["fired_now"], expired["trigger"], expired["fired"]) == (True, None, 1)
    assert (await _status(rest, first), await _status(rest, second)) == ("canceled", "canceled")
    state = sim.state()
    assert state["dead_man_switch"] == {"trigger": None, "fired": 1}  # off after firing until re-armed
    assert all(o["reason"] == "User requested" for o in state["orders"])
    assert (await _advance(admin, 100))["fired"] == 1  # it does not fire twice


async def test_rest_switch_pushed_back_in_time_does_not_fire(sim: Any, rest: Any, admin: Any) -> None:
    txid = await _resting_buy(rest)
    await rest.ok("CancelAllOrdersAfter", timeout=10)
    for _ in range(3):  # 18 s pass in all, but every call restarts the 10 s countdown: it never runs out
        assert (await _advance(admin, 6))["fired_now"] is False
        await rest.ok("CancelAllOrdersAfter", timeout=10)
    assert await _status(rest, txid) == "open"
    disarmed = await rest.ok("CancelAllOrdersAfter", timeout=0)
    assert disarmed["triggerTime"] == "0"
    assert (await _advance(admin, 100))["fired_now"] is False  # far past the last trigger: disarmed, so nothing
    assert await _status(rest, txid) == "open"
    assert sim.state()["dead_man_switch"] == {"trigger": None, "fired": 0}


async def test_the_countdown_runs_out_by_itself(sim: Any, rest: Any, admin: Any) -> None:
    """Without advancing past the trigger, the switch's own timer fires it (here 50 ms after the advance)."""
    txid = await _resting_buy(rest)
    await rest.ok("CancelAllOrdersAfter", timeout=10)
    assert (await _advance(admin, 9.95))["fired_now"] is False
    await until(lambda: sim.state()["dead_man_switch"]["fired"], 5, "the switch's own timer firing")
    assert await _status(rest, txid) == "canceled"


async def test_advance_refuses_bad_bodies_and_reads_the_state(sim: Any, admin: Any) -> None:
    for body in ({}, {"advance": -1}, {"advance": "soon"}, {"advance": True}, {"advance": 1, "x": 2}, [1]):
        r = await admin.post("/_sim/dead_man_switch", json=body)
        assert r.status_code == 400, body
        assert r.json()["ok"] is False
    r = await admin.get("/_sim/dead_man_switch")
    assert r.json() == {"trigger": None, "fired": 0}


async def test_ws_switch_fires_and_bad_arguments_change_nothing(sim: Any, rest: Any, admin: Any) -> None:
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
    assert await _status(rest, txid) == "open"
    assert (await _advance(admin, 1))["fired_now"] is True
    assert await _status(rest, txid) == "canceled"
    assert sim.state()["dead_man_switch"]["fired"] == 1
