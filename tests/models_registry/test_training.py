"""Training: bars from the store -> features, labels, purged walk-forward evaluation -> a registered version with
complete lineage, metrics, signature and a loadable artifact; idempotent per training request."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import numpy as np
import pytest
from django.core.management import CommandError, call_command

from models_registry import selectors
from models_registry.features import FEATURE_NAMES, FEATURE_SET_NAME, FEATURE_SET_VERSION, compute_features
from models_registry.models import ModelVersion, TrainingRun
from models_registry.services import model_version_promote
from models_registry.tasks import train_model_task
from models_registry.training import (
    InsufficientDataError,
    TrainingConfig,
    TrainingError,
    TrainingOutcome,
    TrainingResult,
    default_model_name,
    evaluate_and_fit,
    train_model,
)
from tests.models_registry.conftest import store_bars, window_of
from tests.models_registry.factories import registry_settings  # noqa: F401
from tests.models_registry.synthetic import make_bars

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("registry_settings")]

N_BARS = 1200
# The random-walk bars here have no edge: with fees, the evaluation's strategy would (rightly) never trade and
# record no Sharpe ratio. These lineage tests evaluate cost-free so every trading metric is recorded; the costs
# have their own tests (tests/trading/test_pipeline.py, test_training_gates.py).
COST_FREE = {"taker_fee": 0.0, "slippage_bps": 0.0}
TRADING_METRICS = ("net_pnl", "sharpe", "sortino", "max_drawdown", "turnover", "psr", "dsr", "n_trials")
CLASSIFICATION_METRICS = ("accuracy", "log_loss", "roc_auc_up", "brier_up", "brier_multiclass", "log_loss_skill")
BUY_AND_HOLD = ("bh_net_pnl", "bh_sharpe", "bh_max_drawdown", "excess_net_pnl")


@pytest.fixture
def stored_window():  # type: ignore[no-untyped-def]
    bars = make_bars(N_BARS, seed=3, book=False)
    store_bars(bars)
    return window_of(bars)


@pytest.mark.parametrize("kind", ["logreg", "hgb"])
def test_training_registers_a_version_with_complete_lineage_and_a_loadable_artifact(stored_window, kind):  # type: ignore[no-untyped-def]
    start, end = stored_window

    result = train_model(
        symbol="BTC/USD",
        start=start,
        end=end,
        config=TrainingConfig(model=kind, horizon=15, seed=4, **COST_FREE),
        request_id=f"req-{kind}",
        n_trials=3,
    )

    assert isinstance(result, TrainingResult)
    version = ModelVersion.objects.get(pk=result.version.pk)
    assert version.model.name == default_model_name("BTC/USD") == "btc-usd-1m-direction"
    assert (version.data_start, version.data_end, version.symbols) == (start, end, ["BTC/USD"])
    assert (version.feature_set_name, version.feature_set_version) == (FEATURE_SET_NAME, str(FEATURE_SET_VERSION))
    assert version.feature_names == list(FEATURE_NAMES)
    assert version.hyperparameters["model"] == kind
    assert version.hyperparameters["seed"] == 4
    assert version.hyperparameters["horizon"] == 15
    assert version.hyperparameters["cv"] == {"kind": "purged_walk_forward", "n_splits": 5, "purge": 15, "embargo": 15}
    assert version.n_trials == 3
    assert version.parent is None
    for name in (*TRADING_METRICS, *CLASSIFICATION_METRICS, *BUY_AND_HOLD, "n_samples", "bars_stored"):
        assert name in version.metrics, name
    assert version.metrics["bars_stored"] == N_BARS
    assert version.metrics["n_oos_samples"] > 0
    assert 0.0 <= version.metrics["psr"] <= 1.0
    assert 0.0 <= version.metrics["dsr"] <= version.metrics["psr"] + 1e-12
    assert TrainingRun.objects.get(request_id=f"req-{kind}").status == TrainingRun.Status.SUCCEEDED

    model = selectors.model_version_load(version=version)
    features = compute_features(make_bars(N_BARS, seed=3, book=False)).dropna()
    proba = model.predict_proba(features.to_numpy()[:5])
    assert proba.shape[0] == 5
    assert np.allclose(proba.sum(axis=1), 1.0)


def test_the_same_training_request_registers_one_version(stored_window):  # type: ignore[no-untyped-def]
    start, end = stored_window
    config = TrainingConfig(model="logreg")

    first = train_model(symbol="BTC/USD", start=start, end=end, config=config, request_id="same")
    second = train_model(symbol="BTC/USD", start=start, end=end, config=config, request_id="same")

    assert isinstance(first, TrainingResult)
    assert isinstance(second, TrainingResult)
    assert first.created
    assert not second.created
    assert second.version.pk == first.version.pk
    assert ModelVersion.objects.count() == 1
    assert TrainingRun.objects.get(request_id="same").attempts == 1


def test_the_training_task_is_idempotent_per_request_id(stored_window):  # type: ignore[no-untyped-def]
    start, end = stored_window
    kwargs = {
        "request_id": "task-1",
        "symbol": "BTC/USD",
        "start": start.isoformat(),
        "end": end.isoformat(),
        "model": "logreg",
    }

    first = train_model_task(**kwargs)
    second = train_model_task(**kwargs)

    assert first["status"] == second["status"] == "succeeded"
    assert first["created"] is True
    assert second["created"] is False
    assert first["version_id"] == second["version_id"]
    assert ModelVersion.objects.count() == 1
    assert train_model_task.acks_late


def test_too_few_bars_is_a_clear_error_and_registers_nothing():  # type: ignore[no-untyped-def]
    bars = make_bars(400, seed=3, book=False)
    store_bars(bars)
    start, end = window_of(bars)

    with pytest.raises(InsufficientDataError, match=r"holds 400 bars of BTC/USD .* needs at least 555"):
        train_model(symbol="BTC/USD", start=start, end=end, config=TrainingConfig(), request_id="short")

    assert ModelVersion.objects.count() == 0
    assert not TrainingRun.objects.exists()


def test_a_window_without_moves_beyond_the_dead_zone_is_refused(stored_window):  # type: ignore[no-untyped-def]
    start, end = stored_window

    with pytest.raises(TrainingError, match="every label is"):
        train_model(
            symbol="BTC/USD", start=start, end=end, config=TrainingConfig(horizon=1, dead_zone=0.5), request_id="flat"
        )

    assert ModelVersion.objects.count() == 0
    run = TrainingRun.objects.get(request_id="flat")
    assert run.status == TrainingRun.Status.FAILED
    assert "every label is" in run.error


def test_a_failed_request_can_be_run_again(stored_window):  # type: ignore[no-untyped-def]
    start, end = stored_window
    with pytest.raises(TrainingError):
        train_model(
            symbol="BTC/USD", start=start, end=end, config=TrainingConfig(horizon=1, dead_zone=0.5), request_id="r"
        )

    result = train_model(symbol="BTC/USD", start=start, end=end, config=TrainingConfig(model="logreg"), request_id="r")

    assert isinstance(result, TrainingResult)
    run = TrainingRun.objects.get(request_id="r")
    assert (run.status, run.attempts, run.version_id) == (TrainingRun.Status.SUCCEEDED, 2, result.version.pk)


def test_training_is_deterministic_for_a_seed():  # type: ignore[no-untyped-def]
    bars = make_bars(1000, seed=5, book=False)
    config = TrainingConfig(model="hgb", seed=11, hyperparameters={"max_iter": 30})

    first = evaluate_and_fit(bars, config)
    second = evaluate_and_fit(bars, config)

    X = compute_features(bars).dropna().to_numpy()
    assert first.metrics == second.metrics
    assert np.array_equal(first.estimator.predict_proba(X), second.estimator.predict_proba(X))


def test_a_new_version_records_the_production_version_as_parent_and_counts_trials(stored_window):  # type: ignore[no-untyped-def]
    start, end = stored_window
    first = train_model(symbol="BTC/USD", start=start, end=end, config=TrainingConfig(model="logreg"))
    assert isinstance(first, TrainingResult)
    model_version_promote(
        model_name=first.version.model.name, version=first.version.version, reason="first", actor="test"
    )

    second = train_model(symbol="BTC/USD", start=start, end=end, config=TrainingConfig(model="hgb"))

    assert isinstance(second, TrainingResult)
    assert second.version.parent_id == first.version.pk
    assert second.version.n_trials == 2
    assert second.version.metrics["n_trials"] == 2


def test_no_register_returns_the_evaluation_and_writes_nothing(stored_window):  # type: ignore[no-untyped-def]
    start, end = stored_window

    outcome = train_model(
        symbol="BTC/USD", start=start, end=end, config=TrainingConfig(model="logreg", **COST_FREE), register=False
    )

    assert isinstance(outcome, TrainingOutcome)
    assert "sharpe" in outcome.metrics
    assert ModelVersion.objects.count() == 0
    assert not TrainingRun.objects.exists()


def test_train_model_command_registers_and_prints_json(stored_window):  # type: ignore[no-untyped-def]
    start, end = stored_window
    out = StringIO()

    call_command(
        "train_model",
        "--symbol=BTC/USD",
        f"--start={start.isoformat()}",
        f"--end={end.isoformat()}",
        "--model=logreg",
        "--horizon=10",
        "--request-id=cmd-1",
        stdout=out,
    )

    result = json.loads(out.getvalue())
    assert result["registered"] is True
    assert result["version"] == 1
    assert ModelVersion.objects.get().hyperparameters["horizon"] == 10


def test_train_model_command_reports_too_few_bars(stored_window):  # type: ignore[no-untyped-def]
    start, _ = stored_window
    with pytest.raises(CommandError, match="needs at least"):
        call_command(
            "train_model",
            "--symbol=BTC/USD",
            f"--start={start.isoformat()}",
            f"--end={(start + timedelta(hours=2)).isoformat()}",
        )
    assert ModelVersion.objects.count() == 0


def test_evaluation_sizes_with_the_live_pipelines_own_sizing(settings) -> None:  # type: ignore[no-untyped-def]
    from decimal import Decimal

    import pandas as pd

    from models_registry.evaluation import RiskGate
    from models_registry.evaluation.backtest import SizingState
    from models_registry.training import live_sizer
    from trading.pipeline import SizingPolicy, annualised_volatility, target_quantity
    from trading.predictor import Prediction

    settings.GALFRIDAY_SIZING_FRACTION = "0.25"
    settings.GALFRIDAY_SIZING_TARGET_VOLATILITY = "0.50"
    sizer = live_sizer(0.1, taker_fee=0.004, slippage_bps=5.0, risk=RiskGate())
    closes = 30_000.0 * np.exp(np.cumsum(np.random.default_rng(1).normal(0, 2e-3, 100)))
    state = SizingState(0, pd.Timestamp("2024-01-01", tz="UTC"), float(closes[-1]), 0.0, 1.3, closes, 0.05)

    assert sizer(-1.0, 0.9, state) == 0.0  # a sell signal on spot means flat, never short
    assert sizer(0.05, 0.9, state) == 0.0  # an edge below the threshold: no trade
    got = sizer(0.5, 0.8, state)
    vol = annualised_volatility([Decimal(repr(float(c))) for c in closes[-60:]])
    assert vol is not None
    assert vol > Decimal("0.5")
    quantity = target_quantity(
        prediction=Prediction(1, 0.8, "x"),
        equity=Decimal("13000"),  # the gate's capital x the backtest's equity factor
        price=Decimal(repr(float(closes[-1]))),
        policy=SizingPolicy.from_settings(),
        volatility=vol,
    )
    assert got == pytest.approx(float(quantity) * closes[-1] / (1.3 * 10_000), rel=1e-12)
    assert got == pytest.approx(0.25 * 0.8 * float(Decimal("0.5") / vol), rel=1e-9)
    flat = SizingState(0, state.timestamp, 100.0, 0.0, 1.0, np.full(100, 100.0), 0.05)  # no volatility: no scaling
    assert sizer(0.5, 0.8, flat) == pytest.approx(0.25 * 0.8)


def test_the_evaluation_applies_the_live_cost_rule_and_no_trade_band() -> None:
    import pandas as pd

    from models_registry.evaluation import RiskGate
    from models_registry.evaluation.backtest import SizingState
    from models_registry.training import live_sizer

    sizer = live_sizer(0.0, taker_fee=0.004, slippage_bps=5.0, risk=RiskGate())  # round trip 0.90 %
    closes = np.full(100, 100.0)

    def state(position: float, expected: float | None) -> SizingState:
        return SizingState(0, pd.Timestamp("2024-01-01", tz="UTC"), 100.0, position, 1.0, closes, expected)

    assert sizer(1.0, 0.8, state(0.0, 0.0089)) == 0.0  # the edge does not pay the round trip: stay flat
    assert sizer(1.0, 0.8, state(0.0, None)) == 0.0  # no expected return: no entry
    assert sizer(1.0, 0.8, state(0.0, 0.02)) == pytest.approx(0.08)  # 10 % x 0.8
    assert sizer(1.0, 0.8, state(0.075, 0.02)) == 0.075  # a 0.5 % rebalance is inside the 1 % band: kept
    assert sizer(-1.0, 0.8, state(0.075, None)) == 0.0  # getting out needs no edge and closes the position
