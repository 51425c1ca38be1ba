"""Model-registry tasks (routed to the `lifecycle` queue by `models_registry.tasks.*`): thin, primitives in, a
service called, safe to run twice (the training request id keys the work)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from celery import shared_task

from core.audit import audit_actor
from core.errors import ApplicationError
from models_registry.bootstrap import bootstrap_model
from models_registry.drift.checks import drift_check, drift_check_versions
from models_registry.outcomes import outcomes_mature
from models_registry.retraining import tasks as retraining_tasks  # noqa: F401 (registers the retraining tasks)
from models_registry.training import TrainingConfig, TrainingResult, min_training_samples, train_model

logger = logging.getLogger(__name__)

TASK_ACTOR = "celery:models_registry.tasks.train_model_task"


@shared_task(name="models_registry.tasks.train_model_task", acks_late=True)
def train_model_task(
    *,
    request_id: str,
    symbol: str,
    start: str,
    end: str,
    model: str = "hgb",
    horizon: int | None = None,
    model_name: str | None = None,
    n_trials: int = 1,
    seed: int = 0,
    dead_zone: float | str | None = None,
) -> dict[str, Any]:
    """Train and register one version for `request_id` (ISO 8601 window). A redelivered or repeated task
    returns the version the request already registered; a refused request (too few bars, in progress
    elsewhere) returns its error instead of retrying: more attempts cannot help."""
    config = TrainingConfig(
        model=model,  # type: ignore[arg-type]
        horizon=horizon or TrainingConfig.horizon,
        seed=seed,
        dead_zone=dead_zone,  # type: ignore[arg-type]
        min_samples=min_training_samples(),
    )
    try:
        with audit_actor(TASK_ACTOR):
            result = train_model(
                symbol=symbol,
                start=datetime.fromisoformat(start),
                end=datetime.fromisoformat(end),
                config=config,
                model_name=model_name,
                request_id=request_id,
                n_trials=n_trials,
                actor=TASK_ACTOR,
            )
    except ApplicationError as exc:
        return {"request_id": request_id, "status": "refused", "error": exc.code, "message": exc.message}
    assert isinstance(result, TrainingResult)
    return {"status": "succeeded", **result.as_dict()}


@shared_task(name="models_registry.tasks.bootstrap_model_task", acks_late=True)
def bootstrap_model_task(symbol: str) -> dict[str, Any]:
    """First start: when the symbol has no production model, backfill, train, register and promote through the
    gates (never overriding them). Safe to run again: it does nothing once a version is in production."""
    with audit_actor("celery:models_registry.tasks.bootstrap_model_task", reason=f"bootstrap {symbol}"):
        result = bootstrap_model(symbol=symbol)
    return {"symbol": symbol, "status": result.status, "version": result.version, "message": result.message}


@shared_task(name="models_registry.tasks.outcomes_mature_task", acks_late=True)
def outcomes_mature_task() -> dict[str, Any]:
    """Mature the outcomes of predictions whose horizon has passed, re-check recent ones, then check the
    versions touched for degradation and tell the receivers of `outcomes_matured` (experiments). Safe to run twice
    or concurrently (single-flight; a replay writes nothing)."""
    with audit_actor("celery:models_registry.tasks.outcomes_mature_task"):
        return outcomes_mature().as_dict()


@shared_task(name="models_registry.tasks.drift_check_task", acks_late=True)
def drift_check_task(*, trigger: str = "schedule", version_id: int | None = None) -> dict[str, Any]:
    """Drift checks (models_registry.drift.checks): of one version, or of every production and staging version.
    Each check records its own report; a check of a version already running is skipped."""
    actor = "celery:models_registry.tasks.drift_check_task"
    reports = []
    with audit_actor(actor):
        for pk in [version_id] if version_id is not None else drift_check_versions():
            report = drift_check(version_id=pk, trigger=trigger, actor=actor)
            reports.append(
                {"version_id": pk, "skipped": True}
                if report is None
                else {"version_id": pk, "report": report.pk, "status": report.status, "confirmed": report.confirmed}
            )
    return {"checks": reports}
