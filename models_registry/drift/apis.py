"""Drift API: a version's reports (list, detail), a check on demand (the same service as the schedule), and a
model's thresholds (read, replace). Reads need an authenticated user, writes a staff account (the project's
default permission)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.audit import audit_actor
from core.errors import ConflictError, NotFoundError
from core.pagination import paginated_response
from models_registry import selectors
from models_registry.drift.checks import drift_check
from models_registry.drift.selectors import drift_report_get, drift_report_list, drift_thresholds
from models_registry.drift.serializers import DriftReportSerializer, DriftReportSummarySerializer
from models_registry.drift.services import drift_policy_set
from models_registry.drift.thresholds import DEFAULT_THRESHOLDS
from models_registry.models import DriftReport, ModelVersion, RegisteredModel


def _model_or_404(name: str) -> RegisteredModel:
    model = selectors.registered_model_get(name=name)
    if model is None:
        raise NotFoundError(f"model {name!r} is not registered", details={"model": name})
    return model


def _version_or_404(name: str, version: int) -> ModelVersion:
    _model_or_404(name)
    found = selectors.model_version_get(model_name=name, version=version)
    if found is None:
        raise NotFoundError(f"model {name!r} has no version {version}", details={"version": version})
    return found


def _actor(request: Request) -> str:
    user = request.user
    return f"user:{user.get_username()}" if user and user.is_authenticated else "api"


class DriftReportListApi(APIView):
    """GET: the version's drift reports, newest first (filters: status, confirmed, since). POST (staff): check
    the version now; 201 with the report, 409 while another check of the version runs."""

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=DriftReport.Status.values, required=False)
        confirmed = serializers.BooleanField(required=False, allow_null=True, default=None)
        since = serializers.DateTimeField(required=False)

    @extend_schema(parameters=[FilterSerializer], responses=DriftReportSummarySerializer(many=True))
    def get(self, request: Request, name: str, version: int) -> Response:
        found = _version_or_404(name, version)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        qs = drift_report_list(version=found, **filters.validated_data)
        return paginated_response(request, self, qs, DriftReportSummarySerializer)

    @extend_schema(request=None, responses={201: DriftReportSerializer})
    def post(self, request: Request, name: str, version: int) -> Response:
        found = _version_or_404(name, version)
        actor = _actor(request)
        with audit_actor(actor):
            report = drift_check(version_id=found.pk, trigger=DriftReport.Trigger.OPERATOR, actor=actor)
        if report is None:
            raise ConflictError(f"a drift check of {name} v{version} is already running", code="drift_check_running")
        return Response(DriftReportSerializer(report).data, status=status.HTTP_201_CREATED)


class DriftReportDetailApi(APIView):
    @extend_schema(responses=DriftReportSerializer)
    def get(self, request: Request, name: str, version: int, report_id: int) -> Response:
        found = _version_or_404(name, version)
        report = drift_report_get(version=found, report_id=report_id)
        if report is None:
            raise NotFoundError(f"{name} v{version} has no drift report {report_id}", details={"report": report_id})
        return Response(DriftReportSerializer(report).data)


class DriftThresholdsApi(APIView):
    """GET: the model's drift thresholds (defaults with its overrides). PUT (staff): replace the overrides."""

    class InputSerializer(serializers.Serializer):
        thresholds = serializers.DictField(help_text=f"overrides of {sorted(DEFAULT_THRESHOLDS)}")

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, name: str) -> Response:
        model = _model_or_404(name)
        policy = getattr(model, "drift_policy", None)
        return Response(
            {
                "model": model.name,
                "thresholds": drift_thresholds(model=model),
                "overrides": policy.thresholds if policy else {},
                "defaults": DEFAULT_THRESHOLDS,
            }
        )

    @extend_schema(request=InputSerializer, responses=OpenApiTypes.OBJECT)
    def put(self, request: Request, name: str) -> Response:
        model = _model_or_404(name)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        policy = drift_policy_set(model=model, thresholds=data.validated_data["thresholds"], actor=_actor(request))
        return Response(
            {"model": model.name, "thresholds": drift_thresholds(model=model), "overrides": policy.thresholds}
        )
