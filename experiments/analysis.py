"""What an experiment's sufficient statistics say: per arm metrics, per treatment the difference from the control
on every metric (always-valid p, its confidence sequence, Holm across metrics x treatments, a fixed-sample test
for reference), the guardrails, the sample-ratio check, and the verdict the intake acts on. Reads only the
`ArmStatistics` and `Comparison` rows (O(arms x metrics), whatever the number of outcomes).

Decision rule (`experiment_verdict`):
1. a guardrail breached by a treatment (guardrails are not corrected for multiplicity): stop;
2. a split experiment whose SRM check is flagged (p < 0.001) concludes nothing: the router is suspect;
3. a treatment whose primary metric's always-valid p, Holm-adjusted over every (treatment, metric), is below
   alpha, is better than the control, and has the minimum sample: it wins (the best such treatment); when every
   treatment is significantly worse with the minimum sample, the control wins;
4. the maximum duration passed without 3: concluded without a winner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.utils import timezone

from experiments.intake import (
    LATENCY_BOUNDS_MS,
    METRICS,
    ArmState,
    ComparisonState,
    arm_horizon,
    pair_horizon,
)
from experiments.models import Arm, ArmStatistics, Comparison, Experiment, Guardrail, Metric, Mode, Status
from experiments.sequential import Stream, always_valid_interval, paired_look, two_sample_look
from experiments.statistics import holm, mcnemar, srm, two_proportions, welch_t_summary, z_test_summary
from models_registry.evaluation.intervals import Z_95, wilson_interval

LOWER_IS_BETTER = {Metric.LOG_LOSS}
GUARDRAIL_MIN_N = 20  # error-rate and latency guardrails judge from this many predictions on
LATENCY_SLOW_SHARE = 0.01  # the latency guardrail bounds the p99: breached when more than 1 % are slower
SRM_FLAG, SRM_WARN = 0.001, 0.01
SRM_MIN_TOTAL = 50


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


@dataclass
class MetricView:
    n: int
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    p_value: float
    ready: bool
    fixed: dict[str, Any] | None
    p_holm: float = 1.0
    better: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "estimate": self.estimate,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "p_value": self.p_value,
            "p_holm": self.p_holm,
            "ready": self.ready,
            "better": self.better,
            "fixed": self.fixed,
        }


@dataclass
class GuardrailView:
    name: str
    observed: float | None
    threshold: float | None
    n: int
    breached: bool

    def as_dict(self) -> dict[str, Any]:
        return {"observed": self.observed, "threshold": self.threshold, "n": self.n, "breached": self.breached}


@dataclass
class ArmView:
    arm: Arm
    stats: ArmStatistics
    state: ArmState
    comparison: Comparison | None = None
    comparison_state: ComparisonState | None = None
    metrics: dict[str, MetricView] = field(default_factory=dict)
    guardrails: dict[str, GuardrailView] = field(default_factory=dict)


@dataclass
class Verdict:
    state: str  # collecting | decisive | guardrail | expired | final
    winner: Arm | None
    reason: str
    guardrail: tuple[Arm, GuardrailView] | None = None
    evidence: dict[str, Any] = field(default_factory=dict)


@dataclass
class Analysis:
    experiment: Experiment
    arms: list[ArmView]
    srm: dict[str, Any]
    verdict: Verdict
    as_of: datetime


def arm_metric(stream: Stream, metric: str, alpha: float, horizon: int | None = None) -> dict[str, Any]:
    """An arm's own metric with a 95 % interval over every outcome. Outcomes of predictions made every bar over
    an h-bar horizon overlap, so they carry about n / h independent observations (exactly for h-bar sums of
    independent bar returns, whose long-run variance is h x their variance): Wilson on n / h for the hit rate,
    else mean -/+ z sqrt(h s^2 / n)."""
    n = stream.all.n
    mean = _finite(stream.all.mean)
    h = max(int(horizon or 1), 1)
    if n == 0 or mean is None:
        return {"n": n, "mean": None, "ci_low": None, "ci_high": None}
    if metric == Metric.HIT_RATE:
        low, high = wilson_interval(mean * n / h, n / h)
        return {"n": n, "mean": mean, "ci_low": low, "ci_high": high}
    variance = stream.all.variance
    if not math.isfinite(variance) or n < 2:
        return {"n": n, "mean": mean, "ci_low": None, "ci_high": None}
    half = Z_95 * math.sqrt(h * variance / n)
    return {"n": n, "mean": mean, "ci_low": mean - half, "ci_high": mean + half}


def _comparison_metric(experiment: Experiment, metric: str, control: ArmView, treatment: ArmView) -> MetricView:
    assert treatment.comparison_state is not None
    cstate = treatment.comparison_state
    alpha = experiment.alpha
    p_value = float(cstate.p.get(metric, 1.0))
    fixed: dict[str, Any] | None = None
    if experiment.mode == Mode.SHADOW:
        stream = cstate.streams[metric]
        n = stream.all.n
        estimate = _finite(stream.all.mean)
        look = paired_look(stream, experiment.mixing_variance)
        if metric == Metric.HIT_RATE and n:
            b, c = cstate.mcnemar["only_control_right"], cstate.mcnemar["only_treatment_right"]
            fixed = {**mcnemar(b, c).as_dict(), "note": "fixed-sample test: valid at a pre-planned n only"}
        elif n >= 2 and estimate is not None:
            variance = stream.all.variance
            if math.isfinite(variance):
                h = max(cstate.horizon or 1, 1)
                fixed = {
                    **z_test_summary(estimate, h * variance / n, alpha=alpha).as_dict(),
                    "note": "paired z, variance x horizon for overlap; fixed-sample: valid at a pre-planned n only",
                }
    else:
        c_stream, t_stream = control.state.streams[metric], treatment.state.streams[metric]
        n = min(c_stream.all.n, t_stream.all.n)
        estimate = _finite(t_stream.all.mean - c_stream.all.mean) if n else None
        look = two_sample_look(c_stream, t_stream, experiment.mixing_variance)
        if n >= 2:
            if metric == Metric.HIT_RATE:
                result = two_proportions(
                    round(c_stream.all.mean * c_stream.all.n), c_stream.all.n,
                    round(t_stream.all.mean * t_stream.all.n), t_stream.all.n, alpha=alpha,
                )  # fmt: skip
            else:
                h_c, h_t = max(control.state.horizon or 1, 1), max(treatment.state.horizon or 1, 1)
                result = welch_t_summary(
                    c_stream.all.mean, h_c * c_stream.all.variance, c_stream.all.n,
                    t_stream.all.mean, h_t * t_stream.all.variance, t_stream.all.n, alpha=alpha,
                )  # fmt: skip
            fixed = {**result.as_dict(), "note": "fixed-sample test: valid at a pre-planned n only"}
    ci_low = ci_high = None
    if look is not None:
        low, high = always_valid_interval(look.estimate, look.var_mean, look.tau2, alpha)
        ci_low, ci_high = _finite(low), _finite(high)
    return MetricView(n, estimate, ci_low, ci_high, p_value, look is not None, fixed)


def _better(metric: str, view: MetricView, alpha: float) -> str | None:
    if view.estimate is None or view.p_holm >= alpha or view.estimate == 0:
        return None
    treatment_higher = view.estimate > 0
    return "treatment" if treatment_higher != (metric in LOWER_IS_BETTER) else "control"


def _guardrails(experiment: Experiment, view: ArmView) -> dict[str, GuardrailView]:
    s = view.stats
    drawdown = float(view.state.drawdown.get("max", 0.0))
    error_rate = s.n_errors / s.n_assigned if s.n_assigned else None
    slow_share = s.n_slow / s.n_latency if s.n_latency else None
    out: dict[str, GuardrailView] = {
        Guardrail.DRAWDOWN: GuardrailView(
            Guardrail.DRAWDOWN,
            drawdown,
            experiment.max_treatment_drawdown,
            s.n_outcomes,
            experiment.max_treatment_drawdown is not None and drawdown > experiment.max_treatment_drawdown,
        ),
        Guardrail.ERROR_RATE: GuardrailView(
            Guardrail.ERROR_RATE,
            error_rate,
            experiment.max_error_rate,
            s.n_assigned,
            experiment.max_error_rate is not None
            and error_rate is not None
            and s.n_assigned >= GUARDRAIL_MIN_N
            and error_rate > experiment.max_error_rate,
        ),
        Guardrail.LATENCY: GuardrailView(
            Guardrail.LATENCY,
            latency_p99(view.state.latency_buckets),
            experiment.max_latency_ms,
            s.n_latency,
            experiment.max_latency_ms is not None
            and slow_share is not None
            and s.n_latency >= GUARDRAIL_MIN_N
            and slow_share > LATENCY_SLOW_SHARE,
        ),
    }
    return out


def latency_p99(buckets: list[int]) -> float | None:
    """The upper bound (ms) of the latency bucket holding the 99th percentile (None without timings; the last,
    open bucket reads as twice the largest bound)."""
    total = sum(buckets)
    if not total:
        return None
    running = 0
    for i, count in enumerate(buckets):
        running += count
        if running >= 0.99 * total:
            return float(LATENCY_BOUNDS_MS[i]) if i < len(LATENCY_BOUNDS_MS) else 2.0 * LATENCY_BOUNDS_MS[-1]
    return 2.0 * LATENCY_BOUNDS_MS[-1]


def _srm(experiment: Experiment, views: list[ArmView]) -> dict[str, Any]:
    counts = [v.stats.n_assigned for v in views]
    weights = [float(v.arm.allocation_percent) for v in views]
    total = sum(counts)
    base: dict[str, Any] = {
        "counts": {v.arm.name: v.stats.n_assigned for v in views},
        "expected_shares": {v.arm.name: w / sum(weights) for v, w in zip(views, weights, strict=True)}
        if sum(weights)
        else {},
    }
    if experiment.mode != Mode.SPLIT:
        return {"status": "not_applicable", "p_value": None, **base, "reason": "shadow: every arm sees every decision"}
    if total < SRM_MIN_TOTAL or any(w <= 0 for w in weights):
        return {"status": "insufficient", "p_value": None, **base, "reason": f"fewer than {SRM_MIN_TOTAL} decisions"}
    result = srm(counts, weights)
    p = result.p_value
    status = "flag" if p < SRM_FLAG else ("warn" if p < SRM_WARN else "ok")
    reason = {
        "flag": "sample ratio mismatch (p < 0.001): the router does not split as allocated; results are not trusted",
        "warn": "possible sample ratio mismatch (p < 0.01)",
        "ok": "arm counts agree with the allocation",
    }[status]
    return {"status": status, "p_value": p, "chi2": result.statistic, **base, "reason": reason}


def experiment_analysis(experiment: Experiment, *, now: datetime | None = None) -> Analysis:
    now = now or timezone.now()
    arms = list(experiment.arms.select_related("version").order_by("position", "id"))
    stats = {s.arm_id: s for s in ArmStatistics.objects.filter(arm__in=arms)}
    comparisons = {c.treatment_id: c for c in Comparison.objects.filter(experiment=experiment)}
    views: list[ArmView] = []
    control_horizon = next((arm_horizon(a) for a in arms if a.role == Arm.Role.CONTROL), None)
    for arm in arms:
        s = stats.get(arm.pk) or ArmStatistics(arm=arm)
        horizon = arm_horizon(arm)
        state = ArmState.of(s.state or {}, burn_in=experiment.burn_in, horizon=horizon)
        view = ArmView(arm, s, state)
        if arm.role == Arm.Role.TREATMENT:
            c = comparisons.get(arm.pk)
            view.comparison = c
            view.comparison_state = ComparisonState.of(
                (c.state if c else None) or {},
                burn_in=experiment.burn_in,
                horizon=pair_horizon(control_horizon, horizon),
            )
        views.append(view)
    control = next(v for v in views if v.arm.role == Arm.Role.CONTROL)
    treatments = [v for v in views if v.arm.role == Arm.Role.TREATMENT]
    family: list[tuple[ArmView, str]] = []
    for view in treatments:
        for metric in METRICS:
            view.metrics[metric] = _comparison_metric(experiment, metric, control, view)
            family.append((view, metric))
        view.guardrails = _guardrails(experiment, view)
    if family:
        adjusted = holm([view.metrics[m].p_value for view, m in family])
        for (view, metric), p in zip(family, adjusted.tolist(), strict=True):
            view.metrics[metric].p_holm = float(p)
            view.metrics[metric].better = _better(metric, view.metrics[metric], experiment.alpha)
    srm_view = _srm(experiment, views)
    verdict = _verdict(experiment, control, treatments, srm_view, now)
    return Analysis(experiment, views, srm_view, verdict, now)


def _evidence(experiment: Experiment, treatments: list[ArmView], srm_view: dict[str, Any], now: datetime) -> dict:
    metric = experiment.primary_metric
    return {
        "as_of": now.isoformat(),
        "primary_metric": metric,
        "alpha": experiment.alpha,
        "treatments": {
            v.arm.name: {
                "version": v.arm.version.version,
                "primary": v.metrics[metric].as_dict() if metric in v.metrics else None,
                "guardrails": {k: g.as_dict() for k, g in v.guardrails.items()},
            }
            for v in treatments
        },
        "srm": {"status": srm_view["status"], "p_value": srm_view["p_value"]},
    }


def _verdict(
    experiment: Experiment, control: ArmView, treatments: list[ArmView], srm_view: dict[str, Any], now: datetime
) -> Verdict:
    evidence = _evidence(experiment, treatments, srm_view, now)
    if experiment.status in (Status.CONCLUDED, Status.STOPPED, Status.ABORTED):
        return Verdict("final", experiment.winner, experiment.status_reason, evidence=evidence)
    for view in treatments:
        for guard in view.guardrails.values():
            if guard.breached:
                reason = (
                    f"guardrail {guard.name} breached by {view.arm.name} (v{view.arm.version.version}): "
                    f"{guard.observed:.6g} > {guard.threshold:g} over {guard.n}"
                )
                return Verdict("guardrail", None, reason, (view.arm, guard), evidence)
    metric = experiment.primary_metric
    minimum = experiment.minimum_sample
    if srm_view["status"] == "flag":
        return Verdict("collecting", None, srm_view["reason"], evidence=evidence)
    winners = [v for v in treatments if v.metrics[metric].better == "treatment" and v.metrics[metric].n >= minimum]
    if winners:
        sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
        best = max(winners, key=lambda v: sign * float(v.metrics[metric].estimate or 0.0))
        m = best.metrics[metric]
        reason = (
            f"{best.arm.name} (v{best.arm.version.version}) beats the control on {metric}: "
            f"{m.estimate:.6g} (always-valid p {m.p_value:.3g}, Holm {m.p_holm:.3g} < alpha {experiment.alpha:g}, "
            f"n {m.n} >= {minimum})"
        )
        return Verdict("decisive", best.arm, reason, evidence=evidence)
    if treatments and all(v.metrics[metric].better == "control" and v.metrics[metric].n >= minimum for v in treatments):
        reason = f"every treatment is worse than the control on {metric} (Holm-adjusted always-valid p < alpha)"
        return Verdict("decisive", control.arm, reason, evidence=evidence)
    started = experiment.started_at
    if started is not None and now >= started + experiment.maximum_duration:
        return Verdict("expired", None, "maximum duration reached without a decisive difference", evidence=evidence)
    return Verdict("collecting", None, "collecting evidence", evidence=evidence)


def experiment_verdict(experiment: Experiment, *, now: datetime | None = None) -> Verdict:
    return experiment_analysis(experiment, now=now).verdict
