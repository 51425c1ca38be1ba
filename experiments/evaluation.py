"""Acting on an experiment's verdict (`experiments.analysis`) after its statistics moved: a guardrail breach stops
it at once (the router then serves the champion alone, so a split treatment stops trading) and raises an alert;
decisive evidence concludes it with the winner; the maximum duration concludes it without one. Transitions go
through `experiments.services` (audited, logged, attributed to the evaluation)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from core.errors import ApplicationError
from experiments import services
from experiments.analysis import experiment_analysis
from experiments.models import ACTIVE_STATUSES, Experiment, Status
from trading.alerts import alert_raise, alert_resolve

logger = logging.getLogger(__name__)

ACTOR = "experiments:evaluation"
ALERT_KIND = "experiment_guardrail"
SRM_ALERT_KIND = "experiment_srm"


def experiment_evaluate(*, experiment_id: int, now: datetime | None = None) -> dict[str, Any] | None:
    """Apply the verdict to an active experiment; returns the transition made ({"experiment", "action",
    "reason", ...}) or None."""
    experiment = Experiment.objects.select_related("model").filter(pk=experiment_id).first()
    if experiment is None or experiment.status not in ACTIVE_STATUSES:
        return None
    analysis = experiment_analysis(experiment, now=now)
    verdict = analysis.verdict
    if analysis.srm["status"] == "flag":
        _srm_alert(experiment, analysis.srm)
    elif analysis.srm["status"] == "ok":  # the split matches its allocation again
        alert_resolve(fingerprint=f"{SRM_ALERT_KIND}:experiment:{experiment.pk}")
    try:
        if verdict.state == "guardrail" and verdict.guardrail is not None:
            arm, guard = verdict.guardrail
            services.experiment_stop(
                experiment_id=experiment_id,
                guardrail=guard.name,
                actor=ACTOR,
                reason=verdict.reason,
                evidence=verdict.evidence,
            )
            alert = alert_raise(
                kind=ALERT_KIND,
                severity="critical",
                message=f"experiment {experiment.pk} ({experiment.name}, {experiment.model.name}) stopped: "
                f"{verdict.reason}",
                context={
                    "experiment_id": experiment.pk,
                    "model": experiment.model.name,
                    "arm": arm.name,
                    "version": arm.version.version,
                    "guardrail": guard.as_dict() | {"name": guard.name},
                },
                fingerprint=f"{ALERT_KIND}:experiment:{experiment.pk}",
            )
            return {
                "experiment": experiment.pk,
                "action": "stop",
                "guardrail": guard.name,
                "reason": verdict.reason,
                "alert": alert.pk if alert else None,
            }
        if verdict.state == "decisive" and experiment.status == Status.RUNNING:
            concluded = services.experiment_conclude(experiment_id=experiment_id, actor=ACTOR, reason=verdict.reason)
            winner = concluded.winner.name if concluded.winner else None
            return {"experiment": experiment.pk, "action": "conclude", "winner": winner, "reason": verdict.reason}
        if verdict.state == "expired":
            services.experiment_conclude(experiment_id=experiment_id, actor=ACTOR, reason=verdict.reason)
            return {"experiment": experiment.pk, "action": "conclude", "winner": None, "reason": verdict.reason}
    except ApplicationError as exc:  # an operator moved it meanwhile: their transition stands
        logger.info("experiment evaluation skipped", extra={"experiment": experiment_id, "error": exc.code})
    return None


def _srm_alert(experiment: Experiment, srm: dict[str, Any]) -> None:
    """A flagged sample-ratio mismatch (the router does not split as allocated) is worth a person's attention:
    one alert per experiment while open (a repeat counts), resolved once the split matches again. The experiment
    concludes nothing while flagged."""
    alert_raise(
        kind=SRM_ALERT_KIND,
        severity="warning",
        message=f"experiment {experiment.pk} ({experiment.name}, {experiment.model.name}): {srm['reason']} "
        f"(p = {srm['p_value']:.2g}, counts {srm['counts']})",
        context={"experiment_id": experiment.pk, "model": experiment.model.name, "p_value": srm["p_value"],
                 "counts": srm["counts"], "expected_shares": srm["expected_shares"]},
        fingerprint=f"{SRM_ALERT_KIND}:experiment:{experiment.pk}",
    )  # fmt: skip
