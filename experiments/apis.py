"""Experiments API: create, list and read experiments; start, pause, resume, stop, abort, conclude and promote
the winner (staff, through the same services as the admin and the command line, each with a reason that the
event log and the audit history keep); the results per arm (n, metrics with intervals, deltas with always-valid
intervals and p-values, SRM, guardrails, the cumulative series for charts). Reads need an authenticated user,
writes a staff account (the project default, as the registry's promotion)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.audit import user_actor
from core.errors import NotFoundError
from core.pagination import paginated_response
from experiments import selectors, services
from experiments.models import DEFAULT_BURN_IN, Experiment, Guardrail, Metric, Mode, Status
from experiments.results import experiment_results
from experiments.serializers import (
    ExperimentDetailOutputSerializer,
    ExperimentOutputSerializer,
    ResultsSerializer,
)


def _experiment_or_404(experiment_id: int) -> Experiment:
    found = selectors.experiment_get(experiment_id=experiment_id)
    if found is None:
        raise NotFoundError(f"experiment {experiment_id} does not exist", details={"experiment": experiment_id})
    return found


def _detail(experiment_id: int) -> Response:
    return Response(ExperimentDetailOutputSerializer(_experiment_or_404(experiment_id)).data)


@extend_schema_serializer(component_name="ExperimentReasonInput")
class ReasonInputSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=2000, help_text="why (kept in the event log and the audit history)")


@extend_schema_serializer(component_name="ExperimentTreatmentInput")
class TreatmentInputSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=1, required=False, help_text="a version number of the model")
    version_id = serializers.IntegerField(
        min_value=1, required=False, help_text="or the version's id (it must be a version of the model)"
    )
    model = serializers.CharField(
        max_length=100, required=False, help_text="optional: the version's model, which must be the experiment's"
    )
    allocation_percent = serializers.DecimalField(
        max_digits=5,
        decimal_places=2,
        min_value=Decimal(0),
        max_value=Decimal(100),
        required=False,
        allow_null=True,
        default=None,
        help_text="split: share of decisions (the arms sum to 100); shadow: ignored (every arm sees all)",
    )
    name = serializers.CharField(max_length=64, required=False, help_text='the arm\'s name (default "treatment-<n>")')

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if ("version" in attrs) == ("version_id" in attrs):
            raise serializers.ValidationError("name the treatment's version: either version or version_id")
        return attrs


class ExperimentListApi(APIView):
    class FilterSerializer(serializers.Serializer):
        model = serializers.CharField(required=False, max_length=100)
        status = serializers.ChoiceField(choices=Status.values, required=False)

    class InputSerializer(serializers.Serializer):
        model = serializers.CharField(max_length=100, help_text="the registered model; its champion is the control")
        name = serializers.CharField(max_length=200)
        description = serializers.CharField(required=False, allow_blank=True, default="")
        mode = serializers.ChoiceField(choices=Mode.values, default=Mode.SHADOW)
        treatments = TreatmentInputSerializer(many=True, allow_empty=False)
        control_allocation_percent = serializers.DecimalField(
            max_digits=5,
            decimal_places=2,
            min_value=Decimal(0),
            max_value=Decimal(100),
            required=False,
            allow_null=True,
            default=None,
            help_text="split: the champion's share of decisions",
        )
        primary_metric = serializers.ChoiceField(choices=Metric.values, default=Metric.NET_RETURN)
        alpha = serializers.FloatField(default=0.05, help_text="in (0, 0.5)")
        minimum_sample = serializers.IntegerField(min_value=1, default=1000)
        maximum_duration = serializers.DurationField(
            required=False, help_text='e.g. "P14D" or "14 00:00:00" (default 14 days)'
        )
        burn_in = serializers.IntegerField(min_value=1, default=DEFAULT_BURN_IN)
        mixing_variance = serializers.FloatField(default=0.04)
        max_treatment_drawdown = serializers.FloatField(required=False, allow_null=True, default=None)
        max_error_rate = serializers.FloatField(required=False, allow_null=True, default=None)
        max_latency_ms = serializers.FloatField(required=False, allow_null=True, default=None)
        reason = serializers.CharField(max_length=2000, default="experiment created")

        def validate_treatments(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
            # an absent allocation is the service's default (shadow: every arm sees every decision)
            return [{k: v for k, v in row.items() if v is not None} for row in value]

    @extend_schema(parameters=[FilterSerializer], responses=ExperimentOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        qs = selectors.experiment_list(
            model_name=filters.validated_data.get("model"), status=filters.validated_data.get("status")
        ).prefetch_related("arms__version")
        return paginated_response(request, self, qs, ExperimentOutputSerializer)

    @extend_schema(
        request=InputSerializer,
        responses={201: ExperimentDetailOutputSerializer},
        description="A draft experiment: the model's production version is the control. Unknown versions, a "
        "version of another model, allocations not summing to 100 (split), alpha outside (0, 0.5) or a second "
        "running experiment for the model answer 400 and write nothing.",
    )
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        model_name = fields.pop("model")
        created = services.experiment_create(model_name=model_name, **fields, actor=user_actor(request.user))
        return Response(ExperimentDetailOutputSerializer(_experiment_or_404(created.pk)).data, status=201)


class ExperimentDetailApi(APIView):
    @extend_schema(responses=ExperimentDetailOutputSerializer)
    def get(self, request: Request, experiment_id: int) -> Response:
        return _detail(experiment_id)


class ExperimentResultsApi(APIView):
    """Per arm: n, each metric with its interval, guardrails; per treatment: the difference to the control with
    its always-valid interval and p-value (Holm-adjusted across metrics and treatments); SRM (split); where the
    decision stands; the cumulative series for charts. Valid to read at any time: looking does not inflate the
    error rate."""

    @extend_schema(responses=ResultsSerializer)
    def get(self, request: Request, experiment_id: int) -> Response:
        return Response(ResultsSerializer(experiment_results(experiment_id)).data)


class _TransitionApi(APIView):
    """A status change: the input validated, the service (`transition`) called with the acting user, the
    experiment answered."""

    transition: Callable[..., Any]

    @extend_schema(request=ReasonInputSerializer, responses=ExperimentDetailOutputSerializer)
    def post(self, request: Request, experiment_id: int) -> Response:
        return self.change(request, experiment_id, ReasonInputSerializer)

    def change(self, request: Request, experiment_id: int, input_serializer: type[serializers.Serializer]) -> Response:
        data = input_serializer(data=request.data)
        data.is_valid(raise_exception=True)
        type(self).transition(experiment_id=experiment_id, actor=user_actor(request.user), **data.validated_data)
        return _detail(experiment_id)


class ExperimentStartApi(_TransitionApi):
    transition = staticmethod(services.experiment_start)


class ExperimentPauseApi(_TransitionApi):
    transition = staticmethod(services.experiment_pause)


class ExperimentResumeApi(_TransitionApi):
    transition = staticmethod(services.experiment_resume)


class ExperimentAbortApi(_TransitionApi):
    transition = staticmethod(services.experiment_abort)


class ExperimentStopApi(_TransitionApi):
    transition = staticmethod(services.experiment_stop)

    class InputSerializer(serializers.Serializer):
        guardrail = serializers.ChoiceField(choices=Guardrail.values, help_text="the guardrail that was breached")
        reason = serializers.CharField(max_length=2000)

    @extend_schema(request=InputSerializer, responses=ExperimentDetailOutputSerializer)
    def post(self, request: Request, experiment_id: int) -> Response:
        return self.change(request, experiment_id, self.InputSerializer)


class ExperimentConcludeApi(_TransitionApi):
    transition = staticmethod(services.experiment_conclude)

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=2000)
        winner = serializers.CharField(
            max_length=64,
            required=False,
            allow_null=True,
            default=None,
            help_text="an arm's name; only the one the statistics support. Absent: the statistical winner if the "
            "evidence is decisive, else concluded without a winner",
        )

    @extend_schema(request=InputSerializer, responses=ExperimentDetailOutputSerializer)
    def post(self, request: Request, experiment_id: int) -> Response:
        return self.change(request, experiment_id, self.InputSerializer)


class ExperimentPromoteApi(APIView):
    """The concluded experiment's winning treatment to production through the registry's gates, the
    experiment's win being one of them; `override` is the registry's audited override (staff holding the
    override permission, a written reason)."""

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=2000)
        override = serializers.BooleanField(default=False)

    class OutputSerializer(serializers.Serializer):
        experiment = ExperimentDetailOutputSerializer()
        model = serializers.CharField()
        version = serializers.IntegerField()
        stage = serializers.CharField()

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request: Request, experiment_id: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        promoted = services.experiment_promote_winner(
            experiment_id=experiment_id, actor=user_actor(request.user), user=request.user, **data.validated_data
        )
        experiment = _experiment_or_404(experiment_id)
        return Response(
            self.OutputSerializer(
                {
                    "experiment": experiment,
                    "model": experiment.model.name,
                    "version": promoted.version,
                    "stage": promoted.stage,
                }
            ).data
        )
