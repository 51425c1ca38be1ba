"""Live events of the model lifecycle and operations pages. The domain apps do not publish these (they know
nothing of the dashboard): the dashboard turns what they already announce into events on the site-wide `system`
group, published after the change commits through `trading.alerts.system_event_publish` (the one sync publisher:
a failure is counted and logged, never raised; the channel layer is lossy and the pages resync over REST anyway).

- `stage`: the registry's `model_stage_changed` (a stage or an alias moved; sent after commit).
- `outcomes`: the registry's `outcomes_matured` (a maturation pass matured or revised outcomes; the experiments
  app folds them into its statistics on the same signal).
- `experiment`: an experiment saved (a transition, a conclusion, a guardrail stop, a promotion).
- `drift`: a drift report recorded.
- `reconciliation`: a reconciliation run or a discrepancy saved.

`connect()` wires the receivers once per process (idempotent)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.db.models.signals import post_save
from django.utils import timezone

from experiments.models import Experiment
from models_registry.models import DriftReport
from models_registry.signals import model_stage_changed, outcomes_matured
from reconciliation.models import Discrepancy, ReconciliationRun
from trading.alerts import system_event_publish


def _publish_after_commit(event: dict[str, Any]) -> None:
    event = {**event, "at": timezone.now().isoformat()}
    transaction.on_commit(lambda: system_event_publish(event))


def stage_changed(sender: Any = None, *, model_name: str, events: list[dict[str, Any]] | None = None, **_: Any) -> None:
    versions = sorted({int(e["version"]) for e in events or [] if e.get("version") is not None})
    at = timezone.now().isoformat()
    system_event_publish({"topic": "stage", "model": model_name, "versions": versions, "at": at})


def matured(sender: Any = None, *, version_ids: list[int], matured: int = 0, revised: int = 0, **_: Any) -> None:
    system_event_publish(
        {
            "topic": "outcomes",
            "version_ids": list(version_ids),
            "matured": matured,
            "revised": revised,
            "at": timezone.now().isoformat(),
        }
    )


def experiment_saved(sender: Any, instance: Experiment, created: bool = False, **_: Any) -> None:
    _publish_after_commit(
        {"topic": "experiment", "experiment_id": instance.pk, "status": instance.status, "created": created}
    )


def drift_report_saved(sender: Any, instance: DriftReport, created: bool = False, **_: Any) -> None:
    if created:
        _publish_after_commit(
            {
                "topic": "drift",
                "report_id": instance.pk,
                "version_id": instance.version_id,
                "status": instance.status,
                "confirmed": instance.confirmed,
            }
        )


def reconciliation_saved(sender: Any, instance: ReconciliationRun | Discrepancy, **_: Any) -> None:
    kind = "run" if isinstance(instance, ReconciliationRun) else "discrepancy"
    _publish_after_commit({"topic": "reconciliation", "kind": kind, "id": instance.pk, "status": instance.status})


RECEIVERS: list[tuple[Any, Callable[..., None], type | None]] = [
    (model_stage_changed, stage_changed, None),
    (outcomes_matured, matured, None),
    (post_save, experiment_saved, Experiment),
    (post_save, drift_report_saved, DriftReport),
    (post_save, reconciliation_saved, ReconciliationRun),
    (post_save, reconciliation_saved, Discrepancy),
]


def connect() -> None:
    """Connect every receiver (idempotent: each has a dispatch uid)."""
    for signal, receiver, sender in RECEIVERS:
        uid = f"dashboard.lifecycle.events.{receiver.__name__}.{getattr(sender, '__name__', 'any')}"
        signal.connect(receiver, sender=sender, weak=False, dispatch_uid=uid)
