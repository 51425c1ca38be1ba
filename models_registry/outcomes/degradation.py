"""Degradation: live performance worse than validation by more than 10 % with statistical support raises an alert
(see the package doc)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction

from models_registry.evaluation.intervals import (
    direction_hit_array,
    effective_sample_size,
    mean_interval,
    overlap_max_lag,
    wilson_interval,
)
from models_registry.models import ModelVersion
from models_registry.outcomes.arrays import MaturedArrays, matured_arrays
from models_registry.outcomes.rules import OutcomeRule
from trading.alerts import alert_raise, alert_resolve
from trading.models import Alert

ALERT_KIND = "model_degraded"
DEGRADATION_MARGIN = 0.10


def degradation_assess(*, version: ModelVersion, arrays: MaturedArrays | None = None) -> dict[str, Any]:
    """Whether live performance is worse than validation by more than 10 % with statistical support."""
    window = int(float(settings.MODELS_REGISTRY_DEGRADATION_WINDOW))
    minimum = int(float(settings.MODELS_REGISTRY_DEGRADATION_MIN_OUTCOMES))
    arrays = matured_arrays(version) if arrays is None else arrays
    recent = arrays.tail(window)
    horizon = OutcomeRule.of(version.hyperparameters).horizon or 1
    lags = overlap_max_lag(horizon)
    metrics = version.metrics or {}
    report: dict[str, Any] = {"window": window, "min_outcomes": minimum, "n_outcomes": len(recent.label)}
    reasons: list[str] = []
    checks: dict[str, Any] = {}
    if len(recent.label) >= minimum:
        val_hit = metrics.get("direction_hit_rate")
        hits = direction_hit_array(recent.proba[:, 0], recent.proba[:, 2], recent.forward_return)
        series = hits[~np.isnan(hits)]
        if isinstance(val_hit, int | float) and math.isfinite(val_hit) and len(series):
            n_eff = effective_sample_size(series, lags)
            _, high = wilson_interval(float(series.mean()) * n_eff, n_eff)
            threshold = (1 - DEGRADATION_MARGIN) * float(val_hit)
            checks["hit_rate"] = {"live": float(series.mean()), "live_high": high, "validation": val_hit}
            checks["hit_rate"]["threshold"] = threshold
            if high < threshold:
                reasons.append(f"hit rate {series.mean():.3f} (upper {high:.3f}) < 0.9 x validation {val_hit:.3f}")
        val_net = metrics.get("net_return_per_prediction")
        if isinstance(val_net, int | float) and math.isfinite(val_net):
            live = mean_interval(recent.net, lags=lags)
            threshold = float(val_net) - DEGRADATION_MARGIN * abs(float(val_net))
            checks["net_return"] = {"live": live.mean, "live_high": live.high, "validation": val_net}
            checks["net_return"]["threshold"] = threshold
            if math.isfinite(live.high) and live.high < threshold:
                reasons.append(
                    f"net return per prediction {live.mean:.6f} (upper {live.high:.6f}) below validation "
                    f"{val_net:.6f} less 10 %"
                )
    report["checks"] = checks
    report["degraded"] = bool(reasons)
    report["reasons"] = reasons
    return report


def degradation_fingerprint(version_id: int) -> str:
    """The condition "this version is degraded": one open alert per version (trading.alerts)."""
    return f"{ALERT_KIND}:version:{version_id}"


def open_degradation_alerts(version_ids: Iterable[int] | None = None) -> set[int]:
    """Versions with an open (firing or acknowledged) `model_degraded` alert."""
    rows = Alert.objects.filter(kind=ALERT_KIND).exclude(state=Alert.State.RESOLVED).values_list("context", flat=True)
    found = {int(c["version_id"]) for c in rows if isinstance(c, dict) and isinstance(c.get("version_id"), int)}
    return found if version_ids is None else found & set(version_ids)


def version_degradation_check(*, version_id: int) -> int | None:
    """Fire the critical `model_degraded` alert of a degraded version (returns its id when newly fired; a repeat
    of an open one returns None), and resolve it once the version is no longer degraded on enough outcomes."""
    fingerprint = degradation_fingerprint(version_id)
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().select_related("model").filter(pk=version_id).first()
        if version is None:
            return None
        report = degradation_assess(version=version)
        if not report["degraded"]:
            if report["n_outcomes"] >= report["min_outcomes"]:  # thin evidence says nothing either way
                alert_resolve(fingerprint=fingerprint)
            return None
        was_open = bool(open_degradation_alerts([version_id]))
        alert = alert_raise(
            kind=ALERT_KIND,
            severity="critical",
            message=f"{version.model.name} v{version.version} degraded live: " + "; ".join(report["reasons"]),
            context={"version_id": version.pk, "model": version.model.name, "version": version.version, **report},
            fingerprint=fingerprint,
        )
    return None if was_open else alert.pk
