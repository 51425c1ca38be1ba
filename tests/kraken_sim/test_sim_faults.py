"""Fault injection over the admin endpoint (and the same faults from Python), each doing what it says."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import websockets


async def test_drop_connections_cuts_only_the_chosen_scope(
    sim: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    public = await kit.open_ws(sim.ws_url)
    private = await kit.open_ws(sim.ws_auth_url)
    try:
        result = await kit.fault(admin, "drop_connections", scope="private")
        with pytest.raises(websockets.ConnectionClosed):
            await asyncio.wait_for(private.conn.recv(), 5)
        await public.send({"method": "ping", "req_id": 1})
        pong = await public.wait_for(lambda m: m.get("method") == "pong")
    finally:
        await public.conn.close()
    assert result["affected"] == 1
    assert pong["req_id"] == 1


async def test_drop_with_close_mode_sends_a_going_away_close_frame(
    sim: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    ws = await kit.open_ws(sim.ws_url)
    await kit.fault(admin, "drop_connections", mode="close")
    with pytest.raises(websockets.ConnectionClosed) as closed:
        await asyncio.wait_for(ws.conn.recv(), 5)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1001


async def test_drop_one_connection_by_id(sim: Any, admin: httpx.AsyncClient, kit: SimpleNamespace) -> None:
    first = await kit.open_ws(sim.ws_url)
    second = await kit.open_ws(sim.ws_url)
    try:
        state = (await admin.get("/_sim/state")).json()
        ids = [c["connection_id"] for c in state["connections"]]
        assert len(ids) == 2
        await first.send({"method": "ping", "req_id": 9})
        await first.wait_for(lambda m: m.get("method") == "pong")
        # Find which id is `first`: the one whose drop closes it.
        await kit.fault(admin, "drop_connections", connection_id=ids[0])
        closed = []
        for ws in (first, second):
            try:
                await ws.send({"method": "ping", "req_id": 2})
                await ws.wait_for(lambda m: m.get("method") == "pong", timeout=2)
            except (websockets.ConnectionClosed, TimeoutError):
                closed.append(ws)
    finally:
        await first.conn.close()
        await second.conn.close()
    assert len(closed) == 1


async def test_silence_holds_messages_and_heartbeats_then_delivers(make_sim: Any, kit: SimpleNamespace) -> None:
    sim = await make_sim(heartbeat_interval=0.1)
    ws = await kit.open_ws(sim.ws_url)
    try:
        await ws.request("subscribe", {"channel": "instrument"})
        await ws.wait_for(lambda m: m.get("channel") == "instrument")
        sim.faults.silence(0.6, scope="public")
        started = time.monotonic()
        await ws.send({"method": "ping", "req_id": 1})
        first, _ = await ws.recv(timeout=5)
        waited = time.monotonic() - started
    finally:
        await ws.conn.close()
    assert first.get("method") == "pong"  # nothing, not even a heartbeat, came before it
    assert waited >= 0.5


async def test_silence_in_drop_mode_loses_what_was_sent_meanwhile(
    sim: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    ws = await kit.open_ws(sim.ws_url)
    try:
        await kit.fault(admin, "silence", seconds=1.0, mode="drop")
        await ws.send({"method": "ping", "req_id": 1})
        lost = ws.wait_for(lambda m: True, timeout=0.5)
        with pytest.raises(TimeoutError):
            await lost
        deadline = time.monotonic() + 5
        while True:  # once the silence is over, a new ping is answered; the first one never is
            await ws.send({"method": "ping", "req_id": 2})
            try:
                second = await ws.wait_for(lambda m: m.get("method") == "pong", timeout=0.2)
                break
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
    finally:
        await ws.conn.close()
    assert second["req_id"] == 2


async def test_skip_sequence_leaves_a_gap_on_executions(
    sim: Any, rest: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    ws = await kit.open_ws(sim.ws_auth_url)
    try:
        token = await rest.ws_token()
        await ws.request("subscribe", {"channel": "executions", "token": token})
        await ws.wait_for(lambda m: m.get("channel") == "executions")
        assert (await kit.fault(admin, "skip_sequence", channel="executions"))["affected"] == 1
        await rest.ok("AddOrder", pair="XBTUSD", type="buy", ordertype="limit", price="50000.0", volume="0.01")
        seqs = [m["sequence"] for m in await ws.barrier() if m.get("channel") == "executions"]
    finally:
        await ws.conn.close()
    assert seqs == [3, 4]  # 2 was skipped


async def test_corrupt_checksum_affects_only_the_next_update(
    sim: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    ws = await kit.open_ws(sim.ws_url)
    try:
        await kit.place(admin, "BTC/USD", "buy", "59000.0", "1")
        await ws.request("subscribe", {"channel": "book", "symbol": ["BTC/USD"]})
        snap = await ws.wait_for(lambda m: m.get("type") == "snapshot")
        ref = kit.ReferenceBook(10, 1, 8)
        assert ref.apply(snap["data"][0], snapshot=True)
        await kit.fault(admin, "corrupt_checksum", symbol="BTC/USD")
        await kit.place(admin, "BTC/USD", "buy", "59001.0", "1")
        await kit.place(admin, "BTC/USD", "buy", "59002.0", "1")
        updates = [m for m in await ws.barrier() if m.get("channel") == "book"]
    finally:
        await ws.conn.close()
    results = [ref.apply(u["data"][0], snapshot=False) for u in updates]
    assert results == [False, True]


@pytest.mark.parametrize(
    ("status", "plain_error", "post_only_ok", "cancel_ok"),
    [
        ("cancel_only", "EService:Market in cancel_only mode", False, True),
        ("post_only", "EService:Market in post_only mode", True, True),
        ("maintenance", "EService:Unavailable", False, False),
    ],
)
async def test_system_status_is_pushed_and_enforced(
    sim: Any,
    rest: Any,
    admin: httpx.AsyncClient,
    kit: SimpleNamespace,
    status: str,
    plain_error: str,
    post_only_ok: bool,
    cancel_ok: bool,
) -> None:
    resting = (await rest.ok("AddOrder", pair="XBTUSD", type="buy", ordertype="limit", price="50000.0", volume="0.01"))[
        "txid"
    ][0]
    ws = await kit.open_ws(sim.ws_auth_url)
    try:
        await kit.fault(admin, "system_status", status=status)
        pushed = await ws.wait_for(lambda m: m.get("channel") == "status")
    finally:
        await ws.conn.close()
    assert pushed["data"][0]["system"] == status
    assert (await rest.public("SystemStatus"))["result"]["status"] == status
    plain = await rest.private("AddOrder", pair="XBTUSD", type="buy", ordertype="limit", price="50000.0", volume="0.01")
    assert plain == {"error": [plain_error]}
    post = await rest.private(
        "AddOrder",
        pair="XBTUSD",
        type="buy",
        ordertype="limit",
        price="50000.0",
        volume="0.01",
        oflags="post",
    )
    assert (post["error"] == []) is post_only_ok
    cancel = await rest.private("CancelOrder", txid=resting)
    assert (cancel["error"] == []) is cancel_ok
    if not cancel_ok:
        assert cancel == {"error": ["EService:Unavailable"]}


async def test_rest_errors_answer_the_next_calls_then_stop(
    rest: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    await kit.fault(admin, "rest_errors", count=2, error="EAPI:Rate limit exceeded")
    first = await rest.private("AddOrder", pair="XBTUSD", type="buy", ordertype="limit", price="50000.0", volume="0.01")
    second = await rest.public("Time")
    third = await rest.private("OpenOrders")
    assert first == second == {"error": ["EAPI:Rate limit exceeded"]}
    assert third["error"] == []
    assert third["result"]["open"] == {}  # the refused AddOrder did nothing


async def test_service_unavailable_fault(rest: Any, admin: httpx.AsyncClient, kit: SimpleNamespace) -> None:
    await kit.fault(admin, "rest_errors", count=1, error="EService:Unavailable")
    assert await rest.private("Balance") == {"error": ["EService:Unavailable"]}


async def test_rest_delay_after_applies_the_call_before_answering(
    sim: Any, rest: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    ws = await kit.open_ws(sim.ws_auth_url)
    try:
        token = await rest.ws_token()
        await ws.request("subscribe", {"channel": "executions", "token": token})
        await ws.wait_for(lambda m: m.get("channel") == "executions")
        await kit.fault(admin, "rest_delay", ms=400, count=1)
        started = time.monotonic()
        call = asyncio.create_task(
            rest.private("AddOrder", pair="XBTUSD", type="buy", ordertype="limit", price="50000.0", volume="0.01")
        )
        pending = await ws.wait_for(lambda m: m.get("channel") == "executions")
        answered_early = call.done()
        response = await call
        elapsed = time.monotonic() - started
        after = time.monotonic()
        await rest.private("Balance")  # count=1: the next call is not delayed
        undelayed = time.monotonic() - after
    finally:
        await ws.conn.close()
    assert pending["data"][0]["exec_type"] == "pending_new"
    assert not answered_early
    assert response["result"]["txid"] == [pending["data"][0]["order_id"]]
    assert elapsed >= 0.4
    assert undelayed < 0.4


async def test_withheld_executions_are_applied_but_not_sent(
    sim: Any, rest: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    ws = await kit.open_ws(sim.ws_auth_url)
    try:
        token = await rest.ws_token()
        await ws.request("subscribe", {"channel": "executions", "token": token})
        await ws.wait_for(lambda m: m.get("channel") == "executions")
        await kit.fault(admin, "withhold_executions", count=2)
        txid = (
            await rest.ok("AddOrder", pair="XBTUSD", type="buy", ordertype="limit", price="50000.0", volume="0.01")
        )["txid"][0]
        await rest.ok("CancelOrder", txid=txid)
        seen = [m for m in await ws.barrier() if m.get("channel") == "executions"]
    finally:
        await ws.conn.close()
    assert [(m["sequence"], m["data"][0]["exec_type"]) for m in seen] == [(2, "canceled")]
    assert (await rest.ok("QueryOrders", txid=txid))[txid]["status"] == "canceled"


async def test_withheld_executions_can_consume_their_sequence_numbers(
    sim: Any, rest: Any, kit: SimpleNamespace
) -> None:
    ws = await kit.open_ws(sim.ws_auth_url)
    try:
        token = await rest.ws_token()
        await ws.request("subscribe", {"channel": "executions", "token": token})
        await ws.wait_for(lambda m: m.get("channel") == "executions")
        sim.faults.withhold_executions(count=1, consume_sequence=True)
        await rest.ok("AddOrder", pair="XBTUSD", type="buy", ordertype="limit", price="50000.0", volume="0.01")
        seen = [m for m in await ws.barrier() if m.get("channel") == "executions"]
    finally:
        await ws.conn.close()
    assert [(m["sequence"], m["data"][0]["exec_type"]) for m in seen] == [(3, "new")]


async def test_external_order_appears_on_the_account(
    sim: Any, rest: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    ws = await kit.open_ws(sim.ws_auth_url)
    try:
        token = await rest.ws_token()
        await ws.request("subscribe", {"channel": "executions", "token": token})
        await ws.wait_for(lambda m: m.get("channel") == "executions")
        result = await kit.fault(admin, "external_order", symbol="ETH/USD", side="sell", qty="1.5", price="4000.00")
        seen = [m["data"][0] for m in await ws.barrier() if m.get("channel") == "executions"]
    finally:
        await ws.conn.close()
    order_id = result["order_id"]
    assert [(e["exec_type"], e["order_id"]) for e in seen] == [("pending_new", order_id), ("new", order_id)]
    assert "cl_ord_id" not in seen[0]
    info = (await rest.ok("OpenOrders"))["open"][order_id]
    assert (info["descr"]["pair"], info["vol"]) == ("ETHUSD", "1.50000000")


async def test_external_fill_executes_a_resting_order_out_of_band(
    sim: Any, rest: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    await kit.place(admin, "BTC/USD", "buy", "55000.0", "2")  # ahead of ours in the queue
    txid = (await rest.ok("AddOrder", pair="XBTUSD", type="buy", ordertype="limit", price="55000.0", volume="0.02"))[
        "txid"
    ][0]
    result = await kit.fault(admin, "external_fill", order_id=txid, qty="0.005")
    order = (await rest.ok("QueryOrders", txid=txid))[txid]
    assert (result["qty"], result["price"]) == ("0.005", "55000.0")
    assert (order["status"], order["vol_exec"], order["misc"]) == ("open", "0.00500000", "partial")
    trades = (await rest.ok("TradesHistory"))["trades"]
    assert trades[result["txid"]]["maker"] is True
    assert (await rest.ok("Balance"))["XXBT"] == "1.0050000000"


async def test_external_fill_of_unknown_order_is_a_400(admin: httpx.AsyncClient) -> None:
    r = await admin.post("/_sim/faults", json={"fault": "external_fill", "order_id": "OXXXXX-XXXXX-XXXXXX"})
    assert r.status_code == 400
    assert r.json() == {"ok": False, "error": "EOrder:Unknown order"}


@pytest.mark.parametrize(
    "body",
    [
        {"fault": "no_such_fault"},
        {"fault": "silence", "seconds": -1},
        {"fault": "silence", "volume": 3},
        {"fault": "system_status", "status": "sleeping"},
        {"fault": "rest_errors", "count": "many"},
    ],
)
async def test_bad_fault_requests_are_refused_with_a_reason(admin: httpx.AsyncClient, body: dict[str, Any]) -> None:
    r = await admin.post("/_sim/faults", json=body)
    assert r.status_code == 400
    assert r.json()["ok"] is False
    assert r.json()["error"]


async def test_clearing_faults_removes_pending_ones(rest: Any, admin: httpx.AsyncClient, kit: SimpleNamespace) -> None:
    await kit.fault(admin, "rest_errors", count=5)
    await kit.fault(admin, "withhold_executions", count=3)
    listed = (await admin.get("/_sim/faults")).json()
    assert len(listed["rest_errors"]) == 5
    assert listed["withhold_executions"] == 3
    assert (await admin.delete("/_sim/faults")).json() == {"ok": True}
    assert (await rest.private("Balance"))["error"] == []
    cleared = (await admin.get("/_sim/faults")).json()
    assert cleared["rest_errors"] == []
    assert cleared["withhold_executions"] == 0


async def test_state_records_orders_balances_sequences_and_messages(make_sim: Any, kit: SimpleNamespace) -> None:
    sim = await make_sim(record_messages=True)
    rest = kit.KrakenRest(sim.rest_url, sim.config.api_key, sim.config.api_secret)
    public = await kit.open_ws(sim.ws_url)
    private = await kit.open_ws(sim.ws_auth_url)
    try:
        await public.request("subscribe", {"channel": "book", "symbol": ["BTC/USD"]})
        await public.wait_for(lambda m: m.get("type") == "snapshot")
        token = await rest.ws_token()
        await private.request("subscribe", {"channel": "balances", "token": token})
        await private.wait_for(lambda m: m.get("channel") == "balances")
        await rest.ok("AddOrder", pair="XBTUSD", type="buy", ordertype="limit", price="50000.0", volume="0.01")
        await public.barrier()
        async with httpx.AsyncClient(base_url=sim.rest_url) as admin:
            state = (await admin.get("/_sim/state")).json()
    finally:
        await rest.aclose()
        await public.conn.close()
        await private.conn.close()
    (order,) = state["orders"]
    assert (order["status"], order["limit_price"], order["qty"]) == ("open", "50000.0", "0.01000000")
    assert state["balances"]["USD"] == {
        "balance": "100000.0000",
        "hold": "502.0000",
        "available": "99498.0000",
    }
    subs = [s for c in state["connections"] for s in c["subscriptions"]]
    assert {"channel": "balances", "symbol": None, "sequence": 1} in subs
    kinds = [m["key"][0] for m in state["market_messages"]]
    assert kinds == ["book", "book"]  # the snapshot, then the update for our order
    assert '"price":50000.0,"qty":0.01000000' in state["market_messages"][1]["message"]
    assert Decimal(state["market"]["BTC/USD"]["best_bid"]) == Decimal("50000.0")
