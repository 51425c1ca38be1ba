"""Drift checks: one :class:`~models_registry.models.DriftReport` per check and version, of four kinds.

Windows
    current   the version's recorded predictions with a bar time in ``[as_of - current_window_minutes, as_of)``,
              one per bar (the first recorded), and their matured outcomes known by ``as_of`` (exit bar closed),
              so a check of a past instant sees what a check then would have seen;
    reference the version's training window, from its stored bars (`drift.reference`): feature rows, training
              labels and forward returns, and the out-of-sample probabilities of its walk-forward validation.

Kinds (thresholds per registered model: `drift.thresholds`, `DriftPolicy`)
    feature     per feature, Evidently's choice of test: the two-sample KS test, drift when p < ``ks_p_value``,
                if the reference has at most ``ks_max_reference_rows`` rows; otherwise the Wasserstein distance
                normed by the reference's standard deviation, drift when >= ``wasserstein``. PSI beside it
                (stable < ``psi_moderate`` <= moderate < ``psi_significant`` <= significant) and the
                Jensen-Shannon distance. Dataset drift (the kind) when the share of drifted features is at
                least ``dataset_drift_share``. Features listed drifted first, then by statistic.
    prediction  PSI and Jensen-Shannon of the score P(up) - P(down), of each class probability, and of the class
                mix (argmax class) against the validation probabilities; drift when the PSI of the score or of
                the class mix is at least ``prediction_psi``.
    label       the realised label mix of the window's matured outcomes against the training labels (PSI, JS),
                and the ratio of the standard deviations of the forward returns (live / training); drift when
                the PSI is at least ``label_psi`` or the ratio is at least ``volatility_ratio`` or at most its
                inverse.
    concept     the online detectors (`drift.detectors`: ADWIN, Page-Hinkley, DDM) over the direction-error
                stream of the version's matured outcomes (1 = the direction of P(up) - P(down) was wrong; rows
                without a direction skipped) thinned to one outcome per horizon (non-overlapping forward
                windows), and the rolling live metric against validation: `outcomes.degradation_assess` (the 10 %
                rule of outcome tracking, not re-implemented here). Drift when at least ``detector_votes``
                detectors raised a worse change point with a bar time inside the current window, or the
                assessment says degraded.

Verdict and confirmation
    ``drift`` when any kind is detected, ``ok`` when none is and at least one kind could be evaluated,
    ``insufficient_data`` when none could (too few rows; each section says why), ``failed`` on an error.
    A drift is CONFIRMED when it is sustained (``confirm_checks`` consecutive evaluated checks with drift, this
    one included) or a detector raised a change point in the window: ``confirmed_by`` says which, and
    ``change_point_at`` the bar time where the latest such change starts (ADWIN: the first observation of the
    window it kept; other detectors: the alarm), where a retraining window can start. A confirmed drift raises
    a ``drift`` alert (warning), at most one unacknowledged per version.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from core.errors import ApplicationError, NotFoundError
from models_registry.drift import statistics as st
from models_registry.drift.detectors import DETECTORS, run_detectors
from models_registry.drift.reference import Reference, reference_get
from models_registry.drift.selectors import drift_report_previous, drift_thresholds
from models_registry.labels import LABEL_CLASSES
from models_registry.models import (
    DriftReport,
    ModelVersion,
    Prediction,
    PredictionOutcome,
    Stage,
    features_decode,
)
from models_registry.outcomes import OutcomeRule, degradation_assess
from trading.alerts import alert_raise, alert_resolve
from trading.models import Alert

logger = logging.getLogger(__name__)

ALERT_KIND = "drift"
BAR = timedelta(minutes=1)
LOCK_KEY = "models_registry:drift:check:{version_id}"
LOCK_TTL_S = 600
_DOWN, _UP = LABEL_CLASSES.index(-1), LABEL_CLASSES.index(1)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _finite_or_none(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def psi_level(value: float, th: Mapping[str, Any]) -> str:
    if value >= th["psi_significant"]:
        return "significant"
    if value >= th["psi_moderate"]:
        return "moderate"
    return "stable"


# --- the four kinds (pure: arrays in, a section of the report out) -----------------------------------------


def feature_drift(
    reference: np.ndarray, current: np.ndarray, names: list[str], th: Mapping[str, Any]
) -> dict[str, Any]:
    """Per-feature tests (see the module doc); `reference` and `current` are rows x features."""
    n_ref, n_cur = len(reference), len(current)
    if n_cur < th["min_current_rows"]:
        return {"status": "insufficient_data", "reason": f"{n_cur} live feature rows < {th['min_current_rows']}"}
    use_ks = n_ref <= th["ks_max_reference_rows"]
    rows: list[dict[str, Any]] = []
    for j, name in enumerate(names):
        ref, cur = reference[:, j], current[:, j]
        ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
        if len(ref) == 0 or len(cur) == 0:
            rows.append({"feature": name, "test": None, "drifted": False, "reason": "no finite value"})
            continue
        psi = st.psi(ref, cur, th["bins"])
        row: dict[str, Any] = {"feature": name, "n_reference": len(ref), "n_current": len(cur)}
        if use_ks:
            result = st.ks(ref, cur)
            row.update(
                test="ks",
                statistic=result.statistic,
                p_value=result.p_value,
                threshold=th["ks_p_value"],
                drifted=result.p_value < th["ks_p_value"],
            )
        else:
            distance = st.wasserstein_normed(ref, cur)
            row.update(test="wasserstein_normed", statistic=distance, threshold=th["wasserstein"])
            row["drifted"] = distance >= th["wasserstein"]
        row.update(
            psi=psi,
            psi_level=psi_level(psi, th),
            jensen_shannon=st.jensen_shannon(ref, cur, th["bins"]),
            reference_mean=float(ref.mean()),
            current_mean=float(cur.mean()),
            reference_std=float(ref.std()),
            current_std=float(cur.std()),
        )
        rows.append(row)
    tested = [r for r in rows if r.get("test")]
    drifted = [r for r in tested if r["drifted"]]
    share = len(drifted) / len(tested) if tested else 0.0
    # drifted first, then the strongest evidence: the smallest p-value or the largest distance
    rows.sort(key=lambda r: (not r["drifted"], r.get("p_value", 0.0) if use_ks else -r.get("statistic", 0.0)))
    return {
        "status": "evaluated",
        "test": "ks" if use_ks else "wasserstein_normed",
        "rule": (
            f"KS p < {th['ks_p_value']} (reference {n_ref} rows <= {th['ks_max_reference_rows']})"
            if use_ks
            else f"Wasserstein / std_ref >= {th['wasserstein']} "
            f"(reference {n_ref} rows > {th['ks_max_reference_rows']})"
        ),
        "n_features": len(tested),
        "n_drifted": len(drifted),
        "drift_share": share,
        "dataset_drift_share": th["dataset_drift_share"],
        "dataset_drift": bool(tested) and share >= th["dataset_drift_share"],
        "drifted_features": [r["feature"] for r in drifted],
        "features": rows,
    }


def _pair(ref: np.ndarray, cur: np.ndarray, bins: int) -> dict[str, float]:
    r, c = st.binned_shares(ref, cur, bins)
    return {"psi": st.psi_of_shares(r, c), "jensen_shannon": st.js_of_shares(r, c)}


def _mix(ref_classes: np.ndarray, cur_classes: np.ndarray) -> dict[str, Any]:
    r = st.category_shares(ref_classes, LABEL_CLASSES)
    c = st.category_shares(cur_classes, LABEL_CLASSES)
    return {
        "reference": {str(k): float(v) for k, v in zip(LABEL_CLASSES, r, strict=True)},
        "current": {str(k): float(v) for k, v in zip(LABEL_CLASSES, c, strict=True)},
        "psi": st.psi_of_shares(r, c),
        "jensen_shannon": st.js_of_shares(r, c),
    }


def prediction_drift(
    validation: np.ndarray | None, current: np.ndarray, th: Mapping[str, Any], unavailable: str = ""
) -> dict[str, Any]:
    """Live class probabilities (n x 3, LABEL_CLASSES order) against the validation ones."""
    if validation is None or len(validation) == 0:
        return {"status": "unavailable", "reason": unavailable or "no validation probabilities"}
    if len(current) < th["min_current_rows"]:
        return {"status": "insufficient_data", "reason": f"{len(current)} live predictions < {th['min_current_rows']}"}
    bins = th["bins"]
    score = _pair(validation[:, _UP] - validation[:, _DOWN], current[:, _UP] - current[:, _DOWN], bins)
    per_class = {str(c): _pair(validation[:, i], current[:, i], bins) for i, c in enumerate(LABEL_CLASSES)}
    classes = np.asarray(LABEL_CLASSES, dtype=np.float64)
    mix = _mix(classes[validation.argmax(axis=1)], classes[current.argmax(axis=1)])
    threshold = th["prediction_psi"]
    reasons = []
    if score["psi"] >= threshold:
        reasons.append(f"PSI of P(up) - P(down) {score['psi']:.3f} >= {threshold}")
    if mix["psi"] >= threshold:
        reasons.append(f"PSI of the predicted class mix {mix['psi']:.3f} >= {threshold}")
    return {
        "status": "evaluated",
        "n_reference": len(validation),
        "n_current": len(current),
        "threshold": threshold,
        "score": {**score, "psi_level": psi_level(score["psi"], th), "definition": "P(up) - P(down)"},
        "probabilities": per_class,
        "class_mix": mix,
        "drifted": bool(reasons),
        "reasons": reasons,
    }


def label_drift(
    train_labels: np.ndarray,
    train_forward: np.ndarray,
    live_labels: np.ndarray,
    live_forward: np.ndarray,
    th: Mapping[str, Any],
) -> dict[str, Any]:
    """The realised label mix and forward-return volatility of the window against training."""
    if len(train_labels) == 0:
        return {"status": "unavailable", "reason": "no training label"}
    if len(live_labels) < th["min_label_outcomes"]:
        return {
            "status": "insufficient_data",
            "reason": f"{len(live_labels)} matured outcomes in the window < {th['min_label_outcomes']}",
        }
    mix = _mix(train_labels, live_labels)
    train_std = float(np.std(train_forward[np.isfinite(train_forward)]))
    live_std = float(np.std(live_forward[np.isfinite(live_forward)]))
    ratio = live_std / train_std if train_std > 0 else math.inf
    limit = th["volatility_ratio"]
    reasons = []
    if mix["psi"] >= th["label_psi"]:
        reasons.append(f"PSI of the realised label mix {mix['psi']:.3f} >= {th['label_psi']}")
    if ratio >= limit or ratio <= 1.0 / limit:
        reasons.append(f"forward-return volatility ratio {ratio:.3f} outside [1/{limit}, {limit}]")
    return {
        "status": "evaluated",
        "n_reference": len(train_labels),
        "n_current": len(live_labels),
        "label_mix": {**mix, "threshold": th["label_psi"]},
        "volatility": {
            "training_std": train_std,
            "live_std": live_std,
            "ratio": _finite_or_none(ratio),
            "threshold": limit,
            "forward_return_distance": _pair(train_forward, live_forward, th["bins"]),
        },
        "drifted": bool(reasons),
        "reasons": reasons,
    }


def thin(bar_minutes: np.ndarray, stride: int) -> np.ndarray:
    """Indices of a non-overlapping subsequence: each kept bar at least `stride` minutes after the last kept."""
    if stride <= 1:
        return np.arange(len(bar_minutes))
    keep: list[int] = []
    last = None
    for i, minute in enumerate(bar_minutes.tolist()):
        if last is None or minute - last >= stride:
            keep.append(i)
            last = minute
    return np.asarray(keep, dtype=np.int64)


def concept_drift(
    *,
    bar_times: list[datetime],
    errors: np.ndarray,
    window_start: datetime,
    degradation: Mapping[str, Any],
    th: Mapping[str, Any],
) -> dict[str, Any]:
    """Detectors over the (thinned) error stream and the degradation assessment (see the module doc)."""
    runs = run_detectors(errors, th.get("detectors") or {})
    detectors: dict[str, Any] = {}
    voters: list[str] = []
    starts: list[datetime] = []
    for name in DETECTORS:
        run = runs[name]
        info = run.as_dict()
        points = [
            {**c.as_dict(), "at": _iso(bar_times[c.index]), "start_at": _iso(bar_times[max(c.start, 0)])}
            for c in run.change_points
        ]
        info["change_points"] = points[-20:]  # the latest; the count says how many
        info["n_change_points"] = len(points)
        recent = [c for c in run.worse_change_points if bar_times[c.index] >= window_start]
        info["recent_worse_change_points"] = len(recent)
        info["drift"] = bool(recent)
        if recent:
            voters.append(name)
            starts.append(bar_times[max(recent[-1].start, 0)])
        detectors[name] = info
    votes_needed = th["detector_votes"]
    detector_drift = len(voters) >= votes_needed
    degraded = bool(degradation.get("degraded"))
    reasons = []
    if detector_drift:
        reasons.append(f"change point (error up) from {', '.join(voters)} in the window")
    if degraded:
        reasons.extend(degradation.get("reasons") or [])
    return {
        "status": "evaluated" if len(errors) else "insufficient_data",
        "n_observations": len(errors),
        "error_rate": float(errors.mean()) if len(errors) else None,
        "stream": "direction error of matured outcomes, one per horizon (non-overlapping)",
        "detectors": detectors,
        "detector_votes": votes_needed,
        "detectors_in_drift": voters,
        "detector_drift": detector_drift,
        "change_point_at": _iso(max(starts)) if detector_drift and starts else None,
        "degradation": dict(degradation),
        "drifted": detector_drift or degraded,
        "reasons": reasons,
    }


# --- loading the windows -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LiveWindow:
    bar_times: list[datetime]
    features: np.ndarray  # rows x features (rows whose stored vector has the signature's width)
    proba: np.ndarray  # n x 3
    predictions: int


def live_window(*, version: ModelVersion, start: datetime, end: datetime) -> LiveWindow:
    """The version's predictions with a bar time in [start, end), one per bar (the first recorded)."""
    rows = (
        Prediction.objects.filter(version=version, bar_time__gte=start, bar_time__lt=end)
        .order_by("bar_time", "id")
        .values_list("bar_time", "features", "probabilities")
    )
    width = len(version.feature_names)
    seen: set[datetime] = set()
    times: list[datetime] = []
    vectors: list[np.ndarray] = []
    probas: list[list[float]] = []
    for bar_time, blob, proba in rows:
        assert bar_time is not None  # filtered on a range of it
        if bar_time in seen:
            continue
        seen.add(bar_time)
        times.append(bar_time)
        vector = features_decode(blob)
        if vector is not None and len(vector) == width:
            vectors.append(vector)
        raw = proba or {}
        probas.append([float(raw.get(str(c), 0.0) or 0.0) for c in LABEL_CLASSES])
    return LiveWindow(
        bar_times=times,
        features=np.vstack(vectors) if vectors else np.zeros((0, width)),
        proba=np.asarray(probas, dtype=np.float64).reshape(-1, 3),
        predictions=len(times),
    )


def _error_stream(
    *, version: ModelVersion, end: datetime, stride: int, limit: int
) -> tuple[list[datetime], np.ndarray]:
    rows = list(
        PredictionOutcome.objects.filter(
            version=version,
            status=PredictionOutcome.Status.MATURED,
            direction_hit__isnull=False,
            window_end__lte=end - BAR,  # known by `end`: its exit bar had closed (a check of the past sees no more)
        )
        .order_by("-bar_time", "-id")
        .values_list("bar_time", "direction_hit")[: limit * max(stride, 1)]
    )
    rows.reverse()
    if not rows:
        return [], np.zeros(0)
    minutes = np.asarray([int(t.timestamp() // 60) for t, _ in rows], dtype=np.int64)
    keep = thin(minutes, stride)[-limit:]
    return [rows[i][0] for i in keep.tolist()], np.asarray([0.0 if rows[i][1] else 1.0 for i in keep.tolist()])


def _live_labels(*, version: ModelVersion, start: datetime, end: datetime) -> tuple[np.ndarray, np.ndarray]:
    rows = PredictionOutcome.objects.filter(
        version=version,
        status=PredictionOutcome.Status.MATURED,
        bar_time__gte=start,
        window_end__lte=end - BAR,  # known by `end`: its exit bar had closed
    ).values_list("realised_label", "forward_return")
    data = np.asarray(list(rows), dtype=np.float64).reshape(-1, 2)
    return data[:, 0], data[:, 1]


# --- the check ---------------------------------------------------------------------------------------------


def _version_or_404(version_id: int) -> ModelVersion:
    version = ModelVersion.objects.select_related("model").filter(pk=version_id).first()
    if version is None:
        raise NotFoundError(f"model version {version_id} does not exist", details={"version_id": version_id})
    return version


def drift_evaluate(
    *, version: ModelVersion, as_of: datetime, th: Mapping[str, Any], store: Any = None
) -> dict[str, Any]:
    """Every section of a report for `version` at `as_of` (no write)."""
    start = as_of - timedelta(minutes=th["current_window_minutes"])
    live = live_window(version=version, start=start, end=as_of)
    reference: Reference | None = None
    reference_error = ""
    try:
        reference = reference_get(version=version, max_rows=th["reference_max_rows"], store=store)
    except ApplicationError as exc:
        reference_error = exc.message
    names = version.feature_names
    if reference is None:
        unavailable = {"status": "unavailable", "reason": reference_error}
        features, prediction, label = dict(unavailable), dict(unavailable), dict(unavailable)
    else:
        features = feature_drift(reference.features, live.features, names, th)
        prediction = prediction_drift(
            reference.validation_proba, live.proba, th, unavailable=reference.validation_error
        )
        live_labels, live_forward = _live_labels(version=version, start=start, end=as_of)
        label = label_drift(reference.labels, reference.forward_returns, live_labels, live_forward, th)
    rule = OutcomeRule.of(version.hyperparameters)
    times, errors = _error_stream(
        version=version, end=as_of, stride=rule.horizon or 1, limit=th["detector_max_outcomes"]
    )
    concept = concept_drift(
        bar_times=times, errors=errors, window_start=start, degradation=degradation_assess(version=version), th=th
    )
    windows: dict[str, Any] = {
        "current": {
            "start": _iso(start),
            "end": _iso(as_of),
            "minutes": th["current_window_minutes"],
            "predictions": live.predictions,
            "feature_rows": len(live.features),
            "first_bar": _iso(live.bar_times[0]) if live.bar_times else None,
            "last_bar": _iso(live.bar_times[-1]) if live.bar_times else None,
        },
        "concept": {
            "observations": len(errors),
            "first_bar": _iso(times[0]) if times else None,
            "last_bar": _iso(times[-1]) if times else None,
            "stride_bars": rule.horizon or 1,
        },
    }
    if reference is not None:
        windows["reference"] = {
            "start": _iso(reference.data_start),
            "end": _iso(reference.data_end),
            "feature_rows": reference.n_rows,
            "labels": len(reference.labels),
        }
        windows["validation"] = {
            "start": _iso(reference.validation_window[0]) if reference.validation_window else None,
            "end": _iso(reference.validation_window[1]) if reference.validation_window else None,
            "predictions": 0 if reference.validation_proba is None else len(reference.validation_proba),
        }
    return {"features": features, "prediction": prediction, "label": label, "concept": concept, "windows": windows}


def _kinds(sections: Mapping[str, Any]) -> list[str]:
    kinds = []
    if sections["features"].get("dataset_drift"):
        kinds.append("feature")
    if sections["prediction"].get("drifted"):
        kinds.append("prediction")
    if sections["label"].get("drifted"):
        kinds.append("label")
    if sections["concept"].get("drifted"):
        kinds.append("concept")
    return kinds


def drift_fingerprint(version_id: int) -> str:
    """The condition "this version drifted": one open alert per version (trading.alerts)."""
    return f"{ALERT_KIND}:version:{version_id}"


def open_drift_alert(version_id: int) -> bool:
    """Whether a drift alert of the version is open (firing or acknowledged)."""
    return Alert.objects.filter(fingerprint=drift_fingerprint(version_id)).exclude(state=Alert.State.RESOLVED).exists()


def _raise_alert(report: DriftReport) -> int | None:
    """Fire (or repeat) the version's drift alert; its id when newly fired."""
    was_open = open_drift_alert(report.version_id)
    version = report.version
    reasons = []
    if "feature" in report.kinds:
        reasons.append(f"{report.n_drifted}/{report.n_features} features drifted")
    for kind in ("prediction", "label", "concept"):
        if kind in report.kinds:
            reasons.extend(getattr(report, kind).get("reasons") or [])
    alert = alert_raise(
        kind=ALERT_KIND,
        severity="warning",
        message=f"Drift confirmed on {version.model.name} v{version.version} ({', '.join(report.kinds)}): "
        + "; ".join(reasons[:4]),
        context={
            "version_id": version.pk,
            "model": version.model.name,
            "version": version.version,
            "report_id": report.pk,
            "kinds": list(report.kinds),
            "confirmed_by": list(report.confirmed_by),
            "change_point_at": _iso(report.change_point_at),
        },
        fingerprint=drift_fingerprint(version.pk),
    )
    return None if was_open else alert.pk


def drift_check(
    *,
    version_id: int,
    trigger: str = DriftReport.Trigger.SCHEDULE,
    actor: str = "drift-check",
    now: datetime | None = None,
    store: Any = None,
) -> DriftReport | None:
    """Check one version and record the report (see the module doc); None when a check of the version is
    already running (single-flight per version)."""
    if trigger not in DriftReport.Trigger.values:
        raise ApplicationError(f"trigger must be one of {DriftReport.Trigger.values}", code="invalid_trigger")
    version = _version_or_404(version_id)
    as_of = now or timezone.now()
    key = LOCK_KEY.format(version_id=version_id)
    token = uuid.uuid4().hex
    if not cache.add(key, token, timeout=LOCK_TTL_S):
        return None
    try:
        return _check(version, trigger, actor or "drift-check", as_of, store)
    finally:
        if cache.get(key) == token:
            cache.delete(key)


def _check(version: ModelVersion, trigger: str, actor: str, as_of: datetime, store: Any) -> DriftReport:
    started = time.perf_counter()
    th = drift_thresholds(model=version.model)
    report = DriftReport(model=version.model, version=version, trigger=trigger, actor=actor, as_of=as_of, thresholds=th)
    try:
        sections = drift_evaluate(version=version, as_of=as_of, th=th, store=store)
    except Exception as exc:  # recorded as a failed check (and logged); the next check runs as usual
        logger.exception("drift check failed", extra={"version": version.pk})
        report.status = DriftReport.Status.FAILED
        report.error = f"{type(exc).__name__}: {exc}"[:4000]
        report.duration_ms = int((time.perf_counter() - started) * 1000)
        report.save()
        return report
    features = sections["features"]
    report.features = features.get("features", [])
    report.n_features = int(features.get("n_features", 0))
    report.n_drifted = int(features.get("n_drifted", 0))
    report.drift_share = features.get("drift_share")
    report.dataset_drift = bool(features.get("dataset_drift"))
    report.prediction = sections["prediction"]
    report.label = sections["label"]
    report.concept = sections["concept"]
    report.windows = {
        **sections["windows"],
        "features": {k: v for k, v in features.items() if k != "features"},
    }
    report.prediction_psi = (sections["prediction"].get("score") or {}).get("psi")
    report.kinds = _kinds(sections)
    evaluated = any(sections[k].get("status") == "evaluated" for k in ("features", "prediction", "label", "concept"))
    if report.kinds:
        report.status = DriftReport.Status.DRIFT
    elif evaluated:
        report.status = DriftReport.Status.OK
    else:
        report.status = DriftReport.Status.INSUFFICIENT
    with transaction.atomic():
        previous = drift_report_previous(version=version, before=as_of)
        if report.status == DriftReport.Status.DRIFT:
            chained = previous is not None and previous.status == DriftReport.Status.DRIFT
            report.consecutive = (previous.consecutive if chained and previous else 0) + 1
        confirmed_by = []
        if report.status == DriftReport.Status.DRIFT and report.consecutive >= th["confirm_checks"]:
            confirmed_by.append(f"sustained: {report.consecutive} consecutive checks with drift")
        if sections["concept"].get("detector_drift"):
            confirmed_by.append("detectors: " + ", ".join(sections["concept"]["detectors_in_drift"]))
        report.confirmed = bool(confirmed_by) and report.status == DriftReport.Status.DRIFT
        report.confirmed_by = confirmed_by if report.confirmed else []
        change = sections["concept"].get("change_point_at")
        report.change_point_at = datetime.fromisoformat(change) if change else None
        report.duration_ms = int((time.perf_counter() - started) * 1000)
        report.save()
        if report.confirmed:
            alert_id = _raise_alert(report)
            if alert_id is not None:
                report.alert_id = alert_id
                report.save(update_fields=["alert_id"])
        elif report.status == DriftReport.Status.OK:  # no drift any more: the version's alert resolves
            alert_resolve(fingerprint=drift_fingerprint(version.pk))
    logger.info(
        "drift checked",
        extra={
            "version": version.pk,
            "status": report.status,
            "kinds": report.kinds,
            "confirmed": report.confirmed,
            "duration_ms": report.duration_ms,
        },
    )
    return report


def drift_check_versions() -> list[int]:
    """The versions a scheduled check covers: those in production or staging (serving or shadow-tested)."""
    return list(
        ModelVersion.objects.filter(stage__in=[Stage.PRODUCTION, Stage.STAGING])
        .order_by("pk")
        .values_list("pk", flat=True)
    )
