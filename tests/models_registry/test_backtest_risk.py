"""The backtest runs every simulated order through the live pre-trade risk check (`trading.risk.check_order`):
rejected orders are not filled, and the rejections are counted by reason; training evaluates with the limits,
rules and equity live trading would use."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from django.utils import timezone

from models_registry.evaluation import RiskGate, run_backtest
from models_registry.evaluation.backtest import FixedFractionSizer
from models_registry.training import TrainingConfig, backtest_risk_gate, evaluate_and_fit
from tests.models_registry.synthetic import make_bars
from tests.trading.factories import InstrumentFactory
from trading.limits import risk_limit_set
from trading.models import EquitySnapshot
from trading.risk import DEFAULT_LIMITS, limits_merged

BARS = make_bars(3000, seed=11, book=False)


def _long_flat_signals(n: int, seed: int = 0) -> np.ndarray:
    """Long for a while, then flat, a few dozen times: few orders, so costs and drawdown stay small."""
    rng = np.random.default_rng(seed)
    out = np.zeros(n)
    t = 0
    while t < n:
        length = int(rng.integers(20, 80))
        out[t : t + length] = float(rng.integers(0, 2))
        t += length
    return out


def _gate(**limits: object) -> RiskGate:
    return RiskGate(limits=limits_merged(DEFAULT_LIMITS, limits))


SIGNALS = _long_flat_signals(len(BARS))
SIZER = FixedFractionSizer(0.1)


def test_with_default_limits_every_order_passes_and_the_result_is_unchanged() -> None:
    plain = run_backtest(BARS, SIGNALS, size=SIZER)
    checked = run_backtest(BARS, SIGNALS, size=SIZER, risk=RiskGate())

    assert checked.risk is not None
    changes = int(np.count_nonzero(np.diff(np.r_[0.0, 0.1 * SIGNALS])))  # one order per change of target
    assert checked.risk["orders_checked"] == changes > 10
    assert checked.risk["orders_rejected"] == 0
    assert checked.risk["rejections"] == {}
    np.testing.assert_allclose(checked.returns.to_numpy(), plain.returns.to_numpy(), rtol=0, atol=1e-15)
    assert checked.metrics["risk_orders_rejected"] == 0.0
    assert checked.summary()["risk"] == checked.risk


def test_a_tiny_order_limit_rejects_every_order_and_nothing_is_filled() -> None:
    # As live: the order is cut to the notional limit (1 USD), which is below BTC/USD's minimum quantity,
    # so the check refuses it; the position never moves.
    result = run_backtest(BARS, SIGNALS, size=SIZER, risk=_gate(max_order_notional=Decimal("1")))

    assert result.risk is not None
    assert result.risk["orders_checked"] > 10
    assert result.risk["orders_passed"] == 0
    assert result.risk["rejections"] == {"below_ordermin": result.risk["orders_checked"]}
    assert result.risk["capped_to_limits"] == result.risk["orders_checked"]
    assert result.trades.empty
    assert (result.positions == 0).all()
    assert result.metrics["net_pnl"] == 0.0
    assert result.metrics["risk_rejected_below_ordermin"] == result.risk["orders_checked"]


def test_a_gross_exposure_limit_refuses_growing_orders_but_never_reducing_ones() -> None:
    # 600 USD of gross exposure: a 10% position of 10,000 (1,000 USD) may not be opened at all.
    result = run_backtest(BARS, SIGNALS, size=SIZER, risk=_gate(max_gross_exposure=Decimal("600")))

    assert result.risk is not None
    assert result.risk["rejections"] == {"max_gross_exposure": result.risk["orders_rejected"]}
    assert result.risk["orders_passed"] == 0
    assert result.metrics["net_pnl"] == 0.0

    # Half of it open already (a 5% position), then the signal asks for 10% for 100 bars: the growth is refused
    # at each of those bars' decisions (as live, where each bar decides again); the sell back to flat reduces
    # the position and passes.
    stepped = np.zeros(len(BARS))
    stepped[10:100] = 0.05
    stepped[100:200] = 0.1
    result = run_backtest(BARS, stepped, size=FixedFractionSizer(1.0), risk=_gate(max_gross_exposure=Decimal("600")))
    assert result.risk is not None
    assert result.risk["rejections"] == {"max_gross_exposure": 100}
    assert result.risk["orders_passed"] == 2  # open 5%, close it
    assert result.positions.iloc[150] == pytest.approx(0.05)


def test_spot_cannot_go_short_selling_beyond_the_position_is_refused() -> None:
    signals = -SIGNALS  # sell signals only
    unchecked = run_backtest(BARS, signals, size=SIZER)
    checked = run_backtest(BARS, signals, size=SIZER, risk=RiskGate())

    assert not unchecked.trades.empty  # the bare backtest would short
    assert checked.risk is not None
    assert checked.risk["rejections"] == {"insufficient_balance": checked.risk["orders_checked"]}
    assert checked.trades.empty
    assert checked.metrics["net_pnl"] == 0.0


def test_a_breached_daily_loss_limit_stops_new_positions_for_the_day() -> None:
    # A falling market: fully invested, equity loses more than 1 USD quickly; after that only exits pass.
    index = pd.date_range("2024-05-01", periods=400, freq="min", tz="UTC")
    close = 30_000.0 * np.exp(-np.arange(400) * 2e-4)
    bars = pd.DataFrame({"open": np.concatenate(([close[0]], close[:-1])), "close": close}, index=index)
    signals = np.tile(np.r_[np.ones(10), np.zeros(10)], 20)
    limited = run_backtest(bars, signals, size=SIZER, risk=_gate(daily_loss_limit=Decimal("1")))
    free = run_backtest(bars, signals, size=SIZER, risk=RiskGate())

    assert limited.risk is not None
    assert free.risk is not None
    assert free.risk["orders_rejected"] == 0
    assert limited.risk["rejections"].get("daily_loss_limit", 0) >= 5
    assert limited.metrics["net_pnl"] > free.metrics["net_pnl"]  # fewer losing entries in a falling market


def test_training_records_the_risk_counts_and_a_blocking_limit_changes_the_evaluation() -> None:
    # Cost-free, so the edge-less synthetic bars still trade and the risk gate sees orders (costs: own tests).
    config = TrainingConfig(
        model="logreg", horizon=15, dead_zone="auto", n_splits=3, signal_threshold=0.05, taker_fee=0.0, slippage_bps=0.0
    )
    free = evaluate_and_fit(BARS, config)
    blocked = evaluate_and_fit(BARS, config, risk=_gate(max_order_notional=Decimal("1")))

    assert free.metrics["risk_orders_checked"] > 0
    assert free.metrics["risk_orders_rejected"] == 0.0
    assert blocked.metrics["risk_orders_rejected"] == blocked.metrics["risk_orders_checked"] > 0
    assert blocked.metrics["turnover"] == 0.0
    assert blocked.metrics["net_pnl"] == 0.0
    assert free.metrics["turnover"] > 0.0
    assert blocked.hyperparameters["backtest_risk"]["limits"]["max_order_notional"] == "1"


@pytest.mark.django_db
def test_train_model_uses_the_stored_limits_rules_and_equity() -> None:
    assert backtest_risk_gate("BTC/USD") == RiskGate(limits=DEFAULT_LIMITS)  # nothing stored yet: defaults

    instrument = InstrumentFactory(ordermin=Decimal("0.002"))
    risk_limit_set(instrument=None, values={"max_gross_exposure": Decimal("750")}, reason="test", actor="test")
    EquitySnapshot.objects.create(
        taken_at=timezone.now(),
        currency="USD",
        equity=Decimal("25000"),
        realised_pnl=Decimal("0"),
        unrealised_pnl=Decimal("0"),
        fees=Decimal("0"),
        high_water_mark=Decimal("25000"),
        drawdown=Decimal("0"),
    )

    gate = backtest_risk_gate("BTC/USD")

    assert gate.rules.ordermin == Decimal("0.002")
    assert gate.rules.symbol == instrument.symbol
    assert gate.limits.max_gross_exposure == Decimal("750")
    assert gate.limits.max_order_notional == DEFAULT_LIMITS.max_order_notional
    assert gate.capital == Decimal("25000")
