"""Shadow predictions: every treatment of a running (or paused) shadow experiment predicts on a decision the
champion made, after that decision committed (and its order went to execution), through the registry's own
pipeline predictor pinned to the treatment's version: same bars, same features, recorded as a registry
`Prediction` with the same decision id, so outcome tracking matures both on the same bars with the same costs
(paired). A shadow prediction never reaches the trading pipeline: it cannot trade. Safe to run twice (one
observation and one prediction per decision and version)."""

from __future__ import annotations

import logging
import time

from django.db import transaction

from experiments.models import ACTIVE_STATUSES, Arm, Experiment, ExperimentObservation, Mode
from experiments.router import arm_predictor

logger = logging.getLogger(__name__)


def shadow_predict(*, experiment_id: int, decision_key: str) -> int:
    """Predict with every treatment that has not yet on `decision_key`; returns how many observations it
    recorded (0 when the experiment ended, is not a shadow experiment, or the control observed nothing)."""
    experiment = Experiment.objects.select_related("model").filter(pk=experiment_id).first()
    if experiment is None or experiment.mode != Mode.SHADOW or experiment.status not in ACTIVE_STATUSES:
        return 0
    base = ExperimentObservation.objects.filter(
        experiment=experiment, arm__role=Arm.Role.CONTROL, decision_key=decision_key
    ).first()
    if base is None:
        return 0
    done = set(
        ExperimentObservation.objects.filter(experiment=experiment, decision_key=decision_key).values_list(
            "arm_id", flat=True
        )
    )
    recorded = 0
    for arm in experiment.arms.select_related("version").filter(role=Arm.Role.TREATMENT).order_by("position"):
        if arm.pk in done:
            continue
        error = ""
        latency_ms: float | None = None
        started = time.perf_counter()
        try:
            predictor = arm_predictor(model_name=experiment.model.name, version=arm.version.version)
            prediction = predictor.predict(symbol=base.symbol, bar_time=base.bar_time, decision_id=decision_key)
            latency_ms = (time.perf_counter() - started) * 1000.0
            if prediction.record is None:
                error = prediction.reason or "the treatment gave no prediction"
        except Exception as exc:  # counted against the treatment's error-rate guardrail
            logger.exception("shadow prediction failed", extra={"experiment": experiment_id, "arm": arm.pk})
            error = f"{type(exc).__name__}: {exc}"
            prediction = None
        with transaction.atomic():
            if not error and prediction is not None and prediction.record is not None:
                prediction.record()
            created = ExperimentObservation.objects.bulk_create(
                [
                    ExperimentObservation(
                        experiment=experiment, arm=arm, version_id=arm.version_id, decision_key=decision_key,
                        symbol=base.symbol, bar_time=base.bar_time, latency_ms=latency_ms, error=error[:2000],
                    )
                ],
                ignore_conflicts=True,
            )  # fmt: skip
        recorded += len(created)
    return recorded
