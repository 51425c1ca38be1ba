"""Reads of the model registry: models, versions, aliases, the stage history ("which version served production
at time T"), promotion gate reports, signature checks and verified artifact loads."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils.module_loading import import_string
from rest_framework import status

from core.errors import ApplicationError
from core.generations import generation
from models_registry import artifacts
from models_registry.models import ModelAlias, ModelVersion, RegisteredModel, Stage, StageEvent

logger = logging.getLogger(__name__)

GENERATION_KEY = "models_registry:generation:{name}"

# Feature types a signature may declare, and the pandas/numpy dtypes each accepts.
SIGNATURE_TYPES: dict[str, tuple[str, ...]] = {
    "float64": ("float64",),
    "float32": ("float32",),
    "int64": ("int64",),
    "int32": ("int32",),
    "bool": ("bool",),
}


class SignatureMismatchError(ApplicationError):
    code = "signature_mismatch"
    http_status = status.HTTP_422_UNPROCESSABLE_ENTITY


# --- models and versions -----------------------------------------------------------------------------------


def registered_model_list() -> QuerySet[RegisteredModel]:
    return RegisteredModel.objects.order_by("name")


def registered_model_get(*, name: str) -> RegisteredModel | None:
    return RegisteredModel.objects.filter(name=name).first()


def model_version_list(*, model_name: str, stage: str | None = None) -> QuerySet[ModelVersion]:
    qs = ModelVersion.objects.select_related("model", "parent").filter(model__name=model_name)
    if stage:
        qs = qs.filter(stage=stage)
    return qs.order_by("-version")


def model_version_get(*, model_name: str, version: int) -> ModelVersion | None:
    return (
        ModelVersion.objects.select_related("model", "parent")
        .prefetch_related("aliases")
        .filter(model__name=model_name, version=version)
        .first()
    )


def model_alias_list(*, model_name: str) -> QuerySet[ModelAlias]:
    return ModelAlias.objects.select_related("version").filter(model__name=model_name).order_by("name")


def version_by_alias(*, model_name: str, alias: str) -> ModelVersion | None:
    row = ModelAlias.objects.select_related("version__model").filter(model__name=model_name, name=alias).first()
    return row.version if row else None


def production_version(*, model_name: str) -> ModelVersion | None:
    """The version in production now (one statement: never sees a half-done swap)."""
    return model_version_list(model_name=model_name, stage=Stage.PRODUCTION).first()


# --- history -----------------------------------------------------------------------------------------------


def stage_event_list(*, model_name: str, version: int | None = None) -> QuerySet[StageEvent]:
    qs = StageEvent.objects.select_related("version", "previous_version").filter(model__name=model_name)
    if version is not None:
        qs = qs.filter(version__version=version)
    return qs.order_by("at", "id")


def production_version_at(*, model_name: str, at: datetime) -> ModelVersion | None:
    """The version that served production for `model_name` at instant `at` (None if none did).

    The answer is the last production-related stage event at or before `at`: a move into production names the
    version; a move out of production with no replacement means nothing served. A swap writes the demotion
    before the promotion, in one transaction with one timestamp, so the promotion is the later event."""
    if at.tzinfo is None:
        raise ApplicationError("`at` must be timezone-aware", code="validation_error")
    event = (
        StageEvent.objects.select_related("version__model")
        .filter(model__name=model_name, kind=StageEvent.Kind.STAGE, at__lte=at)
        .filter(Q(to_stage=Stage.PRODUCTION) | Q(from_stage=Stage.PRODUCTION))
        .order_by("-at", "-id")
        .first()
    )
    if event is None or event.to_stage != Stage.PRODUCTION:
        return None
    return event.version


def model_generation(*, model_name: str) -> int:
    """A counter bumped after every committed stage or alias change of the model: caches in any process compare
    it with the value they loaded under and reload when it moved (`core.generations`)."""
    return generation(GENERATION_KEY.format(name=model_name))


# --- promotion gates ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    detail: str
    observed: float | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class GateReport:
    target: str
    results: list[GateResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failures(self) -> list[GateResult]:
        return [r for r in self.results if not r.passed]

    def as_json(self) -> list[dict[str, Any]]:
        return [asdict(r) for r in self.results]


# bound -> (passes(observed, threshold), how it reads, which of two thresholds is the stricter)
GATE_BOUNDS: dict[str, tuple[Callable[[float, float], bool], str, Callable[[float, float], float]]] = {
    "min": (lambda o, t: o >= t, ">=", max),
    "gt": (lambda o, t: o > t, ">", max),
    "max": (lambda o, t: o <= t, "<=", min),
    "lt": (lambda o, t: o < t, "<", min),
}


def gate_results(metrics: Mapping[str, Any], bounds_by_metric: Mapping[str, Mapping[str, float]]) -> list[GateResult]:
    """Each metric bound checked against `metrics` (a version's recorded evaluation): a pure function, so a
    benchmark can judge evaluations that were never registered exactly as a promotion would."""
    results: list[GateResult] = []
    for metric, bounds in sorted(bounds_by_metric.items()):
        raw = metrics.get(metric)
        observed = float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) else None
        if observed is None or not math.isfinite(observed):
            results.append(GateResult(f"metric:{metric}", False, f"metric {metric!r} was not recorded"))
            continue
        for kind in ("min", "gt", "max", "lt"):
            if kind not in bounds:
                continue
            passes, reads, _ = GATE_BOUNDS[kind]
            threshold = float(bounds[kind])
            ok = passes(observed, threshold)
            detail = f"{metric} = {observed:.4g}, needs {reads} {threshold:g}"
            results.append(GateResult(f"{kind}:{metric}", ok, detail, observed, threshold))
    return results


def gate_config(*, model: RegisteredModel, target: str) -> dict[str, dict[str, float]]:
    """Metric bounds for promotions of `model` to `target` ("staging" or "production"): the
    MODELS_REGISTRY_PROMOTION_GATES setting, with the model's own `promotion_gates` added; where both bound the
    same metric, the stricter bound holds (a model's gates can tighten the settings, never loosen them)."""
    base: Mapping[str, Any] = settings.MODELS_REGISTRY_PROMOTION_GATES or {}
    merged: dict[str, dict[str, float]] = {k: dict(v) for k, v in (base.get(target) or {}).items()}
    for metric, bounds in ((model.promotion_gates or {}).get(target) or {}).items():
        current = merged.setdefault(metric, {})
        for kind, value in bounds.items():
            stricter = GATE_BOUNDS[kind][2]
            current[kind] = stricter(float(current[kind]), float(value)) if kind in current else float(value)
    return merged


def _extra_gates() -> list[Callable[..., GateResult | Sequence[GateResult]]]:
    return [import_string(path) for path in settings.MODELS_REGISTRY_EXTRA_GATES or []]


def promotion_gate_report(*, version: ModelVersion, target: str) -> GateReport:
    """Every gate a promotion of `version` to `target` must pass: metric bounds from `gate_config`, then any
    callables listed in MODELS_REGISTRY_EXTRA_GATES (`gate(version=..., target=...)` returning GateResult(s);
    later issues plug experiment significance in here)."""
    results = gate_results(version.metrics or {}, gate_config(model=version.model, target=target))
    for gate in _extra_gates():
        outcome = gate(version=version, target=target)
        results.extend([outcome] if isinstance(outcome, GateResult) else outcome)
    return GateReport(target=target, results=results)


# --- signatures --------------------------------------------------------------------------------------------


def signature_check(version: ModelVersion, features: Any) -> None:
    """Refuse features that do not match the version's signature, with a clear error naming the differences.

    `features` is a pandas DataFrame (column names, order and dtypes are checked), or a sequence of feature
    names (order checked), or a sequence of (name, type) pairs."""
    expected = [(c["name"], c["type"]) for c in version.signature]
    expected_names = [name for name, _ in expected]
    given_types: dict[str, str] | None = None
    if hasattr(features, "columns") and hasattr(features, "dtypes"):
        given_names = [str(c) for c in features.columns]
        given_types = {str(c): str(t) for c, t in features.dtypes.items()}
    else:
        items = list(features)
        if items and all(isinstance(i, tuple | list) and len(i) == 2 for i in items):
            given_names = [str(i[0]) for i in items]
            given_types = {str(i[0]): str(i[1]) for i in items}
        else:
            given_names = [str(i) for i in items]

    details: dict[str, Any] = {}
    missing = [n for n in expected_names if n not in given_names]
    unexpected = [n for n in given_names if n not in expected_names]
    if missing:
        details["missing"] = missing
    if unexpected:
        details["unexpected"] = unexpected
    if not missing and not unexpected and given_names != expected_names:
        details["order"] = {"expected": expected_names, "given": given_names}
    if given_types is not None:
        wrong = {
            name: {"expected": kind, "given": given_types[name]}
            for name, kind in expected
            if name in given_types and given_types[name] not in SIGNATURE_TYPES.get(kind, (kind,))
        }
        if wrong:
            details["types"] = wrong
    if details:
        raise SignatureMismatchError(
            f"features do not match the signature of {version.model.name} v{version.version}: "
            + "; ".join(f"{k}: {v}" for k, v in details.items()),
            details=details,
        )


# --- artifacts ---------------------------------------------------------------------------------------------


def model_version_artifact(*, version: ModelVersion) -> bytes:
    """The version's serialised model (skops bytes), decrypted and hash-verified."""
    return artifacts.fetch(version.artifact_sha256)


def model_version_load(*, version: ModelVersion) -> Any:
    """The version's model object: decrypted, hash-verified, loaded with only trusted types."""
    return artifacts.load(version.artifact_sha256)
