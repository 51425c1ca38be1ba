"""Probation and rollback. A version that enters production (through a retraining's experiment, or any other
promotion: the check picks those up from the stage log) is watched for the policy's `probation_hours`:

- worse than its validation by more than the degradation margin (`outcomes.degradation.degradation_assess`: the
  live hit rate's or net return's upper 95 % bound below validation less 10 %, on at least
  MODELS_REGISTRY_DEGRADATION_MIN_OUTCOMES matured outcomes), or
- worse than the previous champion's live record: its live net return per prediction's upper 95 % bound (HAC
  interval, `evaluation.intervals.mean_interval`) below the previous champion's live mean over the same number
  of latest outcomes, each side with at least the degradation check's minimum of matured outcomes,

and it is rolled back to the previous champion through the registry's audited stage moves: in one transaction
the failing version is archived and the previous champion promoted back (its metric gates are checked again;
the experiment gate has no champion left to compare it with), so readers see one production version before and
after; serving processes follow through the model's generation counter (`selectors.model_generation`), and a
critical `model_rollback` alert says what happened. A rollback the gates refuse leaves the version in production
and raises a critical alert for an operator instead. When the window passes without either, probation passes.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.audit import audit_actor
from core.errors import ApplicationError
from models_registry import lock_objects, services
from models_registry.evaluation.intervals import mean_interval, overlap_max_lag
from models_registry.models import ModelVersion, Stage, StageEvent
from models_registry.outcomes.arrays import matured_arrays
from models_registry.outcomes.degradation import degradation_assess
from models_registry.outcomes.rules import OutcomeRule
from models_registry.retraining.models import Probation, RetrainingEvent, RetrainingRun
from models_registry.retraining.services import ACTOR, retraining_event, retraining_policy
from trading.alerts import alert_raise

logger = logging.getLogger(__name__)

PROBATION_ACTOR = f"{ACTOR}:probation"
ALERT_KIND = "model_rollback"
Step = RetrainingEvent.Step


def probation_start(
    *,
    version: ModelVersion,
    previous: ModelVersion | None,
    run: RetrainingRun | None = None,
    actor: str = PROBATION_ACTOR,
    now: datetime | None = None,
) -> Probation:
    """Start watching `version` (just promoted; `previous` is the champion it replaced). Idempotent per version."""
    now = now or timezone.now()
    policy = retraining_policy(model=version.model)
    with audit_actor(actor, reason="probation started"):
        probation, created = Probation.objects.get_or_create(
            version=version,
            defaults={
                "model": version.model,
                "previous": previous,
                "run": run,
                "started_at": now,
                "until": now + timedelta(hours=policy.probation_hours),
            },
        )
    if created:
        retraining_event(
            model=version.model, step=Step.PROBATION_STARTED, actor=actor, run=run, version=version,
            detail=f"v{version.version} on probation until {probation.until.isoformat()} "
            f"(rollback target v{previous.version if previous else '-'})",
        )  # fmt: skip
    return probation


def _previous_champion(event: StageEvent) -> ModelVersion | None:
    """The version the promotion `event` replaced (archived in the same transaction, at the same instant)."""
    replaced = (
        StageEvent.objects.select_related("version")
        .filter(model_id=event.model_id, kind=StageEvent.Kind.STAGE, from_stage=Stage.PRODUCTION, at=event.at)
        .exclude(version_id=event.version_id)
        .first()
    )
    return replaced.version if replaced is not None else None


def probation_watch_promotions(*, now: datetime | None = None) -> list[int]:
    """Put production versions promoted within their probation window, and not watched yet, on probation (an
    operator's promotion is watched as a retraining's is)."""
    now = now or timezone.now()
    started: list[int] = []
    for version in ModelVersion.objects.select_related("model").filter(stage=Stage.PRODUCTION, probation__isnull=True):
        promoted = (
            StageEvent.objects.filter(version=version, kind=StageEvent.Kind.STAGE, to_stage=Stage.PRODUCTION)
            .order_by("-at", "-id")
            .first()
        )
        if promoted is None:
            continue
        hours = retraining_policy(model=version.model).probation_hours
        if hours <= 0 or now - promoted.at > timedelta(hours=hours):
            continue
        previous = _previous_champion(promoted)
        if previous is None:
            continue  # a first champion has nothing to roll back to
        if Probation.objects.filter(version=previous, status=Probation.Status.ROLLED_BACK).exists():
            continue  # restored by a rollback: watching it against the version that failed would flip-flop
        probation = probation_start(version=version, previous=previous, now=promoted.at)
        started.append(probation.pk)
    return started


def _net_interval(version: ModelVersion, window: int) -> Any:
    arrays = matured_arrays(version).tail(window)
    horizon = OutcomeRule.of(version.hyperparameters).horizon or 1
    return mean_interval(arrays.net, lags=overlap_max_lag(horizon))


def probation_assess(probation: Probation) -> dict[str, Any]:
    """Both probation rules on the version's latest matured outcomes (see the module doc)."""
    version = probation.version
    degradation = degradation_assess(version=version)
    reasons = list(degradation["reasons"])
    report: dict[str, Any] = {"degradation": degradation}
    previous = probation.previous
    minimum = int(settings.MODELS_REGISTRY_DEGRADATION_MIN_OUTCOMES)
    if previous is not None:
        window = int(settings.MODELS_REGISTRY_DEGRADATION_WINDOW)
        mine = _net_interval(version, window)
        theirs = _net_interval(previous, window)
        compared = mine.n >= minimum and theirs.n >= minimum and math.isfinite(mine.high)
        worse = compared and mine.high < theirs.mean
        report["vs_previous"] = {
            "previous_version": previous.version,
            "live_mean": mine.mean,
            "live_high": mine.high,
            "n": mine.n,
            "previous_mean": theirs.mean,
            "previous_n": theirs.n,
            "compared": compared,
            "worse": worse,
        }
        if worse:
            reasons.append(
                f"net return per prediction {mine.mean:.6f} (upper {mine.high:.6f}, n={mine.n}) below the previous "
                f"champion v{previous.version}'s live {theirs.mean:.6f} (n={theirs.n})"
            )
    report["reasons"] = reasons
    report["failed"] = bool(reasons)
    return report


def probation_check(*, now: datetime | None = None) -> dict[str, Any]:
    """One pass over the versions on probation: rolled back, passed, ended or still watched."""
    now = now or timezone.now()
    done: dict[str, Any] = {
        "started": probation_watch_promotions(now=now),
        "rolled_back": [],
        "passed": [],
        "ended": [],
    }
    for probation in Probation.objects.select_related("version__model", "previous", "model").filter(
        status=Probation.Status.WATCHING
    ):
        if probation.version.stage != Stage.PRODUCTION:
            _finish(probation, Probation.Status.ENDED, f"v{probation.version.version} left production", now)
            done["ended"].append(probation.pk)
            continue
        report = probation_assess(probation)
        Probation.objects.filter(pk=probation.pk).update(checked_at=now, last_report=_jsonable(report))
        if report["failed"]:
            if probation_rollback(probation_id=probation.pk, reasons=report["reasons"], report=report):
                done["rolled_back"].append(probation.pk)
        elif now >= probation.until:
            _finish(probation, Probation.Status.PASSED, "no degradation during the probation window", now)
            retraining_event(
                model=probation.model, step=Step.PROBATION_PASSED, actor=PROBATION_ACTOR, run=probation.run,
                version=probation.version, detail=f"v{probation.version.version} passed its probation",
            )  # fmt: skip
            done["passed"].append(probation.pk)
    return done


def _finish(probation: Probation, status: str, outcome: str, now: datetime) -> None:
    probation.status = status
    probation.outcome = outcome
    probation.checked_at = now
    with audit_actor(PROBATION_ACTOR, reason=outcome):
        probation.save(update_fields=["status", "outcome", "checked_at"])


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return _jsonable(value.item())
    return value


def probation_rollback(
    *, probation_id: int, reasons: list[str], report: dict[str, Any] | None = None, actor: str = PROBATION_ACTOR
) -> bool:
    """Roll the version on probation back to the previous champion (see the module doc); True when done."""
    why = "; ".join(reasons) or "probation failed"
    probation = Probation.objects.select_related("version__model", "previous", "model", "run").get(pk=probation_id)
    model_name = probation.model.name
    version, previous = probation.version, probation.previous
    try:
        with transaction.atomic():
            lock_objects.registered_model_lock(name=model_name)
            locked = Probation.objects.select_for_update().get(pk=probation_id)
            version.refresh_from_db(fields=["stage"])
            if locked.status != Probation.Status.WATCHING or version.stage != Stage.PRODUCTION:
                return False
            if previous is None:
                raise ApplicationError("no previous champion to roll back to", code="no_rollback_target")
            services.model_version_archive(
                model_name=model_name, version=version.version, reason=f"rolled back: {why}", actor=actor
            )
            services.model_version_promote(
                model_name=model_name,
                version=previous.version,
                reason=f"rollback: v{version.version} failed its probation ({why}); v{previous.version} restored",
                actor=actor,
            )
            _finish(locked, Probation.Status.ROLLED_BACK, why, timezone.now())
            retraining_event(
                model=probation.model, step=Step.ROLLED_BACK, actor=actor, run=probation.run, version=previous,
                detail=f"v{version.version} rolled back to v{previous.version}: {why}",
                data=_jsonable(report or {}),
            )  # fmt: skip
    except ApplicationError as exc:
        retraining_event(
            model=probation.model, step=Step.ROLLBACK_REFUSED, actor=actor, run=probation.run, version=version,
            detail=f"rollback of v{version.version} refused ({exc.message}); it stays in production: {why}",
        )  # fmt: skip
        alert_raise(
            kind=ALERT_KIND,
            severity="critical",
            message=f"{model_name} v{version.version} failed its probation ({why}) but the rollback was refused: "
            f"{exc.message}. An operator must decide.",
            context={"model": model_name, "version": version.version, "probation_id": probation_id, "refused": True},
            fingerprint=f"{ALERT_KIND}:{model_name}:v{version.version}",
        )
        return False
    alert = alert_raise(
        kind=ALERT_KIND,
        severity="critical",
        message=f"{model_name} rolled back from v{version.version} to v{previous.version}: {why}",
        context={
            "model": model_name,
            "version": version.version,
            "restored_version": previous.version,
            "probation_id": probation_id,
            "reasons": reasons,
        },
        fingerprint=f"{ALERT_KIND}:{model_name}:v{version.version}",
    )
    if alert is not None:
        Probation.objects.filter(pk=probation_id).update(alert_id=alert.pk)
    logger.critical("model rolled back", extra={"model": model_name, "from": version.version, "to": previous.version})
    return True
