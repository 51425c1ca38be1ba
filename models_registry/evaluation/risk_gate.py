"""The live pre-trade risk check inside the backtest: every simulated order goes through
:func:`trading.risk.check_order` (the pure function that `trading.submission.order_submit_checked` runs on
every live order) over a :class:`~trading.risk.RiskSnapshot` built from the simulated account, and a rejected
order is not filled: the position stays where it was, as it would live.

How the backtest's fractions of equity become orders (the live pipeline's steps, `trading.pipeline._decide`):
  * account: ``capital`` (quote currency) x the backtest's equity curve; spot, so the quote balance is equity
    less the position's value and the base balance is the position (a sell beyond it, i.e. a short, is refused
    as the exchange would refuse it);
  * at bar t's close, with the mid = the close (fresh: the decision is made as the bar closes), the target
    quantity is ``target fraction x equity / mid``, capped at ``max_position_notional / mid``; the order is the
    difference to the current position, rounded down to the lot step; below the exchange minimums there is no
    order (no trade, not a rejection); the order is capped at ``max_order_notional / mid``;
  * the snapshot: trading active, no other open orders (each order fills at the next bar, before the next
    decision), gross exposure = the position at the mid, the orders passed in the last minute, today's (UTC)
    PnL = equity now less equity at the day's first bar, the high-water mark of equity.

Not modelled: the continuous risk monitor's halts (a breached daily loss or drawdown refuses every growing
order here too, through the same check), exchange outages, and the drift of a position between rebalances
(the backtest holds a constant fraction of equity).

Money is Decimal here, as in the live check; the backtest's returns stay floats (evaluation statistics).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_DOWN, Decimal, InvalidOperation
from typing import Any

import pandas as pd

from trading.risk import (
    DEFAULT_LIMITS,
    InstrumentRules,
    Limits,
    OrderIntent,
    RiskSnapshot,
    check_order,
)

ZERO = Decimal(0)

# Kraken's BTC/USD spot rules (as the simulator serves them); `train_model` uses the instrument's stored rules.
DEFAULT_RULES = InstrumentRules(
    symbol="BTC/USD",
    base="BTC",
    quote="USD",
    tick_size=Decimal("0.1"),
    ordermin=Decimal("0.0001"),
    costmin=Decimal("0.5"),
    qty_increment=Decimal("0.00000001"),
)
DEFAULT_CAPITAL = Decimal("10000")


@dataclass(frozen=True)
class RiskGate:
    """What the check needs that the bars do not say: the limits (default: the built-in defaults, which the
    data migration writes as the global RiskLimit row), the instrument's exchange rules, and the capital."""

    limits: Limits = DEFAULT_LIMITS
    rules: InstrumentRules = DEFAULT_RULES
    capital: Decimal = DEFAULT_CAPITAL

    def __post_init__(self) -> None:
        if not isinstance(self.capital, Decimal) or not self.capital.is_finite() or self.capital <= 0:
            raise ValueError(f"capital must be a positive Decimal, got {self.capital!r}")

    def start(self) -> RiskGateRun:
        return RiskGateRun(self)

    def describe(self) -> dict[str, Any]:
        """The inputs, for the version's record (what the evaluated strategy was allowed to do)."""
        return {
            "capital": str(self.capital),
            "symbol": self.rules.symbol,
            "limits": self.limits.to_json(),
            "ordermin": str(self.rules.ordermin),
            "costmin": None if self.rules.costmin is None else str(self.rules.costmin),
        }


def _dec(value: float) -> Decimal:
    try:
        return Decimal(repr(float(value)))
    except InvalidOperation as exc:  # NaN / inf: the backtest validates prices before this
        raise ValueError(f"not a finite number: {value!r}") from exc


@dataclass
class RiskGateRun:
    """One backtest's pass through the gate: the simulated account's order history and the counts."""

    gate: RiskGate
    checked: int = 0
    passed: int = 0
    below_minimum: int = 0
    capped: int = 0
    rejections: Counter[str] = field(default_factory=Counter)  # by risk code (an order may fail several)
    rejected_orders: int = 0
    _recent: list[datetime] = field(default_factory=list)
    _day: int | None = None
    _day_equity: float = 1.0  # equity factors (x capital): at the day's first bar, and the highest so far
    _high_water: float = 1.0

    def _step(self) -> Decimal:
        rules = self.gate.rules
        return rules.qty_increment if rules.qty_increment else Decimal("0.00000001")

    def decide(
        self, *, timestamp: pd.Timestamp, day: int, close: float, equity_factor: float, current: float, desired: float
    ) -> float:
        """The target fraction that is actually held after bar `timestamp`'s decision (`day`: its UTC day
        number): `desired` when its order passes (adjusted to the caps), else `current`. Called for every bar,
        in time order, so it can follow the day's opening equity and the high-water mark."""
        if day != self._day:
            self._day, self._day_equity = day, equity_factor
        if equity_factor > self._high_water:
            self._high_water = equity_factor
        if desired == current:
            return current
        gate, rules, limits = self.gate, self.gate.rules, self.gate.limits
        capital = gate.capital
        cents = Decimal("0.01")
        equity = (capital * _dec(equity_factor)).quantize(cents)
        now = timestamp.to_pydatetime()
        mid = _dec(close).quantize(rules.tick_size)
        if mid <= 0 or equity <= 0:
            return current
        step = self._step()
        position = (_dec(current) * equity / mid).quantize(step, rounding=ROUND_DOWN)
        target = _dec(desired) * equity / mid
        cap = limits.max_position_notional / mid
        capped = abs(target) > cap
        if capped:
            target = cap.copy_sign(target)
        delta = (target - position).quantize(step, rounding=ROUND_DOWN)
        if abs(delta) < rules.ordermin or (rules.costmin and abs(delta) * mid < rules.costmin) or delta == 0:
            self.below_minimum += 1
            return current
        if abs(delta) * mid > limits.max_order_notional:
            delta = (limits.max_order_notional / mid).quantize(step, rounding=ROUND_DOWN).copy_sign(delta)
            capped = True
        self.capped += int(capped)
        snapshot = RiskSnapshot(
            now=now,
            trading_state="active",
            rules=rules,
            limits=limits,
            position_qty=position,
            base_available=max(position, ZERO),
            quote_available=equity - position * mid,
            mid=mid,
            mid_at=now,
            gross_exposure=abs(position) * mid,
            recent_orders=self._recent,
            daily_pnl=equity - (capital * _dec(self._day_equity)).quantize(cents),
            equity=equity,
            high_water_mark=(capital * _dec(self._high_water)).quantize(cents),
        )
        intent = OrderIntent(side="buy" if delta > 0 else "sell", order_type="market", quantity=abs(delta))
        self.checked += 1
        result = check_order(intent, snapshot)
        if not result.ok:
            self.rejected_orders += 1
            self.rejections.update(result.codes)
            return current
        self.passed += 1
        self._recent = [t for t in self._recent if (now - t).total_seconds() < 120] + [now]
        if not capped:  # filled as asked, up to the lot rounding (kept out, or every bar would re-trade dust)
            return desired
        return min(1.0, max(-1.0, float((position + delta) * mid / equity)))

    def summary(self) -> dict[str, Any]:
        return {
            "orders_checked": self.checked,
            "orders_passed": self.passed,
            "orders_rejected": self.rejected_orders,
            "rejections": dict(sorted(self.rejections.items())),
            "below_minimum": self.below_minimum,
            "capped_to_limits": self.capped,
        }

    def metrics(self) -> dict[str, float]:
        """Flat float metrics (recorded on a version): counts, and rejections per risk code."""
        out = {
            "risk_orders_checked": float(self.checked),
            "risk_orders_rejected": float(self.rejected_orders),
            "risk_orders_below_minimum": float(self.below_minimum),
            "risk_orders_capped": float(self.capped),
        }
        out.update({f"risk_rejected_{code}": float(n) for code, n in sorted(self.rejections.items())})
        return out
