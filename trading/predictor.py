"""What the decision pipeline asks of a model: a small interface trading defines, so trading never imports the
model registry. Settings wire it (`GALFRIDAY_PREDICTOR`) to the registry's predictor; while no model version
that passed the promotion gates serves a symbol, the predictor says so (`Prediction.reason`) and the symbol is
not traded.

Bars come through `BarSource`, wired to the time-series store (`timeseries`, a leaf package: trading
imports it, it imports nothing of trading).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from django.conf import settings
from django.utils.module_loading import import_string

from timeseries import get_store
from timeseries.base import query_fields


@dataclass(frozen=True)
class Prediction:
    signal: int  # -1 sell / 0 flat / +1 buy
    confidence: float  # 0..1
    model_version: str  # what produced it, e.g. "btc-usd-1m-direction v3" (part of the decision id)
    probabilities: Mapping[int, float] | None = None  # class (-1, 0, 1) -> probability
    expected_return: float | None = None  # over the model's horizon, from its probabilities; None: unknown
    model_name: str = ""  # the registered model, when one served
    version: int | None = None
    reason: str = ""  # why there is no signal (e.g. no model serves the symbol, and why)
    # Stores the prediction (the registry's record of it) when called: the pipeline calls it inside the transaction
    # that records the decision, so both commit together (one commit on the way to the exchange).
    record: Callable[[], object] | None = field(default=None, compare=False, repr=False)


class Predictor(Protocol):
    def predict(self, *, symbol: str, bar_time: datetime, decision_id: str) -> Prediction: ...


class BarsPredictor(Protocol):
    """A predictor that can use bars the pipeline has already read: it says which range it reads for a bar
    (`bars_range`) and accepts them as `bars` (reading the store itself when they do not cover that range).
    The pipeline reads that range and the sizing's in one query and hands the window to both."""

    bars_fields: tuple[str, ...]  # the bar fields it reads

    def bars_range(self, *, bar_time: datetime) -> tuple[datetime, datetime]: ...

    def predict(
        self, *, symbol: str, bar_time: datetime, decision_id: str, bars: BarWindow | None = None
    ) -> Prediction: ...


@dataclass(frozen=True)
class BarClose:
    time: datetime
    close: Decimal


@dataclass(frozen=True)
class BarWindow:
    """The stored bars of one series with ``start <= time < end``, oldest first, read once per decision and
    handed to every reader on the decision path (the predictor's features and the sizing's volatility), so
    the bars are not fetched twice. Each point carries only `fields` (those of them it has). Readers take the
    part they need with :meth:`between`; a reader whose range or fields the window does not cover reads the
    store itself (:meth:`covers`)."""

    symbol: str
    interval: str
    start: datetime
    end: datetime
    fields: frozenset[str]
    points: tuple[Any, ...]  # timeseries.Point

    def covers(
        self, *, symbol: str, start: datetime, end: datetime, fields: Iterable[str], interval: str = "1m"
    ) -> bool:
        return (
            self.symbol == symbol
            and self.interval == interval
            and self.start <= start
            and end <= self.end
            and self.fields.issuperset(fields)
        )

    def between(self, start: datetime, end: datetime) -> list[Any]:
        """The points with start <= time < end (the window must cover the range)."""
        if not (self.start <= start and end <= self.end):
            raise ValueError(f"bars {self.start}..{self.end} do not cover {start}..{end}")
        times = [p.time for p in self.points]
        return list(self.points[bisect_left(times, start) : bisect_left(times, end)])


def read_bars(
    *,
    symbol: str,
    start: datetime,
    end: datetime,
    fields: Iterable[str],
    interval: str = "1m",
    require: str | None = None,
    last: int | None = None,
) -> BarWindow:
    """One read of the bars of `symbol` with start <= time < end from the time-series store, only `fields`
    (`timeseries.base.query_fields`: `require`, `last`)."""
    wanted = tuple(sorted(set(fields)))
    store = get_store()
    try:
        points = query_fields(
            store, "bars", start, end, {"symbol": symbol, "interval": interval}, wanted, require=require, last=last
        )
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()
    return BarWindow(
        symbol=symbol, interval=interval, start=start, end=end, fields=frozenset(wanted), points=tuple(points)
    )


def closes_window(*, until: datetime, count: int) -> tuple[datetime, datetime]:
    """The time range `recent_closes` reads: three times `count` minutes back (room for gaps), through `until`."""
    return until - timedelta(minutes=count * 3), until + timedelta(seconds=1)


def recent_closes(
    *, symbol: str, until: datetime, count: int, interval: str = "1m", bars: BarWindow | None = None
) -> list[BarClose]:
    """The last `count` bar closes of `symbol` ending with the bar that starts at `until` (oldest first).
    `bars`: the bars already read for this decision, used when they cover the range (else only the last
    `count` closes are read from the store)."""
    start, end = closes_window(until=until, count=count)
    if bars is not None and bars.covers(symbol=symbol, start=start, end=end, fields=("close",), interval=interval):
        points = bars.between(start, end)
    else:
        window = read_bars(
            symbol=symbol, start=start, end=end, fields=("close",), interval=interval, require="close", last=count
        )
        points = list(window.points)
    closes = [BarClose(p.time, Decimal(p.fields["close"])) for p in points if "close" in p.fields]
    return closes[-count:]


def momentum_signal(move: float, dead_zone: float) -> tuple[int, float]:
    """The momentum baseline rule for one bar: the sign of `move` (the simple return over the lookback) outside a
    dead zone (round-trip fees by default), with a confidence growing with the move's size (full at four dead
    zones). (0, 0.0) inside the dead zone or for a move that is not a number."""
    if not abs(move) > dead_zone:  # NaN lands here too
        return 0, 0.0
    confidence = min(1.0, abs(move) / (dead_zone * 4)) if dead_zone > 0 else 1.0
    return (1 if move > 0 else -1), confidence


def momentum_signals(closes: Sequence[float], *, lookback: int, dead_zone: float) -> tuple[list[int], list[float]]:
    """`momentum_signal` bar by bar over a series of closes: returns (signal, confidence) per close; the first
    `lookback` bars have no view (0, 0). The registry serves the rule as a model kind like any other
    (`models_registry.baselines.MomentumClassifier`), so it trades only if it passes the gates."""
    signals, confidences = [0] * len(closes), [0.0] * len(closes)
    for t in range(lookback, len(closes)):
        first = closes[t - lookback]
        if first > 0:
            signals[t], confidences[t] = momentum_signal(closes[t] / first - 1.0, dead_zone)
    return signals, confidences


class NoPredictor:
    """What decides when no predictor is configured: nothing trades, and each decision says so."""

    def predict(self, *, symbol: str, bar_time: datetime, decision_id: str) -> Prediction:
        reason = f"no predictor is configured (GALFRIDAY_PREDICTOR): {symbol} is not traded"
        return Prediction(0, 0.0, "none", reason=reason)


def get_predictor() -> Predictor:
    path = settings.GALFRIDAY_PREDICTOR or "trading.predictor.NoPredictor"
    predictor: Predictor = import_string(path)()
    return predictor
