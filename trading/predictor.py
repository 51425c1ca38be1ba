"""What the decision pipeline asks of a model: a small interface trading defines, so trading never imports the
model registry. Settings wire it (`GALFRIDAY_PREDICTOR`) to the registry's predictor; until a model serves, the
clearly named `MomentumBaseline` stands in.

Bars come through `BarSource`, wired to the time-series store (`ingest.timeseries`, a leaf package: trading
imports it, it imports nothing of trading).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Protocol

from django.conf import settings
from django.utils.module_loading import import_string


@dataclass(frozen=True)
class Prediction:
    signal: int  # -1 sell / 0 flat / +1 buy
    confidence: float  # 0..1
    model_version: str  # what produced it (part of the decision id)


class Predictor(Protocol):
    def predict(self, *, symbol: str, bar_time: datetime, decision_id: str) -> Prediction: ...


@dataclass(frozen=True)
class BarClose:
    time: datetime
    close: Decimal


def recent_closes(*, symbol: str, until: datetime, count: int, interval: str = "1m") -> list[BarClose]:
    """The last `count` bar closes of `symbol` ending with the bar that starts at `until` (oldest first)."""
    from ingest.timeseries import get_store

    store = get_store()
    try:
        points = store.query_range(
            "bars",
            until - timedelta(minutes=count * 3),
            until + timedelta(seconds=1),
            {"symbol": symbol, "interval": interval},
        )
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()
    closes = [BarClose(p.time, Decimal(p.fields["close"])) for p in points if "close" in p.fields]
    return closes[-count:]


class MomentumBaseline:
    """A clearly named baseline, not a model: the sign of the return over the last `lookback` bars, outside a
    dead zone of round-trip fees; confidence grows with the move's size. Used until the registry serves a model."""

    version = "baseline-momentum-v1"

    def __init__(self, lookback: int = 15, dead_zone: Decimal = Decimal("0.008")) -> None:
        self.lookback = lookback
        self.dead_zone = dead_zone

    def predict(self, *, symbol: str, bar_time: datetime, decision_id: str) -> Prediction:
        closes = recent_closes(symbol=symbol, until=bar_time, count=self.lookback + 1)
        if len(closes) < self.lookback + 1 or closes[0].close <= 0:
            return Prediction(0, 0.0, self.version)
        move = closes[-1].close / closes[0].close - 1
        if abs(move) <= self.dead_zone:
            return Prediction(0, 0.0, self.version)
        confidence = float(min(Decimal(1), abs(move) / (self.dead_zone * 4)))
        return Prediction(1 if move > 0 else -1, confidence, self.version)


def get_predictor() -> Predictor:
    path = getattr(settings, "GALFRIDAY_PREDICTOR", "") or "trading.predictor.MomentumBaseline"
    predictor: Predictor = import_string(path)()
    return predictor
