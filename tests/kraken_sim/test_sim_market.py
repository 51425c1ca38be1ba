"""The market: a seeded generator (determinism, regimes, a sane book, history) and replay of a recording."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx

RECORDING = Path(__file__).parent / "data" / "book-v2-btcusd-depth10.jsonl"
TIMESTAMP = re.compile(r'"(timestamp|interval_begin)": ?"[^"]*"')


async def _stream(sim: Any, kit: SimpleNamespace, steps: int) -> list[str]:
    ws = await kit.open_ws(sim.ws_url)
    try:
        await ws.request("subscribe", {"channel": "book", "symbol": ["BTC/USD", "ETH/USD"], "depth": 25})
        await ws.request("subscribe", {"channel": "trade", "symbol": ["BTC/USD", "ETH/USD"]})
        await ws.barrier()
        async with httpx.AsyncClient(base_url=sim.rest_url) as admin:
            r = await admin.post("/_sim/market", json={"action": "step", "steps": steps})
            assert r.status_code == 200
        texts = []
        for msg in await ws.barrier():
            texts.append(TIMESTAMP.sub('"ts":""', json.dumps(msg, default=str)))
        return texts
    finally:
        await ws.conn.close()


async def test_same_seed_gives_the_same_market(make_sim: Any, kit: SimpleNamespace) -> None:
    a = await make_sim(market="generate", seed=42, warmup_steps=100)
    b = await make_sim(market="generate", seed=42, warmup_steps=100)
    c = await make_sim(market="generate", seed=43, warmup_steps=100)
    stream_a = await _stream(a, kit, 400)
    stream_b = await _stream(b, kit, 400)
    stream_c = await _stream(c, kit, 400)
    assert len(stream_a) > 300
    assert sum('"channel": "trade"' in t for t in stream_a) > 20
    assert stream_a == stream_b
    assert stream_a != stream_c


async def test_generator_visits_its_regimes_moves_the_price_and_never_crosses_the_book(make_sim: Any) -> None:
    sim = await make_sim(market="generate", seed=7)
    gen = sim.market.generators["BTC/USD"]
    book = sim.exchange.books["BTC/USD"]
    start_fair = gen.fair
    crossed = 0
    for _ in range(15000):
        sim.market.step(1, "BTC/USD")
        bid, ask = book.best_bid(), book.best_ask()
        crossed += bid is not None and ask is not None and bid >= ask
    assert crossed == 0
    assert set(gen.regimes_seen) >= {"calm", "trend", "mean_reversion", "volatility_burst"}
    assert gen.fair != start_fair
    assert sim.exchange.marketdata["BTC/USD"].total_trades > 500
    assert 20 <= len(book.bids) <= 200
    assert 20 <= len(book.asks) <= 200


async def test_warmup_gives_ohlc_and_trade_history(make_sim: Any, kit: SimpleNamespace) -> None:
    sim = await make_sim(market="generate", warmup_steps=600, warmup_seconds=3600.0)
    rest = kit.KrakenRest(sim.rest_url, sim.config.api_key, sim.config.api_secret)
    try:
        ohlc = (await rest.public("OHLC", pair="XBTUSD", interval=1))["result"]
        trades = (await rest.public("Trades", pair="XBTUSD"))["result"]["XXBTZUSD"]
    finally:
        await rest.aclose()
    rows = ohlc["XXBTZUSD"]
    assert len(rows) >= 30
    begins = [r[0] for r in rows]
    assert begins == sorted(begins)
    assert max(begins) - min(begins) >= 45 * 60
    for _, o, h, low, c, vwap, volume, count in rows:
        o, h, low, c, vwap = map(Decimal, (o, h, low, c, vwap))
        assert low <= min(o, c)
        assert max(o, c) <= h
        assert low <= vwap <= h
        assert Decimal(volume) > 0
        assert count > 0
    assert len(trades) >= 30


async def test_replay_reproduces_the_recorded_checksums(make_sim: Any, kit: SimpleNamespace) -> None:
    sim = await make_sim(market="replay", replay_file=RECORDING, replay_loop=False)
    recorded = [json.loads(line)["data"][0]["checksum"] for line in RECORDING.read_text().splitlines()]
    ws = await kit.open_ws(sim.ws_url)
    try:
        await ws.request("subscribe", {"channel": "book", "symbol": ["BTC/USD"], "depth": 10})
        snap = await ws.wait_for(lambda m: m.get("type") == "snapshot")
        async with httpx.AsyncClient(base_url=sim.rest_url) as admin:
            r = await admin.post("/_sim/market", json={"action": "step", "steps": len(recorded) - 1})
            assert r.status_code == 200
        updates = [m for m in await ws.barrier() if m.get("channel") == "book"]
    finally:
        await ws.conn.close()
    assert snap["data"][0]["checksum"] == recorded[0] == 2785033588
    ref = kit.ReferenceBook(10, 1, 8)
    assert ref.apply(snap["data"][0], snapshot=True)
    assert all(ref.apply(u["data"][0], snapshot=False) for u in updates)
    emitted = [u["data"][0]["checksum"] for u in updates]
    remaining = iter(recorded[1:])
    assert all(any(c == r for r in remaining) for c in emitted)  # in recorded order
    assert len(emitted) >= 450
    assert emitted[-1] == recorded[-1]
    assert sim.market.replayer is not None
    assert sim.market.replayer.checksum_mismatches == 0
    assert sim.exchange.marketdata["BTC/USD"].last_price == Decimal("29430.2")  # the ticker follows the book


async def test_live_generated_flow_fills_a_resting_account_order_as_maker(make_sim: Any, kit: SimpleNamespace) -> None:
    sim = await make_sim(market="generate", rate=400.0, seed=11)
    rest = kit.KrakenRest(sim.rest_url, sim.config.api_key, sim.config.api_secret)
    ws = await kit.open_ws(sim.ws_auth_url)
    try:
        token = await rest.ws_token()
        await ws.request("subscribe", {"channel": "executions", "token": token})
        await ws.wait_for(lambda m: m.get("channel") == "executions")
        depth = (await rest.public("Depth", pair="XBTUSD", count=5))["result"]["XXBTZUSD"]
        # Quote both sides just behind the touch: whichever way the market moves, it trades with us.
        for side, rows in (("buy", depth["bids"]), ("sell", depth["asks"])):
            for price, _, _ in rows:
                await rest.ok(
                    "AddOrder", pair="XBTUSD", type=side, ordertype="limit", price=price[:-4], volume="0.0005"
                )
        fill = await ws.wait_for(
            lambda m: m.get("channel") == "executions" and m["data"][0].get("exec_type") == "trade",
            timeout=15,
        )
        trade = fill["data"][0]
        history = (await rest.ok("TradesHistory"))["trades"]
    finally:
        await rest.aclose()
        await ws.conn.close()
    assert trade["liquidity_ind"] == "m"
    row = history[trade["exec_id"]]
    assert row["maker"] is True
    cost = Decimal(row["cost"])
    assert Decimal(row["fee"]) == (cost * Decimal("0.0025")).quantize(Decimal("0.0001"))
