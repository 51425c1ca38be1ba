"""The simulator's burst replays the real recording verbatim as fast as the socket takes it; the client verifies
every checksum. (The throughput figure is measured by bench/bench_sim_burst.py, not here.)"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from ingest.kraken.ws.client import KrakenWsClient
from ingest.kraken.ws.types import WsConfig
from kraken_sim import SimConfig, Simulator
from tests.kraken.conftest import SIM_UNLIMITED


async def test_burst_of_the_recording_verifies_every_checksum(recording: Path) -> None:
    sim = Simulator(SimConfig(market="replay", replay_file=recording, rate=0.0, warmup_steps=0, tier=SIM_UNLIMITED))
    await sim.start()
    client = KrakenWsClient(WsConfig(public_url=sim.ws_url, private_url=sim.ws_auth_url))
    try:
        await client.subscribe_book(["BTC/USD"], depth=10, precisions={"BTC/USD": (1, 8)})
        book = client.book("BTC/USD")
        assert book is not None
        before = book.stats.checksums_verified
        async with httpx.AsyncClient(base_url=sim.admin_url) as admin:
            answer = (await admin.post("/market", json={"action": "burst", "symbol": "BTC/USD", "repeat": 3})).json()
        assert answer == {"ok": True, "connections": 1, "frames": 3 * 510}
        deadline = asyncio.get_running_loop().time() + 20
        while book.stats.checksums_verified - before < 3 * 510:
            assert asyncio.get_running_loop().time() < deadline, book.stats
            await asyncio.sleep(0.01)
        assert book.stats.checksum_mismatches == 0
        assert book.synced
    finally:
        await client.close()
        await sim.stop()


async def test_burst_needs_a_replay_recording() -> None:
    sim = Simulator(SimConfig(market="generate", rate=0.0, warmup_steps=0, tier=SIM_UNLIMITED))
    await sim.start()
    try:
        async with httpx.AsyncClient(base_url=sim.admin_url) as admin:
            response = await admin.post("/market", json={"action": "burst", "repeat": 1})
        assert response.status_code == 400
        assert "replay" in response.json()["error"]
    finally:
        await sim.stop()
