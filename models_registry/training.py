"""Training: bars from the time-series store -> features and labels -> purged walk-forward evaluation -> final
fit on the whole window -> a registered version with its lineage, metrics and signature.

Pure part (no database): :func:`build_estimator`, :func:`evaluate_and_fit` take a bar DataFrame and a
:class:`TrainingConfig` and return a :class:`TrainingOutcome` (fitted estimator, metrics, hyperparameters). The
benchmark and notebooks call it directly.

Service (:func:`train_model`): keyed by a training request id (a :class:`~models_registry.models.TrainingRun`
row, unique), so running the same request twice - a redelivered Celery task, a repeated command - registers one
version: a finished request returns its version; one still running elsewhere is refused.

Models
    ``hgb``     ``HistGradientBoostingClassifier`` (no early stopping, so the fit is a pure function of the data
                and the seed)
    ``logreg``  ``Pipeline(StandardScaler, LogisticRegression)``
    ``momentum`` the momentum baseline rule with class probabilities fitted per answer of the rule
                (:mod:`models_registry.baselines`): the yardstick, served only if it passes the gates too
    Both are fitted on float64 arrays in :data:`~models_registry.features.FEATURE_NAMES` order; the version's
    signature lists those names.

Labels and signals
    Labels are the sign of the forward return over ``horizon`` bars with a dead zone (``labels.make_labels``):
    by default the round trip at the taker fee. ``dead_zone="auto"`` uses the third quantile of |forward
    return| over the window instead (three roughly balanced classes; useful where moves rarely cover fees, as
    on the simulator; the value used is recorded). The trading signal of a row is
    ``sign(P(up) - P(down))`` when ``|P(up) - P(down)| >= signal_threshold``, else 0; the walk-forward backtest
    sizes positions with that rule and the live sizing code (:class:`LiveSizer`: spot, confidence-weighted,
    volatility-targeted) and checks every order with the live risk check, and the prediction service applies
    the version's recorded threshold, so what was evaluated is what trades.

Metrics (all recorded on the version; non-finite values are left out, so a gate on them fails as "not recorded")
    classification, pooled out of sample: ``accuracy``, ``log_loss``, ``roc_auc_up``, ``roc_auc_ovr``,
    ``brier_up``, ``brier_multiclass``; ``baseline_log_loss`` (each fold's training class frequencies) and
    ``log_loss_skill`` = 1 - log_loss / baseline_log_loss (> 0: better than the prior).
    trading, next-bar backtest of the out-of-sample signals net of fees and slippage, every order through the
    live pre-trade risk check (rejected orders not filled; ``risk_orders_checked``, ``risk_orders_rejected``,
    ``risk_rejected_<code>`` per reason, ``risk_orders_below_minimum``, ``risk_orders_capped``): ``net_pnl``,
    ``sharpe``, ``sortino``, ``max_drawdown``, ``turnover``, ``hit_rate``, ``psr``, ``dsr`` (deflated for ``n_trials``:
    the per-bar Sharpe ratios of this model's earlier versions plus this one), ``sharpe_per_bar``; buy and hold
    over the same bars as ``bh_net_pnl``, ``bh_sharpe``, ``bh_max_drawdown``, and ``excess_net_pnl``.
    data: ``n_samples``, ``n_oos_samples``, ``n_folds``, ``bars_stored``, ``bars_filled``, class shares.
"""

from __future__ import annotations

import contextlib
import logging
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Literal

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from core.errors import ApplicationError, ConflictError
from models_registry import services
from models_registry.baselines import MomentumClassifier
from models_registry.evaluation import PurgedWalkForwardCV, RiskGate, walk_forward_evaluate
from models_registry.evaluation.backtest import run_backtest
from models_registry.evaluation.intervals import direction_hits, expected_calibration_error
from models_registry.evaluation.metrics import deflated_sharpe_ratio, return_moments
from models_registry.evaluation.walk_forward import class_mean_returns
from models_registry.features import (
    FEATURE_DTYPES,
    FEATURE_NAMES,
    FEATURE_SET_NAME,
    FEATURE_SET_VERSION,
    WARMUP_BARS,
    compute_features,
)
from models_registry.history import load_bars
from models_registry.labels import DEFAULT_TAKER_FEE, LABEL_CLASSES, make_labels
from models_registry.models import ModelVersion, RegisteredModel, Stage, TrainingRun
from models_registry.outcomes import net_return
from trading.costs import CostModel, NoTradeBand, trade_check
from trading.instruments import instrument_rules
from trading.models import EquitySnapshot, Instrument
from trading.pipeline import SizingPolicy, annualised_volatility, target_quantity
from trading.predictor import Prediction, momentum_signals
from trading.selectors import account_currency, risk_limits_effective

logger = logging.getLogger(__name__)

ModelKind = Literal["hgb", "logreg", "momentum"]
MODEL_KINDS: tuple[str, ...] = ("hgb", "logreg", "momentum")
DEFAULT_HORIZON = 15
DEFAULT_MIN_SAMPLES = 300
_DOWN, _UP = LABEL_CLASSES.index(-1), LABEL_CLASSES.index(1)

DEFAULT_HYPERPARAMETERS: dict[str, dict[str, Any]] = {
    "hgb": {
        "learning_rate": 0.05,
        "max_iter": 150,
        "max_leaf_nodes": 31,
        "min_samples_leaf": 100,
        "l2_regularization": 1.0,
    },
    "logreg": {"C": 0.1, "max_iter": 1000},
    "momentum": {"lookback": 60, "dead_zone": 0.009},  # the baseline rule (models_registry.baselines)
}


class TrainingError(ApplicationError):
    code = "training_failed"


class InsufficientDataError(TrainingError):
    code = "insufficient_training_data"


class TrainingInProgress(ConflictError):
    code = "training_in_progress"


def default_model_name(symbol: str) -> str:
    """The registered model that serves `symbol` unless MODELS_REGISTRY_SYMBOL_MODELS names another one:
    ``BTC/USD`` -> ``btc-usd-1m-direction``."""
    mapping: Mapping[str, str] = settings.MODELS_REGISTRY_SYMBOL_MODELS or {}
    if symbol in mapping:
        return mapping[symbol]
    return "-".join(part.lower() for part in symbol.replace("/", " ").split()) + "-1m-direction"


def min_training_samples() -> int:
    return int(settings.MODELS_REGISTRY_TRAINING_MIN_SAMPLES)


@dataclass(frozen=True)
class TrainingConfig:
    model: ModelKind = "hgb"
    horizon: int = DEFAULT_HORIZON
    seed: int = 0
    n_splits: int = 5
    embargo: int | None = None  # None: the horizon
    dead_zone: float | Literal["auto"] | None = None  # None: round trip at the taker fee
    taker_fee: float = DEFAULT_TAKER_FEE
    slippage_bps: float = 5.0
    signal_threshold: float = 0.2
    min_samples: int = DEFAULT_MIN_SAMPLES
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model not in MODEL_KINDS:
            raise TrainingError(f"model must be one of {MODEL_KINDS}, got {self.model!r}")
        if isinstance(self.horizon, bool) or not isinstance(self.horizon, int) or self.horizon < 1:
            raise TrainingError(f"horizon must be a positive number of bars, got {self.horizon!r}")
        if not (0.0 <= self.signal_threshold <= 1.0):
            raise TrainingError(f"signal_threshold must be in [0, 1], got {self.signal_threshold!r}")
        if self.n_splits < 2:
            raise TrainingError("walk-forward evaluation needs at least 2 folds")
        if self.dead_zone not in (None, "auto") and not (
            isinstance(self.dead_zone, int | float) and math.isfinite(self.dead_zone) and self.dead_zone >= 0
        ):
            raise TrainingError(f"dead_zone must be a number >= 0, 'auto' or None, got {self.dead_zone!r}")

    @property
    def embargo_bars(self) -> int:
        return self.horizon if self.embargo is None else self.embargo

    def model_hyperparameters(self) -> dict[str, Any]:
        return {**DEFAULT_HYPERPARAMETERS[self.model], **dict(self.hyperparameters)}

    def bars_needed(self) -> int:
        """Bars a window must hold: the feature warm-up, the minimum samples and the unlabelled tail."""
        return WARMUP_BARS + self.min_samples + self.horizon


def build_estimator(kind: str, hyperparameters: Mapping[str, Any], seed: int) -> Any:
    """An unfitted scikit-learn estimator, deterministic for the seed."""
    params = dict(hyperparameters)
    if kind == "hgb":
        return HistGradientBoostingClassifier(**params, early_stopping=False, random_state=seed)
    if kind == "logreg":
        return Pipeline([("scale", StandardScaler()), ("clf", LogisticRegression(**params, random_state=seed))])
    if kind == "momentum":
        return MomentumClassifier(**params)
    raise TrainingError(f"unknown model kind {kind!r}; use one of {MODEL_KINDS}")


class _FoldSafeClassifier(ClassifierMixin, BaseEstimator):
    """Evaluation-only wrapper: a fold whose training labels hold a single class (possible in a quiet stretch)
    predicts that class with certainty instead of failing (logistic regression refuses one class). Never
    registered: the final model is the plain estimator, fitted on a window checked to hold several classes."""

    def __init__(self, estimator: Any = None) -> None:
        self.estimator = estimator

    def fit(self, X: np.ndarray, y: np.ndarray) -> _FoldSafeClassifier:
        self.classes_ = np.unique(y)
        self.fitted_ = None if len(self.classes_) < 2 else clone(self.estimator).fit(X, y)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        if self.fitted_ is None:
            return np.ones((len(X), 1))
        return np.asarray(self.fitted_.predict_proba(X))

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.classes_[np.argmax(self.predict_proba(X), axis=1)])


@dataclass(frozen=True)
class LiveSizer:
    """What the live pipeline does with a signal, by calling its own sizing and cost code (`trading.pipeline`,
    `trading.costs`): spot only, so a sell signal means flat and never short; a buy signal (edge >= threshold)
    holds ``target_quantity(...)`` of equity: the sizing fraction x the confidence, scaled towards the target
    volatility by the annualised volatility of the last ``vol_lookback`` closes (`annualised_volatility`). The
    move is made only when `trading.costs.trade_check` allows it: a position grows only when the expected return
    (the backtest's ``state.expected_return``) beats the round-trip cost, and a rebalance inside the no-trade band
    is skipped (the position stays). The position and order caps and every risk check follow in the backtest's
    risk gate, as live. Evaluating with it means the backtest's PnL, drawdown and turnover are those of the
    strategy that would trade. ``edge_required=False`` sizes a fixed-rule baseline (no expected return)."""

    policy: Any  # trading.pipeline.SizingPolicy
    threshold: float = 0.0
    cost: Any = None  # trading.costs.CostModel
    band: Any = None  # trading.costs.NoTradeBand
    capital: Decimal = Decimal(10_000)
    ordermin: Decimal = Decimal(0)
    costmin: Decimal | None = None
    edge_required: bool = True

    def __call__(self, signal: float, confidence: float, state: Any) -> float:

        price = Decimal(repr(float(state.price)))
        equity = self.capital * Decimal(repr(float(state.equity)))
        target = 0.0
        if signal > 0 and signal >= self.threshold:
            history = [] if state.closes is None else state.closes[-self.policy.vol_lookback :]
            closes = [Decimal(repr(float(c))) for c in history]
            quantity = target_quantity(
                prediction=Prediction(1, float(confidence), "backtest"),
                equity=equity,
                price=price,
                policy=self.policy,
                volatility=annualised_volatility(closes),
            )
            target = min(1.0, float(quantity * price / equity))
        if self.cost is None or self.band is None:
            return target
        current = float(state.position)
        check = trade_check(
            current_qty=Decimal(repr(current)) * equity / price,
            target_qty=Decimal(repr(target)) * equity / price,
            price=price,
            equity=equity,
            expected_return=state.expected_return,
            cost=self.cost,
            band=self.band,
            ordermin=self.ordermin,
            costmin=self.costmin,
            edge_required=self.edge_required,
        )
        return target if check.allowed else current


def live_sizer(
    threshold: float, *, taker_fee: float, slippage_bps: float, risk: RiskGate, edge_required: bool = True
) -> LiveSizer:
    """The live sizing and cost rules for a backtest charged `taker_fee` and `slippage_bps` per fill (the
    backtest has no book: the half-spread is in the slippage), on the risk gate's capital and exchange rules."""

    cost = CostModel(
        taker_fee=Decimal(repr(float(taker_fee))),
        half_spread=Decimal(0),
        slippage=Decimal(repr(float(slippage_bps))) / Decimal(10_000),
    )
    return LiveSizer(
        policy=SizingPolicy.from_settings(),
        threshold=threshold,
        cost=cost,
        band=NoTradeBand.from_settings(),
        capital=risk.capital,
        ordermin=risk.rules.ordermin,
        costmin=risk.rules.costmin,
        edge_required=edge_required,
    )


def signal_from_probabilities(p_down: float, p_up: float, threshold: float) -> int:
    edge = p_up - p_down
    if abs(edge) < threshold or edge == 0.0:
        return 0
    return 1 if edge > 0 else -1


@dataclass(frozen=True)
class TrainingOutcome:
    estimator: Any
    metrics: dict[str, float]
    hyperparameters: dict[str, Any]
    n_samples: int
    dropped_metrics: list[str]


def _finite(metrics: Mapping[str, Any]) -> tuple[dict[str, float], list[str]]:
    kept: dict[str, float] = {}
    dropped: list[str] = []
    for name, value in metrics.items():
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(float(value)):
            kept[name] = float(value)
        else:
            dropped.append(name)
    return kept, sorted(dropped)


def _dead_zone(config: TrainingConfig, close: pd.Series) -> float | None:
    if config.dead_zone != "auto":
        return None if config.dead_zone is None else float(config.dead_zone)
    forward = (close.shift(-config.horizon) / close - 1.0).abs().dropna()
    return float(np.quantile(forward.to_numpy(), 1.0 / 3.0)) if len(forward) else 0.0


def _baseline_scores(y: np.ndarray, cv: PurgedWalkForwardCV) -> tuple[float, float]:
    """(log loss, multiclass Brier score) of predicting each fold's training class frequencies: the no-skill
    references a model's calibration must beat, weighted by test-fold size."""
    losses, briers, weights = [], [], []
    classes = np.array(LABEL_CLASSES, dtype=float)
    for train, test in cv.split(len(y)):
        counts = np.array([(y[train] == c).sum() for c in LABEL_CLASSES], dtype=float) + 1e-3
        prior = counts / counts.sum()
        losses.append(log_loss(y[test], np.tile(prior, (len(test), 1)), labels=list(LABEL_CLASSES)))
        onehot = y[test][:, None] == classes[None, :]
        briers.append(float(np.mean(((prior[None, :] - onehot) ** 2).sum(axis=1))))
        weights.append(len(test))
    return float(np.average(losses, weights=weights)), float(np.average(briers, weights=weights))


def _net_return_per_prediction(proba: np.ndarray, forward: np.ndarray, config: TrainingConfig) -> float:
    """Mean net return of the out-of-sample predictions' signals over the horizon, long-only after the round
    trip: the validation figure of the live outcomes' net return (`outcomes.net_return`, one definition)."""
    cost = 2.0 * (config.taker_fee + config.slippage_bps / 10_000.0)
    values = [
        net_return(signal_from_probabilities(p[_DOWN], p[_UP], config.signal_threshold), float(f), cost)[1]
        for p, f in zip(proba, forward, strict=True)
        if math.isfinite(f)
    ]
    return float(np.mean(values)) if values else math.nan


BASELINE_NAMES: tuple[str, ...] = ("hold", "momentum")


def baseline_backtests(window: pd.DataFrame, config: TrainingConfig, risk: RiskGate) -> dict[str, Any]:
    """The baselines a model must beat, on the bars of its out-of-sample evaluation with the same sizing, costs,
    no-trade band and risk check (fixed rules: no expected return to weigh, so no entry rule):

    - ``hold``: buy and hold (signal +1 at full confidence on every bar), sized as the model would be;
    - ``momentum``: the momentum rule (`trading.predictor.momentum_signals`): the sign of the return over the
      model's horizon outside a dead zone of the round-trip cost.
    Not trading at all (net return 0) is the third: a model's net return must be above 0.
    """
    sizer = live_sizer(
        config.signal_threshold,
        taker_fee=config.taker_fee,
        slippage_bps=config.slippage_bps,
        risk=risk,
        edge_required=False,
    )
    n = len(window)
    closes = window["close"].to_numpy(dtype=np.float64).tolist()
    signals, confidence = momentum_signals(
        closes, lookback=config.horizon, dead_zone=2.0 * (config.taker_fee + config.slippage_bps / 10_000.0)
    )
    rules = {"hold": (np.ones(n), np.ones(n)), "momentum": (np.array(signals, float), np.array(confidence))}
    return {
        name: run_backtest(
            window,
            sig,
            confidence=conf,
            size=sizer,
            taker_fee=config.taker_fee,
            slippage_bps=config.slippage_bps,
            risk=risk,
        )
        for name, (sig, conf) in rules.items()
    }


def evaluate_and_fit(
    bars: pd.DataFrame,
    config: TrainingConfig,
    *,
    prior_trial_sharpes: list[float] | None = None,
    n_trials: int = 1,
    risk: RiskGate | None = None,
) -> TrainingOutcome:
    """Walk-forward evaluation then the final fit on every usable sample of `bars` (consecutive 1-minute bars).

    The backtest sizes with the live rule and sends every order through the live pre-trade risk check with
    `risk` (default: the built-in limits, BTC/USD's exchange rules, 10,000 of capital); a rejected order is
    not filled."""
    needed = config.bars_needed()
    if len(bars) < needed:
        raise InsufficientDataError(
            f"{len(bars)} bars are too few to train: at least {needed} are needed "
            f"({WARMUP_BARS} feature warm-up + {config.min_samples} samples + {config.horizon} horizon)",
            details={"bars": len(bars), "needed": needed},
        )
    features = compute_features(bars)
    zone = _dead_zone(config, bars["close"])
    labels = make_labels(bars["close"], config.horizon, taker_fee=config.taker_fee, dead_zone=zone)
    label = labels["label"]
    usable = features.notna().all(axis=1) & label.notna()
    n_samples = int(usable.sum())
    if n_samples < config.min_samples:
        raise InsufficientDataError(
            f"only {n_samples} samples have complete features and a label; {config.min_samples} needed",
            details={"samples": n_samples, "needed": config.min_samples},
        )
    y_all = label[usable].to_numpy()
    classes_present = sorted({int(c) for c in np.unique(y_all)})
    if len(classes_present) < 2:
        raise TrainingError(
            f"every label is {classes_present[0]:+d}: the window has no move beyond the dead zone "
            f"({zone if zone is not None else 2 * config.taker_fee:.4%} over {config.horizon} bars); "
            "use a longer horizon, a smaller dead zone (or 'auto'), or more data",
            code="single_class_labels",
            details={"class": classes_present[0], "samples": n_samples},
        )
    hyper = config.model_hyperparameters()
    estimator = build_estimator(config.model, hyper, config.seed)
    cv = PurgedWalkForwardCV(
        config.n_splits, label_horizon=config.horizon, embargo=config.embargo_bars, min_train_size=50
    )
    gate = risk if risk is not None else RiskGate()
    sizer = live_sizer(config.signal_threshold, taker_fee=config.taker_fee, slippage_bps=config.slippage_bps, risk=gate)
    try:
        report = walk_forward_evaluate(
            _FoldSafeClassifier(estimator),
            features,
            label,
            bars,
            cv,
            taker_fee=config.taker_fee,
            slippage_bps=config.slippage_bps,
            size=sizer,
            risk=gate,
            forward_returns=labels["forward_return"],
        )
    except ValueError as exc:
        raise TrainingError(f"walk-forward evaluation failed: {exc}", code="evaluation_failed") from exc

    backtest = report.backtest
    sharpe_bar, skew, kurt, n_obs = return_moments(backtest.returns.to_numpy())
    trials = [s for s in (prior_trial_sharpes or []) if math.isfinite(s)]
    if math.isfinite(sharpe_bar):
        trials.append(sharpe_bar)
    total_trials = max(int(n_trials), len(trials), 1)
    var_trials = float(np.var(trials, ddof=1)) if len(trials) > 1 else 0.0
    dsr = deflated_sharpe_ratio(sharpe_bar, n_obs, skew, kurt, total_trials, var_trials)

    y_usable = y_all
    baseline, baseline_brier = _baseline_scores(y_usable, cv)
    classification = report.classification
    oos_index = report.probabilities.index
    oos_proba = report.probabilities.to_numpy()
    oos_forward = labels["forward_return"].reindex(oos_index).to_numpy()
    hits, n_direction = direction_hits(oos_proba[:, _DOWN], oos_proba[:, _UP], oos_forward)
    assert report.window is not None
    baselines = baseline_backtests(report.window, config, gate)
    metrics: dict[str, Any] = {**classification, **backtest.metrics}
    metrics.update(
        {
            "dsr": dsr,
            "n_trials": float(total_trials),
            "sharpe_per_bar": sharpe_bar,
            "baseline_log_loss": baseline,
            "log_loss_skill": 1.0 - classification.get("log_loss", math.nan) / baseline if baseline > 0 else math.nan,
            "baseline_brier": baseline_brier,
            "brier_skill": (
                1.0 - classification.get("brier_multiclass", math.nan) / baseline_brier
                if baseline_brier > 0
                else math.nan
            ),
            "ece": expected_calibration_error(oos_proba, label.reindex(oos_index).to_numpy()),
            "direction_hit_rate": hits / n_direction if n_direction else math.nan,
            "direction_n": float(n_direction),
            "net_return_per_prediction": _net_return_per_prediction(oos_proba, oos_forward, config),
            "n_oos_trades": float(len(backtest.trades)),
            "bh_net_pnl": backtest.buy_and_hold_metrics["net_pnl"],
            "bh_sharpe": backtest.buy_and_hold_metrics["sharpe"],
            "bh_max_drawdown": backtest.buy_and_hold_metrics["max_drawdown"],
            "excess_net_pnl": backtest.metrics["net_pnl"] - backtest.buy_and_hold_metrics["net_pnl"],
            "n_samples": float(n_samples),
            "n_oos_samples": float(len(report.probabilities)),
            "n_folds": float(len(report.folds)),
            "fold_accuracy_min": min(f.classification.get("accuracy", math.nan) for f in report.folds),
            "label_up_share": float(np.mean(y_all == 1)),
            "label_down_share": float(np.mean(y_all == -1)),
            "dead_zone": zone if zone is not None else 2.0 * config.taker_fee,
        }
    )
    for name, result in baselines.items():
        metrics[f"baseline_{name}_net_pnl"] = result.metrics["net_pnl"]
        metrics[f"excess_net_pnl_vs_{name}"] = backtest.metrics["net_pnl"] - result.metrics["net_pnl"]
    kept, dropped = _finite(metrics)

    X = features[usable].to_numpy(dtype=np.float64)
    final = build_estimator(config.model, hyper, config.seed).fit(X, y_all)
    class_means = class_mean_returns(y_all, labels["forward_return"][usable].to_numpy())
    recorded_hyper = {
        **hyper,
        "class_mean_returns": {str(c): m for c, m in class_means.items()},
        "model": config.model,
        "seed": config.seed,
        "horizon": config.horizon,
        "label_dead_zone": kept.get("dead_zone"),
        "label_dead_zone_rule": "auto" if config.dead_zone == "auto" else "fixed",
        "taker_fee": config.taker_fee,
        "slippage_bps": config.slippage_bps,
        "signal_threshold": config.signal_threshold,
        "backtest_risk": gate.describe(),
        "cv": {
            "kind": "purged_walk_forward",
            "n_splits": config.n_splits,
            "purge": config.horizon,
            "embargo": config.embargo_bars,
        },
    }
    return TrainingOutcome(
        estimator=final, metrics=kept, hyperparameters=recorded_hyper, n_samples=n_samples, dropped_metrics=dropped
    )


# --- service -----------------------------------------------------------------------------------------------


def backtest_risk_gate(symbol: str) -> RiskGate:
    """The risk inputs live trading would use for `symbol` now: the effective limits (the RiskLimit rows over
    the built-in defaults), the instrument's exchange rules and the account's latest equity; the defaults of
    :class:`RiskGate` for whatever is not stored yet (no instrument row, no equity snapshot)."""

    instrument = Instrument.objects.filter(symbol=symbol).first()
    latest = EquitySnapshot.objects.filter(currency=account_currency()).order_by("-taken_at", "-id").first()
    defaults = RiskGate()
    return RiskGate(
        limits=risk_limits_effective(instrument=instrument),
        rules=instrument_rules(instrument) if instrument is not None else defaults.rules,
        capital=latest.equity if latest is not None and latest.equity > 0 else defaults.capital,
    )


def _prior_trials(model_name: str) -> tuple[int, list[float]]:
    """(versions trained so far, their recorded per-bar Sharpe ratios) for the registered model: every version
    ever trained counts as a trial of the deflated Sharpe ratio, so retraining until one passes is penalised."""
    sharpes = _prior_trial_sharpes(model_name)
    return ModelVersion.objects.filter(model__name=model_name).count(), sharpes


def _prior_trial_sharpes(model_name: str) -> list[float]:
    values = ModelVersion.objects.filter(model__name=model_name).values_list("metrics", flat=True)
    out = []
    for metrics in values:
        value = (metrics or {}).get("sharpe_per_bar")
        if isinstance(value, int | float) and math.isfinite(value):
            out.append(float(value))
    return out


def _stale_after() -> timedelta:
    return timedelta(seconds=int(settings.CELERY_TASK_TIME_LIMIT) + 60)


def _claim(request_id: str, **fields: Any) -> tuple[TrainingRun, bool]:
    """(run, True) when this call should train; (run, False) when the request already succeeded."""
    now = timezone.now()
    try:
        with transaction.atomic():
            return TrainingRun.objects.create(request_id=request_id, started_at=now, **fields), True
    except IntegrityError:
        pass
    with transaction.atomic():
        run = TrainingRun.objects.select_for_update().get(request_id=request_id)
        if run.status == TrainingRun.Status.SUCCEEDED:
            return run, False
        if run.status == TrainingRun.Status.RUNNING and now - run.started_at < _stale_after():
            raise TrainingInProgress(
                f"training request {request_id} is already running (started {run.started_at.isoformat()})",
                details={"request_id": request_id},
            )
        run.status = TrainingRun.Status.RUNNING
        run.attempts += 1
        run.error = ""
        run.started_at = now
        run.finished_at = None
        run.save(update_fields=["status", "attempts", "error", "started_at", "finished_at"])
        return run, True


@dataclass(frozen=True)
class TrainingResult:
    request_id: str
    version: ModelVersion
    created: bool  # False: the request had already registered this version
    metrics: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {
            "request_id": self.request_id,
            "model": self.version.model.name,
            "version": self.version.version,
            "version_id": self.version.pk,
            "created": self.created,
            "metrics": self.metrics,
        }


def train_model(
    *,
    symbol: str,
    start: datetime,
    end: datetime,
    config: TrainingConfig | None = None,
    model_name: str | None = None,
    request_id: str | None = None,
    register: bool = True,
    n_trials: int = 1,
    parent_version: int | None = None,
    actor: str = "training",
) -> TrainingResult | TrainingOutcome:
    """Train on the stored bars of `symbol` in ``[start, end)`` and register the model (unless ``register`` is
    False: then the evaluated, fitted outcome is returned and nothing is written).

    The parent is `parent_version` when given, else the model's production version at the time (the version
    this one is meant to replace)."""
    config = config or TrainingConfig(min_samples=min_training_samples())
    if start.tzinfo is None or end.tzinfo is None or start >= end:
        raise TrainingError("the training window must be timezone-aware and start before it ends")
    name = model_name or default_model_name(symbol)
    loaded = load_bars(symbol=symbol, start=start, end=end)
    if len(loaded.bars) < config.bars_needed():
        raise InsufficientDataError(
            f"the store holds {loaded.stored} bars of {symbol} in [{start.isoformat()}, {end.isoformat()}) "
            f"({len(loaded.bars)} minutes after filling gaps); training needs at least {config.bars_needed()} "
            f"({WARMUP_BARS} warm-up + {config.min_samples} samples + {config.horizon} horizon): "
            "backfill history or widen the window",
            details={"stored": loaded.stored, "needed": config.bars_needed(), "symbol": symbol},
        )
    risk = backtest_risk_gate(symbol)
    if not register:
        trained, sharpes = _prior_trials(name)
        return evaluate_and_fit(
            loaded.bars, config, prior_trial_sharpes=sharpes, n_trials=max(n_trials, trained + 1), risk=risk
        )

    request_id = request_id or uuid.uuid4().hex
    run, should_train = _claim(
        request_id,
        model_name=name,
        symbol=symbol,
        data_start=start,
        data_end=end,
        actor=actor,
        parameters={"config": _config_json(config), "n_trials": n_trials, "parent_version": parent_version},
    )
    if not should_train:
        assert run.version_id is not None
        version = ModelVersion.objects.select_related("model").get(pk=run.version_id)
        logger.info("training request already done", extra={"request_id": request_id, "version": version.pk})
        return TrainingResult(request_id, version, False, dict(version.metrics))
    try:
        trained, sharpes = _prior_trials(name)
        outcome = evaluate_and_fit(
            loaded.bars, config, prior_trial_sharpes=sharpes, n_trials=max(n_trials, trained + 1), risk=risk
        )
        outcome = replace(
            outcome,
            metrics={**outcome.metrics, "bars_stored": float(loaded.stored), "bars_filled": float(loaded.filled)},
        )
        if not RegisteredModel.objects.filter(name=name).exists():
            with contextlib.suppress(ConflictError):  # created concurrently
                services.registered_model_create(
                    name=name, description=f"Direction of {symbol} over the next bars (1-minute bars)", actor=actor
                )
        parent = parent_version
        if parent is None:
            current = ModelVersion.objects.filter(model__name=name, stage=Stage.PRODUCTION).first()
            parent = current.version if current else None
        with transaction.atomic():
            version = services.model_version_register(
                model_name=name,
                estimator=outcome.estimator,
                signature=[(n, FEATURE_DTYPES[n]) for n in FEATURE_NAMES],
                data_start=start,
                data_end=end,
                symbols=[symbol],
                feature_set_name=FEATURE_SET_NAME,
                feature_set_version=str(FEATURE_SET_VERSION),
                hyperparameters=outcome.hyperparameters,
                metrics=outcome.metrics,
                n_trials=int(outcome.metrics.get("n_trials", 1)),
                parent_version=parent,
                description=f"{config.model} on {symbol} {start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M} UTC "
                f"(training request {request_id})",
                actor=actor,
            )
            services.model_version_gates_record(version=version, actor=actor)
            TrainingRun.objects.filter(pk=run.pk).update(
                status=TrainingRun.Status.SUCCEEDED, version=version, finished_at=timezone.now()
            )
    except Exception as exc:
        TrainingRun.objects.filter(pk=run.pk).update(
            status=TrainingRun.Status.FAILED, error=f"{type(exc).__name__}: {exc}"[:4000], finished_at=timezone.now()
        )
        raise
    logger.info(
        "model trained",
        extra={"request_id": request_id, "model": name, "version": version.version, "dropped": outcome.dropped_metrics},
    )
    return TrainingResult(request_id, version, True, outcome.metrics)


def _config_json(config: TrainingConfig) -> dict[str, Any]:
    return {
        "model": config.model,
        "horizon": config.horizon,
        "seed": config.seed,
        "n_splits": config.n_splits,
        "embargo": config.embargo_bars,
        "dead_zone": config.dead_zone,
        "taker_fee": config.taker_fee,
        "slippage_bps": config.slippage_bps,
        "signal_threshold": config.signal_threshold,
        "min_samples": config.min_samples,
        "hyperparameters": dict(config.hyperparameters),
    }
