"""Shared fixtures for the protocol-layer tests (no Django needed)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from ingest.kraken.ratelimit import RestCallCounter, TradingEngineLimiter
from ingest.kraken.rest import KrakenRestClient
from ingest.kraken.ws.client import KrakenWsClient
from ingest.kraken.ws.reconnect import ReconnectPolicy
from ingest.kraken.ws.types import WsConfig
from ingest.kraken.ws.user_stream import token_provider_from
from kraken_sim import SimConfig, Simulator, Tier

_NAME = "kraken/recordings/book-v2-btcusd-depth10.jsonl"


def _find_recording() -> Path:
    # shared/ sits beside the repository (CI: a fresh clone with shared/ beside it).
    for base in (Path(__file__).resolve().parents[3] / "shared", Path("/work/shared")):
        if (base / _NAME).is_file():
            return base / _NAME
    raise FileNotFoundError(f"shared/{_NAME} not found beside the repository")


@pytest.fixture(scope="session")
def recording() -> Path:
    """The real recorded BTC/USD depth-10 v2 book stream (510 messages)."""
    return _find_recording()


@pytest.fixture(scope="session")
def recorded_lines(recording: Path) -> list[str]:
    return recording.read_text().splitlines()


# --- the local simulator and the WebSocket client (integration tests: test_ws_*.py) -------------------------
#
# The simulator runs in-process on loopback (port 0) and is driven only through what a real deployment could
# use: Kraken's REST/WS protocols and the simulator's /_sim admin endpoints. The simulator's in-process state
# (its order book objects) is read directly only to compare the client's books with the exchange's truth.


# A tier generous enough that tests which are not about rate limits never meet one.
SIM_UNLIMITED = Tier("test-unlimited", Decimal(10**6), Decimal(1), Decimal(10**6), Decimal(1), 10_000)
FAST_RECONNECT = ReconnectPolicy(
    initial_delay_s=0.05, max_delay_s=0.5, quick_retries=2, quick_retry_max_delay_s=0.02, stable_after_s=0.5
)


@pytest.fixture
async def make_sim() -> AsyncIterator[Callable[..., Awaitable[Simulator]]]:
    """Start simulators on loopback (port 0). Default: the seeded market generator, stepped only on demand
    (``rate=0``: no background flow), no back-dated warm-up, rate limits out of the way."""
    started: list[Simulator] = []

    async def factory(**overrides: Any) -> Simulator:
        options: dict[str, Any] = {"market": "generate", "rate": 0.0, "warmup_steps": 0, "tier": SIM_UNLIMITED}
        options.update(overrides)
        sim = Simulator(SimConfig(**options))
        await sim.start()
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        await sim.stop()


@pytest.fixture
async def sim(make_sim: Callable[..., Awaitable[Simulator]]) -> Simulator:
    return await make_sim()


@pytest.fixture
async def admin(sim: Simulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.admin_url, timeout=10.0) as client:
        yield client


class Admin:
    """The simulator's /_sim admin endpoints (fault injection, market control)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def fault(self, name: str, **params: Any) -> dict[str, Any]:
        r = await self.http.post("/faults", json={"fault": name, **params})
        assert r.status_code == 200, r.text
        return r.json()

    async def market(self, action: str, **params: Any) -> dict[str, Any]:
        r = await self.http.post("/market", json={"action": action, **params})
        assert r.status_code == 200, r.text
        return r.json()

    async def place(self, symbol: str, side: str, price: str, qty: str) -> dict[str, Any]:
        return await self.market("place", symbol=symbol, side=side, price=price, qty=qty)

    async def state(self) -> dict[str, Any]:
        r = await self.http.get("/state", params={"messages": "0"})
        assert r.status_code == 200, r.text
        return r.json()


@pytest.fixture
def sim_admin(admin: httpx.AsyncClient) -> Admin:
    return Admin(admin)


def rest_client_for(sim: Simulator, **overrides: Any) -> KrakenRestClient:
    """A REST client for the simulator whose own rate model is out of the way unless a test sets one."""
    options: dict[str, Any] = {
        "base_url": sim.rest_url,
        "api_key": sim.config.api_key,
        "api_secret": sim.config.api_secret,
        "rest_counter": RestCallCounter(maximum=10**6, decay_per_s=1),
        "engine_limiter": TradingEngineLimiter(threshold=10**6, decay_per_s=1),
    }
    options.update(overrides)
    return KrakenRestClient(**options)


@pytest.fixture
async def rest(sim: Simulator) -> AsyncIterator[KrakenRestClient]:
    client = rest_client_for(sim)
    yield client
    await client.aclose()


class Recorder:
    """Everything the client reports through its listeners, and a way to wait for a condition on it: the
    condition is re-checked whenever the client reports something (no sleeping), with a deadline."""

    def __init__(self, client: KrakenWsClient) -> None:
        self.client = client
        self.book_events = 0
        self.snapshots: dict[str, int] = {}
        self.messages: dict[str, list[Any]] = {}
        self.states: list[tuple[str, str, str]] = []
        self.statuses: list[tuple[str, str]] = []
        self.gaps: list[tuple[str, int, int]] = []
        self.reconciles: list[Any] = []
        self._changed = asyncio.Event()
        client.on_book(self._book)
        for channel in ("trade", "ticker", "ohlc", "instrument", "executions", "balances", "status"):
            client.add_listener(channel, self._channel)
        client.on_connection_state(lambda e, old, new: self._add(self.states, (e, old.value, new.value)))
        client.on_exchange_status(lambda old, new: self._add(self.statuses, (old.value, new.value)))
        client.on_gap(lambda channel, expected, got: self._add(self.gaps, (channel, expected, got)))
        client.on_reconcile(lambda request: self._add(self.reconciles, request))

    def _add(self, target: list[Any], item: Any) -> None:
        target.append(item)
        self._changed.set()

    def _book(self, book: Any, event: Any) -> None:
        self.book_events += 1
        if event.snapshot:
            self.snapshots[event.symbol] = self.snapshots.get(event.symbol, 0) + 1
        self._changed.set()

    def _channel(self, message: Any) -> None:
        self.messages.setdefault(message.channel, []).append(message)
        self._changed.set()

    def items(self, channel: str) -> list[Any]:
        return [item for message in self.messages.get(channel, []) for item in message.items]

    def executions(self, order_id: str | None = None) -> list[Any]:
        return [e for e in self.items("executions") if order_id is None or e.order_id == order_id]

    async def until(self, condition: Callable[[], bool], timeout: float = 5.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                continue


@pytest.fixture
async def make_ws(sim: Simulator) -> AsyncIterator[Callable[..., tuple[KrakenWsClient, Recorder]]]:
    """WebSocket clients on the simulator (fast reconnects for tests); closed at teardown."""
    clients: list[KrakenWsClient] = []
    rests: list[KrakenRestClient] = []

    def factory(
        token_provider: Callable[[], Awaitable[str]] | None = None, **overrides: Any
    ) -> tuple[KrakenWsClient, Recorder]:
        rest = rest_client_for(sim)
        rests.append(rest)
        options: dict[str, Any] = {
            "public_url": sim.ws_url,
            "private_url": sim.ws_auth_url,
            "request_timeout_s": 5.0,
            "order_timeout_s": 5.0,
            "reconnect": FAST_RECONNECT,
        }
        options.update(overrides)
        client = KrakenWsClient(WsConfig(**options), token_provider=token_provider or token_provider_from(rest))
        clients.append(client)
        return client, Recorder(client)

    yield factory
    for client in clients:
        await client.close()
    for rest in rests:
        await rest.aclose()


def _sim_book(
    sim: Simulator, symbol: str, depth: int
) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
    book = sim.exchange.books[symbol]
    return book.bids.top(depth), book.asks.top(depth)


@pytest.fixture
def exchange_book(sim: Simulator) -> Callable[[str, int], tuple[list[Any], list[Any]]]:
    """``exchange_book(symbol, depth)``: the simulator's own book (bids, asks; best first), cut to ``depth``."""
    return lambda symbol, depth: _sim_book(sim, symbol, depth)


@pytest.fixture
async def make_rest(sim: Simulator) -> AsyncIterator[Callable[..., KrakenRestClient]]:
    """REST clients for ``sim`` (or ``sim=`` another simulator); closed at teardown."""
    clients: list[KrakenRestClient] = []

    def factory(target: Simulator | None = None, **overrides: Any) -> KrakenRestClient:
        client = rest_client_for(target or sim, **overrides)
        clients.append(client)
        return client

    yield factory
    for client in clients:
        await client.aclose()
