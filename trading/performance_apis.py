"""The account's performance for integrations (and the dashboard): the equity curve with drawdown and the
drawdown limit, and PnL over today / this week / this month split into realised, unrealised and fees. Reads for
any authenticated user; money as decimal strings in the account currency."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ApplicationError
from core.rows import ValuesSerializer
from trading import performance, selectors

DEFAULT_WINDOW = timedelta(days=7)


@extend_schema_serializer(component_name="TradingEquityPoint")
class EquityPointSerializer(serializers.Serializer):
    at = serializers.DateTimeField(help_text="start of the bucket")
    equity = serializers.DecimalField(max_digits=32, decimal_places=12, help_text="the bucket's average")
    equity_low = serializers.DecimalField(max_digits=32, decimal_places=12)
    equity_high = serializers.DecimalField(max_digits=32, decimal_places=12)
    drawdown = serializers.DecimalField(max_digits=12, decimal_places=8, help_text="the bucket's worst, fraction")
    high_water_mark = serializers.DecimalField(max_digits=32, decimal_places=12)
    snapshots = serializers.IntegerField()


class EquityApi(APIView):
    """The equity curve between `since` (default: 7 days ago) and `until` (default: now), bucketed by minute (up to
    2 days), hour (up to 120 days) or day, with the latest snapshot and the drawdown limit in force."""

    class FilterSerializer(serializers.Serializer):
        since = serializers.DateTimeField(required=False)
        until = serializers.DateTimeField(required=False)

    @extend_schema_serializer(component_name="TradingEquity")
    class OutputSerializer(serializers.Serializer):
        currency = serializers.CharField()
        since = serializers.DateTimeField()
        until = serializers.DateTimeField()
        bucket = serializers.ChoiceField(choices=["minute", "hour", "day"])
        max_drawdown = serializers.DecimalField(max_digits=8, decimal_places=6, help_text="the limit, fraction")
        latest = EquityPointSerializer(allow_null=True)
        points = EquityPointSerializer(many=True)

    @extend_schema(parameters=[FilterSerializer], responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        now = timezone.now()
        until = filters.validated_data.get("until") or now
        since = filters.validated_data.get("since") or until - DEFAULT_WINDOW
        if since >= until or until - since > performance.MAX_WINDOW:
            raise ApplicationError(
                "`since` must be before `until`, at most ten years apart.",
                code="validation_error",
                details={"since": "must be before until", "until": "at most 3660 days after since"},
            )
        currency = selectors.account_currency()
        bucket, points = performance.equity_series(currency=currency, since=since, until=until)
        latest = performance.equity_latest(currency=currency)
        body: dict[str, Any] = {
            "currency": currency,
            "since": since,
            "until": until,
            "bucket": bucket,
            "max_drawdown": selectors.risk_limits_effective().max_drawdown,
            "latest": None
            if latest is None
            else {
                "at": latest.taken_at,
                "equity": latest.equity,
                "equity_low": latest.equity,
                "equity_high": latest.equity,
                "drawdown": latest.drawdown,
                "high_water_mark": latest.high_water_mark,
                "snapshots": 1,
            },
            "points": [],
        }
        data = self.OutputSerializer(body).data
        # The points (up to ~2,900) through the serializer's declaration read once (DRF's per-field walk was most of
        # a 7-day read); the same JSON.
        data["points"] = ValuesSerializer.of(EquityPointSerializer).represent_all(vars(p) for p in points)
        return Response(data)


@extend_schema_serializer(component_name="TradingPnlPeriod")
class PnlPeriodSerializer(serializers.Serializer):
    name = serializers.ChoiceField(choices=["today", "week", "month"])
    start = serializers.DateTimeField()
    realised = serializers.DecimalField(max_digits=32, decimal_places=12)
    fees = serializers.DecimalField(max_digits=32, decimal_places=12)
    unrealised = serializers.DecimalField(max_digits=32, decimal_places=12)
    net = serializers.DecimalField(max_digits=32, decimal_places=12)
    fills = serializers.IntegerField()
    unrealised_at_start_known = serializers.BooleanField(
        help_text="false: no equity snapshot at or before the start, the change is counted from zero"
    )


@extend_schema_serializer(component_name="TradingPositionMark")
class PositionMarkSerializer(serializers.Serializer):
    symbol = serializers.CharField()
    quote = serializers.CharField()
    price_precision = serializers.IntegerField()
    qty_precision = serializers.IntegerField()
    quantity = serializers.DecimalField(max_digits=30, decimal_places=10)
    avg_price = serializers.DecimalField(max_digits=30, decimal_places=12)
    mark = serializers.DecimalField(
        max_digits=30, decimal_places=12, allow_null=True, help_text="the last mid; null: no quote yet"
    )
    marked_at = serializers.DateTimeField(allow_null=True)
    unrealised_pnl = serializers.DecimalField(max_digits=32, decimal_places=12)
    realised_pnl = serializers.DecimalField(max_digits=32, decimal_places=12)
    fees = serializers.DecimalField(max_digits=32, decimal_places=12)
    opened_at = serializers.DateTimeField(allow_null=True)


class PnlApi(APIView):
    """PnL of today, this ISO week and this month (UTC) in the account currency: realised (gross) and fees of the
    fills since the period's start, unrealised as the change of the open positions' unrealised PnL since then (at
    the last mids), and their net; with the open positions at their marks."""

    @extend_schema_serializer(component_name="TradingPnl")
    class OutputSerializer(serializers.Serializer):
        currency = serializers.CharField()
        as_of = serializers.DateTimeField()
        periods = PnlPeriodSerializer(many=True)
        positions = PositionMarkSerializer(many=True)

    @extend_schema(responses=OutputSerializer)
    def get(self, request: Request) -> Response:
        now = timezone.now()
        currency = selectors.account_currency()
        positions = performance.positions_marked()
        periods = performance.pnl_periods(currency=currency, now=now, positions=positions)
        body = {"currency": currency, "as_of": now, "periods": periods, "positions": positions}
        return Response(self.OutputSerializer(body).data)
