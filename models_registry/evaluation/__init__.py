"""Model evaluation: purged walk-forward splits, classification and trading metrics, next-bar backtest.

Plain Python + numpy/pandas/scipy/scikit-learn; no Django imports, so training jobs and notebooks can use it.
"""

from models_registry.evaluation.backtest import BacktestResult, FixedFractionSizer, SizingState, run_backtest
from models_registry.evaluation.metrics import (
    BARS_PER_YEAR,
    classification_metrics,
    deflated_sharpe_ratio,
    expected_max_sharpe,
    max_drawdown,
    probabilistic_sharpe_ratio,
    sharpe_ratio,
    sortino_ratio,
    trading_metrics,
)
from models_registry.evaluation.risk_gate import RiskGate
from models_registry.evaluation.splits import Fold, PurgedWalkForwardCV
from models_registry.evaluation.walk_forward import WalkForwardReport, walk_forward_evaluate

__all__ = [
    "BARS_PER_YEAR",
    "BacktestResult",
    "FixedFractionSizer",
    "Fold",
    "PurgedWalkForwardCV",
    "RiskGate",
    "SizingState",
    "WalkForwardReport",
    "classification_metrics",
    "deflated_sharpe_ratio",
    "expected_max_sharpe",
    "max_drawdown",
    "probabilistic_sharpe_ratio",
    "run_backtest",
    "sharpe_ratio",
    "sortino_ratio",
    "trading_metrics",
    "walk_forward_evaluate",
]
