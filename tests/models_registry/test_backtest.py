"""Next-bar backtest: fills, fees and slippage hand-checked on 5 bars; buy-and-hold; the sizing seam."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models_registry.evaluation.backtest import FixedFractionSizer, SizingState, run_backtest
from tests.models_registry.synthetic import make_bars

OPENS = [100.0, 101.0, 103.0, 102.0, 104.0]
CLOSES = [101.0, 102.0, 102.0, 103.0, 105.0]
SIGNALS = [1.0, 1.0, -1.0, 0.0, 1.0]
COST = 0.004 + 0.001  # taker fee 0.40% + 10 bps slippage, per unit of turnover


def _bars() -> pd.DataFrame:
    index = pd.date_range("2024-01-01", periods=5, freq="min", tz="UTC")
    return pd.DataFrame({"open": OPENS, "close": CLOSES}, index=index)


def test_five_bar_example_fills_at_next_open_with_fees_and_slippage() -> None:
    result = run_backtest(_bars(), SIGNALS, taker_fee=0.004, slippage_bps=10)
    expected = [
        0.0,  # bar 0: signal decided at its close, nothing held yet
        (102 - 101) / 101 - 1 * COST,  # bar 1: buy 1 at open 101, hold to close 102
        (103 / 102 - 1) + (102 - 103) / 102,  # bar 2: long through the gap and the bar, no trade
        (102 / 102 - 1) - (103 - 102) / 102 - 2 * COST,  # bar 3: flip to -1 at open 102 (turnover 2)
        -(104 / 103 - 1) - 1 * COST,  # bar 4: short through the gap, flatten at open 104
    ]
    np.testing.assert_allclose(result.returns.to_numpy(), expected, rtol=1e-12, atol=1e-15)
    assert result.positions.tolist() == [0.0, 1.0, 1.0, -1.0, 0.0]  # the last signal (bar 4) is never filled
    trades = result.trades
    assert trades["delta"].tolist() == [1.0, -2.0, 1.0]
    np.testing.assert_allclose(trades["price"], [101 * 1.001, 102 * 0.999, 104 * 1.001])
    np.testing.assert_allclose(trades["cost"], [COST, 2 * COST, COST])
    assert result.metrics["turnover"] == 4.0
    assert result.metrics["net_pnl"] == pytest.approx(np.prod(1 + np.array(expected)) - 1)
    assert result.equity.iloc[-1] == pytest.approx(1 + result.metrics["net_pnl"])


def test_fill_at_next_close_delays_the_position_by_a_bar() -> None:
    result = run_backtest(_bars(), SIGNALS, taker_fee=0.004, slippage_bps=10, fill="close")
    expected = [
        0.0,
        0.0 - 1 * COST,  # buy 1 at close of bar 1
        (102 / 102 - 1),  # long over bar 2
        (103 / 102 - 1) - 2 * COST,  # long over bar 3, flip at its close
        -(105 / 103 - 1) - 1 * COST,  # short over bar 4, flatten at its close
    ]
    np.testing.assert_allclose(result.returns.to_numpy(), expected, rtol=1e-12, atol=1e-15)


def test_buy_and_hold_over_the_same_window_pays_entry_and_exit() -> None:
    result = run_backtest(_bars(), SIGNALS, taker_fee=0.004, slippage_bps=10)
    expected = [0.0, (102 - 101) / 101 - COST, 102 / 102 - 1, 103 / 102 - 1, 105 / 103 - 1 - COST]
    np.testing.assert_allclose(result.buy_and_hold_returns.to_numpy(), expected, rtol=1e-12, atol=1e-15)
    assert result.buy_and_hold_returns.index.equals(result.returns.index)
    assert result.buy_and_hold_metrics["turnover"] == 2.0
    summary = result.summary()
    assert summary["excess_net_pnl"] == pytest.approx(
        result.metrics["net_pnl"] - result.buy_and_hold_metrics["net_pnl"]
    )


def test_always_long_strategy_equals_buy_and_hold() -> None:
    bars = make_bars(500, seed=1)
    result = run_backtest(bars, np.ones(500))
    np.testing.assert_array_equal(result.returns.to_numpy(), result.buy_and_hold_returns.to_numpy())


def test_signal_at_a_bar_never_affects_that_bars_return() -> None:
    bars = make_bars(300, seed=2)
    signals = np.random.default_rng(0).uniform(-1, 1, 300)
    base = run_backtest(bars, signals, liquidate_at_end=False).returns
    changed = signals.copy()
    changed[200] = -changed[200]
    moved = run_backtest(bars, changed, liquidate_at_end=False).returns
    np.testing.assert_array_equal(base.iloc[:201], moved.iloc[:201])
    assert not np.array_equal(base.iloc[201:], moved.iloc[201:])


def test_nan_signal_means_flat() -> None:
    signals = pd.Series([np.nan] * 5, index=_bars().index)
    result = run_backtest(_bars(), signals)
    assert (result.returns == 0.0).all()
    assert result.trades.empty


def test_custom_sizer_sees_position_and_equity_and_matches_fixed_fraction() -> None:
    bars = make_bars(400, seed=3)
    signals = np.sign(np.random.default_rng(5).normal(size=400))
    seen: list[SizingState] = []

    def half(signal: float, confidence: float, state: SizingState) -> float:
        seen.append(state)
        return 0.5 * signal

    custom = run_backtest(bars, signals, size=half, liquidate_at_end=False)
    default = run_backtest(bars, signals, size=FixedFractionSizer(0.5), liquidate_at_end=False)
    np.testing.assert_allclose(custom.returns.to_numpy(), default.returns.to_numpy(), rtol=0, atol=1e-15)
    assert [s.index for s in seen] == list(range(400))
    assert [s.position for s in seen[1:]] == (0.5 * signals[:-1]).tolist()
    np.testing.assert_allclose([s.equity for s in seen], default.equity.to_numpy(), rtol=1e-12)


def test_sizer_out_of_range_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"targets must lie in \[-1, 1\]"):
        run_backtest(_bars(), SIGNALS, size=lambda s, c, st: 2.0 * s)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"signals": [2.0, 0, 0, 0, 0]}, "signals must lie in"),
        ({"signals": [1.0, 0.0]}, "one value per bar"),
        ({"signals": SIGNALS, "fill": "mid"}, "fill"),
        ({"signals": SIGNALS, "taker_fee": -0.1}, "taker_fee"),
        ({"signals": SIGNALS, "slippage_bps": -1}, "slippage_bps"),
    ],
)
def test_invalid_backtest_inputs_raise(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        run_backtest(_bars(), **kwargs)  # type: ignore[arg-type]
