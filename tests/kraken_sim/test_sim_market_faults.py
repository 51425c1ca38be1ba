"""The simulator's market-data faults for client tests: raw frames injected between regular messages, and public
trade/ohlc messages withheld from the socket while REST still shows the trades."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import httpx


async def test_inject_frames_sends_them_verbatim_to_the_scope(
    sim: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    public = await kit.open_ws(sim.ws_url)
    private = await kit.open_ws(sim.ws_auth_url)
    frames = ['{"channel":"trade","type":"update","data":[{"symbol"', "not json", '{"channel":"level3","data":[]}']
    try:
        answer = await kit.fault(admin, "inject_frames", frames=frames)
        received = [await asyncio.wait_for(public.conn.recv(), 5) for _ in frames]
        await private.send({"method": "ping", "req_id": 7})
        pong = await private.wait_for(lambda m: m.get("method") == "pong")  # nothing injected came first
    finally:
        await public.conn.close()
        await private.conn.close()
    assert answer["affected"] == 1
    assert received == frames
    assert pong["req_id"] == 7
    bad = await admin.post("/_sim/faults", json={"fault": "inject_frames", "frames": "not a list"})
    assert bad.status_code == 400


async def test_withhold_market_drops_the_next_trade_message_but_rest_has_the_trade(
    sim: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    ws = await kit.open_ws(sim.ws_url)
    try:
        await ws.request("subscribe", {"channel": "trade", "symbol": ["BTC/USD"]})
        await ws.wait_for(lambda m: m.get("method") == "subscribe")
        await kit.fault(admin, "withhold_market", channel="trade", symbol="BTC/USD")
        for price in ("60000.0", "60001.0"):
            await kit.place(admin, "BTC/USD", "sell", price, "0.01")
            await kit.place(admin, "BTC/USD", "buy", price, "0.01")
        trades = [m for m in await ws.barrier() if m.get("channel") == "trade"]
    finally:
        await ws.conn.close()
    assert [str(t["data"][0]["price"]) for t in trades] == ["60001.0"]
    rest = (await admin.get("/0/public/Trades", params={"pair": "BTC/USD"})).json()["result"]
    [rows] = [v for k, v in rest.items() if k != "last"]
    assert [row[0] for row in rows] == ["60000.00000", "60001.00000"]
    assert (await admin.get("/_sim/faults")).json()["withhold_market"] == {}
    bad = await admin.post("/_sim/faults", json={"fault": "withhold_market", "channel": "book", "symbol": "BTC/USD"})
    assert bad.status_code == 400
