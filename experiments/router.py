"""The experiment router: the trading pipeline's predictor (``GALFRIDAY_PREDICTOR =
"experiments.router.ExperimentRouter"``), wrapping the registry's `PipelinePredictor`.

Without a running experiment for the symbol's model it is exactly the registry's predictor. With one:

* shadow: the champion predicts and trades as always; recording its prediction (inside the decision's
  transaction) also records the control's `ExperimentObservation`, and after the commit the treatments'
  predictions for the same decision are handed to `experiments.tasks.shadow_predict_task` (by name, ids only,
  enqueued from a sender thread: `shadow_handoff`), so they never delay the champion's order and never trade;
* split: the decision goes to the arm that a deterministic hash of (experiment, symbol, bar time) picks with the
  allocation percentages (a replayed decision goes to the same arm, so its decision id is the same and it trades
  once); that arm's version predicts and its orders are real; the decision records the model name and version
  (attribution). A treatment that fails to predict is counted as an error and the champion decides instead.

Which experiment is active is cached per process and re-read when the experiments generation moves (checked at
most every `CHECK_INTERVAL_S`) or after `RESOLVE_TTL_S`; a transition made in this process is seen at once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from functools import partial
from typing import Any

from django.db import transaction

from core.metrics import ProcessCounters
from experiments.models import ACTIVE_STATUSES, Arm, Experiment, ExperimentObservation, Mode, Status
from experiments.selectors import experiments_generation
from galfriday_site.celery import app
from models_registry.prediction import PredictionOutput
from models_registry.predictor import PipelinePredictor, RegistryPredictor
from models_registry.training import default_model_name
from trading.predictor import BarWindow
from trading.predictor import Prediction as TradingPrediction

logger = logging.getLogger(__name__)

# Counters since the process started (for /metrics): hand-offs of shadow predictions, enqueues that failed (the
# intake's catch-up predicts those later), treatment predictions that failed in split mode (the champion decided).
counters = ProcessCounters("experiments.router")

CHECK_INTERVAL_S = 0.2
RESOLVE_TTL_S = 5.0
BUCKETS = 10_000  # allocation resolution: 0.01 %
SHADOW_TASK = "experiments.tasks.shadow_predict_task"


@dataclass(frozen=True)
class ArmRoute:
    arm_id: int
    name: str
    role: str
    version_id: int
    version: int
    upper_bucket: int  # the arm takes hash buckets below this (cumulative allocation)


@dataclass(frozen=True)
class ActiveExperiment:
    experiment_id: int
    model_name: str
    mode: str
    status: str
    arms: tuple[ArmRoute, ...]

    @property
    def control(self) -> ArmRoute:
        return next(a for a in self.arms if a.role == Arm.Role.CONTROL)

    @property
    def treatments(self) -> tuple[ArmRoute, ...]:
        return tuple(a for a in self.arms if a.role == Arm.Role.TREATMENT)


def route_bucket(experiment_id: int, symbol: str, bar_time: datetime) -> int:
    """The decision's hash bucket in [0, BUCKETS): SHA-256 of (experiment, symbol, bar time in UTC ISO 8601)."""
    key = f"{experiment_id}|{symbol}|{bar_time.isoformat()}".encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % BUCKETS


def route_arm(active: ActiveExperiment, symbol: str, bar_time: datetime) -> ArmRoute:
    """The arm a split experiment sends this decision to (deterministic)."""
    bucket = route_bucket(active.experiment_id, symbol, bar_time)
    for arm in active.arms:
        if bucket < arm.upper_bucket:
            return arm
    return active.arms[-1]


def _load(model_name: str) -> ActiveExperiment | None:
    experiment = Experiment.objects.filter(model__name=model_name, status__in=ACTIVE_STATUSES).first()
    if experiment is None:
        return None
    arms = list(experiment.arms.select_related("version").order_by("position", "id"))
    routes, cumulative = [], Decimal(0)
    for arm in arms:
        cumulative += arm.allocation_percent
        routes.append(
            ArmRoute(
                arm.pk, arm.name, arm.role, arm.version_id, arm.version.version,
                int(cumulative * BUCKETS / 100) if experiment.mode == Mode.SPLIT else BUCKETS,
            )
        )  # fmt: skip
    return ActiveExperiment(experiment.pk, model_name, experiment.mode, experiment.status, tuple(routes))


@dataclass
class _Cached:
    value: ActiveExperiment | None
    generation: int
    local: int
    loaded_at: float
    checked_at: float


_cache: dict[str, _Cached] = {}
_cache_lock = threading.Lock()
_local_generation = 0


def router_cache_clear() -> None:
    """Forget every cached experiment in this process (the services call it after a transition commits)."""
    global _local_generation
    with _cache_lock:
        _local_generation += 1
        _cache.clear()


def active_for_model(model_name: str, *, clock: Any = time.monotonic) -> ActiveExperiment | None:
    now = clock()
    cached = _cache.get(model_name)
    if cached is not None and cached.local == _local_generation:
        if now - cached.checked_at < CHECK_INTERVAL_S:
            return cached.value
        generation = experiments_generation()
        if generation == cached.generation and now - cached.loaded_at < RESOLVE_TTL_S:
            cached.checked_at = now
            return cached.value
    else:
        generation = experiments_generation()
    value = _load(model_name)
    with _cache_lock:
        _cache[model_name] = _Cached(value, generation, _local_generation, now, now)
    return value


class VersionRegistryPredictor(RegistryPredictor):
    """The registry's predictor pinned to one version of one model (an experiment arm)."""

    def __init__(self, *, model_name: str, version: int) -> None:
        super().__init__()
        self.model_name = model_name
        self.version = version

    def predict_output(
        self,
        symbol: str,
        decision_id: str,
        features: Any,
        *,
        selector: str | None = None,
        bar_time: datetime | None = None,
        defer_record: bool = False,
    ) -> PredictionOutput:
        return self.service.predict_one(
            features,
            model_name=self.model_name,
            selector=self.version,
            decision_id=decision_id,
            symbol=symbol,
            bar_time=bar_time,
            defer_record=defer_record,
        )


def arm_predictor(*, model_name: str, version: int) -> PipelinePredictor:
    """The registry's pipeline predictor (same features, same bars) serving one pinned version."""
    return PipelinePredictor(registry=VersionRegistryPredictor(model_name=model_name, version=version))


def _observation_insert(
    active: ActiveExperiment,
    arm: ArmRoute,
    decision_key: str,
    symbol: str,
    bar_time: datetime,
    latency_ms: float | None,
    error: str = "",
) -> None:
    ExperimentObservation.objects.bulk_create(
        [
            ExperimentObservation(
                experiment_id=active.experiment_id, arm_id=arm.arm_id, version_id=arm.version_id,
                decision_key=decision_key, symbol=symbol, bar_time=bar_time, latency_ms=latency_ms,
                error=error[:2000],
            )
        ],
        ignore_conflicts=True,
    )  # fmt: skip


def shadow_enqueue(experiment_id: int, decision_key: str) -> None:
    """Hand the treatments' predictions for a decision to a worker (by task name, ids only)."""
    try:
        app.send_task(  # nobody reads its result: no result subscription (a round trip) per decision
            SHADOW_TASK, kwargs={"experiment_id": experiment_id, "decision_key": decision_key}, ignore_result=True
        )
        counters["shadow_enqueued"] += 1
    except Exception:
        # the broker is down: the decision stands; the intake's catch-up makes the prediction later
        counters["shadow_enqueue_failed"] += 1
        logger.exception(
            "shadow prediction not enqueued", extra={"experiment": experiment_id, "decision": decision_key}
        )


_sender: ThreadPoolExecutor | None = None
_sender_pid = 0
_sender_lock = threading.Lock()


def shadow_handoff(experiment_id: int, decision_key: str) -> None:
    """Run after the decision's commit, before the callbacks that follow it (the champion's order going to the
    gateway): only hands the enqueue to this process's sender thread (microseconds), so the broker round trip
    never delays the order. A process that dies with a hand-off pending loses that shadow prediction (the
    treatment then has no outcome for the decision; the pairing skips it)."""
    global _sender, _sender_pid
    counters["shadow_handoffs"] += 1
    pid = os.getpid()
    with _sender_lock:
        if _sender is None or _sender_pid != pid:  # first use, or a forked child (threads do not survive fork)
            _sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="experiments-shadow")
            _sender_pid = pid
        sender = _sender
    sender.submit(shadow_enqueue, experiment_id, decision_key)


class ExperimentRouter:
    """`trading.predictor.BarsPredictor` that routes decisions through the active experiment of the model."""

    bars_fields: tuple[str, ...] = PipelinePredictor.bars_fields

    def __init__(self, *, champion: PipelinePredictor | None = None) -> None:
        self.champion = champion or PipelinePredictor()

    def bars_range(self, *, bar_time: datetime) -> tuple[datetime, datetime]:
        return self.champion.bars_range(bar_time=bar_time)

    def predict(
        self, *, symbol: str, bar_time: datetime, decision_id: str, bars: BarWindow | None = None
    ) -> TradingPrediction:
        model_name = default_model_name(symbol)
        active = active_for_model(model_name)
        if active is None or active.status != Status.RUNNING:
            return self.champion.predict(symbol=symbol, bar_time=bar_time, decision_id=decision_id, bars=bars)
        if active.mode == Mode.SHADOW:
            return self._shadow(active, symbol, bar_time, decision_id, bars)
        return self._split(active, symbol, bar_time, decision_id, bars)

    def _shadow(
        self, active: ActiveExperiment, symbol: str, bar_time: datetime, decision_id: str, bars: BarWindow | None
    ) -> TradingPrediction:
        started = time.perf_counter()
        prediction = self.champion.predict(symbol=symbol, bar_time=bar_time, decision_id=decision_id, bars=bars)
        latency_ms = (time.perf_counter() - started) * 1000.0
        control = active.control
        if prediction.record is None or prediction.version != control.version:
            return prediction  # no model served, or the champion changed under the experiment: not an observation
        champion_record = prediction.record

        def record() -> object:
            recorded = champion_record()
            _observation_insert(active, control, decision_id, symbol, bar_time, latency_ms)
            transaction.on_commit(partial(shadow_handoff, active.experiment_id, decision_id), robust=True)
            return recorded

        return replace(prediction, record=record)

    def _split(
        self, active: ActiveExperiment, symbol: str, bar_time: datetime, decision_id: str, bars: BarWindow | None
    ) -> TradingPrediction:
        arm = route_arm(active, symbol, bar_time)
        error = ""
        started = time.perf_counter()
        if arm.role == Arm.Role.CONTROL:
            prediction = self.champion.predict(symbol=symbol, bar_time=bar_time, decision_id=decision_id, bars=bars)
        else:
            try:
                served = arm_predictor(model_name=active.model_name, version=arm.version)
                prediction = served.predict(symbol=symbol, bar_time=bar_time, decision_id=decision_id, bars=bars)
                if prediction.record is None or prediction.version != arm.version:
                    error = prediction.reason or "the treatment gave no prediction"
            except Exception as exc:  # the treatment must not take the decision down with it
                logger.exception("treatment prediction failed", extra={"experiment": active.experiment_id})
                error = f"{type(exc).__name__}: {exc}"
        latency_ms = (time.perf_counter() - started) * 1000.0
        if error:
            counters["treatment_errors"] += 1
            prediction = self.champion.predict(symbol=symbol, bar_time=bar_time, decision_id=decision_id, bars=bars)
        elif prediction.record is None:
            return prediction  # the control served nothing (no model): not an observation
        served_record = prediction.record

        def record() -> object:
            recorded = served_record() if served_record is not None else 0
            _observation_insert(active, arm, decision_id, symbol, bar_time, None if error else latency_ms, error)
            return recorded

        return replace(prediction, record=record)
