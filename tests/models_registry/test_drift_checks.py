"""Drift checks against the real stores (PostgreSQL, Redis lock, InfluxDB bars): each kind fires on its synthetic
cause and stays quiet without it, the report lists every statistic (features drifted first) with its windows,
drift is confirmed when sustained or by a detector change point (with the change's start recorded for a
retraining), the alert is raised once per version, and the API, command, task and /metrics serve the reports."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from django.core.cache import cache
from django.core.management import call_command
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from models_registry.drift.checks import (
    LOCK_KEY,
    drift_check,
    feature_drift,
    label_drift,
    prediction_drift,
)
from models_registry.drift.reference import reference_get
from models_registry.drift.services import drift_policy_set
from models_registry.drift.thresholds import DEFAULT_THRESHOLDS, thresholds_for
from models_registry.features import FEATURE_NAMES, compute_features, feature_signature
from models_registry.labels import make_labels
from models_registry.models import (
    DriftReference,
    DriftReport,
    ModelVersion,
    Prediction,
    PredictionOutcome,
    features_encode,
)
from models_registry.tasks import drift_check_task
from tests.models_registry.conftest import store_bars
from tests.models_registry.factories import make_model, make_version, registry_settings  # noqa: F401
from tests.models_registry.synthetic import make_bars
from trading.models import Alert

pytestmark = [
    pytest.mark.usefixtures("registry_settings"),
    pytest.mark.django_db,
    pytest.mark.services("postgres", "redis", "influxdb"),
]

HORIZON = 5
HYPER = {
    "model": "logreg",
    "C": 0.1,
    "max_iter": 1000,
    "seed": 0,
    "horizon": HORIZON,
    "label_dead_zone": 0.0005,
    "taker_fee": 0.0,
    "slippage_bps": 0.0,
    "cv": {"kind": "purged_walk_forward", "n_splits": 3, "purge": HORIZON, "embargo": HORIZON},
}
TRAIN_START = pd.Timestamp("2025-03-01 00:00", tz="UTC")
TRAIN_BARS = 2400
LIVE_BARS = 240 + 600  # warm-up + 600 live predictions
TH = thresholds_for({})


def _estimator() -> Any:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, len(FEATURE_NAMES)))
    y = np.where(x[:, 0] > 0.5, 1, np.where(x[:, 0] < -0.5, -1, 0))
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)


def _bars(n: int, start: pd.Timestamp, seed: int, scale: float = 1.0) -> pd.DataFrame:
    """Synthetic bars from `start`; `scale` multiplies every log move (returns and intrabar ranges)."""
    frame = make_bars(n, seed=seed, book=False)
    frame.index = pd.date_range(start, periods=n, freq="min", tz="UTC")
    if scale != 1.0:
        base = float(frame["close"].iloc[0])
        for column in ("open", "high", "low", "close", "vwap"):
            frame[column] = base * np.exp(scale * np.log(frame[column] / base))
    return frame


@pytest.fixture
def version() -> ModelVersion:
    symbol = f"D{uuid.uuid4().hex[:8].upper()}/USD"
    frame = _bars(TRAIN_BARS, TRAIN_START, seed=21)
    store_bars(frame, symbol)
    found = make_version(
        make_model(gates={}),
        estimator=_estimator(),
        signature=[(c["name"], c["dtype"]) for c in feature_signature()],
        data_start=frame.index[0].to_pydatetime(),
        data_end=(frame.index[-1] + pd.Timedelta(minutes=1)).to_pydatetime(),
        symbols=[symbol],
        hyperparameters=HYPER,
        metrics={"direction_hit_rate": 0.55, "net_return_per_prediction": 0.0},
    )
    cache.delete(LOCK_KEY.format(version_id=found.pk))
    return found


def _live(
    version: ModelVersion,
    *,
    seed: int,
    scale: float = 1.0,
    proba: np.ndarray | None = None,
    hits: np.ndarray | None = None,
    start: pd.Timestamp | None = None,
) -> datetime:
    """Live predictions (features computed from live bars, stored on the prediction) and their matured outcomes
    (labels by the training's code); returns the end of the window (one minute after the last bar)."""
    start = start or TRAIN_START + pd.Timedelta(minutes=TRAIN_BARS + 60)
    frame = _bars(LIVE_BARS, start, seed=seed, scale=scale)
    features = compute_features(frame)[list(FEATURE_NAMES)].iloc[240:]
    labels = make_labels(frame["close"], HORIZON, taker_fee=0.0, dead_zone=0.0005).reindex(features.index)
    n = len(features)
    if proba is None:
        proba = np.tile([0.3, 0.4, 0.3], (n, 1))
    if hits is None:
        hits = np.random.default_rng(seed).random(n) < 0.55
    preds = Prediction.objects.bulk_create(
        Prediction(
            decision_id=f"live-{uuid.uuid4().hex}",
            version=version,
            symbol=version.symbols[0],
            features_hash="0" * 64,
            probabilities={"-1": float(p[0]), "0": float(p[1]), "1": float(p[2])},
            predicted_class=int(np.argmax(p)) - 1,
            signal=0,
            confidence=float(max(p)),
            bar_time=t.to_pydatetime(),
            horizon=HORIZON,
            features=features_encode(row),
        )
        for t, row, p in zip(features.index, features.to_numpy(), proba[:n], strict=True)
    )
    forward = labels["forward_return"].to_numpy()
    realised = labels["label"].to_numpy()
    outcomes = []
    for i, p in enumerate(preds):
        if not np.isfinite(forward[i]):
            continue
        outcomes.append(
            PredictionOutcome(
                prediction=p,
                version=version,
                symbol=p.symbol,
                bar_time=p.bar_time,
                horizon=HORIZON,
                window_end=p.bar_time + timedelta(minutes=HORIZON),  # type: ignore[operator]
                signal=0,
                p_down=float(proba[i][0]),
                p_flat=float(proba[i][1]),
                p_up=float(proba[i][2]),
                status="matured",
                forward_return=float(forward[i]),
                realised_label=int(realised[i]),
                dead_zone=0.0005,
                direction_hit=bool(hits[i]),
                position=0,
                round_trip_cost=0.0,
                net_return=0.0,
                matured_at=p.bar_time,
                checked_at=p.bar_time,
            )
        )
    PredictionOutcome.objects.bulk_create(outcomes)
    return (frame.index[-1] + pd.Timedelta(minutes=1)).to_pydatetime()


def _validation_like(version: ModelVersion, n: int, seed: int) -> np.ndarray:
    ref = reference_get(version=version, max_rows=TH["reference_max_rows"])
    assert ref.validation_proba is not None
    return ref.validation_proba[np.random.default_rng(seed).integers(0, len(ref.validation_proba), n)]


# --- the kinds as pure functions ---------------------------------------------------------------------------


def test_feature_drift_uses_ks_on_a_small_reference_and_wasserstein_on_a_large_one() -> None:
    rng = np.random.default_rng(1)
    names = ["a", "b", "c"]
    small = rng.normal(size=(800, 3))
    shifted = rng.normal(size=(400, 3)) + np.array([1.0, 0.0, 0.0])
    report = feature_drift(small, shifted, names, TH)
    assert report["test"] == "ks"
    assert [f["feature"] for f in report["features"]][0] == "a"  # drifted first
    assert report["features"][0]["drifted"]
    assert report["features"][0]["p_value"] < 0.05
    assert report["n_drifted"] == 1
    assert report["drift_share"] == pytest.approx(1 / 3)
    assert not report["dataset_drift"]
    large = rng.normal(size=(5000, 3))
    both = rng.normal(size=(400, 3)) * np.array([3.0, 3.0, 1.0])
    report = feature_drift(large, both, names, TH)
    assert report["test"] == "wasserstein_normed"
    assert {f["feature"] for f in report["features"] if f["drifted"]} == {"a", "b"}
    assert report["dataset_drift"]  # 2/3 >= 0.5
    assert all({"psi", "psi_level", "jensen_shannon", "threshold"} <= set(f) for f in report["features"])
    assert feature_drift(large, both[:50], names, TH)["status"] == "insufficient_data"


def test_prediction_drift_fires_on_a_shifted_score_and_class_mix_and_not_on_a_resample() -> None:
    rng = np.random.default_rng(2)
    validation = rng.dirichlet([3, 4, 3], size=3000)
    quiet = prediction_drift(validation, validation[rng.integers(0, 3000, 800)], TH)
    assert quiet["status"] == "evaluated"
    assert not quiet["drifted"]
    confident_up = rng.dirichlet([1, 2, 12], size=800)
    drift = prediction_drift(validation, confident_up, TH)
    assert drift["drifted"]
    assert drift["score"]["psi"] >= 0.25
    assert drift["class_mix"]["psi"] >= 0.25
    assert drift["class_mix"]["current"]["1"] > 0.9
    assert prediction_drift(None, confident_up, TH, unavailable="no fold")["status"] == "unavailable"


def test_label_drift_fires_on_a_volatility_change_and_not_without() -> None:
    rng = np.random.default_rng(3)
    train_fwd = rng.normal(0, 0.001, 5000)
    train_labels = np.sign(np.where(np.abs(train_fwd) > 0.0005, train_fwd, 0))
    same = rng.normal(0, 0.001, 600)
    quiet = label_drift(train_labels, train_fwd, np.sign(np.where(np.abs(same) > 0.0005, same, 0)), same, TH)
    assert quiet["status"] == "evaluated"
    assert not quiet["drifted"]
    wild = rng.normal(0, 0.004, 600)
    drift = label_drift(train_labels, train_fwd, np.sign(np.where(np.abs(wild) > 0.0005, wild, 0)), wild, TH)
    assert drift["drifted"]
    assert drift["volatility"]["ratio"] == pytest.approx(4.0, rel=0.15)
    assert drift["label_mix"]["psi"] >= 0.25


# --- the check against the stores --------------------------------------------------------------------------


def test_no_change_keeps_the_check_quiet(version: ModelVersion) -> None:
    end = _live(version, seed=22, proba=_validation_like(version, 600, seed=5))
    report = drift_check(version_id=version.pk, now=end)
    assert report is not None
    assert report.status == DriftReport.Status.OK, (report.kinds, report.windows)
    assert report.kinds == []
    assert not report.dataset_drift
    assert report.drift_share is not None
    assert report.drift_share < 0.5
    assert report.prediction["status"] == "evaluated"
    assert not report.prediction["drifted"]
    assert report.label["status"] == "evaluated"
    assert not report.label["drifted"]
    assert report.concept["status"] == "evaluated"
    assert not report.concept["drifted"]
    assert not report.confirmed
    assert report.windows["current"]["feature_rows"] == 600
    assert report.windows["reference"]["feature_rows"] == TRAIN_BARS - 240
    assert report.windows["validation"]["predictions"] > 0
    assert not Alert.objects.filter(kind="drift").exists()


def test_a_check_without_drift_resolves_the_versions_open_drift_alert(version: ModelVersion) -> None:
    from models_registry.drift.checks import drift_fingerprint
    from trading.alerts import alert_raise

    other = alert_raise(kind="drift", severity="warning", message="another version", fingerprint="drift:version:0")
    earlier = alert_raise(kind="drift", severity="warning", message="drift confirmed earlier",
                          fingerprint=drift_fingerprint(version.pk), context={"version_id": version.pk})  # fmt: skip
    end = _live(version, seed=22, proba=_validation_like(version, 600, seed=5))
    report = drift_check(version_id=version.pk, now=end)
    assert report is not None
    assert report.status == DriftReport.Status.OK
    earlier.refresh_from_db()
    other.refresh_from_db()
    assert (earlier.state, earlier.resolved_by) == ("resolved", "auto")
    assert other.state == "firing"


def test_a_volatility_regime_drifts_features_and_labels_and_is_confirmed_when_sustained(version: ModelVersion) -> None:
    end = _live(version, seed=23, scale=4.0, proba=_validation_like(version, 600, seed=6))
    first = drift_check(version_id=version.pk, now=end)
    assert first is not None
    assert first.status == DriftReport.Status.DRIFT
    assert {"feature", "label"} <= set(first.kinds)
    assert first.dataset_drift
    assert first.drift_share is not None
    assert first.drift_share >= 0.5
    drifted = [f["feature"] for f in first.features if f["drifted"]]
    assert {"vol_15", "vol_60", "ret_1"} <= set(drifted)
    assert [f["drifted"] for f in first.features] == sorted((f["drifted"] for f in first.features), reverse=True)
    assert first.features[0]["test"] == "wasserstein_normed"
    assert first.features[0]["threshold"] == 0.1
    assert first.label["volatility"]["ratio"] > 1.5
    assert first.consecutive == 1
    assert not first.confirmed
    second = drift_check(version_id=version.pk, now=end + timedelta(minutes=15))
    assert second is not None
    assert second.consecutive == 2
    assert second.confirmed
    assert any("sustained" in reason for reason in second.confirmed_by)
    alert = Alert.objects.get(kind="drift")
    assert alert.severity == "warning"
    assert alert.context["report_id"] == second.pk
    assert second.alert_id == alert.pk
    third = drift_check(version_id=version.pk, now=end + timedelta(minutes=30))
    assert third is not None
    assert third.confirmed
    assert third.alert_id is None
    assert Alert.objects.filter(kind="drift").count() == 1


def test_prediction_drift_from_overconfident_live_predictions(version: ModelVersion) -> None:
    end = _live(version, seed=22, proba=np.tile([0.02, 0.03, 0.95], (600, 1)))
    report = drift_check(version_id=version.pk, now=end)
    assert report is not None
    assert "prediction" in report.kinds
    assert report.prediction_psi is not None
    assert report.prediction_psi >= 0.25


def test_a_detector_change_point_confirms_concept_drift_and_records_where_it_starts(version: ModelVersion) -> None:
    # 1,200 earlier outcomes right, then the 600 of the window mostly wrong: the error rate jumps
    earlier = TRAIN_START + pd.Timedelta(minutes=TRAIN_BARS + 60)
    _live(version, seed=30, hits=np.random.default_rng(1).random(600) < 0.9, start=earlier)
    _live(version, seed=31, hits=np.random.default_rng(2).random(600) < 0.9, start=earlier + pd.Timedelta(hours=12))
    window_start = earlier + pd.Timedelta(hours=24)
    end = _live(version, seed=32, hits=np.random.default_rng(3).random(600) < 0.2, start=window_start)
    th_window = int((end - window_start.to_pydatetime()).total_seconds() // 60) - 240
    drift_policy_set(model=version.model, thresholds={"current_window_minutes": th_window}, actor="test")
    report = drift_check(version_id=version.pk, now=end)
    assert report is not None
    assert "concept" in report.kinds
    assert report.concept["detector_drift"]
    assert report.concept["detectors_in_drift"]
    assert report.confirmed
    assert any(r.startswith("detectors") for r in report.confirmed_by)
    assert report.change_point_at is not None
    assert report.change_point_at >= (window_start - pd.Timedelta(hours=12)).to_pydatetime()
    assert report.concept["n_observations"] == pytest.approx(1800 / HORIZON, rel=0.05)  # one per horizon
    assert Alert.objects.filter(kind="drift", context__version_id=version.pk).count() == 1


def test_too_little_live_data_is_insufficient_not_ok(version: ModelVersion) -> None:
    report = drift_check(version_id=version.pk, now=(TRAIN_START + pd.Timedelta(days=3)).to_pydatetime())
    assert report is not None
    assert report.status == DriftReport.Status.INSUFFICIENT
    assert report.features == []
    assert report.windows["features"]["status"] == "insufficient_data"


def test_the_reference_is_built_once_and_reproduces_the_validation(version: ModelVersion) -> None:
    first = reference_get(version=version, max_rows=100_000)
    second = reference_get(version=version, max_rows=100_000)
    assert DriftReference.objects.filter(version=version).count() == 1
    assert first.validation_proba is not None
    np.testing.assert_allclose(second.validation_proba, first.validation_proba)
    np.testing.assert_allclose(first.validation_proba.sum(axis=1), 1.0, atol=1e-5)
    assert first.features.shape == (TRAIN_BARS - 240, len(FEATURE_NAMES))


def test_a_running_check_of_the_version_is_skipped(version: ModelVersion) -> None:
    cache.add(LOCK_KEY.format(version_id=version.pk), "other", timeout=60)
    try:
        assert drift_check(version_id=version.pk) is None
    finally:
        cache.delete(LOCK_KEY.format(version_id=version.pk))


def test_thresholds_per_model_override_the_defaults_and_bad_ones_are_refused(version: ModelVersion) -> None:
    from core.errors import ApplicationError

    drift_policy_set(model=version.model, thresholds={"wasserstein": 0.5, "confirm_checks": 3}, actor="test")
    end = _live(version, seed=22, proba=_validation_like(version, 600, seed=5))
    report = drift_check(version_id=version.pk, now=end)
    assert report is not None
    assert report.thresholds["wasserstein"] == 0.5
    assert report.thresholds["confirm_checks"] == 3
    assert report.thresholds["ks_p_value"] == DEFAULT_THRESHOLDS["ks_p_value"]
    with pytest.raises(ApplicationError):
        drift_policy_set(model=version.model, thresholds={"wasserstien": 0.2}, actor="test")
    with pytest.raises(ApplicationError):
        drift_policy_set(model=version.model, thresholds={"bins": 0}, actor="test")
    for bad in ({"cusum": {}}, {"adwin": {"gamma": 1}}, {"page_hinkley": {"threshold": "high"}}, [1]):
        with pytest.raises(ApplicationError):
            drift_policy_set(model=version.model, thresholds={"detectors": bad}, actor="test")
    for bad_value in ({"wasserstein": float("nan")}, {"bins": 10**6}, {"current_window_minutes": 10**9}):
        with pytest.raises(ApplicationError):
            drift_policy_set(model=version.model, thresholds=bad_value, actor="test")
    assert version.model.drift_policy.thresholds == {"wasserstein": 0.5, "confirm_checks": 3}


# --- doors: API, command, task, /metrics -------------------------------------------------------------------


def _api(user: Any = None) -> Any:
    from rest_framework.test import APIClient

    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def test_api_runs_a_check_for_staff_and_lists_and_shows_reports(version, staff_user, plain_user) -> None:  # type: ignore[no-untyped-def]
    _live(version, seed=22)
    base = f"/api/models/{version.model.name}/versions/{version.version}/drift/"
    assert _api(plain_user).post(base).status_code == 403
    created = _api(staff_user).post(base)
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["trigger"] == "operator"
    assert body["actor"] == "user:staff"
    assert {"features", "prediction", "label", "concept", "windows", "thresholds"} <= set(body)
    listed = _api(plain_user).get(base).json()
    assert listed["count"] == 1
    assert listed["results"][0]["id"] == body["id"]
    assert _api(plain_user).get(f"{base}?status=nonsense").status_code == 400
    shown = _api(plain_user).get(f"{base}{body['id']}/")
    assert shown.status_code == 200
    assert shown.json()["id"] == body["id"]
    assert _api(plain_user).get(f"{base}999999/").status_code == 404
    thresholds = f"/api/models/{version.model.name}/drift-thresholds/"
    assert _api(plain_user).get(thresholds).json()["thresholds"]["wasserstein"] == 0.1
    assert _api(plain_user).put(thresholds, {"thresholds": {"wasserstein": 0.2}}, format="json").status_code == 403
    bad = _api(staff_user).put(thresholds, {"thresholds": {"nope": 1}}, format="json")
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "invalid_drift_thresholds"
    ok = _api(staff_user).put(thresholds, {"thresholds": {"wasserstein": 0.2}}, format="json")
    assert ok.status_code == 200
    assert ok.json()["thresholds"]["wasserstein"] == 0.2


def test_command_and_task_record_reports_and_metrics_show_them(version: ModelVersion, capsys) -> None:  # type: ignore[no-untyped-def]
    from galfriday_site.metrics import render

    end = _live(version, seed=22)
    call_command("drift_check", version.model.name, "--model-version", str(version.version))
    out = capsys.readouterr().out
    assert f"{version.model.name} v{version.version}:" in out
    assert "[report " in out
    result = drift_check_task(version_id=version.pk, trigger="schedule")
    assert result["checks"][0]["status"] in {"ok", "drift"}
    assert DriftReport.objects.filter(version=version, trigger="operator", actor="command:drift_check").count() == 1
    assert DriftReport.objects.filter(version=version, trigger="schedule").count() == 1
    latest = drift_check(version_id=version.pk, now=end)
    assert latest is not None
    assert latest.drift_share is not None
    text = render().decode()
    key = f'model="{version.model.name}",stage="none",version="{version.version}"'
    assert f"galfriday_drift_share{{{key}}} {latest.drift_share}" in text
    assert f'galfriday_drift_detector_state{{detector="adwin",{key}}} 0.0' in text
    assert f"galfriday_drift_confirmed{{{key}}} 0.0" in text
    assert 'galfriday_metrics_collector_failed{collector="drift"}' not in text


def test_admin_add_page_runs_a_check_and_shows_its_report(version: ModelVersion, staff_user, client) -> None:  # type: ignore[no-untyped-def]
    from django.urls import reverse

    client.force_login(staff_user)
    add = reverse("admin:models_registry_driftreport_add")
    assert client.get(add).status_code == 200
    response = client.post(add, {"version": version.pk})
    report = DriftReport.objects.get(version=version)
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:models_registry_driftreport_change", args=[report.pk])
    assert report.trigger == "operator"
    assert report.actor == "admin:staff"
    page = client.get(response["Location"])
    assert page.status_code == 200
    assert b"features (drifted first)" in page.content.lower()
    changelist = client.post(
        reverse("admin:models_registry_driftreport_changelist"),
        {"action": "check_again", "_selected_action": [report.pk]},
    )
    assert changelist.status_code == 302
    assert DriftReport.objects.filter(version=version).count() == 2
    evaluated = drift_check(version_id=version.pk, now=_live(version, seed=22))
    assert evaluated is not None
    shown = client.get(reverse("admin:models_registry_driftreport_change", args=[evaluated.pk])).content
    assert b"<td>ret_1</td>" in shown
    assert b"wasserstein_normed" in shown
