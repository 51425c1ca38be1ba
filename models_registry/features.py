"""The model feature set: one implementation for training (batch) and live prediction (incremental).

Input: 1-minute bars, a DataFrame indexed by tz-aware UTC bar start time (strictly increasing), with columns
``high``, ``low``, ``close``, ``volume`` (``open``, ``vwap``, ``trades`` may be present and are not used), and
optionally the top of book at bar close: ``best_bid``, ``best_ask``, ``bid_qty``, ``ask_qty``. Values may be
``Decimal`` (as in the store); they are converted to float64 here, at the feature boundary, and nowhere else.

One implementation
    All arithmetic lives in :func:`_compute_block`, which turns a block of bars plus a bounded state (the last
    60 log closes, 1-bar returns and volumes, and the states of the exponential filters) into feature rows and
    the next state. :func:`compute_features` runs it over the history in chunks; :class:`IncrementalFeatures`
    runs it on one bar at a time. Rolling statistics are computed over explicit windows (not running sums) and
    the exponential averages with ``scipy.signal.lfilter`` carrying its filter state, so a row does not depend
    on how the history was cut into blocks (equal to ~1e-12 relative; tests check it).

Features (horizons and windows count bars, not minutes: a gap in the bar series is not filled here)
    ``ret_{1,5,15,60}``   log(close_t / close_{t-k})
    ``vol_{15,60}``       sample std (ddof=1) of the last k 1-bar log returns
    ``rsi_14``            Wilder's RSI on close-to-close changes, 0..100; the averages are Wilder's smoothing
                          (EMA with alpha = 1/14) seeded with the first change. No losses: 100; no change: 50.
    ``macd``, ``macd_signal``, ``macd_hist``
                          EMA12(close) - EMA26(close) (EMAs seeded with the first close), its EMA9, and their
                          difference, each divided by close_t (so the model sees a scale-free quantity).
    ``volume_z_60``       (volume_t - mean) / std over the last 60 volumes including bar t (ddof=1); 0 when the
                          window has no dispersion.
    ``spread_rel``        (ask - bid) / mid at bar close
    ``book_imbalance``    (bid_qty - ask_qty) / (bid_qty + ask_qty), in [-1, 1]
    ``book_missing``      1.0 when the top of book for the bar is missing or unusable, else 0.0
    ``range_rel``         (high - low) / close
    ``close_pos``         (close - low) / (high - low); 0.5 when high == low

Missing top of book (policy)
    When the book columns are absent, or a bar's values are missing (None/NaN), non-positive, crossed
    (ask < bid) or have no quantity, that bar gets ``spread_rel = 0``, ``book_imbalance = 0`` and
    ``book_missing = 1``. Rows are never NaN because of the book, so every scikit-learn model can consume them
    and a model trained with book data still gets a defined (flagged) input when the book feed drops.

Warm-up
    The first :data:`WARMUP_BARS` (240 bars, 4 hours) rows are all NaN. The windows need only 61 bars; the rest
    lets the seeded exponential averages forget their seed ((13/14)^240 ~ 2e-8), so features computed on a
    history that starts later (a live process primed with the last few hours from the store) match the training
    features computed on the full history to ~1e-6 relative or better. :func:`drop_warmup` removes these rows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view
from scipy.signal import lfilter

FEATURE_SET_NAME = "kraken_bars_1m"
FEATURE_SET_VERSION = 1

RETURN_HORIZONS: tuple[int, ...] = (1, 5, 15, 60)
VOLATILITY_WINDOWS: tuple[int, ...] = (15, 60)
RSI_PERIOD = 14
MACD_FAST, MACD_SLOW, MACD_SIGNAL = 12, 26, 9
VOLUME_Z_WINDOW = 60
WARMUP_BARS = 240

FEATURE_NAMES: tuple[str, ...] = (
    *(f"ret_{k}" for k in RETURN_HORIZONS),
    *(f"vol_{k}" for k in VOLATILITY_WINDOWS),
    f"rsi_{RSI_PERIOD}",
    "macd",
    "macd_signal",
    "macd_hist",
    f"volume_z_{VOLUME_Z_WINDOW}",
    "spread_rel",
    "book_imbalance",
    "book_missing",
    "range_rel",
    "close_pos",
)
FEATURE_DTYPES: dict[str, str] = dict.fromkeys(FEATURE_NAMES, "float64")
"""The model signature: ordered feature names and their dtypes."""

REQUIRED_COLUMNS: tuple[str, ...] = ("high", "low", "close", "volume")
BOOK_COLUMNS: tuple[str, ...] = ("best_bid", "best_ask", "bid_qty", "ask_qty")

_LOOKBACK = max(*RETURN_HORIZONS, *VOLATILITY_WINDOWS, VOLUME_Z_WINDOW)  # bars of raw history kept in the state
_CHUNK_ROWS = 65_536
_N_FEATURES = len(FEATURE_NAMES)

if WARMUP_BARS <= _LOOKBACK:  # pragma: no cover - guards edits of the constants above
    raise RuntimeError("WARMUP_BARS must exceed the longest window")


class FeatureInputError(ValueError):
    """Bars that cannot be turned into features (missing columns, bad index, invalid prices)."""


def feature_signature() -> list[dict[str, str]]:
    """The model signature of this feature set, in column order (for the registry)."""
    return [{"name": name, "dtype": FEATURE_DTYPES[name]} for name in FEATURE_NAMES]


# --- conversion and validation at the boundary -------------------------------------------------------------


@dataclass(frozen=True)
class _BarArrays:
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    best_bid: np.ndarray
    best_ask: np.ndarray
    bid_qty: np.ndarray
    ask_qty: np.ndarray

    def __len__(self) -> int:
        return int(self.close.shape[0])

    def slice(self, start: int, stop: int) -> _BarArrays:
        return _BarArrays(**{name: getattr(self, name)[start:stop] for name in _BAR_FIELDS})


_BAR_FIELDS: tuple[str, ...] = (*REQUIRED_COLUMNS, *BOOK_COLUMNS)


def _to_float_array(values: Any) -> np.ndarray:
    """float64 array from floats, ints or Decimals; None becomes NaN."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return np.fromiter((math.nan if v is None else float(v) for v in values), dtype=np.float64)


def _to_float(value: Any) -> float:
    if value is None:
        return math.nan
    if isinstance(value, float):
        return value
    if isinstance(value, int | Decimal):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise FeatureInputError(f"not a number: {value!r}") from exc


def _is_utc(tz: Any) -> bool:
    return tz is not None and str(tz) in {"UTC", "Etc/UTC", "UTC+00:00", "utc"}


def _validate(bars: _BarArrays, where: Any) -> None:
    """Shared checks for batch and live bars; `where` maps a row number to a label for messages."""
    for name in REQUIRED_COLUMNS:
        bad = ~np.isfinite(getattr(bars, name))
        if bad.any():
            raise FeatureInputError(f"{name} is missing or not finite at {where(int(np.argmax(bad)))}")
    checks = (
        (bars.close <= 0, "close must be > 0"),
        (bars.volume < 0, "volume must be >= 0"),
        (bars.high < bars.low, "high must be >= low"),
        ((bars.close > bars.high) | (bars.close < bars.low), "close must lie within [low, high]"),
    )
    for bad, message in checks:
        if bad.any():
            raise FeatureInputError(f"{message} (first violation at {where(int(np.argmax(bad)))})")


def _arrays_from_frame(bars: pd.DataFrame) -> _BarArrays:
    if not isinstance(bars, pd.DataFrame):
        raise FeatureInputError(f"bars must be a pandas DataFrame, got {type(bars).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in bars.columns]
    if missing:
        raise FeatureInputError(f"bars lack required columns {missing}")
    index = bars.index
    if not isinstance(index, pd.DatetimeIndex) or not _is_utc(index.tz):
        raise FeatureInputError("bars must be indexed by a tz-aware UTC DatetimeIndex (bar start time)")
    if len(index) > 1 and not (index[1:] > index[:-1]).all():
        raise FeatureInputError("bar timestamps must be strictly increasing (no duplicates)")
    n = len(bars)
    nan = np.full(n, np.nan)
    arrays = {c: _to_float_array(bars[c].to_numpy()) for c in REQUIRED_COLUMNS}
    arrays |= {c: _to_float_array(bars[c].to_numpy()) if c in bars.columns else nan for c in BOOK_COLUMNS}
    result = _BarArrays(**arrays)
    _validate(result, lambda i: index[i])
    return result


# --- the one implementation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _KernelState:
    """Everything a feature row depends on besides the current bar. Bounded: O(_LOOKBACK)."""

    n_seen: int = 0
    prev_close: float = math.nan
    log_close_tail: np.ndarray = field(default_factory=lambda: np.full(_LOOKBACK, np.nan))
    ret_tail: np.ndarray = field(default_factory=lambda: np.full(_LOOKBACK - 1, np.nan))
    volume_tail: np.ndarray = field(default_factory=lambda: np.full(_LOOKBACK - 1, np.nan))
    ema_fast: np.ndarray | None = None  # lfilter states (None until the first value seeds the filter)
    ema_slow: np.ndarray | None = None
    ema_signal: np.ndarray | None = None
    avg_gain: np.ndarray | None = None
    avg_loss: np.ndarray | None = None


def _ema(x: np.ndarray, alpha: float, zi: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """y[i] = alpha * x[i] + (1 - alpha) * y[i-1], seeded with y[0] = x[0]; returns (y, filter state)."""
    if x.size == 0:
        return x.copy(), zi
    if zi is None:
        zi = np.array([(1.0 - alpha) * x[0]])
    y, zf = lfilter(np.array([alpha]), np.array([1.0, alpha - 1.0]), x, zi=zi)
    return y, zf


def _rolling_mean_std(tail: np.ndarray, new: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and sample std (ddof=1) of the `window` values ending at each element of `new`."""
    ext = np.concatenate((tail[len(tail) - (window - 1) :], new))
    win = sliding_window_view(ext, window)
    mean = win.sum(axis=1) / window
    dev = win - mean[:, None]
    std = np.sqrt((dev * dev).sum(axis=1) / (window - 1))
    return mean, std


def _tail(old: np.ndarray, new: np.ndarray) -> np.ndarray:
    size = len(old)
    return np.concatenate((old, new))[-size:].copy()


def _compute_block(bars: _BarArrays, state: _KernelState) -> tuple[np.ndarray, _KernelState]:
    """Feature rows (n x len(FEATURE_NAMES)) for a block of consecutive bars following `state`."""
    n = len(bars)
    out = np.empty((n, _N_FEATURES))
    close = bars.close
    col = 0

    log_close = np.log(close)
    lc_ext = np.concatenate((state.log_close_tail, log_close))
    for k in RETURN_HORIZONS:
        out[:, col] = lc_ext[_LOOKBACK:] - lc_ext[_LOOKBACK - k : _LOOKBACK - k + n]
        col += 1
    ret1 = out[:, 0].copy()  # the warm-up mask below overwrites `out`; the state needs the true returns

    for w in VOLATILITY_WINDOWS:
        out[:, col] = _rolling_mean_std(state.ret_tail, ret1, w)[1]
        col += 1

    # RSI (Wilder): changes need the previous close; the very first bar has none.
    close_ext = close if math.isnan(state.prev_close) else np.concatenate(([state.prev_close], close))
    change = np.diff(close_ext)
    avg_gain, gain_z = _ema(np.maximum(change, 0.0), 1.0 / RSI_PERIOD, state.avg_gain)
    avg_loss, loss_z = _ema(np.maximum(-change, 0.0), 1.0 / RSI_PERIOD, state.avg_loss)
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)
    rsi = np.where(avg_loss == 0.0, np.where(avg_gain == 0.0, 50.0, 100.0), rsi)
    out[:, col] = np.nan
    out[n - len(rsi) :, col] = rsi
    col += 1

    fast, fast_z = _ema(close, 2.0 / (MACD_FAST + 1), state.ema_fast)
    slow, slow_z = _ema(close, 2.0 / (MACD_SLOW + 1), state.ema_slow)
    line = fast - slow
    signal, signal_z = _ema(line, 2.0 / (MACD_SIGNAL + 1), state.ema_signal)
    out[:, col] = line / close
    out[:, col + 1] = signal / close
    out[:, col + 2] = (line - signal) / close
    col += 3

    v_mean, v_std = _rolling_mean_std(state.volume_tail, bars.volume, VOLUME_Z_WINDOW)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:, col] = np.where(v_std > 0.0, (bars.volume - v_mean) / v_std, 0.0)
    col += 1

    bid, ask, bid_qty, ask_qty = bars.best_bid, bars.best_ask, bars.bid_qty, bars.ask_qty
    with np.errstate(invalid="ignore"):
        qty = bid_qty + ask_qty
        book_ok = (bid > 0) & (ask >= bid) & (bid_qty >= 0) & (ask_qty >= 0) & (qty > 0) & np.isfinite(ask + qty)
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:, col] = np.where(book_ok, (ask - bid) / ((ask + bid) / 2.0), 0.0)
        out[:, col + 1] = np.where(book_ok, (bid_qty - ask_qty) / qty, 0.0)
    out[:, col + 2] = np.where(book_ok, 0.0, 1.0)
    col += 3

    bar_range = bars.high - bars.low
    out[:, col] = bar_range / close
    with np.errstate(divide="ignore", invalid="ignore"):
        out[:, col + 1] = np.where(bar_range > 0.0, (close - bars.low) / bar_range, 0.5)

    warm = WARMUP_BARS - state.n_seen
    if warm > 0:
        out[: min(warm, n), :] = np.nan

    new_state = _KernelState(
        n_seen=state.n_seen + n,
        prev_close=float(close[-1]),
        log_close_tail=_tail(state.log_close_tail, log_close),
        ret_tail=_tail(state.ret_tail, ret1),
        volume_tail=_tail(state.volume_tail, bars.volume),
        ema_fast=fast_z,
        ema_slow=slow_z,
        ema_signal=signal_z,
        avg_gain=gain_z,
        avg_loss=loss_z,
    )
    return out, new_state


def _run(bars: _BarArrays, state: _KernelState) -> tuple[np.ndarray, _KernelState]:
    parts = []
    for start in range(0, len(bars), _CHUNK_ROWS):
        block, state = _compute_block(bars.slice(start, start + _CHUNK_ROWS), state)
        parts.append(block)
    rows = np.concatenate(parts) if parts else np.empty((0, _N_FEATURES))
    return rows, state


# --- public API ---------------------------------------------------------------------------------------------


def compute_features(bars: pd.DataFrame) -> pd.DataFrame:
    """Feature rows for every bar (same index; columns :data:`FEATURE_NAMES`, float64; warm-up rows NaN).

    Row t uses bars up to and including t only (no look-ahead).
    """
    rows, _ = _run(_arrays_from_frame(bars), _KernelState())
    return pd.DataFrame(rows, index=bars.index.copy(), columns=list(FEATURE_NAMES))


def drop_warmup(features: pd.DataFrame) -> pd.DataFrame:
    """The rows past the warm-up (the only rows with NaN are warm-up rows)."""
    return features.loc[features.notna().all(axis=1)]


@dataclass(frozen=True)
class FeatureRow:
    """One bar's features, values in :data:`FEATURE_NAMES` order (the model's input row)."""

    timestamp: datetime
    values: np.ndarray

    @property
    def is_warm(self) -> bool:
        """False during the warm-up (values are NaN)."""
        return not bool(np.isnan(self.values).any())

    def as_dict(self) -> dict[str, float]:
        return dict(zip(FEATURE_NAMES, self.values.tolist(), strict=True))


class IncrementalFeatures:
    """Live features: feed closed bars one at a time; state is bounded (the last 60 bars and filter states).

    ``update`` runs the same kernel as :func:`compute_features` on a one-bar block, so the row equals the batch
    row for the same bar given the same history. Prime it with recent history from the store
    (:meth:`from_history`, at least :data:`WARMUP_BARS` bars) before trading on its output.
    """

    def __init__(self) -> None:
        self._state = _KernelState()
        self._last_timestamp: pd.Timestamp | None = None

    @classmethod
    def from_history(cls, bars: pd.DataFrame) -> IncrementalFeatures:
        """A calculator whose state is as if every bar of `bars` had been fed through :meth:`update`."""
        arrays = _arrays_from_frame(bars)
        inc = cls()
        _, inc._state = _run(arrays, inc._state)
        if len(bars):
            inc._last_timestamp = pd.Timestamp(bars.index[-1])
        return inc

    @property
    def bars_seen(self) -> int:
        return self._state.n_seen

    @property
    def is_warm(self) -> bool:
        return self._state.n_seen >= WARMUP_BARS

    def update(self, timestamp: datetime, bar: Mapping[str, Any]) -> FeatureRow:
        """The feature row for a newly closed bar (keys as the batch columns; Decimals accepted)."""
        ts = pd.Timestamp(timestamp)
        if ts.tzinfo is None or not _is_utc(ts.tzinfo):
            raise FeatureInputError(f"bar timestamp must be tz-aware UTC, got {timestamp!r}")
        if self._last_timestamp is not None and ts <= self._last_timestamp:
            raise FeatureInputError(f"bar at {ts} does not follow the previous bar at {self._last_timestamp}")
        try:
            values = {name: _to_float(bar[name]) for name in REQUIRED_COLUMNS}
        except KeyError as exc:
            raise FeatureInputError(f"bar lacks required field {exc.args[0]!r}") from None
        values |= {name: _to_float(bar.get(name)) for name in BOOK_COLUMNS}
        arrays = _BarArrays(**{name: np.array([value]) for name, value in values.items()})
        _validate(arrays, lambda _i: ts)
        rows, self._state = _compute_block(arrays, self._state)
        self._last_timestamp = ts
        return FeatureRow(timestamp=ts.to_pydatetime(), values=rows[0])

    def snapshot(self) -> IncrementalFeatures:
        """An independent copy (the state is immutable, so this is cheap)."""
        copy = IncrementalFeatures()
        copy._state = replace(self._state)
        copy._last_timestamp = self._last_timestamp
        return copy
