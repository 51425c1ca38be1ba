"""Builders for the retraining tests (and bench/bench_retraining.py): stored bars of a fresh symbol, a champion
trained on them with the registry's training (small, fast configuration), fast retraining settings, matured
outcomes of a version with chosen net returns (for probation), bars of a simulator scenario, and the loop at
market time over them (`scenario_loop`)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from django.utils import timezone

from models_registry.models import DriftReport, ModelVersion, Prediction, PredictionOutcome, Stage
from models_registry.services import model_version_promote
from models_registry.training import TrainingConfig, TrainingResult, train_model
from tests.models_registry.conftest import store_bars
from tests.models_registry.synthetic import make_bars

FAST_CONFIG = TrainingConfig(model="logreg", horizon=15, dead_zone="auto", n_splits=3, min_samples=300)
N_BARS = 1800  # 30 hours of 1-minute bars


def fast_retraining_settings(settings: Any) -> None:
    """Windows that fit the synthetic bars (30 h), no cooldown, a short probation."""
    settings.MODELS_REGISTRY_RETRAINING_WINDOW_HOURS = 24.0
    settings.MODELS_REGISTRY_RETRAINING_MIN_WINDOW_HOURS = 12.0
    settings.MODELS_REGISTRY_RETRAINING_COOLDOWN_HOURS = 0.0
    settings.MODELS_REGISTRY_RETRAINING_PROBATION_HOURS = 1.0
    settings.MODELS_REGISTRY_RETRAINING_EXPERIMENT_MINIMUM_SAMPLE = 50
    settings.MODELS_REGISTRY_RETRAINING_EXPERIMENT_BURN_IN = 10


def stored_market(seed: int = 7, *, end: datetime | None = None) -> tuple[str, pd.DataFrame]:
    """A fresh symbol with N_BARS synthetic bars in the time-series store (ending at `end` when given)."""
    symbol = f"R{uuid.uuid4().hex[:8].upper()}/USD"
    bars = make_bars(N_BARS, seed=seed, book=False)
    if end is not None:
        bars.index = bars.index - bars.index[-1] + pd.Timestamp(end) - pd.Timedelta(minutes=1)
    store_bars(bars, symbol)
    return symbol, bars


def market_end(bars: pd.DataFrame) -> datetime:
    return (bars.index[-1] + pd.Timedelta(minutes=1)).to_pydatetime()


def trained_champion(symbol: str, bars: pd.DataFrame, *, hours: float = 12.0) -> ModelVersion:
    """A version of a fresh model trained on the first `hours` of the bars, promoted to production."""
    start = bars.index[0].to_pydatetime()
    result = train_model(
        symbol=symbol,
        start=start,
        end=start + timedelta(hours=hours),
        config=FAST_CONFIG,
        model_name=f"retrain-{uuid.uuid4().hex[:8]}",
        actor="test",
    )
    assert isinstance(result, TrainingResult)
    model_version_promote(
        model_name=result.version.model.name, version=result.version.version, reason="first champion", actor="test"
    )
    result.version.refresh_from_db()
    assert result.version.stage == Stage.PRODUCTION
    return result.version


def matured_outcomes(version: ModelVersion, net_returns: np.ndarray, *, start: datetime | None = None) -> None:
    """Matured outcomes of `version` (one per minute from `start`) with these net returns (long positions)."""
    start = start or timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=len(net_returns) + 30)
    symbol = str(version.symbols[0])
    now = timezone.now()
    predictions = Prediction.objects.bulk_create(
        [
            Prediction(
                decision_id=f"t:{version.pk}:{i}:{uuid.uuid4().hex[:6]}",
                version=version,
                symbol=symbol,
                features_hash="0" * 64,
                probabilities={"-1": 0.2, "0": 0.2, "1": 0.6},
                predicted_class=1,
                signal=1,
                confidence=0.6,
                bar_time=start + timedelta(minutes=i),
                horizon=15,
            )
            for i in range(len(net_returns))
        ]
    )
    PredictionOutcome.objects.bulk_create(
        [
            PredictionOutcome(
                prediction=p,
                version=version,
                symbol=symbol,
                bar_time=p.bar_time,
                horizon=15,
                window_end=p.bar_time + timedelta(minutes=15),
                signal=1,
                p_down=0.2,
                p_flat=0.2,
                p_up=0.6,
                status=PredictionOutcome.Status.MATURED,
                forward_return=float(net) + 0.001,
                realised_label=1 if net > 0 else -1,
                dead_zone=0.0005,
                direction_hit=bool(net > 0),
                position=1,
                round_trip_cost=0.001,
                net_return=float(net),
                matured_at=now,
                checked_at=now,
            )
            for p, net in zip(predictions, net_returns, strict=True)
        ]
    )


def scenario_bars(text: str, *, origin: datetime, first: int, last: int, seed: int = 7) -> pd.DataFrame:
    """1-minute bars of a simulator scenario (`kraken_sim.scenarios`) from minute `first` to `last` after
    `origin`, as the drift scenario test makes them (open = previous close, wicks of the minute's sigma), for
    lengths other than that test's."""
    from kraken_sim.scenarios import ScenarioPath, parse_scenario  # reason: only the scenario runs need it

    path = ScenarioPath(parse_scenario(text), seed, "BTC/USD", 30_000.0)
    logs = path.log_closes(first - 1, last)
    minutes = np.arange(first, last + 1)
    sigma = np.array([path.vol(int(m)) for m in minutes])
    rng = np.random.default_rng(seed)
    open_, close = np.exp(logs[:-1]), np.exp(logs[1:])
    high = np.maximum(open_, close) * np.exp(sigma * np.abs(rng.normal(size=len(minutes))) * 0.5)
    low = np.minimum(open_, close) * np.exp(-sigma * np.abs(rng.normal(size=len(minutes))) * 0.5)
    return pd.DataFrame(
        {
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.lognormal(0.0, 0.8, len(minutes)),
            "vwap": (high + low + close) / 3,
            "trades": rng.integers(3, 13, len(minutes)).astype(float),
        },
        index=pd.DatetimeIndex([origin + timedelta(minutes=int(m)) for m in minutes]),
    )


@dataclass
class LoopResult:
    reports: list[DriftReport] = field(default_factory=list)
    confirmed_at: datetime | None = None
    training_seconds: float | None = None


def scenario_loop(
    bars: pd.DataFrame,
    symbol: str,
    *,
    first: ModelVersion,
    origin: datetime,
    first_check: int,
    last_minute: int,
    check_every: int,
    capture: Callable[..., Any] | None = None,
) -> LoopResult:
    """The retraining loop at market time over stored `bars`: every `check_every` minutes from `first_check` to
    `last_minute` after `origin`, the champion (and a challenger in its shadow test) predict each minute since
    the last step with their observations as the router and the shadow task write them (in bulk), outcomes
    mature (-> the experiments' intake and the retraining advance), the champion's drift is checked, the scan
    runs and a queued run is trained (the lifecycle worker's task) at market time. `capture` wraps the steps
    whose after-commit callbacks must run (a test's django_capture_on_commit_callbacks; none in autocommit)."""
    from django.core.cache import cache  # reason: the loop's imports stay off the unit tests' import path

    from experiments.models import Experiment, ExperimentObservation
    from models_registry.drift.checks import LOCK_KEY, drift_check
    from models_registry.features import FEATURE_NAMES, compute_features
    from models_registry.outcomes import LOCK_KEY as OUTCOMES_LOCK
    from models_registry.outcomes import outcomes_mature
    from models_registry.prediction import get_prediction_service
    from models_registry.retraining.models import RetrainingRun
    from models_registry.retraining.scan import retraining_scan
    from models_registry.retraining.services import retraining_run

    def committed() -> Any:
        return capture(execute=True) if capture is not None else contextlib.nullcontext()

    live = compute_features(bars)[list(FEATURE_NAMES)].loc[origin:]
    service = get_prediction_service()
    result = LoopResult()
    done = origin
    for step in range(first_check, last_minute + 1, check_every):
        now = origin + timedelta(minutes=step)
        chunk = live.loc[done : now - timedelta(minutes=1)]
        done = now
        ids = [f"loop:{symbol}:{t.isoformat()}" for t in chunk.index]
        times = [t.to_pydatetime() for t in chunk.index]
        champion = ModelVersion.objects.get(model=first.model, stage=Stage.PRODUCTION)
        run = RetrainingRun.objects.filter(model=first.model, status=RetrainingRun.Status.SHADOW).first()
        serving = [champion] + ([run.challenger] if run is not None and run.challenger is not None else [])
        for version in serving:
            service.predict_batch(
                chunk, model_name=version.model.name, selector=version.version, decision_ids=ids, symbol=symbol,
                bar_times=times,
            )  # fmt: skip
            if run is not None and run.experiment_id is not None:
                experiment = Experiment.objects.get(pk=run.experiment_id)
                arm = experiment.arms.get(version=version)
                ExperimentObservation.objects.bulk_create(
                    [
                        ExperimentObservation(
                            experiment=experiment, arm=arm, version_id=version.pk, decision_key=d, symbol=symbol,
                            bar_time=t, latency_ms=1.0,
                        )
                        for d, t in zip(ids, times, strict=True)
                    ],
                    ignore_conflicts=True,
                )  # fmt: skip
        cache.delete(OUTCOMES_LOCK)
        with committed():
            outcomes_mature(now=now)  # -> outcomes_matured: the experiments' intake, then the retraining advance
        cache.delete(LOCK_KEY.format(version_id=champion.pk))
        report = drift_check(version_id=champion.pk, now=now)
        assert report is not None
        assert report.status != DriftReport.Status.FAILED, report.error
        result.reports.append(report)
        if report.confirmed and result.confirmed_at is None:
            result.confirmed_at = now
        retraining_scan(now=now)
        for queued in RetrainingRun.objects.filter(model=first.model, status=RetrainingRun.Status.QUEUED):
            started = time.perf_counter()
            with committed():
                retraining_run(run_id=queued.pk, now=now)  # the lifecycle worker's task, at market time
            result.training_seconds = time.perf_counter() - started
    return result
