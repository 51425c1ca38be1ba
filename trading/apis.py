"""Read endpoints of the trading books (authenticated users; writes arrive with the execution issue)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from galfriday_site.errors import NotFoundError
from trading import selectors
from trading.models import Side
from trading.order_states import OrderState


def _paginated(request: Request, view: APIView, queryset: Any, serializer: type[serializers.Serializer]) -> Response:
    paginator = LimitOffsetPagination()
    page: Any = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer(page, many=True).data)


@extend_schema_serializer(component_name="TradingOrder")
class OrderOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    client_order_id = serializers.CharField()
    exchange_order_id = serializers.CharField()
    symbol = serializers.CharField(source="instrument.symbol")
    side = serializers.CharField()
    order_type = serializers.CharField()
    post_only = serializers.BooleanField()
    time_in_force = serializers.CharField()
    quantity = serializers.DecimalField(max_digits=30, decimal_places=10)
    limit_price = serializers.DecimalField(max_digits=30, decimal_places=12, allow_null=True)
    state = serializers.CharField()
    filled_qty = serializers.DecimalField(max_digits=30, decimal_places=10)
    filled_cost = serializers.DecimalField(max_digits=32, decimal_places=12)
    avg_price = serializers.DecimalField(max_digits=30, decimal_places=12, allow_null=True)
    fees = serializers.DecimalField(max_digits=32, decimal_places=12)
    reason = serializers.CharField()
    external = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    submitted_at = serializers.DateTimeField(allow_null=True)
    accepted_at = serializers.DateTimeField(allow_null=True)
    closed_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="TradingFill")
class FillOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    order_id = serializers.IntegerField()
    symbol = serializers.CharField(source="instrument.symbol")
    exec_id = serializers.CharField()
    trade_id = serializers.IntegerField(allow_null=True)
    side = serializers.CharField()
    quantity = serializers.DecimalField(max_digits=30, decimal_places=10)
    price = serializers.DecimalField(max_digits=30, decimal_places=12)
    cost = serializers.DecimalField(max_digits=32, decimal_places=12)
    fee = serializers.DecimalField(max_digits=32, decimal_places=12)
    fee_details = serializers.JSONField()
    liquidity = serializers.CharField()
    realised_pnl = serializers.DecimalField(max_digits=32, decimal_places=12)
    source = serializers.CharField()  # type: ignore[assignment]  # a field named like Field.source
    executed_at = serializers.DateTimeField()


class OrderListApi(APIView):
    class FilterSerializer(serializers.Serializer):
        state = serializers.ChoiceField(choices=[s.value for s in OrderState], required=False)
        side = serializers.ChoiceField(choices=Side.values, required=False)
        symbol = serializers.CharField(required=False)
        client_order_id = serializers.CharField(required=False)
        exchange_order_id = serializers.CharField(required=False)
        open = serializers.BooleanField(required=False, allow_null=True, default=None)
        created_after = serializers.DateTimeField(required=False)
        created_before = serializers.DateTimeField(required=False)

    @extend_schema(parameters=[FilterSerializer], responses=OrderOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        return _paginated(request, self, selectors.order_list(filters=filters.validated_data), OrderOutputSerializer)


class OrderDetailApi(APIView):
    @extend_schema_serializer(component_name="TradingOrderEvent")
    class EventSerializer(serializers.Serializer):
        sequence = serializers.IntegerField()
        kind = serializers.CharField()
        source = serializers.CharField()  # type: ignore[assignment]  # a field named like Field.source
        from_state = serializers.CharField()
        to_state = serializers.CharField()
        exec_id = serializers.CharField()
        exchange_timestamp = serializers.DateTimeField(allow_null=True)
        actor = serializers.CharField()
        reason = serializers.CharField()
        recorded_at = serializers.DateTimeField()

    @extend_schema_serializer(component_name="TradingOrderDetail")
    class OutputSerializer(OrderOutputSerializer):
        events = serializers.SerializerMethodField()
        fills = FillOutputSerializer(many=True)

        def get_events(self, order: Any) -> list[dict[str, Any]]:
            return OrderDetailApi.EventSerializer(order.events.all(), many=True).data  # type: ignore[return-value]

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request, order_id: int) -> Response:
        order = selectors.order_get(order_id=order_id)
        if order is None:
            raise NotFoundError(f"order {order_id} does not exist")
        return Response(self.OutputSerializer(order).data)


class FillListApi(APIView):
    class FilterSerializer(serializers.Serializer):
        order_id = serializers.IntegerField(required=False, min_value=1)
        symbol = serializers.CharField(required=False)
        executed_after = serializers.DateTimeField(required=False)

    @extend_schema(parameters=[FilterSerializer], responses=FillOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        return _paginated(request, self, selectors.fill_list(filters=filters.validated_data), FillOutputSerializer)


class PositionListApi(APIView):
    @extend_schema_serializer(component_name="TradingPosition")
    class OutputSerializer(serializers.Serializer):
        symbol = serializers.CharField(source="instrument.symbol")
        quantity = serializers.DecimalField(max_digits=30, decimal_places=10)
        avg_price = serializers.DecimalField(max_digits=30, decimal_places=12)
        realised_pnl = serializers.DecimalField(max_digits=32, decimal_places=12)
        fees = serializers.DecimalField(max_digits=32, decimal_places=12)
        net_realised_pnl = serializers.DecimalField(max_digits=32, decimal_places=12)
        opened_at = serializers.DateTimeField(allow_null=True)
        updated_at = serializers.DateTimeField()

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return _paginated(request, self, selectors.position_list(), self.OutputSerializer)


class BalanceListApi(APIView):
    @extend_schema_serializer(component_name="TradingBalance")
    class OutputSerializer(serializers.Serializer):
        asset = serializers.CharField()
        total = serializers.DecimalField(max_digits=32, decimal_places=12)
        updated_at = serializers.DateTimeField()

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return _paginated(request, self, selectors.balance_list(), self.OutputSerializer)


class TradingStateApi(APIView):
    @extend_schema_serializer(component_name="TradingState")
    class OutputSerializer(serializers.Serializer):
        state = serializers.CharField()
        reason = serializers.CharField()
        changed_by = serializers.CharField()
        changed_at = serializers.DateTimeField(allow_null=True)

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        return Response(self.OutputSerializer(selectors.trading_state_get()).data)
