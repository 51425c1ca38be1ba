"""What turns into a retraining trigger without an operator (beat, every minute; also callable directly):

- every confirmed drift report (sustained over consecutive checks, or an online detector's change point) on a
  model's champion that has not triggered yet: one trigger each, in the order the checks ran (the first starts a
  run, later ones join it, or are suppressed by the cooldown after it). A report whose change point is known
  (`services.change_point_of`) waits until the bars after it fill the policy's `min_window_hours`
  (`services.ready_at`), so the run trains on the new regime, not mostly on the one that ended;
- a due schedule: the policy's `schedule_hours` since the model's last started run (or since the champion was
  registered when it never retrained);
- runs stuck queued or training past the task's time limit (a lost worker) are abandoned, so the next trigger
  starts again.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from models_registry import lock_objects
from models_registry.models import DriftReport, RegisteredModel
from models_registry.retraining.models import RetrainingRun, RetrainingTrigger, TriggerKind
from models_registry.retraining.services import (
    ACTOR,
    abandon_stale,
    last_started_at,
    ready_at,
    retraining_policy,
    retraining_trigger,
)
from models_registry.selectors import production_version

SCAN_ACTOR = f"{ACTOR}:scan"


def retraining_scan(*, now: datetime | None = None) -> dict[str, Any]:
    """One pass (see the module doc); returns what it did."""
    now = now or timezone.now()
    done: dict[str, Any] = {"drift": [], "waiting": [], "schedule": [], "abandoned": []}
    for model in RegisteredModel.objects.order_by("pk"):
        stale = RetrainingRun.objects.filter(
            model=model, status__in=[RetrainingRun.Status.QUEUED, RetrainingRun.Status.TRAINING]
        ).first()
        if stale is not None:
            with transaction.atomic():
                lock_objects.registered_model_lock(name=model.name)
                if abandon_stale(run_id=stale.pk, actor=SCAN_ACTOR):
                    done["abandoned"].append(stale.pk)
        champion = production_version(model_name=model.name)
        if champion is None:
            continue
        reports = (
            DriftReport.objects.filter(model=model, version=champion, confirmed=True, status=DriftReport.Status.DRIFT)
            .exclude(pk__in=RetrainingTrigger.objects.filter(drift_report__isnull=False).values("drift_report"))
            .order_by("as_of", "id")
        )
        for report in reports:
            ready = ready_at(model=model, report=report)
            if ready > now:
                done["waiting"].append({"drift_report": report.pk, "until": ready.isoformat()})
                continue
            reason = f"drift confirmed on v{champion.version} at {report.as_of.isoformat()}"
            if ready > report.as_of:
                hours = retraining_policy(model=model).min_window_hours
                reason += f" (waited for {hours:g} h of bars after the change)"
            result = retraining_trigger(
                model_name=model.name,
                kind=TriggerKind.DRIFT,
                reason=reason,
                actor=SCAN_ACTOR,
                drift_report_id=report.pk,
                now=ready,
            )
            done["drift"].append(result.as_dict())
        policy = retraining_policy(model=model)
        if policy.enabled and policy.schedule_hours > 0:
            since = last_started_at(model) or champion.created_at
            if now - since >= timedelta(hours=policy.schedule_hours):
                result = retraining_trigger(
                    model_name=model.name,
                    kind=TriggerKind.SCHEDULE,
                    reason=f"scheduled every {policy.schedule_hours:g} h (last {since.isoformat()})",
                    actor=SCAN_ACTOR,
                    now=now,
                )
                done["schedule"].append(result.as_dict())
    return done
