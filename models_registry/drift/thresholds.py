"""Drift thresholds: the defaults (issue 15's, and the windows of a check) and a registered model's overrides
(`models_registry.models.DriftPolicy.thresholds`, merged key by key; unknown keys or values of the wrong type
are refused)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from core.errors import ApplicationError
from models_registry.drift.detectors import DEFAULT_PARAMETERS


class ThresholdsError(ApplicationError):
    code = "invalid_drift_thresholds"


DEFAULT_THRESHOLDS: dict[str, Any] = {
    # feature drift (Evidently's choice of test): KS p < 0.05 when the reference has at most 1,000 rows, else the
    # Wasserstein distance normed by the reference's standard deviation >= 0.1; PSI reported beside it
    "ks_p_value": 0.05,
    "ks_max_reference_rows": 1000,
    "wasserstein": 0.1,
    "psi_moderate": 0.1,
    "psi_significant": 0.25,
    "bins": 10,
    "dataset_drift_share": 0.5,
    # prediction drift: PSI of the score P(up) - P(down) or of the predicted class mix vs validation
    "prediction_psi": 0.25,
    # label drift: PSI of the realised label mix vs training, or the forward-return volatility ratio
    "label_psi": 0.25,
    "volatility_ratio": 1.5,
    # windows and minimum samples
    "current_window_minutes": 1440,
    "min_current_rows": 100,
    "min_label_outcomes": 100,
    "reference_max_rows": 50_000,
    # concept drift: detectors on the direction-error stream of matured outcomes, thinned to one outcome per
    # horizon (non-overlapping windows, so the stream is close to independent), the last `detector_max_outcomes`
    "detector_max_outcomes": 100_000,
    "detector_votes": 1,
    "detectors": {},
    # confirmation: drift in this many consecutive checks, or a detector change point in the current window
    "confirm_checks": 2,
}

# upper bounds, so a policy cannot make a check unbounded (a window of years, millions of bins)
_MAXIMA: dict[str, float] = {
    "ks_p_value": 1.0,
    "ks_max_reference_rows": 10_000_000,
    "psi_moderate": 100.0,
    "psi_significant": 100.0,
    "wasserstein": 1_000.0,
    "bins": 100,
    "dataset_drift_share": 1.0,
    "prediction_psi": 100.0,
    "label_psi": 100.0,
    "volatility_ratio": 1_000.0,
    "current_window_minutes": 43_200,
    "min_current_rows": 1_000_000,
    "min_label_outcomes": 1_000_000,
    "reference_max_rows": 1_000_000,
    "detector_max_outcomes": 10_000_000,
    "detector_votes": 3,
    "confirm_checks": 1_000,
}

_INTEGER_KEYS = {
    "ks_max_reference_rows",
    "bins",
    "current_window_minutes",
    "min_current_rows",
    "min_label_outcomes",
    "reference_max_rows",
    "detector_max_outcomes",
    "detector_votes",
    "confirm_checks",
}


def _detectors_problem(value: Any) -> str:
    """What is wrong with detector parameter overrides ({detector: {parameter: number}}), or ""."""
    if not isinstance(value, Mapping):
        return "an object of detector -> parameters"
    for name, params in value.items():
        if name not in DEFAULT_PARAMETERS:
            return f"unknown detector {name!r} (one of {sorted(DEFAULT_PARAMETERS)})"
        if not isinstance(params, Mapping):
            return f"{name}: an object of parameter -> number"
        for param, number in params.items():
            if param not in DEFAULT_PARAMETERS[name]:
                return f"{name}: unknown parameter {param!r} (one of {sorted(DEFAULT_PARAMETERS[name])})"
            if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
                return f"{name}.{param}: must be a finite number"
            if number < 0:
                return f"{name}.{param}: must not be negative"
    return ""


def thresholds_validate(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`overrides` checked against the defaults' keys and types (a ThresholdsError names what is wrong)."""
    if not isinstance(overrides, Mapping):
        raise ThresholdsError("drift thresholds must be an object")
    errors: dict[str, str] = {}
    for key, value in overrides.items():
        if key not in DEFAULT_THRESHOLDS:
            errors[key] = "unknown threshold"
        elif key == "detectors":
            problem = _detectors_problem(value)
            if problem:
                errors[key] = problem
        elif isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            errors[key] = "must be a finite number"
        elif key in _INTEGER_KEYS and (not float(value).is_integer() or value < 1):
            errors[key] = "must be a positive integer"
        elif value < 0:
            errors[key] = "must not be negative"
        elif value > _MAXIMA[key]:
            errors[key] = f"must be at most {_MAXIMA[key]:g}"
    if errors:
        raise ThresholdsError("invalid drift thresholds", details=errors)
    return dict(overrides)


def thresholds_for(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """The defaults with a model's overrides applied."""
    merged = dict(DEFAULT_THRESHOLDS)
    merged.update(thresholds_validate(overrides or {}))
    for key in _INTEGER_KEYS:
        merged[key] = int(merged[key])
    return merged
