"""`core.rows.ValuesSerializer` gives, from `values()` rows, exactly what the DRF serializer gives from model
instances: for every list endpoint that uses it (orders, fills, decisions, reconciliation runs and discrepancies),
with the nulls their rows can hold, and for any decimal or aware datetime its converters see."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rest_framework import serializers

from core.rows import ValuesSerializer, converter
from reconciliation import selectors as reconciliation_selectors
from reconciliation.apis import DiscrepancyOutputSerializer, RunOutputSerializer
from reconciliation.models import Discrepancy, ReconciliationRun
from tests.trading.factories import placed_order, status, trade
from trading import selectors
from trading.apis import DecisionOutputSerializer, FillOutputSerializer, OrderOutputSerializer
from trading.execution_reports import execution_report_apply
from trading.executions import ExecType
from trading.models import Decision


def same_output(serializer: type[serializers.Serializer], queryset: Any) -> None:  # type: ignore[type-arg]
    plan = ValuesSerializer.of(serializer)
    expected = [dict(row) for row in serializer(queryset, many=True).data]
    assert expected, "no rows to compare"
    assert plan.represent_all(queryset.values(*plan.lookups)) == expected


@pytest.mark.django_db
def test_trading_lists_read_from_values_as_drf_serializes_them() -> None:
    filled = placed_order(side="buy", qty="1", price="100")
    execution_report_apply(event=status("OV-1", ExecType.NEW, cl_ord_id=filled.client_order_id))
    execution_report_apply(event=trade("OV-1", "TV-1", "0.4", "100.05", fee="0.26"))
    bare = placed_order(side="sell", qty="2", price="120")
    now = datetime.now(UTC)
    for i, order in enumerate([filled, None]):
        Decision.objects.create(
            decision_id=f"BTC/USD:rows:{i}",
            instrument=bare.instrument,
            bar_time=now - timedelta(minutes=i),
            model_version="rows v1",
            signal=1,
            confidence=Decimal("0.612345"),
            probabilities={"-1": 0.1, "0": 0.2, "1": 0.7},
            status="ordered" if order else "no_trade",
            order=order,
        )
    same_output(OrderOutputSerializer, selectors.order_list())  # one with a decision, one without
    same_output(FillOutputSerializer, selectors.fill_list())
    same_output(DecisionOutputSerializer, selectors.decision_list())  # one with an order, one without


@pytest.mark.django_db
def test_reconciliation_lists_read_from_values_as_drf_serializes_them() -> None:
    order = placed_order(side="buy", qty="1", price="100")
    now = datetime.now(UTC)
    done = ReconciliationRun.objects.create(
        trigger="schedule", status="clean", started_at=now, finished_at=now, duration_ms=12.5, counts={"orders": 1}
    )
    ReconciliationRun.objects.create(trigger="operator", status="running", started_at=now)
    Discrepancy.objects.create(
        run=done, kind=Discrepancy.Kind.choices[0][0], severity="critical", instrument=order.instrument,
        order=order, difference=Decimal("-0.000000000001"), evidence={"local": "1"},
    )  # fmt: skip
    Discrepancy.objects.create(run=done, kind=Discrepancy.Kind.choices[0][0], severity="info", asset="USD")
    same_output(RunOutputSerializer, reconciliation_selectors.run_list())  # a run not finished: nulls
    same_output(DiscrepancyOutputSerializer, reconciliation_selectors.discrepancy_list())  # no instrument: null


def test_a_serializer_with_a_computed_field_is_refused() -> None:
    class Computed(serializers.Serializer):  # type: ignore[type-arg]
        id = serializers.IntegerField()
        label = serializers.SerializerMethodField()

    with pytest.raises(TypeError, match="label"):
        ValuesSerializer(Computed)


def drf_or_error(convert: Any, value: Any) -> Any:
    try:
        return convert(value)
    except (InvalidOperation, ArithmeticError) as exc:
        return type(exc)


@given(
    st.decimals(allow_nan=False, allow_infinity=False, min_value=Decimal("-1e21"), max_value=Decimal("1e21")),
    st.sampled_from([(30, 10), (32, 12), (7, 6), (12, 8), (8, 6)]),
)
def test_the_decimal_converter_is_drfs(value: Decimal, digits_places: tuple[int, int]) -> None:
    field = serializers.DecimalField(max_digits=digits_places[0], decimal_places=digits_places[1])
    assert drf_or_error(converter(field), value) == drf_or_error(field.to_representation, value)


@given(
    # naive bounds, as hypothesis wants them; the time zone (or none) is put on below
    st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1)),  # noqa: DTZ001
    st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8)), None]),
)
def test_the_datetime_converter_is_drfs(value: datetime, tz: Any) -> None:
    field = serializers.DateTimeField()
    value = value.replace(tzinfo=tz)
    assert converter(field)(value) == field.to_representation(value)
