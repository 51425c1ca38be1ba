"""Writes of the retraining loop: triggers (single-flight per model), the run itself (train -> challenger ->
shadow hand-off), and its conclusion (promoted or rejected). Probation and rollback are in `probation`.

Single-flight: a trigger locks the model's row (`lock_objects.registered_model_lock`, the lock every stage move
takes) and either creates the model's one active run or joins the active one; the partial unique constraint
`retrainingrun_one_active_per_model` is the invariant underneath, so two triggers that race on any backend cannot
start two runs. Every trigger is recorded (`RetrainingTrigger`) and every step appended to `RetrainingEvent`.

The run reuses the registry's training (`training.train_model`: purged walk-forward evaluation, gates recorded,
registered in one transaction, keyed by the run's training request id, so a redelivered task registers one
version) with the parent champion's own recorded configuration on a recent window. A challenger that fails the
metric gates is rejected and archived at once (it could never be promoted); one that passes gets the
`challenger` alias and `challenger_registered` is sent after commit (experiments start the shadow test).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.audit import audit_actor
from core.errors import ApplicationError, ConflictError, NotFoundError
from models_registry import lock_objects, services
from models_registry.features import WARMUP_BARS
from models_registry.models import DriftReport, ModelVersion, RegisteredModel, Stage, TrainingRun
from models_registry.retraining.models import (
    ACTIVE_RUN_STATUSES,
    RetrainingEvent,
    RetrainingPolicy,
    RetrainingRun,
    RetrainingTrigger,
    TriggerKind,
)
from models_registry.selectors import gate_config, gate_results, production_version
from models_registry.signals import challenger_registered
from models_registry.training import (
    TrainingConfig,
    TrainingInProgress,
    TrainingResult,
    min_training_samples,
    train_model,
)

logger = logging.getLogger(__name__)

ACTOR = "retraining"
CHALLENGER_ALIAS = "challenger"
Step = RetrainingEvent.Step


class RetrainingInvalid(ApplicationError):
    code = "validation_error"


# --- policy --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """A model's effective retraining policy (its RetrainingPolicy over the MODELS_REGISTRY_RETRAINING_* settings)."""

    enabled: bool
    on_drift: bool
    schedule_hours: float
    window_hours: float
    min_window_hours: float
    cooldown_hours: float
    probation_hours: float

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def retraining_policy(*, model: RegisteredModel) -> Policy:
    row = RetrainingPolicy.objects.filter(model=model).first()

    def pick(field: str, setting: str) -> float:
        value = getattr(row, field, None) if row is not None else None
        return float(getattr(settings, setting) if value is None else value)

    return Policy(
        enabled=row.enabled if row is not None else True,
        on_drift=(row.on_drift if row is not None else True) and bool(settings.MODELS_REGISTRY_RETRAINING_ON_DRIFT),
        schedule_hours=pick("schedule_hours", "MODELS_REGISTRY_RETRAINING_SCHEDULE_HOURS"),
        window_hours=pick("window_hours", "MODELS_REGISTRY_RETRAINING_WINDOW_HOURS"),
        min_window_hours=pick("min_window_hours", "MODELS_REGISTRY_RETRAINING_MIN_WINDOW_HOURS"),
        cooldown_hours=pick("cooldown_hours", "MODELS_REGISTRY_RETRAINING_COOLDOWN_HOURS"),
        probation_hours=pick("probation_hours", "MODELS_REGISTRY_RETRAINING_PROBATION_HOURS"),
    )


POLICY_FIELDS = (
    "enabled",
    "on_drift",
    "schedule_hours",
    "window_hours",
    "min_window_hours",
    "cooldown_hours",
    "probation_hours",
)


def retraining_policy_set(*, model: RegisteredModel, values: Mapping[str, Any], actor: str) -> RetrainingPolicy:
    """Replace the model's policy overrides (`values`: any of POLICY_FIELDS; None falls back to the setting)."""
    unknown = set(values) - set(POLICY_FIELDS)
    if unknown:
        raise RetrainingInvalid(
            f"unknown retraining policy fields {sorted(unknown)}", details={"fields": sorted(unknown)}
        )
    for name in POLICY_FIELDS[2:]:
        value = values.get(name)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0
        ):
            raise RetrainingInvalid(f"{name} must be a number of hours >= 0 (or null), got {value!r}")
        if name in ("window_hours", "min_window_hours") and value is not None and value <= 0:
            raise RetrainingInvalid(f"{name} must be > 0 hours")
    with transaction.atomic(), audit_actor(actor, reason="retraining policy set"):
        row, _ = RetrainingPolicy.objects.select_for_update().get_or_create(model=model)
        for name in POLICY_FIELDS:
            if name in values:
                setattr(row, name, values[name] if name in POLICY_FIELDS[2:] else bool(values[name]))
        row.save()
    return row


# --- steps ---------------------------------------------------------------------------------------------------


def run_lock(run_id: int) -> RetrainingRun:
    """The run's row, locked (this package's one row lock besides the model's `registered_model_lock`, always
    taken after it); its model and versions read with it."""
    return (
        RetrainingRun.objects.select_for_update(of=("self",))
        .select_related("model", "parent", "challenger", "drift_report")
        .order_by("pk")
        .get(pk=run_id)
    )


def retraining_event(
    *,
    model: RegisteredModel,
    step: str,
    actor: str,
    detail: str,
    run: RetrainingRun | None = None,
    version: ModelVersion | None = None,
    data: Mapping[str, Any] | None = None,
) -> RetrainingEvent:
    """Append one step of the loop to the model's history (and log it)."""
    event = RetrainingEvent.objects.create(
        model=model, run=run, version=version, step=step, actor=actor, detail=detail, data=dict(data or {}),
        at=timezone.now(),
    )  # fmt: skip
    logger.info("retraining %s", step, extra={"model": model.name, "run": run.pk if run else None, "detail": detail})
    return event


def _stale_after() -> timedelta:
    """A queued or training run without progress for this long is abandoned (the task's hard time limit plus a
    minute, as for training requests)."""
    return timedelta(seconds=int(settings.CELERY_TASK_TIME_LIMIT) + 60)


def _abandon(run: RetrainingRun, *, now: datetime, actor: str) -> None:
    """Fail a run whose worker died; a version its training request registered is archived (never left behind
    unlinked). Called under the model's lock."""
    orphan = None
    if run.training_request_id:
        done = TrainingRun.objects.filter(request_id=run.training_request_id, version__isnull=False).first()
        orphan = done.version if done is not None else None
    if orphan is not None and orphan.stage not in (Stage.ARCHIVED, Stage.PRODUCTION):
        services.model_version_archive(
            model_name=run.model.name,
            version=orphan.version,
            reason=f"retraining run {run.pk} was abandoned before its challenger was linked",
            actor=actor,
        )
    run.status = RetrainingRun.Status.FAILED
    run.outcome = f"abandoned: no progress since {(run.started_at or run.created_at).isoformat()} (worker lost)"
    run.finished_at = now
    with audit_actor(actor, reason=run.outcome):
        run.save(update_fields=["status", "outcome", "finished_at"])
    retraining_event(model=run.model, step=Step.TRAINING_FAILED, actor=actor, detail=run.outcome, run=run)


def abandon_stale(*, run_id: int, actor: str) -> bool:
    """Abandon the run when it is queued or training without progress past `_stale_after` (True when it was).
    Call under the model's lock."""
    run = run_lock(run_id)
    if run.status not in (RetrainingRun.Status.QUEUED, RetrainingRun.Status.TRAINING):
        return False
    if timezone.now() - (run.started_at or run.created_at) <= _stale_after():
        return False
    _abandon(run, now=timezone.now(), actor=actor)
    return True


def last_started_at(model: RegisteredModel) -> datetime | None:
    """When the model's latest run was started (the time its starting trigger recorded)."""
    return (
        RetrainingTrigger.objects.filter(model=model, run__isnull=False, joined=False)
        .order_by("-at", "-id")
        .values_list("at", flat=True)
        .first()
    )


# --- triggers ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TriggerResult:
    trigger: RetrainingTrigger
    run: RetrainingRun | None
    started: bool  # True: this trigger started the run; False: joined an active one, or suppressed

    def as_dict(self) -> dict[str, Any]:
        return {
            "trigger_id": self.trigger.pk,
            "run_id": self.run.pk if self.run else None,
            "started": self.started,
            "joined": self.trigger.joined,
            "suppressed": self.trigger.suppressed,
            "status": self.run.status if self.run else None,
        }


def change_point_of(report: DriftReport) -> datetime | None:
    """Where the regime a drift report saw began, for the training window: an online detector's change point
    when one fired; else, for drift confirmed by consecutive checks, the last check of the same version before
    the report that found no drift (the data after it is the changed regime's, but for at most one check
    interval before the change became visible); None when every check of the version found drift."""
    if report.change_point_at is not None:
        return report.change_point_at
    clean = (
        DriftReport.objects.filter(version_id=report.version_id, as_of__lt=report.as_of, status=DriftReport.Status.OK)
        .order_by("-as_of")
        .values_list("as_of", flat=True)
        .first()
    )
    return clean


def ready_at(*, model: RegisteredModel, report: DriftReport) -> datetime:
    """When a confirmed drift report may start a run: once the bars after its change point fill the policy's
    `min_window_hours` (a run started sooner would train mostly on the regime that just ended), else at once."""
    change = change_point_of(report)
    if change is None:
        return report.as_of
    policy = retraining_policy(model=model)
    return max(report.as_of, change + timedelta(hours=policy.min_window_hours))


def _suppression(model: RegisteredModel, kind: str, report: DriftReport | None, now: datetime) -> str:
    """Why an automatic trigger starts nothing ('' when it may start a run)."""
    if kind == TriggerKind.OPERATOR:
        return ""
    policy = retraining_policy(model=model)
    if not policy.enabled:
        return "automatic retraining is off for this model"
    if kind == TriggerKind.DRIFT:
        if not policy.on_drift:
            return "retraining on drift is off for this model"
        champion = production_version(model_name=model.name)
        if report is not None and (champion is None or report.version_id != champion.pk):
            return f"the drift report is on v{report.version.version}, which is no longer the champion"
        last = last_started_at(model)
        if last is not None and now - last < timedelta(hours=policy.cooldown_hours):
            return f"cooldown: the last run started {last.isoformat()}, less than {policy.cooldown_hours:g} h before"
    return ""


def retraining_trigger(
    *,
    model_name: str,
    kind: str,
    reason: str,
    actor: str,
    drift_report_id: int | None = None,
    now: datetime | None = None,
) -> TriggerResult:
    """Record a trigger and start the model's retraining, or join the one already active (single-flight).

    Automatic triggers (drift, schedule) are suppressed, and recorded as such, when the policy says so (off,
    cooldown after the last run, a report on a version that is no longer the champion); an operator's trigger
    always starts or joins a run. A drift report triggers at most once: a repeated call returns its trigger."""
    if kind not in TriggerKind.values:
        raise RetrainingInvalid(f"trigger must be one of {TriggerKind.values}, got {kind!r}")
    reason = (reason or "").strip()
    if not reason:
        raise RetrainingInvalid("a reason is required for every retraining trigger")
    if not (actor or "").strip():
        raise RetrainingInvalid("an actor (who triggers) is required")
    if not RegisteredModel.objects.filter(name=model_name).exists():
        raise NotFoundError(f"model {model_name!r} is not registered", details={"model": model_name})
    now = now or timezone.now()
    for _ in range(2):  # a lost race on the unique constraints is answered by the row that won
        try:
            return _trigger(model_name, kind, reason, actor, drift_report_id, now)
        except IntegrityError:
            logger.info("retraining trigger raced; retrying", extra={"model": model_name})
    return _trigger(model_name, kind, reason, actor, drift_report_id, now)


def _trigger(
    model_name: str, kind: str, reason: str, actor: str, drift_report_id: int | None, now: datetime
) -> TriggerResult:
    with transaction.atomic():
        model = lock_objects.registered_model_lock(name=model_name)
        report = None
        if drift_report_id is not None:
            report = DriftReport.objects.select_related("version").filter(pk=drift_report_id, model=model).first()
            if report is None:
                raise NotFoundError(f"{model_name} has no drift report {drift_report_id}")
            done = RetrainingTrigger.objects.select_related("run").filter(drift_report=report).first()
            if done is not None:
                return TriggerResult(done, done.run, False)
        active = RetrainingRun.objects.filter(model=model, status__in=ACTIVE_RUN_STATUSES).first()
        if active is not None and abandon_stale(run_id=active.pk, actor=actor):
            active = None
        data = {"drift_report": report.pk if report else None, "kinds": report.kinds if report else []}
        if active is not None:
            trigger = RetrainingTrigger.objects.create(
                model=model, run=active, kind=kind, drift_report=report, actor=actor, reason=reason, joined=True, at=now
            )
            retraining_event(
                model=model, step=Step.JOINED, actor=actor, run=active, data=data,
                detail=f"{kind} trigger joined the active retraining run {active.pk} ({active.status}): {reason}",
            )  # fmt: skip
            return TriggerResult(trigger, active, False)
        suppressed = _suppression(model, kind, report, now)
        if suppressed:
            trigger = RetrainingTrigger.objects.create(
                model=model, kind=kind, drift_report=report, actor=actor, reason=reason, suppressed=suppressed, at=now
            )
            retraining_event(
                model=model, step=Step.SUPPRESSED, actor=actor, data=data,
                detail=f"{kind} trigger started nothing: {suppressed}",
            )  # fmt: skip
            return TriggerResult(trigger, None, False)
        champion = production_version(model_name=model.name)
        with audit_actor(actor, reason=reason):
            run = RetrainingRun.objects.create(
                model=model,
                trigger=kind,
                reason=reason,
                actor=actor,
                drift_report=report,
                parent=champion,
                change_point_at=change_point_of(report) if report is not None else None,
            )
        trigger = RetrainingTrigger.objects.create(
            model=model, run=run, kind=kind, drift_report=report, actor=actor, reason=reason, at=now
        )
        detail = f"{kind} trigger started retraining run {run.pk}: {reason}"
        if report is not None:
            detail += (
                f" (drift report {report.pk} on v{report.version.version}: {', '.join(report.kinds) or 'drift'}, "
                f"confirmed by {', '.join(str(c) for c in report.confirmed_by) or 'n/a'})"
            )
        retraining_event(
            model=model, step=Step.TRIGGERED, actor=actor, run=run, version=champion, detail=detail, data=data
        )
        run_id = run.pk
        transaction.on_commit(lambda: _enqueue(run_id))
    return TriggerResult(trigger, run, True)


def _enqueue(run_id: int) -> None:
    """Queue the run's task on the `lifecycle` queue (after the trigger's commit)."""
    from models_registry.retraining.tasks import retraining_run_task  # reason: the tasks module imports this one

    try:
        retraining_run_task.apply_async(kwargs={"run_id": run_id}, queue="lifecycle")
    except Exception:  # the broker is down: the run stays queued; the next trigger finds it stale and starts again
        logger.exception("retraining task not enqueued", extra={"run": run_id})


# --- the run -------------------------------------------------------------------------------------------------


def training_config_of(version: ModelVersion | None) -> TrainingConfig:
    """The configuration `version` was trained with (its training request's recorded config, else what its
    hyperparameters record), so the challenger is trained and judged as its parent was."""
    if version is None:
        return TrainingConfig(min_samples=min_training_samples())
    run = TrainingRun.objects.filter(version=version).order_by("-started_at").first()
    recorded = (run.parameters or {}).get("config") if run is not None else None
    if isinstance(recorded, Mapping):
        fields = {k: recorded[k] for k in TrainingConfig.__dataclass_fields__ if k in recorded}
        return TrainingConfig(**fields)
    hyper = dict(version.hyperparameters or {})
    kind = str(hyper.get("model", "hgb"))
    cv = hyper.get("cv") or {}
    own = {k: v for k, v in hyper.items() if k in _hyper_keys(kind)}
    return TrainingConfig(
        model=kind,  # type: ignore[arg-type]
        horizon=int(hyper.get("horizon", 15)),
        seed=int(hyper.get("seed", 0)),
        n_splits=int(cv.get("n_splits", 5)),
        embargo=int(cv["embargo"]) if "embargo" in cv else None,
        dead_zone="auto" if hyper.get("label_dead_zone_rule") == "auto" else hyper.get("label_dead_zone"),
        taker_fee=float(hyper.get("taker_fee", TrainingConfig.taker_fee)),
        slippage_bps=float(hyper.get("slippage_bps", TrainingConfig.slippage_bps)),
        signal_threshold=float(hyper.get("signal_threshold", TrainingConfig.signal_threshold)),
        min_samples=min_training_samples(),
        hyperparameters=own,
    )


def _hyper_keys(kind: str) -> set[str]:
    from models_registry.training import DEFAULT_HYPERPARAMETERS  # reason: a table, read only here

    return set(DEFAULT_HYPERPARAMETERS.get(kind, {}))


def training_window(*, policy: Policy, end: datetime, change_point_at: datetime | None) -> tuple[datetime, datetime]:
    """[start, end): the last `window_hours`, starting after the change point when one is known and later,
    but never shorter than `min_window_hours` (a change point too recent leaves too little to learn from)."""
    end = end.replace(second=0, microsecond=0)
    start = end - timedelta(hours=policy.window_hours)
    if change_point_at is not None and change_point_at > start:
        start = change_point_at.replace(second=0, microsecond=0) + timedelta(minutes=1)
    floor = end - timedelta(hours=policy.min_window_hours)
    return min(start, floor), end


def retraining_run(*, run_id: int, now: datetime | None = None) -> RetrainingRun | None:
    """Train the run's challenger and hand it to the shadow test (or reject it). Safe to run twice: a run past
    training returns as it is; a second copy while one trains is refused by the training request's claim; a
    redelivery after a crash finds the version its request registered and links it."""
    run = RetrainingRun.objects.select_related("model", "parent", "drift_report").filter(pk=run_id).first()
    if run is None or run.status not in (RetrainingRun.Status.QUEUED, RetrainingRun.Status.TRAINING):
        return run
    actor = f"{ACTOR}:run-{run.pk}"
    policy = retraining_policy(model=run.model)
    start, end = training_window(policy=policy, end=now or timezone.now(), change_point_at=run.change_point_at)
    with transaction.atomic():
        run = run_lock(run_id)
        if run.status not in (RetrainingRun.Status.QUEUED, RetrainingRun.Status.TRAINING):
            return run
        if run.data_start is None or run.data_end is None:
            run.data_start, run.data_end = start, end
        run.status = RetrainingRun.Status.TRAINING
        run.started_at = timezone.now()
        run.attempts += 1
        run.training_request_id = run.training_request_id or f"retraining-{run.pk}"
        with audit_actor(actor, reason="retraining started"):
            run.save(
                update_fields=["status", "started_at", "attempts", "training_request_id", "data_start", "data_end"]
            )
        retraining_event(
            model=run.model, step=Step.TRAINING_STARTED, actor=actor, run=run, version=run.parent,
            detail=f"training on [{run.data_start.isoformat()}, {run.data_end.isoformat()}) "
            f"(attempt {run.attempts})" + (
                f", after the change point {run.change_point_at.isoformat()}" if run.change_point_at else ""
            ),
            data={"data_start": run.data_start.isoformat(), "data_end": run.data_end.isoformat(),
                  "training_request_id": run.training_request_id},
        )  # fmt: skip
    parent = run.parent
    try:
        if parent is None or not parent.symbols:
            raise RetrainingInvalid("the model has no champion to retrain (nothing to take symbol and config from)")
        result = train_model(
            symbol=str(parent.symbols[0]),
            start=_read_from(run),
            end=run.data_end,
            config=training_config_of(parent),
            model_name=run.model.name,
            request_id=run.training_request_id,
            parent_version=parent.version,
            actor=actor,
        )
    except TrainingInProgress:
        logger.info("retraining already training elsewhere", extra={"run": run.pk})
        return run
    except Exception as exc:
        retraining_fail(run_id=run.pk, error=f"{type(exc).__name__}: {getattr(exc, 'message', exc)}", actor=actor)
        if not isinstance(exc, ApplicationError):
            logger.exception("retraining failed", extra={"run": run.pk})
        return RetrainingRun.objects.get(pk=run.pk)
    assert isinstance(result, TrainingResult)
    return challenger_adopt(run_id=run.pk, version_id=result.version.pk, actor=actor)


def _read_from(run: RetrainingRun) -> datetime:
    """Where the run's training reads bars from: its window's start, or, when a change point bounds the window,
    the features' warm-up before it (the warm-up rows are not samples: every sample is then a bar of the window,
    after the change, and the window needs only samples + horizon bars, not the warm-up too)."""
    assert run.data_start is not None
    if run.change_point_at is not None:
        return run.data_start - timedelta(minutes=WARMUP_BARS)
    return run.data_start


def retraining_fail(*, run_id: int, error: str, actor: str) -> None:
    with transaction.atomic():
        run = run_lock(run_id)
        if not run.active:
            return
        run.status = RetrainingRun.Status.FAILED
        run.outcome = error[:4000]
        run.finished_at = timezone.now()
        with audit_actor(actor, reason="retraining failed"):
            run.save(update_fields=["status", "outcome", "finished_at"])
        retraining_event(model=run.model, step=Step.TRAINING_FAILED, actor=actor, run=run, detail=error[:4000])


def challenger_metric_gates(version: ModelVersion) -> tuple[bool, list[dict[str, Any]]]:
    """The challenger's metric gates for production (the experiment's win is judged later, by the shadow test)."""
    results = gate_results(version.metrics or {}, gate_config(model=version.model, target=Stage.PRODUCTION))
    return all(r.passed for r in results), [r.__dict__ for r in results]


def challenger_adopt(*, run_id: int, version_id: int, actor: str) -> RetrainingRun:
    """Link the trained version to the run: rejected (and archived) when it fails the metric gates, else the
    `challenger` alias and the shadow state, with `challenger_registered` sent after commit."""
    with transaction.atomic():
        run = run_lock(run_id)
        version = ModelVersion.objects.select_related("model").get(pk=version_id)
        if run.status != RetrainingRun.Status.TRAINING:
            return run
        passed, report = challenger_metric_gates(version)
        run.challenger = version
        run.gate_report = {"target": Stage.PRODUCTION, "passed": passed, "results": report}
        lineage = {
            "parent": run.parent.version if run.parent else None,
            "trigger": run.trigger,
            "drift_report": run.drift_report_id,
            "run": run.pk,
            "training_request_id": run.training_request_id,
        }
        retraining_event(
            model=run.model, step=Step.CHALLENGER_REGISTERED, actor=actor, run=run, version=version, data=lineage,
            detail=f"v{version.version} registered from retraining run {run.pk} (parent v{lineage['parent']}, "
            f"{run.trigger} trigger); metric gates {'passed' if passed else 'failed'}",
        )  # fmt: skip
        if not passed:
            failures = "; ".join(r["detail"] for r in report if not r["passed"])
            run.status = RetrainingRun.Status.REJECTED
            run.outcome = f"the challenger fails its promotion gates: {failures}"
            run.finished_at = timezone.now()
            with audit_actor(actor, reason=run.outcome):
                run.save(update_fields=["challenger", "gate_report", "status", "outcome", "finished_at"])
            services.model_version_archive(
                model_name=run.model.name, version=version.version, reason=run.outcome[:2000], actor=actor
            )
            retraining_event(
                model=run.model, step=Step.REJECTED, actor=actor, run=run, version=version, detail=run.outcome
            )
            return run
        if run.parent is None:
            run.status = RetrainingRun.Status.SHADOW
            with audit_actor(actor, reason="no champion: promoted through the gates alone"):
                run.save(update_fields=["challenger", "gate_report", "status"])
            return retraining_promote_without_champion(run=run, actor=actor)
        services.model_alias_set(
            model_name=run.model.name,
            alias=CHALLENGER_ALIAS,
            version=version.version,
            reason=f"challenger of retraining run {run.pk}",
            actor=actor,
        )
        run.status = RetrainingRun.Status.SHADOW
        with audit_actor(actor, reason="challenger registered; shadow test next"):
            run.save(update_fields=["challenger", "gate_report", "status"])
        payload = {
            "model_name": run.model.name,
            "run_id": run.pk,
            "challenger": version.version,
            "champion": run.parent.version,
        }
        transaction.on_commit(lambda: _announce(payload))
    return run


def _announce(payload: dict[str, Any]) -> None:
    """Send `challenger_registered`; a run no receiver gave an experiment is rejected (it would wait forever)."""
    errors: list[str] = []
    for receiver, result in challenger_registered.send_robust(sender=RetrainingRun, **payload):
        if isinstance(result, Exception):
            errors.append(f"{type(result).__name__}: {getattr(result, 'message', result)}")
            logger.error("challenger_registered receiver failed", extra={"receiver": repr(receiver)}, exc_info=result)
    run = RetrainingRun.objects.get(pk=payload["run_id"])
    if run.status == RetrainingRun.Status.SHADOW and run.experiment_id is None:
        why = "; ".join(errors) or "no receiver started a shadow experiment"
        retraining_reject(run_id=run.pk, reason=f"the shadow test could not start: {why}", actor=ACTOR)


def retraining_promote_without_champion(*, run: RetrainingRun, actor: str) -> RetrainingRun:
    """A model without a champion has nothing to shadow-test against: its challenger goes through the gates."""
    assert run.challenger is not None
    try:
        services.model_version_promote(
            model_name=run.model.name,
            version=run.challenger.version,
            reason=f"retraining run {run.pk}: no champion to test against; promoted through the gates",
            actor=actor,
        )
    except services.PromotionGateFailed as exc:
        return retraining_reject(run_id=run.pk, reason=f"promotion refused by the gates: {exc.message}", actor=actor)
    return retraining_promoted(run_id=run.pk, actor=actor, detail="promoted through the gates (no champion)")


def retraining_experiment_record(*, run_id: int, experiment_id: int, actor: str, detail: str) -> RetrainingRun:
    """The experiments app records the shadow experiment it started for the run's challenger."""
    with transaction.atomic():
        run = run_lock(run_id)
        if run.status != RetrainingRun.Status.SHADOW:
            raise ConflictError(f"retraining run {run_id} is {run.status}, not in its shadow test")
        run.experiment_id = experiment_id
        with audit_actor(actor, reason="shadow experiment started"):
            run.save(update_fields=["experiment_id"])
        retraining_event(
            model=run.model, step=Step.EXPERIMENT_STARTED, actor=actor, run=run, version=run.challenger,
            detail=detail, data={"experiment_id": experiment_id},
        )  # fmt: skip
    return run


def retraining_promoted(*, run_id: int, actor: str, detail: str) -> RetrainingRun:
    """The challenger was promoted (through the registry's gates): the run ends and its probation starts."""
    from models_registry.retraining.probation import probation_start  # reason: probation imports this module

    with transaction.atomic():
        run = run_lock(run_id)
        if not run.active:
            return run
        run.status = RetrainingRun.Status.PROMOTED
        run.outcome = detail
        run.finished_at = timezone.now()
        with audit_actor(actor, reason=detail):
            run.save(update_fields=["status", "outcome", "finished_at"])
        retraining_event(
            model=run.model, step=Step.PROMOTED, actor=actor, run=run, version=run.challenger, detail=detail
        )
        _alias_drop(run, actor)
        assert run.challenger is not None
        probation_start(version=run.challenger, previous=run.parent, run=run, actor=actor)
    return run


def retraining_reject(*, run_id: int, reason: str, actor: str, data: Mapping[str, Any] | None = None) -> RetrainingRun:
    """The run ends without a promotion, saying why; its challenger is archived (it never serves)."""
    with transaction.atomic():
        run = run_lock(run_id)
        if not run.active:
            return run
        run.status = RetrainingRun.Status.REJECTED
        run.outcome = reason[:4000]
        run.finished_at = timezone.now()
        with audit_actor(actor, reason=run.outcome):
            run.save(update_fields=["status", "outcome", "finished_at"])
        _alias_drop(run, actor)
        challenger = run.challenger
        if challenger is not None:
            challenger.refresh_from_db(fields=["stage"])
            if challenger.stage not in (Stage.ARCHIVED, Stage.PRODUCTION):
                services.model_version_archive(
                    model_name=run.model.name, version=challenger.version, reason=run.outcome[:2000], actor=actor
                )
        retraining_event(
            model=run.model, step=Step.REJECTED, actor=actor, run=run, version=challenger, detail=run.outcome,
            data=data,
        )  # fmt: skip
    return run


def _alias_drop(run: RetrainingRun, actor: str) -> None:
    alias = run.model.aliases.filter(name=CHALLENGER_ALIAS).first()
    if alias is not None and run.challenger_id is not None and alias.version_id == run.challenger_id:
        services.model_alias_remove(
            model_name=run.model.name, alias=CHALLENGER_ALIAS, reason=f"retraining run {run.pk} ended", actor=actor
        )
