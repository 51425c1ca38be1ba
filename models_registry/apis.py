"""Model registry API: models, versions (lineage, metrics, signature), aliases, stage history, production at a
time, promote/archive/alias moves (staff, through the same services as the admin) and artifact download
(staff). Reads need an authenticated user (the project default)."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import NotFoundError
from core.pagination import paginated_response
from models_registry import selectors, services
from models_registry.models import ModelVersion, RegisteredModel, Stage
from models_registry.outcomes import LAST_N, outcome_list, version_calibration, version_live_metrics
from models_registry.retraining.apis import LifecycleEntrySerializer
from models_registry.retraining.selectors import lifecycle_timeline


class IsStaff(BasePermission):
    message = "This needs a staff account."

    def has_permission(self, request: Any, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_staff)


_paginated = paginated_response  # the API's one pagination (limit capped at GALFRIDAY_API_MAX_LIMIT)


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


@extend_schema_serializer(component_name="RegistryModelVersion")
class VersionOutputSerializer(serializers.Serializer):
    model = serializers.CharField(source="model.name")
    version = serializers.IntegerField()
    stage = serializers.CharField()
    aliases = serializers.SerializerMethodField()
    description = serializers.CharField()
    artifact_sha256 = serializers.CharField()
    artifact_size = serializers.IntegerField()
    artifact_format = serializers.CharField()
    signature = serializers.JSONField()
    data_start = serializers.DateTimeField()
    data_end = serializers.DateTimeField()
    symbols = serializers.JSONField()
    feature_set_name = serializers.CharField()
    feature_set_version = serializers.CharField()
    hyperparameters = serializers.JSONField()
    code_version = serializers.CharField()
    metrics = serializers.JSONField()
    n_trials = serializers.IntegerField()
    parent_version = serializers.IntegerField(source="parent.version", allow_null=True, default=None)
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()

    def get_aliases(self, version: ModelVersion) -> list[str]:
        return sorted(a.name for a in version.aliases.all())


@extend_schema_serializer(component_name="RegistryModel")
class ModelOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    description = serializers.CharField()
    promotion_gates = serializers.JSONField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="RegistryStageEvent")
class StageEventOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    version = serializers.IntegerField(source="version.version")
    from_stage = serializers.CharField()
    to_stage = serializers.CharField()
    alias = serializers.CharField()
    previous_version = serializers.IntegerField(source="previous_version.version", allow_null=True, default=None)
    actor = serializers.CharField()
    reason = serializers.CharField()
    gate_report = serializers.JSONField()
    gate_overridden = serializers.BooleanField()
    at = serializers.DateTimeField()


class ModelListApi(APIView):
    class InputSerializer(serializers.Serializer):
        name = serializers.CharField(max_length=100)
        description = serializers.CharField(required=False, allow_blank=True, default="")
        promotion_gates = serializers.JSONField(required=False, default=dict)

    @extend_schema(responses=ModelOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return _paginated(request, self, selectors.registered_model_list(), ModelOutputSerializer)

    @extend_schema(request=InputSerializer, responses={201: ModelOutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        model = services.registered_model_create(**data.validated_data, actor=f"user:{request.user.get_username()}")
        return Response(ModelOutputSerializer(model).data, status=201)


class ModelDetailApi(APIView):
    @extend_schema_serializer(component_name="RegistryModelDetail")
    class OutputSerializer(ModelOutputSerializer):
        production_version = serializers.SerializerMethodField()
        aliases = serializers.SerializerMethodField()
        latest_version = serializers.SerializerMethodField()

        def get_production_version(self, model: RegisteredModel) -> int | None:
            current = selectors.production_version(model_name=model.name)
            return current.version if current else None

        def get_aliases(self, model: RegisteredModel) -> dict[str, int]:
            return {a.name: a.version.version for a in selectors.model_alias_list(model_name=model.name)}

        def get_latest_version(self, model: RegisteredModel) -> int | None:
            latest = selectors.model_version_list(model_name=model.name).first()
            return latest.version if latest else None

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request, name: str) -> Response:
        return Response(self.OutputSerializer(_model_or_404(name)).data)


class VersionListApi(APIView):
    class FilterSerializer(serializers.Serializer):
        stage = serializers.ChoiceField(choices=Stage.values, required=False)

    @extend_schema(parameters=[FilterSerializer], responses=VersionOutputSerializer(many=True))
    def get(self, request: Request, name: str) -> Response:
        _model_or_404(name)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        qs = selectors.model_version_list(model_name=name, stage=filters.validated_data.get("stage")).prefetch_related(
            "aliases"
        )
        return _paginated(request, self, qs, VersionOutputSerializer)


class VersionDetailApi(APIView):
    @extend_schema(responses=VersionOutputSerializer)
    def get(self, request: Request, name: str, version: int) -> Response:
        return Response(VersionOutputSerializer(_version_or_404(name, version)).data)


class VersionMetricsApi(APIView):
    class OutputSerializer(serializers.Serializer):
        model = serializers.CharField(source="model.name")
        version = serializers.IntegerField()
        metrics = serializers.JSONField()
        n_trials = serializers.IntegerField()

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request, name: str, version: int) -> Response:
        return Response(self.OutputSerializer(_version_or_404(name, version)).data)


class VersionPromoteApi(APIView):
    class InputSerializer(serializers.Serializer):
        stage = serializers.ChoiceField(choices=[Stage.STAGING, Stage.PRODUCTION], default=Stage.PRODUCTION)
        reason = serializers.CharField()
        override = serializers.BooleanField(default=False)

    @extend_schema(request=InputSerializer, responses=VersionOutputSerializer)
    def post(self, request: Request, name: str, version: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        moved = services.model_version_promote(
            model_name=name, version=version, user=request.user, **data.validated_data
        )
        return Response(
            VersionOutputSerializer(selectors.model_version_get(model_name=name, version=moved.version)).data
        )


class VersionArchiveApi(APIView):
    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField()

    @extend_schema(request=InputSerializer, responses=VersionOutputSerializer)
    def post(self, request: Request, name: str, version: int) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        moved = services.model_version_archive(
            model_name=name, version=version, user=request.user, **data.validated_data
        )
        return Response(
            VersionOutputSerializer(selectors.model_version_get(model_name=name, version=moved.version)).data
        )


class VersionArtifactApi(APIView):
    permission_classes = [IsStaff]

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiResponse(OpenApiTypes.BINARY)})
    def get(self, request: Request, name: str, version: int) -> HttpResponse:
        found = _version_or_404(name, version)
        data = selectors.model_version_artifact(version=found)  # verified: a tampered blob is an error, not bytes
        response = HttpResponse(data, content_type="application/octet-stream")
        response["Content-Disposition"] = f'attachment; filename="{name}-v{version}.skops"'
        response["X-Artifact-SHA256"] = found.artifact_sha256
        return response


class AliasListApi(APIView):
    paged = False  # a model's few aliases, served whole as an array (galfriday_site.schema documents it so)

    class InputSerializer(serializers.Serializer):
        alias = serializers.CharField(max_length=64)
        version = serializers.IntegerField(min_value=1)
        reason = serializers.CharField()
        override = serializers.BooleanField(default=False)

    class OutputSerializer(serializers.Serializer):
        alias = serializers.CharField(source="name")
        version = serializers.IntegerField(source="version.version")
        updated_at = serializers.DateTimeField()

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request: Request, name: str) -> Response:
        _model_or_404(name)
        return Response(self.OutputSerializer(selectors.model_alias_list(model_name=name), many=True).data)

    @extend_schema(request=InputSerializer, responses=OutputSerializer)
    def post(self, request: Request, name: str) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        row = services.model_alias_set(model_name=name, user=request.user, **data.validated_data)
        return Response(self.OutputSerializer(row).data)


class AliasRemoveApi(APIView):
    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField()

    @extend_schema(request=InputSerializer, responses={204: None})
    def post(self, request: Request, name: str, alias: str) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.model_alias_remove(model_name=name, alias=alias, user=request.user, **data.validated_data)
        return Response(status=204)


class HistoryApi(APIView):
    """The model's stage and alias moves; with ``include=retraining`` the retraining loop's steps too, in one time
    order (trigger -> report -> training -> challenger -> experiment -> promotion or rejection -> rollback)."""

    class FilterSerializer(serializers.Serializer):
        version = serializers.IntegerField(min_value=1, required=False)
        include = serializers.ChoiceField(choices=["retraining"], required=False)

    @extend_schema(parameters=[FilterSerializer], responses=StageEventOutputSerializer(many=True))
    def get(self, request: Request, name: str) -> Response:
        _model_or_404(name)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        version = filters.validated_data.get("version")
        if filters.validated_data.get("include") == "retraining":
            rows = lifecycle_timeline(model_name=name, version=version)
            return _paginated(request, self, rows, LifecycleEntrySerializer)
        qs = selectors.stage_event_list(model_name=name, version=version)
        return _paginated(request, self, qs, StageEventOutputSerializer)


class ProductionAtApi(APIView):
    class FilterSerializer(serializers.Serializer):
        at = serializers.DateTimeField(required=False, help_text="instant (ISO 8601); now when absent")

    class OutputSerializer(serializers.Serializer):
        model = serializers.CharField()
        at = serializers.DateTimeField(allow_null=True)
        version = VersionOutputSerializer(allow_null=True)

    @extend_schema(parameters=[FilterSerializer], responses=OutputSerializer)
    def get(self, request: Request, name: str) -> Response:
        _model_or_404(name)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        at = filters.validated_data.get("at")
        found = (
            selectors.production_version_at(model_name=name, at=at)
            if at is not None
            else selectors.production_version(model_name=name)
        )
        return Response(self.OutputSerializer({"model": name, "at": at, "version": found}).data)


# --- outcomes ------------------------------------------------------------------------------------------------


class VersionLiveMetricsApi(APIView):
    """Live metrics of a version's matured outcomes per window (1h, 24h, 7d, all, last N), each with its interval
    and data window, beside the version's validation metrics and the degradation assessment."""

    class FilterSerializer(serializers.Serializer):
        last_n = serializers.IntegerField(min_value=10, max_value=100_000, required=False)
        bins = serializers.IntegerField(min_value=2, max_value=50, default=10)

    @extend_schema(parameters=[FilterSerializer], responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, name: str, version: int) -> Response:
        found = _version_or_404(name, version)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        last_n = filters.validated_data.get("last_n")
        return Response(
            version_live_metrics(
                version=found, last_n=(last_n,) if last_n else LAST_N, bins=filters.validated_data["bins"]
            )
        )


class VersionOutcomesApi(APIView):
    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=["pending", "matured"], required=False)
        since = serializers.DateTimeField(required=False)
        until = serializers.DateTimeField(required=False)
        direction_hit = serializers.BooleanField(required=False, allow_null=True, default=None)
        signal = serializers.ChoiceField(choices=[-1, 0, 1], required=False)

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if attrs.get("since") and attrs.get("until") and attrs["since"] >= attrs["until"]:
                raise serializers.ValidationError({"until": "must be after since"})
            return attrs

    class OutputSerializer(serializers.Serializer):
        decision_id = serializers.CharField(source="prediction.decision_id")
        symbol = serializers.CharField()
        bar_time = serializers.DateTimeField()
        horizon = serializers.IntegerField()
        window_end = serializers.DateTimeField()
        signal = serializers.IntegerField()
        probabilities = serializers.SerializerMethodField()
        status = serializers.CharField()
        pending_reason = serializers.CharField()
        forward_return = serializers.FloatField(allow_null=True)
        realised_label = serializers.IntegerField(allow_null=True)
        dead_zone = serializers.FloatField(allow_null=True)
        direction_hit = serializers.BooleanField(allow_null=True)
        position = serializers.IntegerField()
        round_trip_cost = serializers.FloatField()
        net_return = serializers.FloatField(allow_null=True)
        entry_close = serializers.DecimalField(max_digits=30, decimal_places=12, allow_null=True)
        exit_close = serializers.DecimalField(max_digits=30, decimal_places=12, allow_null=True)
        matured_at = serializers.DateTimeField(allow_null=True)
        revisions = serializers.IntegerField()
        revised_at = serializers.DateTimeField(allow_null=True)

        def get_probabilities(self, outcome: Any) -> dict[str, float]:
            return {"-1": outcome.p_down, "0": outcome.p_flat, "1": outcome.p_up}

    @extend_schema(parameters=[FilterSerializer], responses=OutputSerializer(many=True))
    def get(self, request: Request, name: str, version: int) -> Response:
        found = _version_or_404(name, version)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        return _paginated(request, self, outcome_list(version=found, **filters.validated_data), self.OutputSerializer)


class VersionCalibrationApi(APIView):
    class FilterSerializer(serializers.Serializer):
        window = serializers.ChoiceField(choices=["1h", "24h", "7d", "all"], default="all")
        bins = serializers.IntegerField(min_value=2, max_value=50, default=10)

    @extend_schema(parameters=[FilterSerializer], responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, name: str, version: int) -> Response:
        found = _version_or_404(name, version)
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        return Response(version_calibration(version=found, **filters.validated_data))
