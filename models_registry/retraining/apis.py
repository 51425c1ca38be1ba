"""Retraining API: trigger a model's retraining (an operator, with a reason; a running one is joined), its runs
(list, detail with triggers and steps), its policy (read, replace) and its lifecycle timeline. Reads need an
authenticated user, writes a staff account (the project's default permission)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.audit import audit_actor
from core.errors import NotFoundError
from core.pagination import paginated_response
from models_registry import selectors as registry_selectors
from models_registry.models import RegisteredModel
from models_registry.retraining import selectors, services
from models_registry.retraining.models import RetrainingRun, TriggerKind


def _model_or_404(name: str) -> RegisteredModel:
    model = registry_selectors.registered_model_get(name=name)
    if model is None:
        raise NotFoundError(f"model {name!r} is not registered", details={"model": name})
    return model


def _actor(request: Request) -> str:
    user = request.user
    return f"user:{user.get_username()}" if user and user.is_authenticated else "api"


class RetrainingRunSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    model = serializers.CharField(source="model.name")
    status = serializers.CharField()
    trigger = serializers.CharField()
    reason = serializers.CharField()
    actor = serializers.CharField()
    drift_report = serializers.IntegerField(source="drift_report_id", allow_null=True)
    parent_version = serializers.IntegerField(source="parent.version", allow_null=True, default=None)
    challenger_version = serializers.IntegerField(source="challenger.version", allow_null=True, default=None)
    training_request_id = serializers.CharField()
    data_start = serializers.DateTimeField(allow_null=True)
    data_end = serializers.DateTimeField(allow_null=True)
    change_point_at = serializers.DateTimeField(allow_null=True)
    experiment_id = serializers.IntegerField(allow_null=True)
    gate_report = serializers.JSONField()
    outcome = serializers.CharField()
    attempts = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)


class TriggerSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    drift_report = serializers.IntegerField(source="drift_report_id", allow_null=True)
    actor = serializers.CharField()
    reason = serializers.CharField()
    joined = serializers.BooleanField()
    suppressed = serializers.CharField()
    at = serializers.DateTimeField()


class StepSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    step = serializers.CharField()
    version = serializers.IntegerField(source="version.version", allow_null=True, default=None)
    actor = serializers.CharField()
    detail = serializers.CharField()
    details = serializers.JSONField(source="data")
    at = serializers.DateTimeField()


class RetrainingRunDetailSerializer(RetrainingRunSerializer):
    triggers = TriggerSerializer(many=True, source="triggers.all")
    steps = StepSerializer(many=True, source="events.all")


class LifecycleEntrySerializer(serializers.Serializer):
    origin = serializers.ChoiceField(choices=["stage", "retraining"])
    id = serializers.IntegerField()
    at = serializers.DateTimeField()
    kind = serializers.CharField()
    version = serializers.IntegerField(allow_null=True)
    from_stage = serializers.CharField()
    to_stage = serializers.CharField()
    alias = serializers.CharField()
    actor = serializers.CharField()
    reason = serializers.CharField()
    run = serializers.IntegerField(allow_null=True)
    details = serializers.JSONField()


class RetrainApi(APIView):
    """GET: the model's retraining runs, newest first (filter: status). POST (staff): an operator's trigger with a
    reason; 202 with the run it started, or the active run it joined (single-flight)."""

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=RetrainingRun.Status.values, required=False)

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=2000, help_text="why the model should retrain now")

    class OutputSerializer(serializers.Serializer):
        trigger_id = serializers.IntegerField()
        run_id = serializers.IntegerField(allow_null=True)
        started = serializers.BooleanField()
        joined = serializers.BooleanField()
        suppressed = serializers.CharField()
        status = serializers.CharField(allow_null=True)

    @extend_schema(parameters=[FilterSerializer], responses=RetrainingRunSerializer(many=True))
    def get(self, request: Request, name: str) -> Response:
        _model_or_404(name)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        qs = selectors.retraining_run_list(model_name=name, status=filters.validated_data.get("status"))
        return paginated_response(request, self, qs, RetrainingRunSerializer)

    @extend_schema(request=InputSerializer, responses={202: OutputSerializer})
    def post(self, request: Request, name: str) -> Response:
        _model_or_404(name)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        actor = _actor(request)
        with audit_actor(actor):
            result = services.retraining_trigger(
                model_name=name, kind=TriggerKind.OPERATOR, reason=data.validated_data["reason"], actor=actor
            )
        return Response(self.OutputSerializer(result.as_dict()).data, status=status.HTTP_202_ACCEPTED)


class RetrainingRunDetailApi(APIView):
    @extend_schema(responses=RetrainingRunDetailSerializer)
    def get(self, request: Request, name: str, run_id: int) -> Response:
        _model_or_404(name)
        run = selectors.retraining_run_get(model_name=name, run_id=run_id)
        if run is None:
            raise NotFoundError(f"{name} has no retraining run {run_id}", details={"run": run_id})
        return Response(RetrainingRunDetailSerializer(run).data)


class RetrainingPolicyApi(APIView):
    """GET: the model's effective retraining policy and its overrides. PUT (staff): replace the overrides."""

    class InputSerializer(serializers.Serializer):
        enabled = serializers.BooleanField(required=False)
        on_drift = serializers.BooleanField(required=False)
        schedule_hours = serializers.FloatField(required=False, allow_null=True, min_value=0)
        window_hours = serializers.FloatField(required=False, allow_null=True, min_value=0.01)
        min_window_hours = serializers.FloatField(required=False, allow_null=True, min_value=0.01)
        cooldown_hours = serializers.FloatField(required=False, allow_null=True, min_value=0)
        probation_hours = serializers.FloatField(required=False, allow_null=True, min_value=0)

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, name: str) -> Response:
        model = _model_or_404(name)
        return Response({"model": model.name, "policy": services.retraining_policy(model=model).as_dict()})

    @extend_schema(request=InputSerializer, responses=OpenApiTypes.OBJECT)
    def put(self, request: Request, name: str) -> Response:
        model = _model_or_404(name)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.retraining_policy_set(model=model, values=data.validated_data, actor=_actor(request))
        return Response({"model": model.name, "policy": services.retraining_policy(model=model).as_dict()})
