"""Fixtures for the simulator's tests: an in-process simulator on loopback (port 0) and raw clients.

The clients here are deliberately independent of ``kraken_sim``: request signing is written from PROTOCOL.md
§1.2 (and checked against Kraken's published test vector in ``test_sim_rest_auth.py``), WebSocket messages are
parsed with ``json`` + ``Decimal``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import websockets

from kraken_sim import TIERS, SimConfig, Simulator

# A tier generous enough that tests which are not about rate limits never meet one.
UNLIMITED = TIERS["pro"].__class__("test", Decimal(10**6), Decimal(1), Decimal(10**6), Decimal(1), 10_000)


def kraken_signature(secret_b64: str, uri_path: str, nonce: str, postdata: str) -> str:
    """API-Sign = base64(HMAC-SHA512(b64decode(secret), path + SHA256(nonce + postdata)))."""
    sha = hashlib.sha256((nonce + postdata).encode()).digest()
    mac = hmac.new(base64.b64decode(secret_b64), uri_path.encode() + sha, hashlib.sha512)
    return base64.b64encode(mac.digest()).decode()


_nonces = itertools.count(time.time_ns())


class KrakenRest:
    """A minimal Kraken REST client: form-encoded (or JSON) private calls, signed with the helper above."""

    def __init__(self, base_url: str, key: str, secret: str) -> None:
        self.http = httpx.AsyncClient(base_url=base_url, timeout=10.0)
        self.key = key
        self.secret = secret

    async def aclose(self) -> None:
        await self.http.aclose()

    async def public(self, method: str, **params: Any) -> dict[str, Any]:
        r = await self.http.get(f"/0/public/{method}", params=params)
        assert r.status_code == 200
        return r.json(parse_float=Decimal)

    async def private(
        self,
        method: str,
        *,
        as_json: bool = False,
        nonce: int | None = None,
        key: str | None = None,
        secret: str | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        path = f"/0/private/{method}"
        data = {"nonce": nonce if nonce is not None else next(_nonces), **params}
        if as_json:
            body = json.dumps(data)
            content_type = "application/json"
        else:
            body = urllib.parse.urlencode(data)
            content_type = "application/x-www-form-urlencoded"
        sign = kraken_signature(secret or self.secret, path, str(data["nonce"]), body)
        r = await self.http.post(
            path,
            content=body,
            headers={"API-Key": key or self.key, "API-Sign": sign, "Content-Type": content_type},
        )
        assert r.status_code == 200
        return r.json(parse_float=Decimal)

    async def ok(self, method: str, **params: Any) -> Any:
        body = await self.private(method, **params)
        assert body["error"] == [], body
        return body["result"]

    async def ws_token(self) -> str:
        return (await self.ok("GetWebSocketsToken"))["token"]


class Ws:
    """A raw WebSocket client that reads Kraken messages with deadlines."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self._req = itertools.count(1)

    async def send(self, msg: dict[str, Any]) -> None:
        await self.conn.send(json.dumps(msg))

    async def recv(self, timeout: float = 5.0) -> tuple[dict[str, Any], str]:
        raw = await asyncio.wait_for(self.conn.recv(), timeout)
        return json.loads(raw, parse_float=Decimal), raw

    async def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> dict[str, Any]:
        msg, _ = await self.wait_for_raw(pred, timeout)
        return msg

    async def wait_for_raw(
        self, pred: Callable[[dict[str, Any]], bool], timeout: float = 5.0
    ) -> tuple[dict[str, Any], str]:
        async def loop() -> tuple[dict[str, Any], str]:
            while True:
                raw = await self.conn.recv()
                msg = json.loads(raw, parse_float=Decimal)
                if pred(msg):
                    return msg, raw

        return await asyncio.wait_for(loop(), timeout)

    async def collect_until(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 5.0) -> list[dict[str, Any]]:
        """All messages up to and including the first one matching ``pred``."""
        out: list[dict[str, Any]] = []

        async def loop() -> None:
            while True:
                raw = await self.conn.recv()
                msg = json.loads(raw, parse_float=Decimal)
                out.append(msg)
                if pred(msg):
                    return

        await asyncio.wait_for(loop(), timeout)
        return out

    async def request(self, method: str, params: dict[str, Any] | None = None, timeout: float = 5.0) -> int:
        req_id = next(self._req)
        msg: dict[str, Any] = {"method": method, "req_id": req_id}
        if params is not None:
            msg["params"] = params
        await self.send(msg)
        return req_id

    async def barrier(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Ping and return every message that arrived before the pong (messages queued earlier)."""
        req_id = 900_000 + next(self._req)
        await self.send({"method": "ping", "req_id": req_id})
        msgs = await self.collect_until(lambda m: m.get("method") == "pong" and m.get("req_id") == req_id, timeout)
        return msgs[:-1]


SimFactory = Callable[..., Awaitable[Simulator]]


@pytest.fixture
async def make_sim() -> AsyncIterator[SimFactory]:
    started: list[Simulator] = []

    async def factory(**overrides: Any) -> Simulator:
        defaults: dict[str, Any] = {"market": "none", "warmup_steps": 0, "tier": UNLIMITED, "rate": 0.0}
        defaults.update(overrides)
        sim = Simulator(SimConfig(**defaults))
        await sim.start()
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        await sim.stop()


@pytest.fixture
async def sim(make_sim: SimFactory) -> Simulator:
    """A quiet exchange: no market flow; tests add participant liquidity themselves."""
    return await make_sim()


@pytest.fixture
async def rest(sim: Simulator) -> AsyncIterator[KrakenRest]:
    client = KrakenRest(sim.rest_url, sim.config.api_key, sim.config.api_secret)
    yield client
    await client.aclose()


@pytest.fixture
async def admin(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.rest_url, timeout=10.0) as client:
        yield client


async def open_ws(url: str) -> Ws:
    conn = await websockets.connect(url, max_size=None, close_timeout=2)
    ws = Ws(conn)
    status, _ = await ws.recv()
    assert status["channel"] == "status"
    return ws


@pytest.fixture
async def ws_public(sim: Simulator) -> AsyncIterator[Ws]:
    ws = await open_ws(sim.ws_url)
    yield ws
    await ws.conn.close()


@pytest.fixture
async def ws_private(sim: Simulator) -> AsyncIterator[Ws]:
    ws = await open_ws(sim.ws_auth_url)
    yield ws
    await ws.conn.close()


async def place_liquidity(admin: httpx.AsyncClient, symbol: str, side: str, price: str, qty: str) -> dict[str, Any]:
    r = await admin.post(
        "/_sim/market", json={"action": "place", "symbol": symbol, "side": side, "price": price, "qty": qty}
    )
    assert r.status_code == 200, r.text
    return r.json()


async def fault(admin: httpx.AsyncClient, name: str, **params: Any) -> dict[str, Any]:
    r = await admin.post("/_sim/faults", json={"fault": name, **params})
    assert r.status_code == 200, r.text
    return r.json()


def reference_checksum(
    asks: list[tuple[Decimal, Decimal]],
    bids: list[tuple[Decimal, Decimal]],
    price_decimals: int,
    qty_decimals: int,
) -> int:
    """The v2 book checksum written from PROTOCOL.md §0.3, independently of the simulator."""
    import zlib

    def part(price: Decimal, qty: Decimal) -> str:
        p = format(price, f".{price_decimals}f").replace(".", "").lstrip("0")
        q = format(qty, f".{qty_decimals}f").replace(".", "").lstrip("0")
        return p + q

    text = "".join(part(p, q) for p, q in sorted(asks)[:10])
    text += "".join(part(p, q) for p, q in sorted(bids, reverse=True)[:10])
    return zlib.crc32(text.encode()) & 0xFFFFFFFF


class ReferenceBook:
    """A client-side v2 book: apply levels in order, qty 0 deletes, truncate to depth, verify checksum."""

    def __init__(self, depth: int, price_decimals: int, qty_decimals: int) -> None:
        self.depth = depth
        self.pd = price_decimals
        self.qd = qty_decimals
        self.bids: dict[Decimal, Decimal] = {}
        self.asks: dict[Decimal, Decimal] = {}

    def apply(self, data: dict[str, Any], snapshot: bool) -> bool:
        if snapshot:
            self.bids.clear()
            self.asks.clear()
        for side, levels in ((self.bids, data["bids"]), (self.asks, data["asks"])):
            for level in levels:
                if level["qty"] == 0:
                    side.pop(level["price"], None)
                else:
                    side[level["price"]] = level["qty"]
        for keep in sorted(self.bids, reverse=True)[self.depth :]:
            del self.bids[keep]
        for keep in sorted(self.asks)[self.depth :]:
            del self.asks[keep]
        return (
            reference_checksum(list(self.asks.items()), list(self.bids.items()), self.pd, self.qd) == data["checksum"]
        )


@pytest.fixture
def kit() -> SimpleNamespace:
    """The helpers above, handed to tests as a fixture so that test modules import nothing from here
    (works whatever pytest's import mode and whether or not ``tests/`` is a package)."""
    return SimpleNamespace(
        sign=kraken_signature,
        ReferenceBook=ReferenceBook,
        checksum=reference_checksum,
        place=place_liquidity,
        fault=fault,
        open_ws=open_ws,
        KrakenRest=KrakenRest,
    )
