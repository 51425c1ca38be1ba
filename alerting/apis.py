"""The alerting API (/api/alerting/): alerts (list with filters, detail, acknowledge, resolve) and silences
(list, create, expire). Reads for any authenticated user, changes for staff (the API's default permission). Every
change goes through trading.alerts' services: audited, announced after commit (signal and `system` event)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from alerting import selectors
from core.errors import NotFoundError
from core.pagination import paginated_response
from trading import alerts
from trading.models import Alert
from trading.permissions import actor_name

MAX_SILENCE = timedelta(days=30)  # a silence longer than this is a rule to change, not a silence


def _valid(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


@extend_schema_serializer(component_name="Alert")
class AlertOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    severity = serializers.CharField()
    state = serializers.CharField()
    fingerprint = serializers.CharField()
    message = serializers.CharField()
    context = serializers.JSONField()  # type: ignore[assignment]  # a field named like Field.context
    count = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField(allow_null=True)
    acknowledged_by = serializers.CharField()
    acknowledged_at = serializers.DateTimeField(allow_null=True)
    resolved_by = serializers.CharField()
    resolved_at = serializers.DateTimeField(allow_null=True)
    silence_id = serializers.IntegerField(allow_null=True)
    runbook_url = serializers.SerializerMethodField()

    def get_runbook_url(self, obj: Alert) -> str:
        return alerts.runbook_url(obj.kind)


@extend_schema_serializer(component_name="AlertSilence")
class SilenceOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    kind = serializers.CharField()
    fingerprint = serializers.CharField()
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()
    reason = serializers.CharField()
    created_by = serializers.CharField()
    created_at = serializers.DateTimeField()


class AlertListApi(APIView):
    class FilterSerializer(serializers.Serializer):
        state = serializers.ChoiceField(choices=Alert.State.values, required=False)
        severity = serializers.ChoiceField(choices=Alert.Severity.values, required=False)
        kind = serializers.ChoiceField(choices=Alert.Kind.values, required=False)
        fingerprint = serializers.CharField(required=False, max_length=200)
        open = serializers.BooleanField(required=False, allow_null=True, default=None)

    @extend_schema(parameters=[FilterSerializer], responses=AlertOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        filters = _valid(self.FilterSerializer, request.query_params)
        return paginated_response(request, self, selectors.alert_list(filters=filters), AlertOutputSerializer)


class AlertDetailApi(APIView):
    @extend_schema(responses=AlertOutputSerializer)
    def get(self, request: Request, alert_id: int) -> Response:
        found = selectors.alert_get(alert_id=alert_id)
        if found is None:
            raise NotFoundError(f"alert {alert_id} does not exist")
        return Response(AlertOutputSerializer(found).data)


class AlertAcknowledgeApi(APIView):
    @extend_schema_serializer(component_name="AlertAcknowledgeInput")
    class InputSerializer(serializers.Serializer):
        note = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)

    @extend_schema(request=InputSerializer, responses=AlertOutputSerializer)
    def post(self, request: Request, alert_id: int) -> Response:
        data = _valid(self.InputSerializer, request.data)
        found = alerts.alert_acknowledge(alert_id=alert_id, actor=actor_name(request.user), note=data["note"])
        return Response(AlertOutputSerializer(found).data)


class AlertResolveApi(APIView):
    @extend_schema_serializer(component_name="AlertResolveInput")
    class InputSerializer(serializers.Serializer):
        note = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)

    @extend_schema(request=InputSerializer, responses=AlertOutputSerializer)
    def post(self, request: Request, alert_id: int) -> Response:
        data = _valid(self.InputSerializer, request.data)
        found = alerts.alert_resolve(alert_id=alert_id, actor=actor_name(request.user), note=data["note"])
        return Response(AlertOutputSerializer(found).data)


class SilenceListApi(APIView):
    class FilterSerializer(serializers.Serializer):
        active = serializers.BooleanField(required=False, allow_null=True, default=None)

    @extend_schema_serializer(component_name="AlertSilenceInput")
    class InputSerializer(serializers.Serializer):
        kind = serializers.ChoiceField(choices=Alert.Kind.values, required=False, allow_blank=True, default="")
        fingerprint = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
        reason = serializers.CharField(max_length=2000)
        starts_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
        ends_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
        duration_minutes = serializers.IntegerField(
            required=False, allow_null=True, default=None, min_value=1, max_value=int(MAX_SILENCE.total_seconds() // 60)
        )

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if not attrs.get("kind") and not attrs.get("fingerprint"):
                raise serializers.ValidationError({"kind": "a silence needs a kind or a fingerprint to match"})
            if (attrs.get("ends_at") is None) == (attrs.get("duration_minutes") is None):
                raise serializers.ValidationError({"ends_at": "give exactly one of ends_at and duration_minutes"})
            starts_at, ends_at = attrs.get("starts_at"), attrs.get("ends_at")
            if ends_at is not None and starts_at is not None and ends_at - starts_at > MAX_SILENCE:
                raise serializers.ValidationError({"ends_at": "a silence lasts at most 30 days"})
            return attrs

    @extend_schema(parameters=[FilterSerializer], responses=SilenceOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        filters = _valid(self.FilterSerializer, request.query_params)
        qs = selectors.silence_list(active=filters["active"])
        return paginated_response(request, self, qs, SilenceOutputSerializer)

    @extend_schema(request=InputSerializer, responses={201: SilenceOutputSerializer})
    def post(self, request: Request) -> Response:
        data = _valid(self.InputSerializer, request.data)
        minutes = data["duration_minutes"]
        silence = alerts.alert_silence_create(
            kind=data["kind"],
            fingerprint=data["fingerprint"],
            reason=data["reason"],
            actor=actor_name(request.user),
            starts_at=data["starts_at"],
            ends_at=data["ends_at"],
            duration=timedelta(minutes=minutes) if minutes is not None else None,
        )
        return Response(SilenceOutputSerializer(silence).data, status=status.HTTP_201_CREATED)


class SilenceExpireApi(APIView):
    @extend_schema_serializer(component_name="AlertSilenceExpireInput")
    class InputSerializer(serializers.Serializer):
        note = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)

    @extend_schema(request=InputSerializer, responses=SilenceOutputSerializer)
    def post(self, request: Request, silence_id: int) -> Response:
        data = _valid(self.InputSerializer, request.data)
        silence = alerts.alert_silence_expire(silence_id=silence_id, actor=actor_name(request.user), note=data["note"])
        return Response(SilenceOutputSerializer(silence).data)
