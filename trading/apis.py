"""Endpoints of the trading books: reads for authenticated users; orders, cancels and the kill switch for the
`traders` group; risk limits changed by staff."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core import fields
from core.errors import ApplicationError, NotFoundError
from core.pagination import paginated_response
from trading import kill_switch, limits, selectors, submission
from trading.executions import EventSource
from trading.instruments import instrument_rules
from trading.models import Decision, Instrument, OrderType, Side, TimeInForce
from trading.order_states import OrderState
from trading.orders import order_params_problems
from trading.permissions import IsTrader, actor_name
from trading.risk import OrderIntent, check_instrument_rules


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
    decision_id = serializers.IntegerField(
        source="decision.pk", allow_null=True, help_text="the decision that made the order (none for a manual one)"
    )


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
        rows = selectors.order_list(filters=filters.validated_data)
        return paginated_response(request, self, rows, OrderOutputSerializer, from_values=True)


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
        rows = selectors.fill_list(filters=filters.validated_data)
        return paginated_response(request, self, rows, FillOutputSerializer, from_values=True)


class DecisionOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    decision_id = serializers.CharField()
    symbol = serializers.CharField(source="instrument.symbol")
    bar_time = serializers.DateTimeField()
    model_version = serializers.CharField(help_text='what decided, e.g. "btc-usd-1m-direction v3", or "none"')
    model_name = serializers.CharField()
    model_version_number = serializers.IntegerField(allow_null=True)
    signal = serializers.IntegerField()
    confidence = serializers.DecimalField(max_digits=7, decimal_places=6)
    probabilities = serializers.DictField(child=serializers.FloatField(), help_text="class (-1, 0, 1) -> probability")
    expected_edge = serializers.DecimalField(
        max_digits=12, decimal_places=8, allow_null=True, help_text="expected return over the model's horizon"
    )
    cost = serializers.DecimalField(max_digits=12, decimal_places=8, allow_null=True, help_text="round-trip cost")
    capped_by = serializers.CharField(help_text="the limit that set the size")
    price = serializers.DecimalField(max_digits=30, decimal_places=12, allow_null=True)
    equity = serializers.DecimalField(max_digits=32, decimal_places=12, allow_null=True)
    current_qty = serializers.DecimalField(max_digits=30, decimal_places=10)
    target_qty = serializers.DecimalField(max_digits=30, decimal_places=10)
    order_qty = serializers.DecimalField(max_digits=30, decimal_places=10)
    order_id = serializers.IntegerField(allow_null=True)
    status = serializers.CharField()
    reason = serializers.CharField()
    created_at = serializers.DateTimeField()


class DecisionListApi(APIView):
    """Signals: one decision per closed bar (prediction, sizing, the order it made, or why none)."""

    class FilterSerializer(serializers.Serializer):
        symbol = serializers.CharField(required=False)
        status = serializers.ChoiceField(choices=Decision.Status.choices, required=False)
        bar_after = serializers.DateTimeField(required=False)

    @extend_schema(parameters=[FilterSerializer], responses=DecisionOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        rows = selectors.decision_list(filters=filters.validated_data)
        return paginated_response(request, self, rows, DecisionOutputSerializer, from_values=True)


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
        return paginated_response(request, self, selectors.position_list(), self.OutputSerializer)


class BalanceListApi(APIView):
    @extend_schema_serializer(component_name="TradingBalance")
    class OutputSerializer(serializers.Serializer):
        asset = serializers.CharField()
        total = serializers.DecimalField(max_digits=32, decimal_places=12)
        updated_at = serializers.DateTimeField()

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return paginated_response(request, self, selectors.balance_list(), self.OutputSerializer)


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


# --- writes: orders, the kill switch, risk limits ---------------------------------------------------------------

# No Kraken pair trades anything near these; larger values are input errors, not orders.
ABSURD_QUANTITY = Decimal("1e12")
ABSURD_PRICE = Decimal("1e12")


class _ReasonInput(serializers.Serializer):
    reason = serializers.CharField(max_length=1000, allow_blank=False, trim_whitespace=True)


def _valid(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    if not isinstance(request.data, dict):
        raise ApplicationError("The body must be a JSON object.", code="malformed_request")
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


def _instrument(symbol: str) -> Instrument:
    instrument = Instrument.objects.filter(symbol=symbol).first()
    if instrument is None:
        raise ApplicationError(
            f"Unknown symbol {symbol!r}.", code="unknown_symbol", details={"symbol": f"no instrument {symbol!r}"}
        )
    return instrument


class OrderCreateApi(APIView):
    """Place a manual order: validated against the instrument's rules (400, nothing written), then created and
    risk-checked in one transaction: 201 `submitted`, or 422 `risk_rejected` with every reason (the rejected
    order is kept, audited)."""

    permission_classes = [IsTrader]

    class InputSerializer(serializers.Serializer):
        symbol = serializers.CharField(max_length=32)
        side = serializers.ChoiceField(choices=Side.values)
        order_type = serializers.ChoiceField(choices=OrderType.values)
        quantity = fields.DecimalField(max_digits=30, decimal_places=10)
        limit_price = fields.DecimalField(max_digits=30, decimal_places=12, required=False, allow_null=True)
        time_in_force = serializers.ChoiceField(choices=TimeInForce.values, default=TimeInForce.GTC)
        post_only = serializers.BooleanField(default=False)
        client_order_id = serializers.RegexField(r"^[A-Za-z0-9_.:-]{1,64}$", required=False)
        reason = serializers.CharField(max_length=1000, required=False, default="", allow_blank=True)

        def validate_quantity(self, value: Decimal) -> Decimal:
            if value > ABSURD_QUANTITY:
                raise serializers.ValidationError(f"must not exceed {ABSURD_QUANTITY}")
            return value

        def validate_limit_price(self, value: Decimal | None) -> Decimal | None:
            if value is not None and value > ABSURD_PRICE:
                raise serializers.ValidationError(f"must not exceed {ABSURD_PRICE}")
            return value

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            # The order's own rules (positive quantity and price, limit / market, post-only): the services' check.
            problems = order_params_problems(
                side=attrs["side"],
                order_type=attrs["order_type"],
                quantity=attrs["quantity"],
                limit_price=attrs.get("limit_price"),
                time_in_force=attrs["time_in_force"],
                post_only=attrs["post_only"],
            )
            if problems:
                raise serializers.ValidationError(problems)
            return attrs

    @extend_schema(request=InputSerializer, responses={201: OrderOutputSerializer})
    def post(self, request: Request) -> Response:
        data = _valid(self.InputSerializer, request)
        instrument = _instrument(data["symbol"])
        intent = OrderIntent(
            side=data["side"],
            order_type=data["order_type"],
            quantity=data["quantity"],
            limit_price=data.get("limit_price"),
            post_only=data["post_only"],
        )
        problems = check_instrument_rules(instrument_rules(instrument), intent, data.get("limit_price"))
        if problems:
            raise ApplicationError(
                "; ".join(p.reason for p in problems),
                code=problems[0].code.value,
                details={"problems": [p.to_json() for p in problems]},
            )
        decision = submission.order_place(
            instrument=instrument,
            client_order_id=data.get("client_order_id") or f"manual-{uuid.uuid4().hex[:24]}",
            side=data["side"],
            order_type=data["order_type"],
            quantity=data["quantity"],
            limit_price=data.get("limit_price"),
            time_in_force=data["time_in_force"],
            post_only=data["post_only"],
            reason=data["reason"] or "manual order",
            source=EventSource.OPERATOR,
            actor=actor_name(request.user),
        )
        if decision.failures:
            raise submission.OrderRiskRejected(
                "The risk manager rejected the order: " + "; ".join(f.reason for f in decision.failures),
                details={
                    "order_id": decision.order.pk,
                    "client_order_id": decision.order.client_order_id,
                    "failures": [f.to_json() for f in decision.failures],
                },
            )
        status_code = 200 if decision.already_decided else 201
        return Response(OrderOutputSerializer(decision.order).data, status=status_code)


class OrderCancelApi(APIView):
    permission_classes = [IsTrader]

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=1000, required=False, default="", allow_blank=True)

    @extend_schema(request=InputSerializer, responses=OrderOutputSerializer)
    def post(self, request: Request, order_id: int) -> Response:
        data = _valid(self.InputSerializer, request)
        order = kill_switch.order_cancel_request(
            order_id=order_id,
            reason=data["reason"] or "canceled by an operator",
            source=EventSource.OPERATOR,
            actor=actor_name(request.user),
        )
        return Response(OrderOutputSerializer(order).data)


@extend_schema_serializer(component_name="TradingCancelSweep")
class CancelSweepOutputSerializer(serializers.Serializer):
    canceled = serializers.ListField(child=serializers.IntegerField())
    pending_cancel = serializers.ListField(child=serializers.IntegerField())
    already_pending = serializers.ListField(child=serializers.IntegerField())


class OrderCancelAllApi(APIView):
    permission_classes = [IsTrader]

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=1000, required=False, default="", allow_blank=True)
        symbol = serializers.CharField(max_length=32, required=False)

    @extend_schema(request=InputSerializer, responses=CancelSweepOutputSerializer)
    def post(self, request: Request) -> Response:
        data = _valid(self.InputSerializer, request)
        instrument = _instrument(data["symbol"]) if data.get("symbol") else None
        sweep = kill_switch.order_cancel_all(
            reason=data["reason"] or "cancel all by an operator",
            source=EventSource.OPERATOR,
            actor=actor_name(request.user),
            instrument=instrument,
        )
        return Response(CancelSweepOutputSerializer(sweep).data)


class TradingHaltApi(APIView):
    """The kill switch: HALTED, open orders to pending_cancel, an alert. A reason is required."""

    permission_classes = [IsTrader]
    InputSerializer = _ReasonInput

    @extend_schema_serializer(component_name="TradingHaltResult")
    class OutputSerializer(serializers.Serializer):
        state = TradingStateApi.OutputSerializer()
        changed = serializers.BooleanField()
        sweep = CancelSweepOutputSerializer()
        alert_id = serializers.IntegerField(source="alert.pk", allow_null=True, default=None)

    @extend_schema(request=_ReasonInput, responses=OutputSerializer)
    def post(self, request: Request) -> Response:
        data = _valid(self.InputSerializer, request)
        result = kill_switch.trading_halt(reason=data["reason"], actor=actor_name(request.user))
        return Response(self.OutputSerializer(result).data)


class TradingReduceApi(APIView):
    permission_classes = [IsTrader]

    @extend_schema(request=_ReasonInput, responses=TradingStateApi.OutputSerializer)
    def post(self, request: Request) -> Response:
        data = _valid(_ReasonInput, request)
        state = kill_switch.trading_reduce(reason=data["reason"], actor=actor_name(request.user))
        return Response(TradingStateApi.OutputSerializer(state).data)


class TradingResumeApi(APIView):
    """ACTIVE again. After a halt by a person, any trader. After a safety halt (reconciliation, start-up, risk
    monitor): staff or the `trading.resume_safety_halt` permission (403 `safety_halt`), and no open critical
    reconciliation discrepancy (409 `open_critical_discrepancies`) unless `override` is true with a reason of at
    least GALFRIDAY_RESUME_OVERRIDE_MIN_REASON characters (recorded as a SafetyOverride)."""

    permission_classes = [IsTrader]

    class InputSerializer(_ReasonInput):
        override = serializers.BooleanField(default=False)

    @extend_schema(request=InputSerializer, responses=TradingStateApi.OutputSerializer)
    def post(self, request: Request) -> Response:
        data = _valid(self.InputSerializer, request)
        user = request.user
        state = kill_switch.trading_resume(
            reason=data["reason"],
            actor=actor_name(user),
            may_lift_safety_halt=bool(user.is_staff) or user.has_perm("trading.resume_safety_halt"),
            override=data["override"],
        )
        return Response(TradingStateApi.OutputSerializer(state).data)


@extend_schema_serializer(component_name="TradingRiskLimit")
class RiskLimitOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    symbol = serializers.CharField(source="instrument.symbol", allow_null=True, default=None)
    max_order_notional = serializers.DecimalField(max_digits=32, decimal_places=12, allow_null=True)
    max_position_notional = serializers.DecimalField(max_digits=32, decimal_places=12, allow_null=True)
    max_gross_exposure = serializers.DecimalField(max_digits=32, decimal_places=12, allow_null=True)
    price_band = serializers.DecimalField(max_digits=8, decimal_places=6, allow_null=True)
    max_orders_per_minute = serializers.IntegerField(allow_null=True)
    max_data_age_seconds = serializers.IntegerField(allow_null=True)
    daily_loss_limit = serializers.DecimalField(max_digits=32, decimal_places=12, allow_null=True)
    max_drawdown = serializers.DecimalField(max_digits=8, decimal_places=6, allow_null=True)
    note = serializers.CharField()
    updated_at = serializers.DateTimeField()


class RiskLimitListApi(APIView):
    """The global limits first, then per-instrument overrides (empty values inherit the global ones)."""

    @extend_schema(responses=RiskLimitOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return paginated_response(request, self, selectors.risk_limit_list(), RiskLimitOutputSerializer)


class RiskLimitUpdateApi(APIView):
    """Staff: set the global limits (`symbol` null) or an instrument's overrides (null inherits). Audited with the
    required reason."""

    class InputSerializer(serializers.Serializer):
        symbol = serializers.CharField(max_length=32, allow_null=True)
        reason = serializers.CharField(max_length=1000)
        max_order_notional = fields.DecimalField(
            max_digits=32, decimal_places=12, required=False, allow_null=True, min_value=Decimal("0.000000000001")
        )
        max_position_notional = fields.DecimalField(
            max_digits=32, decimal_places=12, required=False, allow_null=True, min_value=Decimal("0.000000000001")
        )
        max_gross_exposure = fields.DecimalField(
            max_digits=32, decimal_places=12, required=False, allow_null=True, min_value=Decimal("0.000000000001")
        )
        price_band = fields.DecimalField(max_digits=8, decimal_places=6, required=False, allow_null=True)
        max_orders_per_minute = serializers.IntegerField(required=False, allow_null=True, min_value=1)
        max_data_age_seconds = serializers.IntegerField(required=False, allow_null=True, min_value=1)
        daily_loss_limit = fields.DecimalField(
            max_digits=32, decimal_places=12, required=False, allow_null=True, min_value=Decimal("0.000000000001")
        )
        max_drawdown = fields.DecimalField(max_digits=8, decimal_places=6, required=False, allow_null=True)
        note = serializers.CharField(max_length=1000, required=False, allow_blank=True)

    @extend_schema(request=InputSerializer, responses=RiskLimitOutputSerializer)
    def post(self, request: Request) -> Response:
        data = _valid(self.InputSerializer, request)
        symbol = data.pop("symbol")
        reason = data.pop("reason")
        instrument = _instrument(symbol) if symbol is not None else None
        row = limits.risk_limit_set(instrument=instrument, values=data, reason=reason, actor=actor_name(request.user))
        return Response(RiskLimitOutputSerializer(row).data)


class AlertListApi(APIView):
    """Kept for existing clients; `/api/alerting/alerts/` (state, severity and kind filters, acknowledge, resolve,
    silences) supersedes it. `unacknowledged=true` lists the alerts still firing."""

    @extend_schema_serializer(component_name="TradingAlert")
    class OutputSerializer(serializers.Serializer):
        id = serializers.IntegerField()
        kind = serializers.CharField()
        severity = serializers.CharField()
        state = serializers.CharField()
        message = serializers.CharField()
        context = serializers.JSONField()  # type: ignore[assignment]  # a field named like Field.context
        created_at = serializers.DateTimeField()
        acknowledged_by = serializers.CharField()
        acknowledged_at = serializers.DateTimeField(allow_null=True)

    class FilterSerializer(serializers.Serializer):
        unacknowledged = serializers.BooleanField(required=False, allow_null=True, default=None)

    @extend_schema(parameters=[FilterSerializer], responses=OutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        qs = selectors.alert_list(unacknowledged=filters.validated_data["unacknowledged"])
        return paginated_response(request, self, qs, self.OutputSerializer)
