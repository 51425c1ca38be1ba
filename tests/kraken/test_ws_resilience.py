"""Reconnect policy and connection-attempt limit (PROTOCOL.md §4), and tolerance of malformed/unknown frames.

The policy and limiter are checked with an injected clock; the limit is then checked end to end on a real
client reconnecting to a closed port. The simulator cannot send malformed frames (it has no such fault), so
that one test uses a minimal ``websockets`` server written here that sends them; everything else in this
suite uses the simulator.
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

from ingest.kraken.ws.client import KrakenWsClient
from ingest.kraken.ws.reconnect import ConnectionAttemptLimiter, ReconnectPolicy
from ingest.kraken.ws.types import WsConfig


def test_policy_retries_quickly_then_backs_off_exponentially_with_jitter_to_the_cap() -> None:
    policy = ReconnectPolicy(initial_delay_s=1.0, max_delay_s=60.0, jitter=0.25, quick_retries=2)
    rng = random.Random(3)
    for _ in range(200):
        assert 0 <= policy.delay(0, rng=rng) <= policy.quick_retry_max_delay_s
        assert 0 <= policy.delay(1, rng=rng) <= policy.quick_retry_max_delay_s
        for failures, base in ((2, 1.0), (3, 2.0), (4, 4.0), (7, 32.0)):
            assert base * 0.75 <= policy.delay(failures, rng=rng) <= base * 1.25
        assert 45.0 <= policy.delay(8, rng=rng) <= 60.0  # 64 s capped at 60, jitter kept under the cap
        assert 45.0 <= policy.delay(500, rng=rng) <= 60.0
    delays = {round(policy.delay(4, rng=rng), 6) for _ in range(50)}
    assert len(delays) > 40  # jittered, not synchronised with every other client


def test_policy_waits_at_least_five_seconds_after_maintenance() -> None:
    policy = ReconnectPolicy()
    rng = random.Random(1)
    assert all(policy.delay(n, maintenance=True, rng=rng) >= 5.0 for n in range(10))
    assert policy.delay(0, maintenance=False, rng=rng) < 1.0


async def test_attempt_limiter_never_allows_more_than_the_maximum_in_the_window() -> None:
    now = [0.0]
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    limiter = ConnectionAttemptLimiter(150, 600.0, clock=lambda: now[0], sleep=fake_sleep)
    attempts: list[float] = []
    for _ in range(400):
        await limiter.acquire()
        attempts.append(now[0])
        now[0] += 0.5  # a client retrying every half second
    for i, at in enumerate(attempts):
        in_window = [a for a in attempts[: i + 1] if a > at - 600.0]
        assert len(in_window) <= 150
    assert limiter.waits > 0
    assert attempts[150] >= attempts[0] + 600.0


async def test_a_real_client_stops_at_the_attempt_limit_and_waits() -> None:
    with socket.socket() as sock:  # a port with nothing listening: every attempt is refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    asked_to_wait = asyncio.Event()
    waits: list[float] = []

    async def blocking_sleep(seconds: float) -> None:
        waits.append(seconds)
        asked_to_wait.set()
        await asyncio.Event().wait()  # never returns: the test ends while the limiter waits

    limiter = ConnectionAttemptLimiter(3, 600.0, sleep=blocking_sleep)
    policy = ReconnectPolicy(initial_delay_s=0.0, max_delay_s=0.0, quick_retry_max_delay_s=0.0)
    config = WsConfig(public_url=f"ws://127.0.0.1:{port}/v2", reconnect=policy)
    async with KrakenWsClient(config, attempt_limiter=limiter) as client:
        client.start()  # connect() would wait for a connection that cannot happen
        await asyncio.wait_for(asked_to_wait.wait(), 5)
        assert client.stats.connection_attempts == 3
        assert client.stats.connect_failures == 3
        assert waits[0] > 590  # until the first attempt leaves the 10-minute window
        assert client.connection_state.value == "reconnecting"
    assert client.connection_state.value == "closed"


BAD_FRAMES: list[str | bytes] = [
    "not json",
    "[1, 2]",
    b"\xff\xfe binary garbage",
    '{"channel":"mystery","type":"update","data":[]}',
    '{"channel":"book","type":"update","data":[{"symbol":"DOGE/USD","bids":[],"asks":[],"checksum":1}]}',
    '{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD"}]}',
    '{"channel":"status","type":"update","data":[{"system":"sleeping","api_version":"v2","connection_id":1,'
    '"version":"2.0.10"}]}',
    '{"method":"add_order","req_id":999999,"success":true,"result":{"order_id":"OXXXXX-XXXXX-XXXXXX"}}',
]


@pytest.fixture
async def garbage_server() -> AsyncIterator[str]:
    """Sends a status message, then answers every ping with the bad frames above followed by the pong."""

    async def handler(ws: ServerConnection) -> None:
        await ws.send(
            '{"channel":"status","type":"update","data":[{"system":"online","api_version":"v2",'
            '"connection_id":18125794168470749634,"version":"2.0.10"}]}'
        )
        async for raw in ws:
            request: dict[str, Any] = json.loads(raw)
            if request.get("method") == "ping":
                for frame in BAD_FRAMES:
                    await ws.send(frame)
                await ws.send(json.dumps({"method": "pong", "req_id": request["req_id"]}))

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        yield f"ws://127.0.0.1:{port}/v2"


async def test_malformed_and_unknown_frames_are_counted_and_never_fatal(garbage_server: str) -> None:
    async with KrakenWsClient(WsConfig(public_url=garbage_server)) as client:
        await client.connect()
        rtt = await client.ping()
        assert rtt > 0
        assert client.stats.malformed == {"frame": 3, "ticker": 1}
        assert client.stats.unknown == {"channel:mystery": 1, "book_symbol": 1, "status_value": 1}
        assert client.stats.late_acks == 1
        assert client.exchange_status.value == "online"
        assert client.connection_state.value == "connected"
        assert client.stats.reconnects == 0
        await client.ping()  # still fully usable
        assert client.stats.malformed["frame"] == 6
