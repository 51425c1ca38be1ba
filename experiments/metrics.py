"""Experiments in `/metrics` (Prometheus; collected by `galfriday_site.metrics`).

- `galfriday_experiments{status}`: experiments per status (a rise in `stopped` is a guardrail that tripped).
- Per running or paused experiment (labels experiment id, model, mode): `galfriday_experiment_active{status}`,
  and per arm (arm, role, version) decisions, matured outcomes and prediction errors; per treatment and metric
  the always-valid p, its Holm-adjusted value and the difference to the control; per treatment and guardrail
  the observed value, the threshold and whether it is breached; the SRM p-value and status (split).

Each figure comes from `experiments.results.experiment_results`, the same document the API and the admin show
(sufficient statistics kept incrementally, so a scrape stays cheap; at most one active experiment per model).
"""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from experiments.models import ACTIVE_STATUSES, Experiment, Status
from experiments.results import experiment_results

PREFIX = "galfriday"
SRM_STATUSES = ("ok", "warn", "flag", "not_applicable")


class ExperimentCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        per_status = GaugeMetricFamily(f"{PREFIX}_experiments", "Experiments per status", labels=["status"])
        counts = dict(Experiment.objects.values_list("status").annotate(n=Count("id")).order_by())
        for status in Status.values:
            per_status.add_metric([status], counts.get(status, 0))
        yield per_status

        base = ["experiment", "model", "mode"]
        arm_labels = [*base, "arm", "role", "version"]
        metric_labels = [*base, "arm", "metric"]
        guard_labels = [*base, "arm", "guardrail"]
        active = GaugeMetricFamily(
            f"{PREFIX}_experiment_active", "1 for a running or paused experiment, by status", labels=[*base, "status"]
        )
        decisions = GaugeMetricFamily(
            f"{PREFIX}_experiment_arm_decisions", "Decisions the arm served (split) or shadowed", labels=arm_labels
        )
        outcomes = GaugeMetricFamily(
            f"{PREFIX}_experiment_arm_outcomes", "Matured outcomes counted for the arm", labels=arm_labels
        )
        errors = GaugeMetricFamily(
            f"{PREFIX}_experiment_arm_errors", "Decisions on which the arm could not predict", labels=arm_labels
        )
        p_value = GaugeMetricFamily(
            f"{PREFIX}_experiment_p_value",
            "Always-valid p of treatment vs control (valid at every look)",
            labels=metric_labels,
        )
        p_holm = GaugeMetricFamily(
            f"{PREFIX}_experiment_p_value_holm", "Always-valid p, Holm-adjusted across metrics", labels=metric_labels
        )
        delta = GaugeMetricFamily(
            f"{PREFIX}_experiment_delta", "Treatment minus control, per metric", labels=metric_labels
        )
        pairs = GaugeMetricFamily(
            f"{PREFIX}_experiment_comparison_n",
            "Outcomes in the comparison (pairs in shadow mode)",
            labels=[*base, "arm"],
        )
        breached = GaugeMetricFamily(
            f"{PREFIX}_experiment_guardrail_breached", "1 when the treatment crossed the guardrail", labels=guard_labels
        )
        observed = GaugeMetricFamily(
            f"{PREFIX}_experiment_guardrail_observed",
            "The treatment's value of the guardrail metric",
            labels=guard_labels,
        )
        threshold = GaugeMetricFamily(
            f"{PREFIX}_experiment_guardrail_threshold", "The guardrail's limit (absent: off)", labels=guard_labels
        )
        srm_p = GaugeMetricFamily(
            f"{PREFIX}_experiment_srm_p_value", "Sample-ratio mismatch chi-square p (split)", labels=base
        )
        srm_status = GaugeMetricFamily(
            f"{PREFIX}_experiment_srm_status", "1 for the SRM status (flag at p < 0.001, warn at p < 0.01)",
            labels=[*base, "status"],
        )  # fmt: skip

        running = Experiment.objects.filter(status__in=ACTIVE_STATUSES).order_by("id").values_list("id", flat=True)
        for experiment_id in running:
            results = experiment_results(experiment_id)
            settings = results["experiment"]
            key = [str(settings["id"]), str(settings["model"]), str(settings["mode"])]
            active.add_metric([*key, str(settings["status"])], 1.0)
            for arm in results["arms"]:
                arm_key = [*key, arm["name"], arm["role"], str(arm["version"])]
                decisions.add_metric(arm_key, arm["n_assigned"])
                outcomes.add_metric(arm_key, arm["n_outcomes"])
                errors.add_metric(arm_key, arm["n_errors"])
                comparison = arm.get("comparison")
                if comparison:
                    pairs.add_metric([*key, arm["name"]], comparison["n"])
                    for metric, row in (comparison.get("metrics") or {}).items():
                        for family, value in ((p_value, row.get("p_value")), (p_holm, row.get("p_holm"))):
                            if value is not None:
                                family.add_metric([*key, arm["name"], metric], value)
                        if row.get("estimate") is not None:
                            delta.add_metric([*key, arm["name"], metric], row["estimate"])
                for guardrail, row in (arm.get("guardrails") or {}).items():
                    guard_key = [*key, arm["name"], guardrail]
                    breached.add_metric(guard_key, 1.0 if row.get("breached") else 0.0)
                    if row.get("observed") is not None:
                        observed.add_metric(guard_key, row["observed"])
                    if row.get("threshold") is not None:
                        threshold.add_metric(guard_key, row["threshold"])
            srm = results.get("srm") or {}
            if srm.get("p_value") is not None:
                srm_p.add_metric(key, srm["p_value"])
            for status in SRM_STATUSES:
                srm_status.add_metric([*key, status], 1.0 if srm.get("status") == status else 0.0)
        yield from (
            active, decisions, outcomes, errors, pairs, p_value, p_holm, delta,
            breached, observed, threshold, srm_p, srm_status,
        )  # fmt: skip
