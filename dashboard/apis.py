"""The read endpoints the Overview and Market & trades pages fetch (under `/dashboard-api/`: JSON, login
required, the API's one error shape): a symbol's candles with its decisions and fills, and "why did this trade
happen". Equity, PnL, positions, the trading state and the alerts come from the trading API itself."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import ApplicationError, NotFoundError
from dashboard import selectors
from dashboard.formatting import instrument_places
from trading.models import Instrument


def plain(value: Any) -> Any:
    """JSON of the page's data: decimals as strings (never floats), times as ISO 8601."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


class CandlesApi(APIView):
    """One-minute candles of `symbol` (the newest `bars`, up to 2,000) with the decisions that traded or signalled
    and the fills in their window."""

    class FilterSerializer(serializers.Serializer):
        symbol = serializers.CharField(max_length=32)
        bars = serializers.IntegerField(min_value=1, max_value=selectors.MAX_BARS, default=selectors.DEFAULT_BARS)

    @extend_schema(parameters=[FilterSerializer], responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        symbol = filters.validated_data["symbol"]
        instrument = Instrument.objects.filter(symbol=symbol).first()
        if instrument is None:
            raise ApplicationError(
                f"Unknown symbol {symbol!r}.", code="unknown_symbol", details={"symbol": f"no instrument {symbol!r}"}
            )
        body = selectors.candles(instrument=instrument, bars=filters.validated_data["bars"])
        return Response(plain({**body, "places": instrument_places(instrument)}))


class TradeExplanationApi(APIView):
    """Why did this trade happen: from a fill (`fill`) or a decision (`decision`, its primary key) to the order, its
    risk check, the decision (sizing, the limit that capped it, expected edge against cost) and the prediction
    (model and version, class probabilities, features)."""

    error_statuses = ("404",)  # the fill or decision the query names may not exist (the schema documents it)

    class FilterSerializer(serializers.Serializer):
        fill = serializers.IntegerField(min_value=1, required=False)
        decision = serializers.IntegerField(min_value=1, required=False)

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if ("fill" in attrs) == ("decision" in attrs):
                raise serializers.ValidationError("give exactly one of `fill` and `decision`")
            return attrs

    @extend_schema(parameters=[FilterSerializer], responses=OpenApiTypes.OBJECT)
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        if "fill" in filters.validated_data:
            chain = selectors.chain_from_fill(filters.validated_data["fill"])
            what = f"fill {filters.validated_data['fill']}"
        else:
            chain = selectors.chain_from_decision(filters.validated_data["decision"])
            what = f"decision {filters.validated_data['decision']}"
        if chain is None:
            raise NotFoundError(f"{what} does not exist")
        return Response(plain(selectors.explanation(chain)))
