"""The prediction service: serves the version a caller names (a stage such as ``production``, an alias such as
``champion`` / ``challenger``, or a version number), keeps loaded models in memory, follows promotions without a
restart, checks every input against the version's signature, and records predictions.

Caching
    Loaded models are kept per process, keyed by (version id, artifact SHA-256), so a version is loaded (fetched,
    decrypted, hash-verified, skops-loaded) once. Which version a name points at is cached too, per (model,
    selector), with the model's cache *generation* (``selectors.model_generation``) it was resolved under.

Noticing promotions
    * in this process: a receiver of ``model_stage_changed`` marks the model's targets stale at once;
    * in other processes: at most every ``MODELS_REGISTRY_PREDICTION_CHECK_INTERVAL_MS`` (200 ms) a prediction
      reads the model's generation key (one cache GET) and re-resolves from the database when it moved, so a
      promotion reaches every worker within the interval (plus one database read);
    * safety net: a target is re-resolved from the database at least every
      ``MODELS_REGISTRY_PREDICTION_RESOLVE_TTL_S`` (30 s; 1 s when the cache backend is process-local, as in
      the embedded setup, where other processes cannot see the generation key).

Evaluating
    A single row goes through the exact evaluator compiled when the version was loaded
    (:mod:`models_registry.fast_paths`: logistic regression, HistGradientBoosting), which skips scikit-learn's
    per-call validation and thread-pool start-up and gives the same probabilities; batches go to scikit-learn
    (OpenMP limited to one thread for up to 64 rows, where waking the pool costs more than it saves). A model
    the evaluators do not cover exactly is predicted by scikit-learn for every size.

Recording
    With a decision id, each prediction is stored as a :class:`~models_registry.models.Prediction` (decision id,
    version, SHA-256 of the float64 feature row, class probabilities, class, signal, confidence). The row is
    unique on (decision id, version): a replayed decision inserts nothing.

Counters (:func:`prediction_stats`, shaped for a metrics exporter): every name of :data:`COUNTER_NAMES` (monotonic
since the process started: predictions, model cache hits and misses, loads, reloads, ...), the hit rate, the
models held, single-row latency as a cumulative histogram in seconds (``latency_seconds``: Prometheus-style
``buckets`` {upper bound: count <= it, "+Inf" last}, ``sum``, ``count``) and as percentiles of the last 10,000
calls (``latency_ms``: p50, p99, max).
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import connection
from django.utils import timezone
from rest_framework import status
from threadpoolctl import ThreadpoolController

from core.errors import ApplicationError, NotFoundError
from core.metrics import PREDICTION, ProcessCounters
from models_registry import selectors
from models_registry.fast_paths import LinearFastPath, TreeEnsembleFastPath
from models_registry.labels import LABEL_CLASSES
from models_registry.models import ModelVersion, Prediction, Stage, features_encode
from models_registry.selectors import SignatureMismatchError
from models_registry.signals import model_stage_changed

logger = logging.getLogger(__name__)

STAGE_SELECTORS = {Stage.PRODUCTION.value, Stage.STAGING.value}
_LATENCY_WINDOW = 10_000
_PROCESS_LOCAL_CACHES = ("LocMemCache", "DummyCache")
_SMALL_BATCH = 64
COUNTER_NAMES = (
    "predictions",
    "cache_hits",
    "cache_misses",
    "loads",
    "reloads",
    "resolutions",
    "generation_checks",
    "stage_signals",
    "recorded",
    "record_duplicates",
)
LATENCY_BUCKETS_S = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.1, 1.0)
_THREADPOOLS = ThreadpoolController()


class NoServingVersion(NotFoundError):
    code = "no_serving_version"


class FeatureValueError(ApplicationError):
    code = "invalid_features"
    http_status = status.HTTP_422_UNPROCESSABLE_ENTITY


Selector = str | int


@dataclass(frozen=True)
class LoadedVersion:
    """A version ready to predict: the estimator and what checking and interpreting its output needs."""

    version_id: int
    model_name: str
    version: int
    artifact_sha256: str
    estimator: Any
    feature_names: tuple[str, ...]
    feature_set: frozenset[str]
    columns: np.ndarray  # for each estimator class column, its position in LABEL_CLASSES
    signal_threshold: float
    symbols: tuple[str, ...]
    record: ModelVersion

    fast: LinearFastPath | None = None  # any number of rows
    fast_one: TreeEnsembleFastPath | None = None  # one row; batches go to scikit-learn
    horizon: int | None = None  # label horizon in bars (hyperparameters["horizon"]), recorded with predictions

    def probabilities(self, X: np.ndarray) -> np.ndarray:
        """Class probabilities in LABEL_CLASSES order (classes the model never saw get 0)."""
        if self.fast is not None:
            raw = self.fast.predict_proba(X)
        elif self.fast_one is not None and X.shape[0] == 1:
            raw = self.fast_one.proba_one(X[0]).reshape(1, -1)
        elif X.shape[0] <= _SMALL_BATCH:
            # A few rows: OpenMP threads (HistGradientBoosting) cost more to wake than they save.
            with _THREADPOOLS.limit(limits=1, user_api="openmp"):
                raw = self.estimator.predict_proba(X)
        else:
            raw = self.estimator.predict_proba(X)
        out = np.zeros((X.shape[0], len(LABEL_CLASSES)))
        out[:, self.columns] = raw
        return out


@dataclass(frozen=True)
class PredictionOutput:
    version_id: int
    model_name: str
    version: int
    probabilities: dict[int, float]  # class -> probability
    predicted_class: int
    signal: int
    confidence: float
    features_hash: str
    expected_return: float | None = None  # predict_one: over the version's horizon (`expected_return`)
    # With `predict_one(..., defer_record=True)`: records the prediction when called (the caller runs it inside
    # its own transaction, so the prediction commits with the decision it made, in one commit).
    record: Callable[[], int] | None = field(default=None, compare=False, repr=False)


def expected_return(probabilities: Mapping[int, float], hyperparameters: Mapping[str, Any]) -> float | None:
    """sum over classes of P(class) x the mean forward return of that class in the version's training data
    (``hyperparameters["class_mean_returns"]``, recorded by training): the move the calibrated probabilities
    expect over the version's horizon. None for a version that did not record them."""
    means = hyperparameters.get("class_mean_returns")
    if not isinstance(means, Mapping):
        return None
    total = 0.0
    for cls, p in probabilities.items():
        mean = means.get(str(cls))
        if p and not isinstance(mean, int | float):
            return None
        total += float(p) * float(mean or 0.0)
    return total


@dataclass
class _Target:
    key: tuple[int, str] | None  # (version id, sha) or None when nothing serves
    generation: int
    resolved_at: float
    checked_at: float


def _process_local_cache() -> bool:
    backend = str(settings.CACHES.get("default", {}).get("BACKEND", ""))
    return backend.rsplit(".", 1)[-1] in _PROCESS_LOCAL_CACHES


def _signal(probabilities: np.ndarray, threshold: float) -> tuple[int, int, float]:
    """(predicted class, signal, confidence) from one row of probabilities in LABEL_CLASSES order."""
    down = float(probabilities[LABEL_CLASSES.index(-1)])
    up = float(probabilities[LABEL_CLASSES.index(1)])
    edge = up - down
    signal = 0 if abs(edge) < threshold or edge == 0.0 else (1 if edge > 0 else -1)
    best = int(np.argmax(probabilities))
    return LABEL_CLASSES[best], signal, min(1.0, max(0.0, float(probabilities[best])))


def _horizon(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else None


def _version_horizons(version_ids: set[int]) -> dict[int, int | None]:
    """Label horizon (bars) of each version from its hyperparameters, where recorded."""
    rows = ModelVersion.objects.filter(pk__in=version_ids).values_list("pk", "hyperparameters")
    return {pk: _horizon((hyper or {}).get("horizon")) for pk, hyper in rows}


def features_hash(values: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(values, dtype=np.float64).tobytes()).hexdigest()


class PredictionService:
    def __init__(
        self,
        *,
        check_interval_ms: float | None = None,
        resolve_ttl_s: float | None = None,
        max_models: int | None = None,
        listen: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        interval = check_interval_ms
        if interval is None:
            interval = float(settings.MODELS_REGISTRY_PREDICTION_CHECK_INTERVAL_MS)
        ttl = resolve_ttl_s
        if ttl is None:
            ttl = float(settings.MODELS_REGISTRY_PREDICTION_RESOLVE_TTL_S)
            if _process_local_cache():
                ttl = min(ttl, 1.0)
        self.check_interval = interval / 1000.0
        self.resolve_ttl = ttl
        self.max_models = max_models or int(settings.MODELS_REGISTRY_PREDICTION_CACHE_SIZE)
        self._clock = clock
        self._lock = threading.RLock()
        self._models: dict[tuple[int, str], LoadedVersion] = {}
        self._targets: dict[tuple[str, Selector], _Target] = {}
        # Every process's counts also in /metrics (galfriday_events_total{component="prediction"}).
        self.counters = ProcessCounters("prediction")
        self._latencies: deque[float] = deque(maxlen=_LATENCY_WINDOW)
        self._latency_buckets = [0] * (len(LATENCY_BUCKETS_S) + 1)  # per bucket (not cumulative); last: +Inf
        self._latency_sum = 0.0
        if listen:
            model_stage_changed.connect(self._on_stage_changed, weak=True)

    # --- resolution ----------------------------------------------------------------------------------------

    def _on_stage_changed(self, sender: Any = None, *, model_name: str = "", **_: Any) -> None:
        with self._lock:
            for (name, _selector), target in self._targets.items():
                if name == model_name:
                    target.checked_at = -math.inf
                    target.resolved_at = -math.inf
        self.counters["stage_signals"] += 1

    def invalidate(self, model_name: str | None = None) -> None:
        with self._lock:
            for key in [k for k in self._targets if model_name is None or k[0] == model_name]:
                del self._targets[key]

    def _lookup(self, model_name: str, selector: Selector) -> ModelVersion | None:
        if isinstance(selector, int):
            return selectors.model_version_get(model_name=model_name, version=selector)
        if selector in STAGE_SELECTORS:
            return selectors.model_version_list(model_name=model_name, stage=selector).first()
        return selectors.version_by_alias(model_name=model_name, alias=selector)

    def _load(self, version: ModelVersion) -> LoadedVersion:
        estimator = selectors.model_version_load(version=version)
        classes = [int(c) for c in getattr(estimator, "classes_", [])]
        if not classes or any(c not in LABEL_CLASSES for c in classes):
            raise ApplicationError(
                f"{version.model.name} v{version.version} predicts classes {classes}, not a subset of {LABEL_CLASSES}",
                code="unsupported_model",
            )
        names = tuple(version.feature_names)
        threshold = (version.hyperparameters or {}).get("signal_threshold", 0.0)
        horizon = (version.hyperparameters or {}).get("horizon")
        loaded = LoadedVersion(
            version_id=version.pk,
            model_name=version.model.name,
            version=version.version,
            artifact_sha256=version.artifact_sha256,
            estimator=estimator,
            feature_names=names,
            feature_set=frozenset(names),
            columns=np.array([LABEL_CLASSES.index(c) for c in classes]),
            signal_threshold=float(threshold) if isinstance(threshold, int | float) else 0.0,
            symbols=tuple(version.symbols or ()),
            record=version,
            fast=LinearFastPath.of(estimator),
            fast_one=TreeEnsembleFastPath.of(estimator),
            horizon=int(horizon)
            if isinstance(horizon, int) and not isinstance(horizon, bool) and horizon >= 1
            else None,
        )
        self.counters["loads"] += 1
        logger.info(
            "model version loaded",
            extra={
                "model": loaded.model_name,
                "version": loaded.version,
                "sha256": loaded.artifact_sha256,
                "fast_path": type(loaded.fast or loaded.fast_one).__name__ if loaded.fast or loaded.fast_one else None,
            },
        )
        return loaded

    def _resolve_slow(self, model_name: str, selector: Selector, now: float, generation: int) -> _Target:
        with self._lock:
            self.counters["resolutions"] += 1
            found = self._lookup(model_name, selector)
            key = (found.pk, found.artifact_sha256) if found is not None else None
            if found is not None and key not in self._models:
                self.counters["cache_misses"] += 1
                assert key is not None
                self._models[key] = self._load(found)
            previous = self._targets.get((model_name, selector))
            if previous is not None and previous.key != key:
                self.counters["reloads"] += 1
                logger.info(
                    "serving version changed",
                    extra={"model": model_name, "selector": selector, "version_id": key[0] if key else None},
                )
            target = _Target(key=key, generation=generation, resolved_at=now, checked_at=now)
            self._targets[(model_name, selector)] = target
            self._evict()
            return target

    def _evict(self) -> None:
        if len(self._models) <= self.max_models:
            return
        in_use = {t.key for t in self._targets.values()}
        for key in list(self._models):
            if len(self._models) <= self.max_models:
                break
            if key not in in_use:
                del self._models[key]

    def resolve(self, model_name: str, selector: Selector = Stage.PRODUCTION.value) -> LoadedVersion:
        """The loaded version `selector` points at now; raises NoServingVersion when there is none."""
        now = self._clock()
        target = self._targets.get((model_name, selector))
        if target is None:
            target = self._resolve_slow(model_name, selector, now, selectors.model_generation(model_name=model_name))
        elif now - target.checked_at >= self.check_interval:
            self.counters["generation_checks"] += 1
            generation = selectors.model_generation(model_name=model_name)
            if generation != target.generation or now - target.resolved_at >= self.resolve_ttl:
                target = self._resolve_slow(model_name, selector, now, generation)
            else:
                target.checked_at = now
        if target.key is None:
            raise NoServingVersion(
                f"model {model_name!r} has no version for {selector!r}",
                details={"model": model_name, "selector": selector},
            )
        loaded = self._models.get(target.key)
        if loaded is None:  # evicted meanwhile: load again
            target = self._resolve_slow(model_name, selector, now, target.generation)
            assert target.key is not None
            loaded = self._models[target.key]
        else:
            self.counters["cache_hits"] += 1
        return loaded

    # --- inputs --------------------------------------------------------------------------------------------

    def _row(self, loaded: LoadedVersion, features: Any) -> np.ndarray:
        if isinstance(features, Mapping):
            if len(features) == len(loaded.feature_names) and loaded.feature_set.issuperset(features.keys()):
                try:
                    row = np.array([features[n] for n in loaded.feature_names], dtype=np.float64)
                except (TypeError, ValueError) as exc:
                    raise FeatureValueError(f"feature values must be numbers: {exc}") from exc
            else:
                selectors.signature_check(loaded.record, list(features.keys()))
                raise SignatureMismatchError("features do not match the signature")  # pragma: no cover
        elif hasattr(features, "as_dict") and hasattr(features, "values"):  # features.FeatureRow
            return self._row(loaded, features.as_dict())
        elif isinstance(features, pd.Series):
            return self._row(loaded, features.to_dict())
        else:
            raise FeatureValueError(
                "a single row must be a mapping of feature name to value (or a FeatureRow); "
                f"got {type(features).__name__}"
            )
        bad = ~np.isfinite(row)
        if bad.any():
            names = [n for n, b in zip(loaded.feature_names, bad, strict=True) if b]
            raise FeatureValueError(
                f"features are missing or not finite: {names} (a warm-up row?)", details={"features": names}
            )
        return row

    def _frame(self, loaded: LoadedVersion, frame: pd.DataFrame) -> np.ndarray:
        if not isinstance(frame, pd.DataFrame):
            raise FeatureValueError(f"batch features must be a pandas DataFrame, got {type(frame).__name__}")
        selectors.signature_check(loaded.record, frame)
        X = frame.to_numpy(dtype=np.float64)
        bad_rows = ~np.isfinite(X).all(axis=1)
        if bad_rows.any():
            raise FeatureValueError(
                f"{int(bad_rows.sum())} rows have missing or non-finite features (first: {frame.index[bad_rows][0]})",
                details={"rows": int(bad_rows.sum())},
            )
        return X

    def _check_symbol(self, loaded: LoadedVersion, symbol: str | None) -> None:
        if symbol and loaded.symbols and symbol not in loaded.symbols:
            raise FeatureValueError(
                f"{loaded.model_name} v{loaded.version} was trained on {list(loaded.symbols)}, not {symbol}",
                code="symbol_mismatch",
            )

    # --- prediction ----------------------------------------------------------------------------------------

    def predict_one(
        self,
        features: Any,
        *,
        model_name: str,
        selector: Selector = Stage.PRODUCTION.value,
        decision_id: str | None = None,
        symbol: str | None = None,
        record: bool = True,
        bar_time: datetime | None = None,
        defer_record: bool = False,
    ) -> PredictionOutput:
        """One row: a mapping of feature name to value (exactly the signature's names) or a FeatureRow.

        With `decision_id` the prediction is recorded with `bar_time` (the start of the bar the features end at;
        outcomes mature from it), the version's horizon and the feature row: now, or with `defer_record` when the
        caller calls the output's `record()` (the decision pipeline does, inside the decision's transaction)."""
        started = time.perf_counter()
        loaded = self.resolve(model_name, selector)
        self._check_symbol(loaded, symbol)
        row = self._row(loaded, features)
        proba = loaded.probabilities(row.reshape(1, -1))[0]
        predicted, signal, confidence = _signal(proba, loaded.signal_threshold)
        probabilities = {c: float(p) for c, p in zip(LABEL_CLASSES, proba, strict=True)}
        output = PredictionOutput(
            version_id=loaded.version_id,
            model_name=loaded.model_name,
            version=loaded.version,
            probabilities=probabilities,
            predicted_class=predicted,
            signal=signal,
            confidence=confidence,
            features_hash=features_hash(row),
            expected_return=expected_return(probabilities, loaded.record.hyperparameters),
        )
        self._observe(time.perf_counter() - started)
        self.counters["predictions"] += 1
        if record and decision_id:
            recorded_id = decision_id

            def record_now() -> int:
                return self.record(
                    [(recorded_id, output)],
                    symbol=symbol or "",
                    bar_times=[bar_time],
                    feature_rows=row.reshape(1, -1),
                    horizons={loaded.version_id: loaded.horizon},
                )

            if defer_record:
                return replace(output, record=record_now)
            record_now()
        return output

    def predict_batch(
        self,
        features: pd.DataFrame,
        *,
        model_name: str,
        selector: Selector = Stage.PRODUCTION.value,
        decision_ids: Sequence[str] | None = None,
        symbol: str | None = None,
        bar_times: Sequence[datetime | None] | None = None,
    ) -> pd.DataFrame:
        """Rows of a DataFrame whose columns are the signature (names, order, dtypes); returns the probabilities
        (columns -1, 0, 1), predicted class, signal, confidence and version id, indexed like the input. With
        `decision_ids` the rows are recorded (with `bar_times`, one per row, when given)."""
        loaded = self.resolve(model_name, selector)
        self._check_symbol(loaded, symbol)
        X = self._frame(loaded, features)
        proba = loaded.probabilities(X) if len(X) else np.zeros((0, len(LABEL_CLASSES)))
        rows = [_signal(p, loaded.signal_threshold) for p in proba]
        out = pd.DataFrame(proba, index=features.index, columns=list(LABEL_CLASSES))
        out["predicted_class"] = [r[0] for r in rows]
        out["signal"] = [r[1] for r in rows]
        out["confidence"] = [r[2] for r in rows]
        out["version_id"] = loaded.version_id
        self.counters["predictions"] += len(X)
        if decision_ids is not None:
            if len(decision_ids) != len(X):
                raise FeatureValueError(f"{len(decision_ids)} decision ids for {len(X)} rows")
            self.record(
                [
                    (
                        decision_id,
                        PredictionOutput(
                            loaded.version_id,
                            loaded.model_name,
                            loaded.version,
                            {c: float(p) for c, p in zip(LABEL_CLASSES, proba[i], strict=True)},
                            rows[i][0],
                            rows[i][1],
                            rows[i][2],
                            features_hash(X[i]),
                        ),
                    )
                    for i, decision_id in enumerate(decision_ids)
                ],
                symbol=symbol or "",
                bar_times=bar_times,
                feature_rows=X,
                horizons={loaded.version_id: loaded.horizon},
            )
        return out

    def record(
        self,
        outputs: Sequence[tuple[str, PredictionOutput]],
        *,
        symbol: str = "",
        bar_times: Sequence[datetime | None] | None = None,
        feature_rows: np.ndarray | None = None,
        horizons: Mapping[int, int | None] | None = None,
    ) -> int:
        """Store predictions; a (decision id, version) already stored is skipped. Returns rows inserted.

        `bar_times` and `feature_rows` (signature order), when given, have one entry per output; `horizons` maps
        version id to its label horizon in bars (default: read from the versions' hyperparameters)."""
        if bar_times is not None and len(bar_times) != len(outputs):
            raise FeatureValueError(f"{len(bar_times)} bar times for {len(outputs)} predictions")
        if feature_rows is not None and len(feature_rows) != len(outputs):
            raise FeatureValueError(f"{len(feature_rows)} feature rows for {len(outputs)} predictions")
        for moment in bar_times or ():
            if moment is not None and (moment.tzinfo is None or moment.utcoffset() is None):
                raise FeatureValueError(f"bar_time must be timezone-aware (UTC), got {moment!r}")
        if horizons is None:
            horizons = _version_horizons({o.version_id for _, o in outputs})
        rows = [
            Prediction(
                decision_id=decision_id,
                version_id=o.version_id,
                symbol=symbol,
                features_hash=o.features_hash,
                probabilities={str(c): p for c, p in o.probabilities.items()},
                predicted_class=o.predicted_class,
                signal=o.signal,
                confidence=o.confidence,
                bar_time=bar_times[i] if bar_times is not None else None,
                horizon=horizons.get(o.version_id),
                features=features_encode(feature_rows[i]) if feature_rows is not None else None,
            )
            for i, (decision_id, o) in enumerate(outputs)
        ]
        inserted = _insert_new(rows)
        self.counters["recorded"] += inserted
        self.counters["record_duplicates"] += len(outputs) - inserted
        return inserted

    # --- counters ------------------------------------------------------------------------------------------

    def _observe(self, seconds: float) -> None:
        PREDICTION.observe(seconds)  # every process's, in /metrics
        self._latencies.append(seconds)
        self._latency_buckets[bisect.bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        self._latency_sum += seconds

    def stats(self) -> dict[str, Any]:
        """Counters, hit rate and latency (see the module doc); every key present even before the first call."""
        hits, misses = self.counters["cache_hits"], self.counters["cache_misses"]
        latencies = np.array(self._latencies) * 1000.0
        cumulative = list(itertools.accumulate(self._latency_buckets))
        bounds = [repr(b) for b in LATENCY_BUCKETS_S] + ["+Inf"]
        return {
            **{k: int(v) for k, v in self.counters.items()},
            **{name: int(self.counters[name]) for name in COUNTER_NAMES},
            "hit_rate": hits / (hits + misses) if hits + misses else None,
            "models_loaded": len(self._models),
            "latency_seconds": {
                "buckets": dict(zip(bounds, cumulative, strict=True)),
                "sum": self._latency_sum,
                "count": cumulative[-1],
            },
            "latency_ms": {
                "count": len(latencies),
                "p50": float(np.percentile(latencies, 50)) if len(latencies) else None,
                "p99": float(np.percentile(latencies, 99)) if len(latencies) else None,
                "max": float(latencies.max()) if len(latencies) else None,
            },
        }

    def reset_stats(self) -> None:
        self.counters.clear()
        self._latencies.clear()
        self._latency_buckets = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self._latency_sum = 0.0


_INSERTED_COLUMNS = (
    "decision_id",
    "version_id",
    "symbol",
    "features_hash",
    "probabilities",
    "predicted_class",
    "signal",
    "confidence",
    "bar_time",
    "horizon",
    "features",
    "created_at",
)


def _insert_new(rows: list[Prediction]) -> int:
    """Insert the predictions not stored yet (unique on decision id and version); returns how many were new. On
    PostgreSQL one ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` (on the decision path: one round trip, no
    ORM compilation); elsewhere a look-up of the stored keys, then the ORM's bulk insert."""
    if not rows:
        return 0
    if connection.vendor != "postgresql":
        stored = set(
            Prediction.objects.filter(
                decision_id__in=[r.decision_id for r in rows], version_id__in={r.version_id for r in rows}
            ).values_list("decision_id", "version_id")
        )
        new = [r for r in rows if (r.decision_id, r.version_id) not in stored]
        Prediction.objects.bulk_create(new, ignore_conflicts=True)
        return len(new)
    now = timezone.now()
    placeholders = "(" + ", ".join(["%s"] * len(_INSERTED_COLUMNS)) + ")"
    params: list[Any] = []
    for r in rows:
        params += [
            r.decision_id, r.version_id, r.symbol, r.features_hash, json.dumps(r.probabilities), r.predicted_class,
            r.signal, r.confidence, r.bar_time, r.horizon, r.features, now,
        ]  # fmt: skip
    table = Prediction._meta.db_table
    sql = (
        f"INSERT INTO {table} ({', '.join(_INSERTED_COLUMNS)}) VALUES {', '.join([placeholders] * len(rows))} "
        "ON CONFLICT (decision_id, version_id) DO NOTHING RETURNING id"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return len(cursor.fetchall())


_service: PredictionService | None = None
_service_lock = threading.Lock()


def get_prediction_service() -> PredictionService:
    """The process-wide service (created on first use, with the settings of that moment)."""
    global _service
    if _service is None:
        with _service_lock:
            if _service is None:
                _service = PredictionService()
    return _service


def prediction_stats() -> dict[str, Any]:
    """Cache hit rate, reloads and latency of this process's prediction service (for the metrics export)."""
    return get_prediction_service().stats()
