"""The local Kraken for the execution tests: the real simulator on loopback (port 0), run on its own event loop in
a background thread so sync Django tests and Celery task functions talk to it over real sockets. Driven only
through what a deployment could use: Kraken's REST protocol and the simulator's /_sim admin endpoints."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from kraken_sim import SimConfig, Simulator, Tier

# Generous limits: these tests are not about rate limits.
SIM_UNLIMITED = Tier("test-unlimited", Decimal(10**6), Decimal(1), Decimal(10**6), Decimal(1), 10_000)


class ThreadedSim:
    def __init__(self, **overrides: Any) -> None:
        options: dict[str, Any] = {
            "market": "none",
            "rate": 0.0,
            "warmup_steps": 0,
            "tier": SIM_UNLIMITED,
            "balances": {"USD": Decimal(100000), "BTC": Decimal(1), "ETH": Decimal(10)},
        }
        options.update(overrides)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="kraken-sim", daemon=True)
        self.thread.start()
        self.sim = Simulator(SimConfig(**options))
        asyncio.run_coroutine_threadsafe(self.sim.start(), self.loop).result(30)
        self.admin = httpx.Client(base_url=str(self.sim.admin_url), timeout=10.0)

    @property
    def rest_url(self) -> str:
        return str(self.sim.rest_url)

    @property
    def ws_auth_url(self) -> str:
        return str(self.sim.ws_auth_url)

    def fault(self, name: str, **params: Any) -> dict[str, Any]:
        r = self.admin.post("/faults", json={"fault": name, **params})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def clear_faults(self) -> None:
        assert self.admin.delete("/faults").status_code == 200

    def place(self, side: str, price: str, qty: str, symbol: str = "BTC/USD") -> str:
        """A participant's resting limit order (liquidity), or a taker against resting orders."""
        r = self.admin.post(
            "/market", json={"action": "place", "symbol": symbol, "side": side, "price": price, "qty": qty}
        )
        assert r.status_code == 200, r.text
        return str(r.json().get("order_id", ""))

    def state(self) -> dict[str, Any]:
        r = self.admin.get("/state", params={"messages": "0"})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def orders(self, cl_ord_id: str | None = None) -> list[dict[str, Any]]:
        """The account's orders on the exchange (optionally those with one client order id)."""
        return [o for o in self.state()["orders"] if cl_ord_id is None or o["cl_ord_id"] == cl_ord_id]

    def open_orders(self) -> list[dict[str, Any]]:
        return [o for o in self.orders() if o["status"] in ("open", "pending")]

    def close(self) -> None:
        self.admin.close()
        asyncio.run_coroutine_threadsafe(self.sim.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


def point_settings_at(settings: Any, sim: ThreadedSim, tmp_path: Path, *, mode: str, ws: bool = False) -> None:
    """Every exchange URL at `sim`. `ws`: live orders over the private WebSocket (REST fallback); off by default
    (REST only), for tests about the REST path and its faults."""
    settings.TRADING_MODE = mode
    settings.KRAKEN_REST_URL = sim.rest_url
    settings.KRAKEN_WS_AUTH_URL = sim.ws_auth_url
    settings.GALFRIDAY_EXECUTION_WS = ws
    settings.GALFRIDAY_EXECUTION_POST_ACK_SYNC_S = 0
    settings.GALFRIDAY_DEADMAN_TIMEOUT_S = 0
    settings.KRAKEN_API_KEY = sim.sim.config.api_key
    settings.KRAKEN_API_SECRET = sim.sim.config.api_secret
    settings.KRAKEN_TIMEOUT = 5.0
    settings.GALFRIDAY_KRAKEN_TIER = "pro"
    settings.KRAKEN_NONCE_FILE = str(tmp_path / "kraken-nonce")
    settings.GALFRIDAY_EXECUTION_RESOLVE_WAIT_S = 1.0
    settings.GALFRIDAY_EXECUTION_RESOLVE_POLL_S = 0.1


@pytest.fixture
def sim() -> Iterator[ThreadedSim]:
    threaded = ThreadedSim()
    try:
        yield threaded
    finally:
        threaded.close()


class InlineGateway:
    """Runs the execution tasks' functions in the calling thread (the tasks' logic without a broker): for tests
    of what the services hand over, e.g. the kill switch's cancels."""

    def submit_order(self, *, order_id: int) -> None:
        from trading.tasks import execute_order

        execute_order(order_id)

    def cancel_order(self, *, order_id: int) -> None:
        from trading.tasks import execute_cancel

        execute_cancel(order_id)
