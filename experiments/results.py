"""The results document of an experiment (API, admin, dashboards): per arm its counts and metrics with intervals,
per treatment the difference from the control on every metric with its always-valid p (and Holm-adjusted),
guardrail states, the sample-ratio check, the verdict, the cumulative series for charts and the event log.
Computed from the sufficient statistics (`experiments.analysis`), never from the outcomes themselves: the
cost does not grow with the number of outcomes. The shape is documented in /work/notes/experiments_contract.md
and the README."""

from __future__ import annotations

from typing import Any

from core.errors import NotFoundError
from experiments.analysis import ArmView, arm_metric, experiment_analysis
from experiments.intake import METRICS
from experiments.models import Arm, Experiment, Mode
from experiments.selectors import arm_trading


def _arm(view: ArmView, alpha: float) -> dict[str, Any]:
    arm, stats = view.arm, view.stats
    out: dict[str, Any] = {
        "name": arm.name,
        "role": arm.role,
        "version": arm.version.version,
        "version_id": arm.version_id,
        "allocation_percent": str(arm.allocation_percent),
        "n_assigned": stats.n_assigned,
        "n_errors": stats.n_errors,
        "n_outcomes": stats.n_outcomes,
        "metrics": {m: arm_metric(view.state.streams[m], m, alpha, view.state.horizon) for m in METRICS},
        "drawdown": float(view.state.drawdown.get("max", 0.0)),
        "guardrails": {k: g.as_dict() for k, g in view.guardrails.items()},
        "comparison": None,
    }
    if arm.role == Arm.Role.TREATMENT and view.comparison_state is not None:
        out["comparison"] = {
            "n": view.comparison.n if view.comparison else 0,
            "metrics": {m: v.as_dict() for m, v in view.metrics.items()},
        }
    return out


def experiment_results(experiment_id: int) -> dict[str, Any]:
    experiment = Experiment.objects.select_related("model", "winner__version").filter(pk=experiment_id).first()
    if experiment is None:
        raise NotFoundError(f"experiment {experiment_id} does not exist", details={"experiment": experiment_id})
    analysis = experiment_analysis(experiment)
    paired = experiment.mode == Mode.SHADOW
    trading = arm_trading(experiment=experiment)
    empty = {"decisions": 0, "orders": 0, "fills": 0, "filled_notional": "0", "fees": "0", "realised_pnl": "0"}
    arms = []
    for view in analysis.arms:
        entry = _arm(view, experiment.alpha)
        entry["trading"] = {**empty, **trading.get(view.arm.version.version, {})}
        if entry["comparison"] is not None:
            entry["comparison"]["paired"] = paired
            if paired and view.comparison_state is not None:
                entry["comparison"]["mcnemar"] = dict(view.comparison_state.mcnemar)
        arms.append(entry)
    verdict = analysis.verdict
    series = []
    for view in analysis.arms:
        if view.comparison_state is None:
            continue
        for at, n, estimate, p in view.comparison_state.series:
            series.append({"arm": view.arm.name, "at": at, "n": n, "delta": estimate, "p": p})
    series.sort(key=lambda point: (point["at"], point["arm"]))
    events = [
        {
            "action": e.action,
            "from_status": e.from_status,
            "to_status": e.to_status,
            "actor": e.actor,
            "reason": e.reason,
            "details": e.details,
            "at": e.at.isoformat(),
        }
        for e in experiment.events.order_by("at", "id")
    ]
    return {
        "experiment": {
            "id": experiment.pk,
            "name": experiment.name,
            "model": experiment.model.name,
            "mode": experiment.mode,
            "status": experiment.status,
            "primary_metric": experiment.primary_metric,
            "alpha": experiment.alpha,
            "minimum_sample": experiment.minimum_sample,
            "maximum_duration_seconds": experiment.maximum_duration.total_seconds(),
            "burn_in": experiment.burn_in,
            "mixing_variance": experiment.mixing_variance,
            "created_by": experiment.created_by,
            "created_at": experiment.created_at.isoformat(),
            "started_at": experiment.started_at.isoformat() if experiment.started_at else None,
            "ended_at": experiment.ended_at.isoformat() if experiment.ended_at else None,
            "winner": experiment.winner.name if experiment.winner else None,
            "winner_version": experiment.winner.version.version if experiment.winner else None,
            "stopped_guardrail": experiment.stopped_guardrail or None,
            "status_reason": experiment.status_reason,
            "promoted_at": experiment.promoted_at.isoformat() if experiment.promoted_at else None,
        },
        "as_of": analysis.as_of.isoformat(),
        "arms": arms,
        "srm": analysis.srm,
        "decision": {
            "state": verdict.state,
            "winner": verdict.winner.name if verdict.winner else None,
            "reason": verdict.reason,
        },
        "series": series,
        "events": events,
        "notes": {
            "p_value": "always-valid (mixture SPRT, variance fixed on a burn-in): valid whenever it is read",
            "p_holm": "Holm-adjusted over every (treatment, metric); guardrails are not corrected",
            "ci": "always-valid confidence sequence at alpha, from the outcomes after the burn-in",
            "fixed": "a fixed-sample test for reference: valid only at a sample size planned in advance",
        },
    }
