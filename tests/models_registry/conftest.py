"""Fixtures for training, prediction, backfill and bootstrap tests: bars written to the time-series store, and
the simulator serving a few hours of 1-minute OHLC history (in-process, loopback, port 0)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

import pandas as pd
import pytest

from ingest.bars import Bar
from kraken_sim import TIERS, SimConfig, Simulator
from timeseries import get_store

# 8,000 generator steps back-dated over 12 hours: ~680 one-minute candles (the simulator keeps at most 720).
HISTORY_STEPS = 8000
HISTORY_SECONDS = 12 * 3600.0
# The learnable market `make run` uses (settings.KRAKEN_SIM_SCENARIO): a known edge over the fees at 60 bars.
LEARNABLE = "trend:drift=0.0003,regime_minutes=480"
TWO_WEEKS: dict[str, object] = {
    "history_days": 14.0,
    "instruments": ("BTC/USD",),
    "balances": {"USD": Decimal(100000), "BTC": Decimal(1)},
}
UNLIMITED = TIERS["pro"].__class__("test", Decimal(10**6), Decimal(1), Decimal(10**6), Decimal(1), 10_000)


def store_bars(frame: pd.DataFrame, symbol: str = "BTC/USD") -> int:
    """Write a synthetic bar frame (floats) to the configured time-series store as `Bar.to_point()` points."""
    points = [
        Bar(
            symbol=symbol,
            interval_seconds=60,
            start=ts.to_pydatetime(),
            open=Decimal(f"{row.open:.2f}"),
            high=Decimal(f"{row.high:.2f}"),
            low=Decimal(f"{row.low:.2f}"),
            close=Decimal(f"{row.close:.2f}"),
            volume=Decimal(f"{row.volume:.8f}"),
            vwap=Decimal(f"{row.vwap:.2f}"),
            trades=int(row.trades),
        ).to_point()
        for ts, row in zip(frame.index, frame.itertuples(index=False), strict=True)
    ]
    return get_store().write_batch(points)


def window_of(frame: pd.DataFrame) -> tuple[datetime, datetime]:
    return frame.index[0].to_pydatetime(), (frame.index[-1] + pd.Timedelta(minutes=1)).to_pydatetime()


class ThreadedSimulator:
    """The simulator on its own event loop thread, so synchronous (Django ORM) tests can call it over HTTP."""

    def __init__(self, **overrides: object) -> None:
        config = {
            "seed": 7,
            "market": "generate",
            "rate": 0.0,
            "warmup_steps": HISTORY_STEPS,
            "warmup_seconds": HISTORY_SECONDS,
            "tier": UNLIMITED,
            **overrides,
        }
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="kraken-sim", daemon=True)
        self.thread.start()
        self.sim = Simulator(SimConfig(**config))  # type: ignore[arg-type]
        asyncio.run_coroutine_threadsafe(self.sim.start(), self.loop).result(60)

    @property
    def rest_url(self) -> str:
        return str(self.sim.rest_url)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.sim.stop(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def history_sim() -> Iterator[ThreadedSimulator]:
    """A quiet simulator (no background market) with ~680 one-minute candles of generated history."""
    sim = ThreadedSimulator()
    try:
        yield sim
    finally:
        sim.close()


@pytest.fixture(scope="module")
def trend_sim() -> Iterator[ThreadedSimulator]:
    """A quiet simulator on the learnable trend scenario with 14 days of back-dated 1-minute history."""
    sim = ThreadedSimulator(scenario=LEARNABLE, **TWO_WEEKS)
    try:
        yield sim
    finally:
        sim.close()


@pytest.fixture(scope="module")
def random_walk_sim() -> Iterator[ThreadedSimulator]:
    """The same, on `random_walk`: no edge at any horizon."""
    sim = ThreadedSimulator(scenario="random_walk", **TWO_WEEKS)
    try:
        yield sim
    finally:
        sim.close()


def client_for(sim: ThreadedSimulator, settings: object) -> Iterator[object]:
    from ingest.kraken.rest import KrakenRestClientSync

    settings.KRAKEN_REST_URL = sim.rest_url  # type: ignore[attr-defined]
    client = KrakenRestClientSync(base_url=sim.rest_url, timeout=30.0)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def trend_client(trend_sim: ThreadedSimulator, settings: object) -> Iterator[object]:
    yield from client_for(trend_sim, settings)


@pytest.fixture
def random_walk_client(random_walk_sim: ThreadedSimulator, settings: object) -> Iterator[object]:
    yield from client_for(random_walk_sim, settings)


@pytest.fixture
def exchange_client(history_sim: ThreadedSimulator, settings: object) -> Iterator[object]:
    """The project's REST client pointed at the simulator (settings too, for code that builds its own)."""
    from ingest.kraken.rest import KrakenRestClientSync

    settings.KRAKEN_REST_URL = history_sim.rest_url  # type: ignore[attr-defined]
    client = KrakenRestClientSync(base_url=history_sim.rest_url, timeout=10.0)
    try:
        yield client
    finally:
        client.close()
