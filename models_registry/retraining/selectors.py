"""Reads of the retraining loop: a model's runs, one run with its triggers and steps, and the model's lifecycle
timeline (stage moves and retraining steps in one time order) that its history shows."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from models_registry.models import StageEvent
from models_registry.retraining.models import Probation, RetrainingEvent, RetrainingRun


def retraining_run_list(*, model_name: str, status: str | None = None) -> QuerySet[RetrainingRun]:
    qs = RetrainingRun.objects.select_related("model", "parent", "challenger").filter(model__name=model_name)
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-created_at", "-id")


def retraining_run_get(*, model_name: str, run_id: int) -> RetrainingRun | None:
    return (
        RetrainingRun.objects.select_related("model", "parent", "challenger", "drift_report")
        .prefetch_related("triggers", "events__version")
        .filter(model__name=model_name, pk=run_id)
        .first()
    )


def probation_list(*, model_name: str) -> QuerySet[Probation]:
    return Probation.objects.select_related("version", "previous").filter(model__name=model_name)


def lifecycle_timeline(*, model_name: str, version: int | None = None) -> list[dict[str, Any]]:
    """The model's stage and alias moves and its retraining steps, oldest first, as one list of entries:
    `{"origin": "stage" | "retraining", "at", "kind", "version", "actor", "reason", ...}` (trigger -> report ->
    training -> challenger -> experiment -> promotion or rejection -> probation -> rollback)."""
    stages = StageEvent.objects.select_related("version", "previous_version").filter(model__name=model_name)
    steps = RetrainingEvent.objects.select_related("version").filter(model__name=model_name)
    if version is not None:
        stages = stages.filter(version__version=version)
        steps = steps.filter(version__version=version)
    entries: list[dict[str, Any]] = [
        {
            "origin": "stage",
            "id": e.pk,
            "at": e.at,
            "kind": e.kind,
            "version": e.version.version,
            "from_stage": e.from_stage,
            "to_stage": e.to_stage,
            "alias": e.alias,
            "actor": e.actor,
            "reason": e.reason,
            "run": None,
            "details": {"gate_overridden": e.gate_overridden},
        }
        for e in stages
    ]
    entries += [
        {
            "origin": "retraining",
            "id": e.pk,
            "at": e.at,
            "kind": e.step,
            "version": e.version.version if e.version else None,
            "from_stage": "",
            "to_stage": "",
            "alias": "",
            "actor": e.actor,
            "reason": e.detail,
            "run": e.run_id,
            "details": e.data,
        }
        for e in steps
    ]
    entries.sort(key=lambda row: (row["at"], row["origin"] != "retraining", row["id"]))
    return entries
