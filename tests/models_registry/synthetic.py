"""Deterministic synthetic 1-minute bars for model-registry tests (seeded RNG, no network, no database)."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd


def make_bars(n: int, *, seed: int = 7, book: bool = True, as_decimal: bool = False) -> pd.DataFrame:
    """Random-walk BTC-like bars; `book` adds top-of-book columns, `as_decimal` stores values as Decimal."""
    rng = np.random.default_rng(seed)
    index = pd.date_range("2024-03-01", periods=n, freq="min", tz="UTC")
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 1e-3, n)))
    open_ = np.concatenate(([close[0]], close[:-1])) * np.exp(rng.normal(0.0, 1e-4, n))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0.0, 5e-4, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0.0, 5e-4, n)))
    volume = rng.lognormal(0.0, 1.0, n)
    low[::97] = high[::97] = close[::97]  # some flat bars (high == low)
    open_[::97] = close[::97]
    volume[::53] = 0.0
    data = {
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
        "vwap": (high + low + close) / 3,
        "trades": rng.integers(0, 50, n).astype(float),
    }
    if book:
        half_spread = close * rng.uniform(0.5e-4, 3e-4, n)
        data |= {
            "best_bid": close - half_spread,
            "best_ask": close + half_spread,
            "bid_qty": rng.uniform(0.0, 3.0, n),
            "ask_qty": rng.uniform(0.0, 3.0, n),
        }
    frame = pd.DataFrame(data, index=index)
    if as_decimal:
        frame = frame.map(lambda v: Decimal(repr(round(float(v), 8))))
    return frame
