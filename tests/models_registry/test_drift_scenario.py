"""End to end on the simulator's scenarios (kraken_sim.scenarios, whose ground truth says when the market changes):
a model trained on the learnable phase of `regime_change` (at `change_at` the edge vanishes and sigma doubles)
has its drift detected and confirmed within DETECTION_BOUND_MINUTES of the true change, and no check before the
change confirms anything; on `random_walk` (no change, the same noise: common random numbers) over the same
time, no check confirms drift.

The market is the scenario's own return process (`ScenarioPath`: the closes the simulator prints), turned into
1-minute bars (open = previous close, wicks of the minute's sigma) and written to the time-series store; the rest
is the system's real path: `train_model` on the stored bars of the 3 days before the origin, the prediction
service recording each live minute's prediction with its features, `outcomes_mature` as horizons pass, and a
drift check every hour of market time once the default 24-hour window holds a day of live predictions, in the
order they happen live (no check sees an outcome before its exit bar closed). The simulator's sockets are not
needed and not used (the scenario path is the simulator's code, imported).

Regimes of 60 minutes: with the learnable scenario's 480-minute regimes, a 24-hour window holds three regimes
whose mix differs from the training window's, and the features (ret_60, MACD) and the predicted class mix
differ by chance before any change; a check cannot tell that from drift."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from django.core.cache import cache

from kraken_sim.scenarios import ScenarioPath, parse_scenario
from models_registry.drift.checks import LOCK_KEY, drift_check
from models_registry.features import FEATURE_NAMES, compute_features
from models_registry.models import DriftReport, ModelVersion
from models_registry.outcomes import LOCK_KEY as OUTCOMES_LOCK
from models_registry.outcomes import outcomes_mature
from models_registry.prediction import get_prediction_service
from models_registry.training import TrainingConfig, TrainingResult, train_model
from tests.models_registry.conftest import store_bars
from tests.models_registry.factories import registry_settings  # noqa: F401

pytestmark = [
    pytest.mark.usefixtures("registry_settings"),
    pytest.mark.django_db,
    pytest.mark.services("postgres", "redis", "influxdb"),
]

ORIGIN = datetime(2025, 6, 2, tzinfo=UTC)
TRAIN_DAYS = 3
WINDOW = 1440  # the default current window: checks start once a day of live predictions exists
CHANGE_AT = WINDOW + 360  # minutes after the origin (the scenario's ground truth)
LIVE_MINUTES = CHANGE_AT + 600
CHECK_EVERY = 60
HORIZON = 15
# Stated bound: drift confirmed (two consecutive checks with drift, an hour apart) within this of the change.
DETECTION_BOUND_MINUTES = 300
SCENARIOS = {
    "regime_change": f"regime_change:drift=0.0001,regime_minutes=60,change_at={CHANGE_AT},vol_mult=2",
    "random_walk": "random_walk",
}


def _scenario_bars(text: str, seed: int = 7) -> pd.DataFrame:
    """1-minute bars of the scenario from TRAIN_DAYS before the origin to LIVE_MINUTES after it."""
    spec = parse_scenario(text)
    path = ScenarioPath(spec, seed, "BTC/USD", 30_000.0)
    first, last = -TRAIN_DAYS * 1440, LIVE_MINUTES - 1
    logs = path.log_closes(first - 1, last)
    minutes = np.arange(first, last + 1)
    sigma = np.array([path.vol(int(m)) for m in minutes])
    rng = np.random.default_rng(seed)
    open_, close = np.exp(logs[:-1]), np.exp(logs[1:])
    high = np.maximum(open_, close) * np.exp(sigma * np.abs(rng.normal(size=len(minutes))) * 0.5)
    low = np.minimum(open_, close) * np.exp(-sigma * np.abs(rng.normal(size=len(minutes))) * 0.5)
    volume = rng.lognormal(0.0, 0.8, len(minutes))
    index = pd.DatetimeIndex([ORIGIN + timedelta(minutes=int(m)) for m in minutes])
    return pd.DataFrame(
        {
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
            "vwap": (high + low + close) / 3,
            "trades": rng.integers(3, 13, len(minutes)).astype(float),
        },
        index=index,
    )


def _run(text: str) -> tuple[ModelVersion, list[DriftReport]]:
    symbol = f"S{uuid.uuid4().hex[:8].upper()}/USD"
    bars = _scenario_bars(text)
    store_bars(bars, symbol)
    config = TrainingConfig(model="logreg", horizon=HORIZON, dead_zone="auto", n_splits=3, min_samples=300)
    result = train_model(
        symbol=symbol,
        start=ORIGIN - timedelta(days=TRAIN_DAYS),
        end=ORIGIN,
        config=config,
        model_name=f"drift-e2e-{uuid.uuid4().hex[:8]}",
        actor="test",
    )
    assert isinstance(result, TrainingResult)
    version = result.version
    features = compute_features(bars)[list(FEATURE_NAMES)]
    live = features.loc[ORIGIN:]
    service = get_prediction_service()
    reports: list[DriftReport] = []
    done = ORIGIN
    for step in range(WINDOW, LIVE_MINUTES + 1, CHECK_EVERY):
        now = ORIGIN + timedelta(minutes=step)
        chunk = live.loc[done : now - timedelta(minutes=1)]
        done = now
        service.predict_batch(
            chunk,
            model_name=version.model.name,
            selector=version.version,
            decision_ids=[f"e2e:{symbol}:{t.isoformat()}" for t in chunk.index],
            symbol=symbol,
            bar_times=[t.to_pydatetime() for t in chunk.index],
        )
        cache.delete(OUTCOMES_LOCK)
        outcomes_mature(now=now)
        cache.delete(LOCK_KEY.format(version_id=version.pk))
        report = drift_check(version_id=version.pk, now=now)
        assert report is not None
        assert report.status != DriftReport.Status.FAILED, report.error
        reports.append(report)
    return version, reports


def test_regime_change_is_detected_and_confirmed_soon_after_the_true_change() -> None:
    _, reports = _run(SCENARIOS["regime_change"])
    change = ORIGIN + timedelta(minutes=CHANGE_AT)
    before = [r for r in reports if r.as_of <= change]
    assert before, "checks before the change"
    assert not any(r.confirmed for r in before), [(r.as_of, r.kinds, r.confirmed_by) for r in before if r.confirmed]
    confirmed = [r for r in reports if r.confirmed]
    assert confirmed, [(r.as_of.isoformat(), r.status, r.kinds) for r in reports]
    delay = (confirmed[0].as_of - change).total_seconds() / 60
    assert 0 < delay <= DETECTION_BOUND_MINUTES, (delay, confirmed[0].kinds)
    assert "feature" in confirmed[0].kinds
    drifted = {f["feature"] for f in confirmed[0].features if f["drifted"]}
    assert {"vol_15", "vol_60"} & drifted


def test_without_a_change_no_check_confirms_drift() -> None:
    _, reports = _run(SCENARIOS["random_walk"])
    assert len(reports) == (LIVE_MINUTES - WINDOW) // CHECK_EVERY + 1
    assert all(r.status in (DriftReport.Status.OK, DriftReport.Status.DRIFT) for r in reports)
    assert not [r for r in reports if r.confirmed], [
        (r.as_of.isoformat(), r.kinds, r.confirmed_by) for r in reports if r.confirmed
    ]
