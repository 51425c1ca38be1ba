"""Reconciliation endpoints: runs and discrepancies (filters) for authenticated users; triggering a run and
acknowledging or resolving a discrepancy (with a note) for staff (the API's default permission)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import NotFoundError
from core.pagination import paginated_response
from reconciliation import selectors, services
from reconciliation.models import Discrepancy, ReconciliationRun
from trading.permissions import actor_name


def _valid(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


@extend_schema_serializer(component_name="ReconciliationRun")
class RunOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    trigger = serializers.CharField()
    status = serializers.CharField()
    requested_by = serializers.CharField()
    reason = serializers.CharField()
    window_start = serializers.DateTimeField(allow_null=True)
    window_end = serializers.DateTimeField(allow_null=True)
    started_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
    duration_ms = serializers.FloatField(allow_null=True)
    rest_ms = serializers.FloatField(allow_null=True)
    processing_ms = serializers.FloatField(allow_null=True)
    rest_calls = serializers.IntegerField()
    rest_cost = serializers.IntegerField()
    counts = serializers.JSONField()
    discrepancy_count = serializers.IntegerField()
    error = serializers.CharField()


@extend_schema_serializer(component_name="ReconciliationDiscrepancy")
class DiscrepancyOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    run_id = serializers.IntegerField()
    kind = serializers.CharField()
    severity = serializers.CharField()
    within_tolerance = serializers.BooleanField()
    symbol = serializers.CharField(source="instrument.symbol", allow_null=True, default=None)
    asset = serializers.CharField()
    order_id = serializers.IntegerField(allow_null=True)
    exchange_order_id = serializers.CharField()
    exec_id = serializers.CharField()
    local_value = serializers.CharField()
    exchange_value = serializers.CharField()
    difference = serializers.DecimalField(max_digits=32, decimal_places=12, allow_null=True)
    evidence = serializers.JSONField()
    action = serializers.CharField()
    action_detail = serializers.JSONField()
    status = serializers.CharField()
    resolved_by = serializers.CharField()
    resolved_at = serializers.DateTimeField(allow_null=True)
    resolution_note = serializers.CharField()
    created_at = serializers.DateTimeField()


class RunListApi(APIView):
    class FilterSerializer(serializers.Serializer):
        trigger = serializers.ChoiceField(choices=ReconciliationRun.Trigger.values, required=False)
        status = serializers.ChoiceField(choices=ReconciliationRun.Status.values, required=False)
        started_after = serializers.DateTimeField(required=False)
        started_before = serializers.DateTimeField(required=False)

    @extend_schema(parameters=[FilterSerializer], responses=RunOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        filters = _valid(self.FilterSerializer, request.query_params)
        rows = selectors.run_list(filters=filters)
        return paginated_response(request, self, rows, RunOutputSerializer, from_values=True)


class RunDetailApi(APIView):
    @extend_schema(responses=RunOutputSerializer)
    def get(self, request: Request, run_id: int) -> Response:
        run = selectors.run_get(run_id=run_id)
        if run is None:
            raise NotFoundError(f"reconciliation run {run_id} does not exist")
        return Response(RunOutputSerializer(run).data)


class RunTriggerApi(APIView):
    """Ask for a run (operator trigger): enqueued on the reconciliation queue, answered 202. Refused in paper mode
    (409 `paper_mode`) and within GALFRIDAY_RECONCILIATION_TRIGGER_COOLDOWN_S of the previous request (429
    `cooldown`, with `retry_after_s`)."""

    @extend_schema_serializer(component_name="ReconciliationTriggerInput")
    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=500)

    @extend_schema_serializer(component_name="ReconciliationTriggerQueued")
    class QueuedSerializer(serializers.Serializer):
        queued = serializers.BooleanField()

    @extend_schema(request=InputSerializer, responses={202: QueuedSerializer})
    def post(self, request: Request) -> Response:
        data = _valid(self.InputSerializer, request.data)
        services.reconciliation_trigger(requested_by=actor_name(request.user), reason=data["reason"])
        return Response({"queued": True}, status=status.HTTP_202_ACCEPTED)


class DiscrepancyListApi(APIView):
    class FilterSerializer(serializers.Serializer):
        run_id = serializers.IntegerField(required=False, min_value=1)
        kind = serializers.ChoiceField(choices=Discrepancy.Kind.values, required=False)
        severity = serializers.ChoiceField(choices=Discrepancy.Severity.values, required=False)
        status = serializers.ChoiceField(choices=Discrepancy.Status.values, required=False)
        symbol = serializers.CharField(required=False)
        asset = serializers.CharField(required=False)
        order_id = serializers.IntegerField(required=False, min_value=1)
        open = serializers.BooleanField(required=False, allow_null=True, default=None)

    @extend_schema(parameters=[FilterSerializer], responses=DiscrepancyOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        filters = _valid(self.FilterSerializer, request.query_params)
        rows = selectors.discrepancy_list(filters=filters)
        return paginated_response(request, self, rows, DiscrepancyOutputSerializer, from_values=True)


class DiscrepancyDetailApi(APIView):
    @extend_schema(responses=DiscrepancyOutputSerializer)
    def get(self, request: Request, discrepancy_id: int) -> Response:
        found = selectors.discrepancy_get(discrepancy_id=discrepancy_id)
        if found is None:
            raise NotFoundError(f"discrepancy {discrepancy_id} does not exist")
        return Response(DiscrepancyOutputSerializer(found).data)


class DiscrepancyAcknowledgeApi(APIView):
    @extend_schema_serializer(component_name="ReconciliationAcknowledgeInput")
    class InputSerializer(serializers.Serializer):
        note = serializers.CharField(required=False, allow_blank=True, default="", max_length=2000)

    @extend_schema(request=InputSerializer, responses=DiscrepancyOutputSerializer)
    def post(self, request: Request, discrepancy_id: int) -> Response:
        data = _valid(self.InputSerializer, request.data)
        found = services.discrepancy_acknowledge(
            discrepancy_id=discrepancy_id, actor=actor_name(request.user), note=data["note"]
        )
        return Response(DiscrepancyOutputSerializer(found).data)


class DiscrepancyResolveApi(APIView):
    @extend_schema_serializer(component_name="ReconciliationResolveInput")
    class InputSerializer(serializers.Serializer):
        note = serializers.CharField(max_length=2000)
        accept_exchange_balance = serializers.BooleanField(default=False)

    @extend_schema(request=InputSerializer, responses=DiscrepancyOutputSerializer)
    def post(self, request: Request, discrepancy_id: int) -> Response:
        data = _valid(self.InputSerializer, request.data)
        found = services.discrepancy_resolve(
            discrepancy_id=discrepancy_id,
            actor=actor_name(request.user),
            note=data["note"],
            accept_exchange_balance=data["accept_exchange_balance"],
        )
        return Response(DiscrepancyOutputSerializer(found).data)
