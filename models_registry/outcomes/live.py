"""Live metrics per version over rolling windows, beside its validation metrics, and the outcome list and summaries
(see the package doc)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
from django.db.models import Count, Max, Min, Q, QuerySet, Sum
from django.utils import timezone
from threadpoolctl import ThreadpoolController

from models_registry.evaluation.intervals import (
    calibration_buckets,
    direction_hit_array,
    effective_sample_size,
    expected_calibration_error,
    mean_interval,
    overlap_max_lag,
    sharpe_interval,
    wilson_interval,
)
from models_registry.labels import LABEL_CLASSES
from models_registry.models import ModelVersion, Prediction, PredictionOutcome
from models_registry.outcomes.arrays import MaturedArrays, matured_arrays
from models_registry.outcomes.degradation import degradation_assess, open_degradation_alerts
from models_registry.outcomes.rules import OutcomeRule

_THREADPOOLS = ThreadpoolController()
WINDOWS: dict[str, timedelta | None] = {
    "1h": timedelta(hours=1),
    "24h": timedelta(hours=24),
    "7d": timedelta(days=7),
    "all": None,
}
LAST_N = (100, 1000)


def outcome_list(
    *,
    version: ModelVersion,
    status: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    direction_hit: bool | None = None,
    signal: int | None = None,
) -> QuerySet[PredictionOutcome]:
    qs = PredictionOutcome.objects.filter(version=version).select_related("prediction")
    if status:
        qs = qs.filter(status=status)
    if since is not None:
        qs = qs.filter(bar_time__gte=since)
    if until is not None:
        qs = qs.filter(bar_time__lt=until)
    if direction_hit is not None:
        qs = qs.filter(direction_hit=direction_hit)
    if signal is not None:
        qs = qs.filter(signal=signal)
    return qs.order_by("-bar_time", "-id")


def pending_count(*, version: ModelVersion, now: datetime | None = None, matured: int | None = None) -> int:
    """Predictions of the version with a bar time and no matured outcome (due or not yet): those with a bar time
    less the version's matured outcomes (an outcome copies its prediction's version and bar time; `matured`: their
    number when the caller has it), counts an index answers instead of an anti-join over every prediction."""
    recorded = Prediction.objects.filter(version=version, bar_time__isnull=False).count()
    if matured is None:
        matured = PredictionOutcome.objects.filter(version=version, status=PredictionOutcome.Status.MATURED).count()
    return recorded - matured


def _log_loss_terms(proba: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Per-row cross-entropy -log p(true class), probabilities clipped and renormalised like scikit-learn."""
    eps = np.finfo(proba.dtype).eps
    p = np.clip(proba, eps, 1 - eps)
    p = p / p.sum(axis=1, keepdims=True)
    index = np.searchsorted(np.asarray(LABEL_CLASSES), label.astype(np.int64))
    return -np.log(p[np.arange(len(label)), index])


def _brier_terms(proba: np.ndarray, label: np.ndarray) -> np.ndarray:
    onehot = label[:, None] == np.asarray(LABEL_CLASSES, dtype=np.float64)[None, :]
    return ((proba - onehot) ** 2).sum(axis=1)


def _iso(micros: int) -> str:
    return pd.Timestamp(micros, unit="us", tz="UTC").isoformat()


def _window_metrics(a: MaturedArrays, horizon: int, *, bins: int = 10, buckets: bool = False) -> dict[str, Any]:
    n = len(a.label)
    lags = overlap_max_lag(horizon)
    out: dict[str, Any] = {"n_outcomes": n}
    if n == 0:
        out["data_window"] = None
        return out
    out["data_window"] = {"first_bar": _iso(int(a.bar_time[0])), "last_bar": _iso(int(a.bar_time[-1]))}
    hits = direction_hit_array(a.proba[:, 0], a.proba[:, 2], a.forward_return)
    valid = ~np.isnan(hits)
    series = hits[valid]
    k, m = int(series.sum()), int(valid.sum())
    n_eff = effective_sample_size(series, lags) if m else 0.0
    low, high = wilson_interval(k / m * n_eff, n_eff) if m else (0.0, 1.0)
    out["hit_rate"] = {
        "value": k / m if m else None,
        "hits": k,
        "n": m,
        "n_effective": n_eff,
        "low": low,
        "high": high,
        "interval": "wilson on the Newey-West effective n",
    }
    out["log_loss"] = mean_interval(_log_loss_terms(a.proba, a.label), lags=lags).as_dict()
    out["brier_multiclass"] = mean_interval(_brier_terms(a.proba, a.label), lags=lags).as_dict()
    out["ece"] = expected_calibration_error(a.proba, a.label, bins)
    if buckets:
        out["calibration"] = [b.as_dict() for b in calibration_buckets(a.proba, a.label, bins)]
    net = mean_interval(a.net, lags=lags)
    out["net_return"] = {**net.as_dict(), "total": float(a.net.sum()), "traded": int(np.count_nonzero(a.net))}
    out["sharpe"] = {**sharpe_interval(a.net, lags=lags).as_dict(), "per": "prediction"}
    return out


VALIDATION_KEYS = (
    "direction_hit_rate",
    "direction_n",
    "log_loss",
    "baseline_log_loss",
    "brier_multiclass",
    "ece",
    "sharpe_per_bar",
    "net_return_per_prediction",
    "n_oos_samples",
)


def version_live_metrics(
    *, version: ModelVersion, now: datetime | None = None, last_n: Sequence[int] = LAST_N, bins: int = 10
) -> dict[str, Any]:
    """Live metrics per window beside the version's validation metrics (see the module doc)."""
    now = now or timezone.now()
    rule = OutcomeRule.of(version.hyperparameters)
    horizon = rule.horizon or 1
    arrays = matured_arrays(version)
    windows: dict[str, Any] = {}
    # The autocovariances are dot products of ~10^5-element vectors: OpenBLAS threads cost more to wake than they
    # save, and on shared cores wait for each other (p50 150 -> 240-400 ms, max 3.6 s for 100,000 outcomes).
    with _THREADPOOLS.limit(limits=1, user_api="blas"):
        for name, span in WINDOWS.items():
            subset = arrays if span is None else arrays.since(now - span)
            windows[name] = {"kind": "time", "span_seconds": span.total_seconds() if span else None}
            windows[name].update(_window_metrics(subset, horizon, bins=bins))
        for n in last_n:
            tail = _window_metrics(arrays.tail(n), horizon, bins=bins)
            windows[f"last_{n}"] = {"kind": "count", "last_n": n, **tail}
    metrics = version.metrics or {}
    return {
        "model": version.model.name,
        "version": version.version,
        "stage": version.stage,
        "horizon": rule.horizon,
        "round_trip_cost": rule.round_trip_cost,
        "as_of": now.isoformat(),
        "pending_outcomes": pending_count(version=version, matured=len(arrays.label)),
        "validation": {k: metrics.get(k) for k in VALIDATION_KEYS},
        "windows": windows,
        "degradation": degradation_assess(version=version, arrays=arrays),
    }


def version_calibration(*, version: ModelVersion, window: str = "all", bins: int = 10) -> dict[str, Any]:
    """Top-label calibration buckets and ECE of one window (see WINDOWS)."""
    now = timezone.now()
    arrays = matured_arrays(version)
    span = WINDOWS[window]
    subset = arrays if span is None else arrays.since(now - span)
    n = len(subset.label)
    return {
        "model": version.model.name,
        "version": version.version,
        "window": window,
        "bins": bins,
        "n_outcomes": n,
        "data_window": {"first_bar": _iso(int(subset.bar_time[0])), "last_bar": _iso(int(subset.bar_time[-1]))}
        if n
        else None,
        "ece": expected_calibration_error(subset.proba, subset.label, bins) if n else None,
        "validation_ece": (version.metrics or {}).get("ece"),
        "buckets": [b.as_dict() for b in calibration_buckets(subset.proba, subset.label, bins)],
        "kind": "top-label (predicted-class confidence vs whether it was right)",
    }


def version_outcome_summary() -> list[dict[str, Any]]:
    """Per version with outcomes (or serving): counts, hit rate, net return and the degraded flag, from grouped
    aggregates (cheap enough for every /metrics scrape)."""
    matured = Q(status=PredictionOutcome.Status.MATURED)
    rows = (
        PredictionOutcome.objects.values("version_id")
        .annotate(
            n=Count("id", filter=matured),
            pending=Count("id", filter=Q(status=PredictionOutcome.Status.PENDING)),
            hits=Count("id", filter=matured & Q(direction_hit=True)),
            directional=Count("id", filter=matured & Q(direction_hit__isnull=False)),
            first=Min("bar_time"),
            last=Max("bar_time"),
        )
        .order_by()
    )
    sums = dict(
        PredictionOutcome.objects.filter(matured)
        .values("version_id")
        .annotate(total=Sum("net_return"))
        .order_by()
        .values_list("version_id", "total")
    )
    waiting = dict(
        Prediction.objects.filter(bar_time__isnull=False, outcome__isnull=True)
        .values("version_id")
        .annotate(n=Count("id"))
        .order_by()
        .values_list("version_id", "n")
    )
    by_version = {r["version_id"]: r for r in rows}
    serving = ModelVersion.objects.filter(Q(stage__in=["production", "staging"]) | Q(pk__in=list(by_version)))
    degraded = open_degradation_alerts()
    out = []
    for v in serving.select_related("model").order_by("model__name", "version"):
        r: dict[str, Any] = dict(by_version.get(v.pk) or {})
        n = int(r.get("n", 0))
        directional = int(r.get("directional", 0))
        out.append(
            {
                "model": v.model.name,
                "version": v.version,
                "stage": v.stage,
                "n_outcomes": n,
                "pending_outcomes": int(r.get("pending", 0)) + int(waiting.get(v.pk, 0)),
                "hit_rate": r["hits"] / directional if directional else None,
                "net_return_total": float(sums.get(v.pk) or 0.0),
                "net_return_mean": float(sums.get(v.pk) or 0.0) / n if n else None,
                "degraded": v.pk in degraded,
            }
        )
    return out
