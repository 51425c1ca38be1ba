"""The reference a version's live data is compared with (`models_registry.models.DriftReference`), built once per
version from the stored bars of its training window ``[data_start, data_end)``:

- feature rows: the one feature implementation (`models_registry.features.compute_features`) over the stored
  bars (gaps filled as training fills them, `history.load_bars`), warm-up rows dropped, in the version's
  signature order; at most ``reference_max_rows`` rows, evenly spaced when there are more;
- labels and forward returns: `labels.make_labels` with the version's recorded horizon, dead zone and fee (the
  training's label rule);
- validation probabilities: the SERVED model's class probabilities on the feature rows of its validation period
  (the test folds of its purged walk-forward evaluation, from the recorded CV): live predictions come from that
  model, so a change of their distribution is a change of its inputs, not the difference between the fold
  models of the evaluation and the final fit. (The fold models' own out-of-sample probabilities would differ
  from the served model's even on unchanged inputs: on a market without edge, by a PSI of 0.5-1 in the
  regime-change end-to-end test.) When the model cannot be loaded or applied, the reference records why and
  prediction drift is reported as not available.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.errors import ApplicationError
from models_registry.evaluation import PurgedWalkForwardCV
from models_registry.features import compute_features
from models_registry.history import load_bars
from models_registry.labels import LABEL_CLASSES, make_labels
from models_registry.models import DriftReference, ModelVersion
from models_registry.outcomes import OutcomeRule
from models_registry.selectors import model_version_load
from timeseries import get_store

logger = logging.getLogger(__name__)

F32 = np.dtype("<f4")
I8 = np.dtype("i1")


class ReferenceUnavailable(ApplicationError):
    code = "drift_reference_unavailable"


@dataclass(frozen=True)
class Reference:
    feature_names: list[str]
    features: np.ndarray  # n x k float64
    labels: np.ndarray  # float64 in LABEL_CLASSES
    forward_returns: np.ndarray
    validation_proba: np.ndarray | None  # m x 3
    data_start: Any
    data_end: Any
    validation_window: tuple[Any, Any] | None
    validation_error: str

    @property
    def n_rows(self) -> int:
        return int(self.features.shape[0])


def _pack(array: np.ndarray, dtype: np.dtype) -> bytes:
    return np.ascontiguousarray(array, dtype=dtype).tobytes()


def _unpack(data: bytes | memoryview | None, dtype: np.dtype, columns: int = 1) -> np.ndarray:
    if data is None:
        return np.zeros((0, columns) if columns > 1 else 0)
    array = np.frombuffer(bytes(data), dtype=dtype).astype(np.float64)
    return array.reshape(-1, columns) if columns > 1 else array


def reference_load(row: DriftReference) -> Reference:
    names = list(row.feature_names)
    return Reference(
        feature_names=names,
        features=_unpack(row.features, F32, max(len(names), 1)).reshape(-1, len(names)),
        labels=_unpack(row.labels, I8),
        forward_returns=_unpack(row.forward_returns, F32),
        validation_proba=None if row.validation_proba is None else _unpack(row.validation_proba, F32, 3),
        data_start=row.data_start,
        data_end=row.data_end,
        validation_window=(row.validation_start, row.validation_end) if row.validation_start else None,
        validation_error=row.validation_error,
    )


def _aligned_proba(estimator: Any, X: np.ndarray) -> np.ndarray:
    """Class probabilities in LABEL_CLASSES order (a class the model lacks gets 0)."""
    raw = np.asarray(estimator.predict_proba(X), dtype=np.float64)
    out = np.zeros((len(X), len(LABEL_CLASSES)))
    for column, cls in enumerate(estimator.classes_):
        out[:, LABEL_CLASSES.index(int(cls))] = raw[:, column]
    return out


def _validation_proba(
    version: ModelVersion, features: pd.DataFrame, labels: pd.DataFrame, rule: OutcomeRule
) -> tuple[np.ndarray, pd.Timestamp, pd.Timestamp]:
    """The served model's probabilities on the rows of the validation period (the purged walk-forward's test
    folds, from the version's recorded CV): the outputs to expect live while the inputs look like then."""
    hyper = version.hyperparameters or {}
    cv_spec = hyper.get("cv") or {}
    horizon = rule.horizon or 1
    cv = PurgedWalkForwardCV(
        int(cv_spec.get("n_splits", 5)),
        label_horizon=int(cv_spec.get("purge", horizon)),
        embargo=int(cv_spec.get("embargo", horizon)),
        min_train_size=50,
    )
    usable = features.notna().all(axis=1).to_numpy() & labels["label"].notna().to_numpy()
    positions = np.flatnonzero(usable)
    if len(positions) == 0:
        raise ValueError("no labelled feature row in the training window")
    tests = np.concatenate([test for _, test in cv.split(len(positions))])
    rows = positions[np.sort(tests)]
    estimator = model_version_load(version=version)
    proba = _aligned_proba(estimator, features.to_numpy(dtype=np.float64)[rows])
    return proba, features.index[rows[0]], features.index[rows[-1]]


def reference_compute(*, version: ModelVersion, max_rows: int, store: Any = None) -> Reference:
    """The reference of `version` from the stored bars (see the module doc); ReferenceUnavailable when the store
    holds too little of its training window."""
    symbols = version.symbols or []
    if not symbols:
        raise ReferenceUnavailable(f"v{version.version} records no symbol")
    own = store is None
    store = store or get_store()  # one store (and HTTP client) for the read, closed when made here
    try:
        loaded = load_bars(symbol=str(symbols[0]), start=version.data_start, end=version.data_end, store=store)
    finally:
        close = getattr(store, "close", None)
        if own and close is not None:
            close()
    bars = loaded.bars
    names = version.feature_names
    if bars.empty:
        raise ReferenceUnavailable(f"no stored bars of {symbols[0]} in the training window of v{version.version}")
    computed = compute_features(bars)
    missing = [n for n in names if n not in computed.columns]
    if missing:
        raise ReferenceUnavailable(f"the feature set does not compute {missing} (signature of v{version.version})")
    features = computed[names]
    usable = features.notna().all(axis=1).to_numpy()
    if not usable.any():
        raise ReferenceUnavailable(f"no complete feature row in the training window of v{version.version}")
    rule = OutcomeRule.of(version.hyperparameters)
    labels = make_labels(bars["close"], rule.horizon or 1, taker_fee=rule.taker_fee, dead_zone=rule.dead_zone)
    rows = features.to_numpy(dtype=np.float64)[usable]
    if len(rows) > max_rows:
        rows = rows[np.linspace(0, len(rows) - 1, max_rows).round().astype(np.int64)]
    labelled = labels["label"].notna().to_numpy() & usable
    validation: np.ndarray | None = None
    window = None
    error = ""
    try:
        validation, first, last = _validation_proba(version, features, labels, rule)
        window = (first.to_pydatetime(), last.to_pydatetime())
    except Exception as exc:  # the model cannot be loaded or applied: recorded and logged, prediction drift n/a
        error = f"{type(exc).__name__}: {exc}"[:2000]
        logger.warning(
            "drift reference without validation probabilities", extra={"version": version.pk, "error": error}
        )
    return Reference(
        feature_names=list(names),
        features=rows,
        labels=labels["label"].to_numpy()[labelled],
        forward_returns=labels["forward_return"].to_numpy()[labelled],
        validation_proba=validation,
        data_start=version.data_start,
        data_end=version.data_end,
        validation_window=window,
        validation_error=error,
    )


def reference_get(*, version: ModelVersion, max_rows: int, store: Any = None) -> Reference:
    """The stored reference of `version`, built and stored on first use (a concurrent build keeps the first)."""
    row = DriftReference.objects.filter(version=version).first()
    if row is not None:
        return reference_load(row)
    started = time.perf_counter()
    ref = reference_compute(version=version, max_rows=max_rows, store=store)
    proba = ref.validation_proba
    try:
        with transaction.atomic():
            row = DriftReference.objects.create(
                version=version,
                data_start=ref.data_start,
                data_end=ref.data_end,
                feature_names=ref.feature_names,
                n_rows=ref.n_rows,
                features=_pack(ref.features, F32),
                labels=_pack(ref.labels, I8),
                forward_returns=_pack(ref.forward_returns, F32),
                validation_proba=None if proba is None else _pack(proba, F32),
                validation_start=ref.validation_window[0] if ref.validation_window else None,
                validation_end=ref.validation_window[1] if ref.validation_window else None,
                validation_error=ref.validation_error,
                built_at=timezone.now(),
                build_ms=int((time.perf_counter() - started) * 1000),
            )
    except IntegrityError:  # built concurrently: use the stored one
        row = DriftReference.objects.get(version=version)
    return reference_load(row)
