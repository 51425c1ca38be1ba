"""order_create: idempotent by client order id, a reused id with other parameters refused, invalid parameters
refused with the reason and nothing written."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.errors import ApplicationError
from tests.trading.factories import InstrumentFactory
from trading.models import Order
from trading.orders import OrderConflict, order_create

pytestmark = pytest.mark.django_db
D = Decimal


def make(**overrides: object) -> Order:
    params: dict[str, object] = {
        "client_order_id": "decision-1",
        "instrument": InstrumentFactory(),
        "side": "buy",
        "order_type": "limit",
        "quantity": D("0.01"),
        "limit_price": D("50000.0"),
    }
    params.update(overrides)
    return order_create(**params)  # type: ignore[arg-type]


def test_same_client_order_id_returns_the_same_order() -> None:
    first = make()
    assert make(quantity=D("0.0100")).pk == first.pk
    assert Order.objects.count() == 1
    assert first.events.count() == 1


def test_reused_client_order_id_with_other_parameters_is_a_conflict() -> None:
    make()
    with pytest.raises(OrderConflict) as info:
        make(quantity=D("0.02"))
    assert info.value.details["existing"] == {"quantity": "0.0100000000"}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"quantity": D("0")}, "quantity"),
        ({"quantity": D("-1")}, "quantity"),
        ({"limit_price": None}, "limit_price"),
        ({"order_type": "market"}, "limit_price"),
        ({"order_type": "market", "limit_price": None, "post_only": True}, "post_only"),
        ({"post_only": True, "time_in_force": "ioc"}, "post_only"),
        ({"side": "hold"}, "side"),
    ],
)
def test_invalid_orders_are_refused_with_the_reason(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(ApplicationError) as info:
        make(**overrides)
    assert info.value.code == "validation_error"
    assert field in info.value.details
    assert not Order.objects.exists()
