"""order_create idempotency and validation; instruments from AssetPairs, then updated."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.errors import ApplicationError
from ingest.kraken.rest_types import AssetPair
from tests.trading.factories import InstrumentFactory
from trading.instruments import instrument_sync_from_asset_pair, instrument_upsert
from trading.models import Instrument, Order
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


def test_instrument_from_asset_pairs_then_updated() -> None:
    pair = AssetPair(
        key="XXBTZUSD",
        altname="XBTUSD",
        wsname="XBT/USD",
        base="XXBT",
        quote="ZUSD",
        pair_decimals=1,
        lot_decimals=8,
        cost_decimals=5,
        ordermin=D("0.0001"),
        costmin=D("0.5"),
        tick_size=D("0.1"),
        status="online",
        raw={},
    )
    instrument = instrument_sync_from_asset_pair(pair=pair)
    assert (instrument.symbol, instrument.base, instrument.quote, instrument.rest_symbol, instrument.v1_symbol) == (
        "BTC/USD",
        "BTC",
        "USD",
        "XXBTZUSD",
        "XBT/USD",
    )
    instrument_upsert(
        symbol="BTC/USD",
        base="BTC",
        quote="USD",
        status="post_only",
        price_precision=1,
        qty_precision=8,
        tick_size=D("0.1"),
        qty_increment=D("0.00000001"),
        ordermin=D("0.00005"),
        costmin=D("0.5"),
    )
    instrument = Instrument.objects.get()
    assert (instrument.status, instrument.ordermin, instrument.altname) == ("post_only", D("0.00005"), "XBTUSD")
    assert [h.history_type for h in instrument.history.order_by("history_date")] == ["+", "~"]


def test_instrument_with_a_bad_status_is_refused() -> None:
    with pytest.raises(Exception, match="status"):
        instrument_upsert(
            symbol="ETH/USD",
            base="ETH",
            quote="USD",
            status="exploded",
            price_precision=2,
            qty_precision=8,
            tick_size=D("0.01"),
            qty_increment=None,
            ordermin=D("0.001"),
            costmin=None,
        )
