"""Reads of the model-lifecycle pages (Models, Experiments): what the registry, drift checks, outcome tracking and
experiments already compute, composed for a page. Nothing here re-implements a metric: live metrics and
calibration come from `models_registry.outcomes`, drift from `models_registry.drift`, experiment results from
`experiments.results`. Every list is bounded and every query is answered by an index, so a page's cost does not
grow with the number of orders, bars or predictions (the heavy figures are fetched by the page over REST)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from django.db.models import Count, Max, OuterRef, Prefetch, Q, Subquery

from dashboard.formatting import money_places
from experiments import selectors as experiment_selectors
from experiments.models import ACTIVE_STATUSES, Comparison, Experiment
from experiments.results import experiment_results
from models_registry import selectors as registry_selectors
from models_registry.drift.selectors import drift_report_list
from models_registry.models import DriftReport, ModelVersion, RegisteredModel, Stage, StageEvent
from models_registry.outcomes.arrays import MaturedArrays, matured_arrays
from models_registry.outcomes.live import VALIDATION_KEYS

MODEL_LIMIT = 100  # registered models listed
VERSION_LIMIT = 20  # newest versions of a model shown (serving versions always are)
EVENT_LIMIT = 50  # newest stage and alias moves of a model
DRIFT_LIMIT = 10  # newest drift reports per serving version
FEATURE_LIMIT = 30  # features of a drift report shown (drifted first, as the report stores them)
EXPERIMENT_LIMIT = 50  # experiments listed
SERIES_POINTS = 400  # points of a cumulative chart (downsampled, the last point always kept)
CHART_VERSIONS = 6  # versions drawn on a model's cumulative net return chart
SERVING_STAGES = (Stage.PRODUCTION, Stage.STAGING)
MODEL_EXPERIMENTS = 20  # newest experiments on a model's page
# Only what the pages show: every timestamp costs a parse (psycopg's pure-Python loader) and the JSON bodies are large.
_EVENT_FIELDS = (
    "id", "kind", "from_stage", "to_stage", "alias", "actor", "reason", "gate_report", "gate_overridden", "at",
    "version__id", "version__version", "previous_version__id", "previous_version__version",
)  # fmt: skip
_REPORT_SUMMARY = (
    "id", "model__id", "model__name", "version__id", "version__version", "trigger", "actor", "as_of", "status",
    "kinds", "confirmed", "confirmed_by", "consecutive", "change_point_at", "dataset_drift", "drift_share",
    "n_features", "n_drifted", "prediction_psi", "error",
)  # fmt: skip
_EXPERIMENT_FIELDS = (
    "id", "name", "status", "mode", "primary_metric", "started_at", "ended_at", "status_reason", "model__id",
    "model__name", "winner__id", "winner__name", "winner__version__id", "winner__version__version",
)  # fmt: skip


# --- models ---------------------------------------------------------------------------------------------------


def _latest_drift() -> Any:
    return DriftReport.objects.filter(version=OuterRef("pk")).order_by("-as_of", "-id")


def _with_latest_drift(qs: Any) -> Any:
    latest = _latest_drift()
    return qs.annotate(
        drift_status=Subquery(latest.values("status")[:1]),
        drift_confirmed=Subquery(latest.values("confirmed")[:1]),
        drift_as_of=Subquery(latest.values("as_of")[:1]),
    )


def model_overview() -> list[dict[str, Any]]:
    """Per registered model (first MODEL_LIMIT by name): its version count, the serving versions (production and
    staging) with aliases and the status of each one's latest drift check, and its running or paused experiment."""
    serving = _with_latest_drift(ModelVersion.objects.filter(stage__in=SERVING_STAGES)).prefetch_related("aliases")
    models = list(
        RegisteredModel.objects.order_by("name")
        .annotate(n_versions=Count("versions"), latest_version=Max("versions__version"))
        .prefetch_related(Prefetch("versions", queryset=serving.order_by("-version"), to_attr="serving"))[:MODEL_LIMIT]
    )
    active = {
        e.model_id: e
        for e in Experiment.objects.filter(model__in=models, status__in=ACTIVE_STATUSES).only(
            "id", "name", "status", "model_id", "mode"
        )
    }
    return [
        {
            "model": m,
            "n_versions": m.n_versions,
            "latest_version": m.latest_version,
            "serving": [_version_row(v) for v in m.serving],
            "experiment": active.get(m.pk),
        }
        for m in models
    ]


def _version_row(v: ModelVersion) -> dict[str, Any]:
    metrics = v.metrics or {}
    return {
        "version": v,
        "aliases": sorted(a.name for a in v.aliases.all()),
        "validation": {k: metrics.get(k) for k in VALIDATION_KEYS if metrics.get(k) is not None},
        "drift_status": getattr(v, "drift_status", None),
        "drift_confirmed": getattr(v, "drift_confirmed", None),
        "drift_as_of": getattr(v, "drift_as_of", None),
        "gates": _gates(v.gate_report or {}),
    }


def _gates(report: dict[str, Any]) -> dict[str, Any]:
    """The version's latest production gate report, its evaluation time as a datetime (the page shows it so)."""
    out = dict(report)
    at = out.get("evaluated_at")
    try:
        out["evaluated_at"] = datetime.fromisoformat(at) if isinstance(at, str) else None
    except ValueError:
        out["evaluated_at"] = None
    return out


@dataclass
class ModelPage:
    model: RegisteredModel
    versions: list[dict[str, Any]]
    events: list[StageEvent]
    drift: list[dict[str, Any]]
    experiments: list[Experiment]
    chart_versions: list[int]
    more_versions: bool = False
    more_events: bool = False
    serving: list[int] = field(default_factory=list)


def model_page(*, name: str) -> ModelPage | None:
    """Everything the model's page shows from the database: its newest versions (serving ones always), the newest
    stage and alias moves with their gate reports, the drift reports of its serving versions (features drifted
    first) and its experiments. Live metrics and calibration are read by the page from the registry API."""
    model = registry_selectors.registered_model_get(name=name)
    if model is None:
        return None
    base = _with_latest_drift(ModelVersion.objects.filter(model=model).defer("signature", "hyperparameters"))
    base = base.select_related("parent").defer("parent__signature", "parent__hyperparameters", "parent__metrics")
    newest = list(base.prefetch_related("aliases").order_by("-version")[: VERSION_LIMIT + 1])
    more_versions = len(newest) > VERSION_LIMIT
    newest = newest[:VERSION_LIMIT]
    shown = {v.pk for v in newest}
    older_serving = [v for v in base.filter(stage__in=SERVING_STAGES).prefetch_related("aliases") if v.pk not in shown]
    versions = sorted(newest + older_serving, key=lambda v: -v.version)
    events = list(
        StageEvent.objects.filter(model=model)
        .select_related("version", "previous_version")
        .only(*_EVENT_FIELDS)
        .order_by("-at", "-id")[: EVENT_LIMIT + 1]
    )
    more_events = len(events) > EVENT_LIMIT
    serving = [v for v in versions if v.stage in SERVING_STAGES]
    drift = []
    for v in serving:
        reports = list(drift_report_list(version=v).only(*_REPORT_SUMMARY)[:DRIFT_LIMIT])
        latest = drift_report_list(version=v).values_list("features", flat=True).first() if reports else None
        features = list(latest or [])
        drift.append({"version": v, "reports": reports, "features": features[:FEATURE_LIMIT], "n": len(features)})
    experiments = list(
        experiment_selectors.experiment_list(model_name=model.name).only(*_EXPERIMENT_FIELDS)[:MODEL_EXPERIMENTS]
    )
    chart = [v.version for v in serving] + [v.version for v in versions if v.stage not in SERVING_STAGES]
    return ModelPage(
        model=model,
        versions=[_version_row(v) for v in versions],
        events=events[:EVENT_LIMIT],
        drift=drift,
        experiments=experiments,
        chart_versions=chart[:CHART_VERSIONS],
        more_versions=more_versions,
        more_events=more_events,
        serving=[v.version for v in serving],
    )


def downsample(values: np.ndarray, times: np.ndarray, points: int = SERIES_POINTS) -> tuple[list[float], list[float]]:
    """At most `points` (time, value) pairs of a series, evenly spaced by index, the last one always kept; times
    in Unix seconds."""
    n = len(values)
    if n == 0:
        return [], []
    index = np.arange(n)
    if n > points:
        index = np.unique(np.append(np.linspace(0, n - 1, points).astype(np.int64), n - 1))
    return (times[index] / 1e6).tolist(), values[index].tolist()


def _before(arrays: MaturedArrays, until: datetime) -> MaturedArrays:
    """The outcomes with a bar time before `until` (the arrays are in bar-time order)."""
    end = len(arrays.label) - len(arrays.since(until).label)
    return MaturedArrays(
        arrays.bar_time[:end], arrays.proba[:end], arrays.label[:end], arrays.forward_return[:end], arrays.net[:end]
    )


def cumulative_net_returns(
    *, model: RegisteredModel, versions: list[int], since: datetime | None = None, until: datetime | None = None
) -> list[dict[str, Any]]:
    """Per version of `model` (the numbers asked, at most CHART_VERSIONS): the cumulative sum of its matured
    outcomes' net returns in bar-time order (outcome tracking's own arrays, one indexed read per version), from
    `since` and before `until` when given (an experiment's span), downsampled to SERIES_POINTS, with the count
    and total."""
    found = ModelVersion.objects.filter(model=model, version__in=versions[:CHART_VERSIONS]).order_by("-version")
    out = []
    for version in found:
        arrays = matured_arrays(version)
        if since is not None:
            arrays = arrays.since(since)
        if until is not None:
            arrays = _before(arrays, until)
        cumulative = np.cumsum(arrays.net)
        times, values = downsample(cumulative, arrays.bar_time)
        out.append(
            {
                "version": version.version,
                "stage": version.stage,
                "n": int(len(arrays.net)),
                "total": float(cumulative[-1]) if len(cumulative) else 0.0,
                "t": times,
                "cumulative": values,
            }
        )
    return out


# --- experiments ----------------------------------------------------------------------------------------------


def experiment_rows(*, status: str | None = None, model_name: str | None = None) -> list[dict[str, Any]]:
    """The newest EXPERIMENT_LIMIT experiments with their arms and each treatment's primary always-valid p."""
    experiments = list(
        experiment_selectors.experiment_list(model_name=model_name, status=status).prefetch_related(
            "arms__version", "arms__statistics"
        )[:EXPERIMENT_LIMIT]
    )
    p_values: dict[int, list[Comparison]] = {}
    for c in Comparison.objects.filter(experiment__in=experiments).select_related("treatment"):
        p_values.setdefault(c.experiment_id, []).append(c)
    rows = []
    for e in experiments:
        arms = sorted(e.arms.all(), key=lambda a: (a.position, a.pk))
        rows.append(
            {
                "experiment": e,
                "arms": arms,
                "n_outcomes": {a.name: getattr(getattr(a, "statistics", None), "n_outcomes", 0) for a in arms},
                "comparisons": p_values.get(e.pk, []),
            }
        )
    return rows


def experiment_page(*, experiment_id: int) -> dict[str, Any] | None:
    """The experiment and its results document (`experiments.results`, from the sufficient statistics: the cost
    does not grow with the outcomes), with a CI bar scale per metric for the page."""
    experiment = experiment_selectors.experiment_get(experiment_id=experiment_id)
    if experiment is None:
        return None
    results = experiment_results(experiment_id)
    as_of = datetime.fromisoformat(results["as_of"])
    control = next((a for a in experiment.arms.all() if a.role == "control"), None)
    symbols = list(control.version.symbols or []) if control is not None else []
    currency = symbols[0].rsplit("/", 1)[-1] if symbols else "USD"
    return {
        "experiment": experiment,
        "results": results,
        "bars": ci_bars(results),
        "as_of": as_of,
        "currency": currency,
        "money_places": money_places(currency),
    }


def ci_bars(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per treatment arm and metric: where the estimate and its interval sit on a common symmetric scale around
    zero (percent of the bar's width), so the page draws each delta with its CI bar without arithmetic."""
    out: dict[str, dict[str, Any]] = {}
    for arm in results["arms"]:
        comparison = arm.get("comparison")
        if not comparison:
            continue
        bars: dict[str, Any] = {}
        for metric, value in (comparison.get("metrics") or {}).items():
            bars[metric] = _bar(value)
        out[arm["name"]] = bars
    return out


def _bar(value: dict[str, Any]) -> dict[str, Any] | None:
    estimate, low, high = value.get("estimate"), value.get("ci_low"), value.get("ci_high")
    finite = [abs(x) for x in (estimate, low, high) if isinstance(x, int | float) and np.isfinite(x)]
    if estimate is None or not finite:
        return None
    scale = max(finite) * 1.1 or 1.0

    def at(x: float | None) -> float | None:
        if x is None or not np.isfinite(x):
            return None
        return round(50 + 50 * x / scale, 2)

    lo, hi = at(low), at(high)
    excludes_zero = lo is not None and hi is not None and (lo > 50 or hi < 50)
    better = value.get("better")
    return {
        "tone": ("good" if better else "bad" if better is False else "") if excludes_zero else "",
        "estimate": at(estimate),
        "low": lo if lo is not None else 0.0,
        "high": hi if hi is not None else 100.0,
        "open_low": lo is None,
        "open_high": hi is None,
        "excludes_zero": excludes_zero,
    }


def experiment_model_names() -> list[str]:
    """Names of the models with experiments (the list page's filter)."""
    return list(
        RegisteredModel.objects.filter(Q(experiments__isnull=False))
        .distinct()
        .order_by("name")
        .values_list("name", flat=True)[:MODEL_LIMIT]
    )
