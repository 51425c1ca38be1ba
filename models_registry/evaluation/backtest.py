"""Vectorised next-bar backtest of per-bar signals, with fees, slippage and a buy-and-hold comparison.

Timing: the signal for bar t is decided at bar t's close (from features that use bars up to t). Its target
position is filled at the next bar: at bar t+1's open (``fill="open"``, default) or, more conservatively, at
bar t+1's close (``fill="close"``). Nothing is filled on the bar the signal was computed from.

Accounting: positions are fractions of equity in [-1, 1] (negative = short). Bar j's gross return, relative to
equity at close j-1, is::

    a_j * (open_j / close_{j-1} - 1) + b_j * (close_j - open_j) / close_{j-1}

where a_j is the position held from close j-1 to open j and b_j the one held from open j to close j
(fill="open": a_j = target_{j-2}, b_j = target_{j-1}; fill="close": both target_{j-2}). Positions are held at a
constant fraction of equity from bar to bar (the drift between rebalances is not charged). Costs are linear in
turnover: each fill of size |Δposition| costs |Δposition| x (taker_fee + slippage_bps / 10,000) of equity; the
reported fill price is the open (or close) moved against the trade by the slippage. With
``liquidate_at_end`` the final position is closed at the last close and charged like any fill, so net PnL is
after a full round trip. The last signal has no next bar and is never filled. A NaN signal means "no view":
target 0 (flat).

Sizing seam: the target position comes from ``size(signal, confidence, state) -> target``, with a
:class:`SizingState` (bar index and time, close, current target, equity at this close), so the trading app's
sizing and risk code can be plugged in (it returns a fraction of equity in [-1, 1]). The default is
:class:`FixedFractionSizer` (target = fraction x signal), computed vectorised; any other callable is called
bar by bar, in time order.

Risk: with ``risk=RiskGate(...)`` every change of target is an order run through the live pre-trade risk check
(``trading.risk.check_order``) over the simulated account (:mod:`models_registry.evaluation.risk_gate`); a
rejected order is not filled and the rejections are counted by reason.

Buy-and-hold over the same window: target 1 from the first bar's close, filled and charged the same way (the
reference is not risk-checked).
Returns and fill prices are floats: they are evaluation statistics, not booked money.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import pandas as pd

from models_registry.evaluation.metrics import BARS_PER_YEAR, trading_metrics
from models_registry.evaluation.risk_gate import RiskGate, RiskGateRun
from models_registry.labels import DEFAULT_TAKER_FEE

FillAt = Literal["open", "close"]


SIZING_HISTORY = 240  # closes a sizing function sees: this bar's and up to 239 before it


@dataclass(frozen=True)
class SizingState:
    """What a sizing function knows when it decides the target for bar `index` (at that bar's close)."""

    index: int
    timestamp: pd.Timestamp
    price: float
    position: float
    equity: float
    closes: np.ndarray | None = None  # the last SIZING_HISTORY closes up to and including this bar's (oldest first)
    expected_return: float | None = None  # the signal's expected return over its horizon, when the caller gave one


class SizeFunction(Protocol):
    def __call__(self, signal: float, confidence: float, state: SizingState) -> float: ...


@dataclass(frozen=True)
class FixedFractionSizer:
    """Target = fraction x signal (signal in [-1, 1]; confidence ignored)."""

    fraction: float = 1.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.fraction <= 1.0):
            raise ValueError(f"fraction must be in [0, 1], got {self.fraction!r}")

    def __call__(self, signal: float, confidence: float, state: SizingState) -> float:
        return self.fraction * signal

    def vectorised(self, signals: np.ndarray) -> np.ndarray:
        return self.fraction * signals


@dataclass(frozen=True)
class BacktestResult:
    returns: pd.Series  # net per bar
    gross_returns: pd.Series
    costs: pd.Series
    targets: pd.Series  # decided at each bar's close
    positions: pd.Series  # held at each bar's close (after that bar's fill)
    equity: pd.Series
    trades: pd.DataFrame
    metrics: dict[str, float]
    buy_and_hold_returns: pd.Series
    buy_and_hold_metrics: dict[str, float]
    risk: dict[str, Any] | None = None  # the risk gate's counts (orders checked, rejected by reason), if one ran

    def summary(self) -> dict[str, Any]:
        return {
            "strategy": self.metrics,
            "buy_and_hold": self.buy_and_hold_metrics,
            "excess_net_pnl": self.metrics["net_pnl"] - self.buy_and_hold_metrics["net_pnl"],
            "risk": self.risk,
        }


def _prices(bars: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(bars, pd.DataFrame) or not {"open", "close"} <= set(bars.columns):
        raise ValueError("bars must be a DataFrame with open and close columns")
    if not isinstance(bars.index, pd.DatetimeIndex) or len(bars.index) < 2:
        raise ValueError("bars need a DatetimeIndex and at least 2 bars")
    if not bars.index.is_monotonic_increasing or not bars.index.is_unique:
        raise ValueError("bar timestamps must be strictly increasing")
    opens = np.asarray(bars["open"].to_numpy(), dtype=np.float64)
    closes = np.asarray(bars["close"].to_numpy(), dtype=np.float64)
    if not (np.isfinite(opens).all() and np.isfinite(closes).all() and (opens > 0).all() and (closes > 0).all()):
        raise ValueError("open and close must be finite and > 0 on every bar")
    return opens, closes


def _per_bar(values: Any, index: pd.DatetimeIndex, name: str, default: float) -> np.ndarray:
    if values is None:
        return np.full(len(index), default)
    if isinstance(values, pd.Series):
        if not values.index.equals(index):
            raise ValueError(f"{name} must be indexed like the bars")
        values = values.to_numpy()
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (len(index),):
        raise ValueError(f"{name} must have one value per bar ({len(index)}), got shape {arr.shape}")
    arr = np.where(np.isnan(arr), default, arr)
    if not np.isfinite(arr).all() or (arr < -1).any() or (arr > 1).any():
        raise ValueError(f"{name} must lie in [-1, 1] (NaN allowed: {default})")
    return arr


def _expected_per_bar(values: Any, index: pd.DatetimeIndex) -> np.ndarray | None:
    if values is None:
        return None
    if isinstance(values, pd.Series):
        if not values.index.equals(index):
            raise ValueError("expected must be indexed like the bars")
        values = values.to_numpy()
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (len(index),):
        raise ValueError(f"expected must have one value per bar ({len(index)}), got shape {arr.shape}")
    if np.isinf(arr).any():
        raise ValueError("expected returns must be finite (NaN: unknown)")
    return arr


def _bar_pnl(held_gap: Any, held_bar: Any, gap: Any, intrabar: Any, trade: Any, cost_rate: float) -> tuple[Any, Any]:
    """(gross, cost) of bars; works on arrays and on scalars (the bar-by-bar sizing loop)."""
    return held_gap * gap + held_bar * intrabar, np.abs(trade) * cost_rate


def _positions_from_targets(targets: np.ndarray, fill: FillAt) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(held during gap, held during bar, trade) per bar from the targets decided at each close."""
    prev1 = np.concatenate(([0.0], targets[:-1]))
    prev2 = np.concatenate(([0.0, 0.0], targets[:-2]))
    if fill == "open":
        return prev2, prev1, prev1 - prev2
    return prev2, prev2, prev1 - prev2


def _simulate(
    index: pd.DatetimeIndex,
    opens: np.ndarray,
    closes: np.ndarray,
    targets: np.ndarray,
    *,
    fill: FillAt,
    cost_rate: float,
    slippage: float,
    liquidate_at_end: bool,
) -> dict[str, Any]:
    prev_close = np.concatenate(([closes[0]], closes[:-1]))
    gap = np.where(np.arange(len(opens)) == 0, 0.0, opens / prev_close - 1.0)
    intrabar = np.where(np.arange(len(opens)) == 0, 0.0, (closes - opens) / prev_close)
    held_gap, held_bar, trade = _positions_from_targets(targets, fill)
    gross, cost = _bar_pnl(held_gap, held_bar, gap, intrabar, trade, cost_rate)
    position_after = held_bar + trade if fill == "close" else held_bar  # = the previous bar's target either way
    trade_price = (opens if fill == "open" else closes).copy()
    trade_kind = np.full(len(opens), fill, dtype=object)
    trades = [
        (
            index[j],
            trade_kind[j],
            trade_price[j] * (1 + slippage * np.sign(trade[j])),
            position_after[j] - trade[j],
            position_after[j],
            trade[j],
            cost[j],
        )
        for j in np.flatnonzero(trade)
    ]
    cost = cost.copy()
    final = float(position_after[-1])
    if liquidate_at_end and final != 0.0:
        exit_cost = abs(final) * cost_rate
        cost[-1] += exit_cost
        trades.append((index[-1], "close", closes[-1] * (1 - slippage * np.sign(final)), final, 0.0, -final, exit_cost))
        position_after = position_after.copy()
        position_after[-1] = 0.0
    net = gross - cost
    frame = pd.DataFrame(
        trades, columns=["timestamp", "fill", "price", "from_position", "to_position", "delta", "cost"]
    )
    return {
        "net": net,
        "gross": gross,
        "cost": cost,
        "positions": position_after,
        "trades": frame,
        "turnover": float(np.abs(frame["delta"]).sum()) if len(frame) else 0.0,
    }


def _targets_by_loop(
    index: pd.DatetimeIndex,
    opens: np.ndarray,
    closes: np.ndarray,
    signals: np.ndarray,
    confidence: np.ndarray,
    size: SizeFunction,
    *,
    fill: FillAt,
    cost_rate: float,
    gate: RiskGateRun | None = None,
    expected: np.ndarray | None = None,
) -> np.ndarray:
    """Targets from a bar-by-bar sizing function; equity in its state follows the same per-bar accounting.
    With a risk `gate`, each change of target is an order that must pass the live pre-trade check; a rejected
    one leaves the previous target in place."""
    n = len(signals)
    targets = np.zeros(n)
    equity = 1.0
    stamps = list(index)  # boxed once, not per bar
    days = (index.asi8 // 86_400_000_000_000).tolist() if gate is not None else []  # UTC day numbers
    for t in range(n):
        if t > 0:
            window = targets[max(0, t - 2) : t]
            prev1 = window[-1]
            prev2 = window[-2] if len(window) == 2 else 0.0
            held_gap, held_bar = (prev2, prev1) if fill == "open" else (prev2, prev2)
            gross, cost = _bar_pnl(
                held_gap,
                held_bar,
                opens[t] / closes[t - 1] - 1.0,
                (closes[t] - opens[t]) / closes[t - 1],
                prev1 - prev2,
                cost_rate,
            )
            equity *= 1.0 + float(gross) - float(cost)
        state = SizingState(
            index=t,
            timestamp=stamps[t],
            price=float(closes[t]),
            position=float(targets[t - 1]) if t else 0.0,
            equity=equity,
            closes=closes[max(0, t - SIZING_HISTORY + 1) : t + 1],
            expected_return=None if expected is None or math.isnan(expected[t]) else float(expected[t]),
        )
        target = float(size(float(signals[t]), float(confidence[t]), state))
        if not (math.isfinite(target) and -1.0 <= target <= 1.0):
            raise ValueError(f"size() returned {target!r} for bar {index[t]}; targets must lie in [-1, 1]")
        if gate is not None:
            target = gate.decide(
                timestamp=stamps[t],
                day=days[t],
                close=float(closes[t]),
                equity_factor=equity,
                current=state.position,
                desired=target,
            )
        targets[t] = target
    return targets


def run_backtest(
    bars: pd.DataFrame,
    signals: pd.Series | np.ndarray,
    *,
    confidence: pd.Series | np.ndarray | None = None,
    size: SizeFunction | None = None,
    taker_fee: float = DEFAULT_TAKER_FEE,
    slippage_bps: float = 5.0,
    fill: FillAt = "open",
    liquidate_at_end: bool = True,
    periods_per_year: float = BARS_PER_YEAR,
    trial_sharpes: list[float] | None = None,
    risk: RiskGate | None = None,
    expected: pd.Series | np.ndarray | None = None,
) -> BacktestResult:
    """Backtest per-bar signals in [-1, 1] decided at each bar's close; see the module doc for the timing.

    `expected`: per bar, the signal's expected return over its horizon (NaN: unknown), handed to the sizing
    function in its state (the live sizing weighs it against the trading cost).

    With `risk`, every order the targets imply goes through the live pre-trade risk check
    (:mod:`models_registry.evaluation.risk_gate`); rejected orders are not filled, and the counts by reason
    are in ``result.risk`` and, as ``risk_*`` entries, in ``result.metrics``."""
    opens, closes = _prices(bars)
    index = bars.index
    if fill not in ("open", "close"):
        raise ValueError(f"fill must be 'open' or 'close', got {fill!r}")
    if not (0.0 <= taker_fee < 0.1):
        raise ValueError(f"taker_fee must be in [0, 0.1), got {taker_fee!r}")
    if not (math.isfinite(slippage_bps) and 0.0 <= slippage_bps < 1000):
        raise ValueError(f"slippage_bps must be in [0, 1000), got {slippage_bps!r}")
    sig = _per_bar(signals, index, "signals", 0.0)
    conf = _per_bar(confidence, index, "confidence", 1.0)
    exp = _expected_per_bar(expected, index)
    slippage = slippage_bps / 10_000.0
    cost_rate = taker_fee + slippage
    sizer = FixedFractionSizer() if size is None else size
    gate = risk.start() if risk is not None else None
    if isinstance(sizer, FixedFractionSizer) and gate is None:
        targets = sizer.vectorised(sig)
    else:
        if isinstance(sizer, FixedFractionSizer):
            wanted = sizer.vectorised(sig)

            def by_bar(signal: float, confidence: float, state: SizingState) -> float:
                return float(wanted[state.index])

            sizer = by_bar
        targets = _targets_by_loop(
            index, opens, closes, sig, conf, sizer, fill=fill, cost_rate=cost_rate, gate=gate, expected=exp
        )

    run, hold = (
        _simulate(
            index,
            opens,
            closes,
            t,
            fill=fill,
            cost_rate=cost_rate,
            slippage=slippage,
            liquidate_at_end=liquidate_at_end,
        )
        for t in (targets, np.ones(len(index)))
    )
    net = pd.Series(run["net"], index=index, name="net_return")
    hold_net = pd.Series(hold["net"], index=index, name="buy_and_hold_return")
    return BacktestResult(
        returns=net,
        gross_returns=pd.Series(run["gross"], index=index, name="gross_return"),
        costs=pd.Series(run["cost"], index=index, name="cost"),
        targets=pd.Series(targets, index=index, name="target"),
        positions=pd.Series(run["positions"], index=index, name="position"),
        equity=pd.Series(np.cumprod(1.0 + run["net"]), index=index, name="equity"),
        trades=run["trades"],
        metrics={
            **trading_metrics(
                run["net"], turnover=run["turnover"], periods_per_year=periods_per_year, trial_sharpes=trial_sharpes
            ),
            **(gate.metrics() if gate is not None else {}),
        },
        buy_and_hold_returns=hold_net,
        buy_and_hold_metrics=trading_metrics(hold["net"], turnover=hold["turnover"], periods_per_year=periods_per_year),
        risk=gate.summary() if gate is not None else None,
    )
