"""Output serializers of the experiments API, shared by its views (`experiments.apis`): an experiment with its
arms and its event log, and the results document of `experiments.results.experiment_results`.

The results are served through these serializers (not passed through as a dict), so the OpenAPI schema is the
shape the endpoint answers with; figures that are not defined yet (no outcome, burn-in not done) are null.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers

from experiments.models import Metric, Mode


@extend_schema_serializer(component_name="ExperimentArm")
class ArmOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    role = serializers.CharField()
    version = serializers.IntegerField(source="version.version")
    allocation_percent = serializers.DecimalField(max_digits=5, decimal_places=2)


@extend_schema_serializer(component_name="ExperimentEvent")
class EventOutputSerializer(serializers.Serializer):
    action = serializers.CharField()
    from_status = serializers.CharField()
    to_status = serializers.CharField()
    actor = serializers.CharField()
    reason = serializers.CharField()
    details = serializers.JSONField(help_text="what the transition decided (winner, guardrail, versions)")
    at = serializers.DateTimeField()


@extend_schema_serializer(component_name="ExperimentGuardrailSettings")
class GuardrailSettingsSerializer(serializers.Serializer):
    max_treatment_drawdown = serializers.FloatField(allow_null=True)
    max_error_rate = serializers.FloatField(allow_null=True)
    max_latency_ms = serializers.FloatField(allow_null=True)


@extend_schema_serializer(component_name="Experiment")
class ExperimentOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    description = serializers.CharField()
    model = serializers.CharField(source="model.name")
    mode = serializers.ChoiceField(choices=Mode.values)
    primary_metric = serializers.ChoiceField(choices=Metric.values)
    alpha = serializers.FloatField()
    minimum_sample = serializers.IntegerField()
    maximum_duration = serializers.DurationField()
    burn_in = serializers.IntegerField()
    mixing_variance = serializers.FloatField()
    guardrails = GuardrailSettingsSerializer(
        source="*", help_text="thresholds that stop the experiment when a treatment crosses one (null: off)"
    )
    status = serializers.CharField()
    status_reason = serializers.CharField()
    winner = serializers.CharField(source="winner.name", allow_null=True, default=None)
    winner_version = serializers.IntegerField(source="winner.version.version", allow_null=True, default=None)
    stopped_guardrail = serializers.CharField()
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    ended_at = serializers.DateTimeField(allow_null=True)
    promoted_at = serializers.DateTimeField(allow_null=True)
    arms = ArmOutputSerializer(source="arms.all", many=True, help_text="the control first")


@extend_schema_serializer(component_name="ExperimentDetail")
class ExperimentDetailOutputSerializer(ExperimentOutputSerializer):
    evidence = serializers.JSONField(help_text="the results when the experiment concluded or stopped")
    events = EventOutputSerializer(source="events.all", many=True, help_text="every transition: who, when, why")


# --- results -------------------------------------------------------------------------------------------------


class _Float(serializers.FloatField):
    """A float that may be null (a figure not defined yet)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(allow_null=True, required=False, default=None, **kwargs)


@extend_schema_serializer(component_name="ExperimentResultsSettings")
class ResultsExperimentSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    model = serializers.CharField()
    mode = serializers.CharField()
    status = serializers.CharField()
    primary_metric = serializers.CharField()
    alpha = serializers.FloatField()
    minimum_sample = serializers.IntegerField()
    maximum_duration_seconds = serializers.FloatField()
    burn_in = serializers.IntegerField()
    mixing_variance = serializers.FloatField()
    created_by = serializers.CharField()
    created_at = serializers.CharField()
    started_at = serializers.CharField(allow_null=True)
    ended_at = serializers.CharField(allow_null=True)
    winner = serializers.CharField(allow_null=True, help_text="the winning arm's name")
    winner_version = serializers.IntegerField(allow_null=True)
    stopped_guardrail = serializers.CharField(allow_null=True)
    status_reason = serializers.CharField(allow_blank=True)
    promoted_at = serializers.CharField(allow_null=True)


@extend_schema_serializer(component_name="ExperimentArmMetric")
class ArmMetricSerializer(serializers.Serializer):
    n = serializers.IntegerField()
    mean = _Float()
    ci_low = _Float(help_text="95 % interval (hit rate: Wilson)")
    ci_high = _Float()


@extend_schema_serializer(component_name="ExperimentGuardrailState")
class GuardrailStateSerializer(serializers.Serializer):
    observed = _Float()
    threshold = _Float(help_text="null: the guardrail is off")
    n = serializers.IntegerField(help_text="what the observed value is computed from")
    breached = serializers.BooleanField()


@extend_schema_serializer(component_name="ExperimentComparisonMetric")
class ComparisonMetricSerializer(serializers.Serializer):
    n = serializers.IntegerField()
    estimate = _Float(help_text="treatment minus control (log loss: lower is better)")
    ci_low = _Float(help_text="always-valid interval (a confidence sequence at alpha)")
    ci_high = _Float()
    p_value = _Float(help_text="always-valid p (mixture SPRT), valid at every look")
    p_holm = _Float(help_text="Holm-adjusted across metrics and treatments")
    ready = serializers.BooleanField(help_text="the burn-in that fixes the variance is done")
    better = serializers.ChoiceField(choices=["treatment", "control"], allow_null=True)
    fixed = serializers.JSONField(allow_null=True, help_text="the fixed-sample test, for reference only")


@extend_schema_serializer(component_name="ExperimentComparison")
class ComparisonSerializer(serializers.Serializer):
    n = serializers.IntegerField(help_text="pairs (shadow) or the smaller arm's outcomes (split)")
    paired = serializers.BooleanField()
    metrics = serializers.DictField(child=ComparisonMetricSerializer())
    mcnemar = serializers.DictField(
        child=serializers.IntegerField(), required=False, help_text="shadow: discordant pairs of direction hits"
    )


@extend_schema_serializer(component_name="ExperimentArmTrading")
class ArmTradingSerializer(serializers.Serializer):
    decisions = serializers.IntegerField(help_text="decisions the arm's version made while the experiment ran")
    orders = serializers.IntegerField()
    fills = serializers.IntegerField()
    filled_notional = serializers.CharField(help_text="exact decimal")
    fees = serializers.CharField(help_text="exact decimal")
    realised_pnl = serializers.CharField(help_text="exact decimal")


@extend_schema_serializer(component_name="ExperimentArmResults")
class ArmResultsSerializer(serializers.Serializer):
    name = serializers.CharField()
    role = serializers.CharField()
    version = serializers.IntegerField()
    version_id = serializers.IntegerField()
    allocation_percent = serializers.CharField()
    n_assigned = serializers.IntegerField()
    n_errors = serializers.IntegerField()
    n_outcomes = serializers.IntegerField()
    metrics = serializers.DictField(child=ArmMetricSerializer())
    drawdown = serializers.FloatField(help_text="largest drawdown of the arm's cumulative net return")
    trading = ArmTradingSerializer(help_text="what the arm really traded (split: every arm; shadow: the control)")
    guardrails = serializers.DictField(child=GuardrailStateSerializer(), required=False, default=dict)
    comparison = ComparisonSerializer(allow_null=True, required=False, default=None)


@extend_schema_serializer(component_name="ExperimentSrm")
class SrmSerializer(serializers.Serializer):
    status = serializers.ChoiceField(
        choices=["ok", "warn", "flag", "insufficient", "not_applicable"],
        help_text="flag at p < 0.001 (the router does not split as allocated), warn at p < 0.01",
    )
    p_value = _Float(help_text="chi-square goodness of fit of the arm counts to the allocation")
    chi2 = serializers.FloatField(required=False)
    counts = serializers.DictField(child=serializers.IntegerField(), help_text="decisions per arm")
    expected_shares = serializers.DictField(child=serializers.FloatField(), help_text="the allocation")
    reason = serializers.CharField()


@extend_schema_serializer(component_name="ExperimentDecision")
class DecisionSerializer(serializers.Serializer):
    state = serializers.CharField()
    winner = serializers.CharField(allow_null=True)
    reason = serializers.CharField(allow_blank=True)


@extend_schema_serializer(component_name="ExperimentSeriesPoint")
class SeriesPointSerializer(serializers.Serializer):
    arm = serializers.CharField(help_text="the treatment")
    at = serializers.CharField()
    n = serializers.IntegerField()
    delta = _Float(help_text="the primary metric's difference to the control so far")
    p = _Float(help_text="the primary metric's always-valid p so far")


@extend_schema_serializer(component_name="ExperimentResults")
class ResultsSerializer(serializers.Serializer):
    experiment = ResultsExperimentSerializer()
    as_of = serializers.CharField()
    arms = ArmResultsSerializer(many=True)
    srm = SrmSerializer()
    decision = DecisionSerializer()
    series = SeriesPointSerializer(many=True, help_text="cumulative, for charts (at most 200 points)")
    events = EventOutputSerializer(many=True)
    notes = serializers.DictField(child=serializers.CharField(), help_text="how to read the figures")
