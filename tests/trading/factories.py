"""factory_boy factories and small builders for the trading tests."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import factory

from trading.executions import ExecType, ExecutionEvent, FeeAmount
from trading.models import EquitySnapshot, Instrument, Order

_clock = itertools.count()
T0 = datetime(2025, 1, 2, 12, 0, tzinfo=UTC)


def tick() -> datetime:
    """Strictly increasing exchange timestamps."""
    return T0 + timedelta(milliseconds=next(_clock))


class InstrumentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Instrument
        django_get_or_create = ("symbol",)

    symbol = "BTC/USD"
    rest_symbol = "XXBTZUSD"
    altname = "XBTUSD"
    v1_symbol = "XBT/USD"
    base = "BTC"
    quote = "USD"
    price_precision = 1
    qty_precision = 8
    tick_size = Decimal("0.1")
    qty_increment = Decimal("0.00000001")
    ordermin = Decimal("0.0001")
    costmin = Decimal("0.5")


class EthInstrumentFactory(InstrumentFactory):
    symbol = "ETH/USD"
    rest_symbol = "XETHZUSD"
    altname = "ETHUSD"
    v1_symbol = "ETH/USD"
    base = "ETH"
    tick_size = Decimal("0.01")
    price_precision = 2


class OrderFactory(factory.django.DjangoModelFactory):
    """An order as `order_create` leaves it (state created). Use the services to move it."""

    class Meta:
        model = Order

    client_order_id = factory.Sequence(lambda n: f"gf-{n:06d}")
    instrument = factory.SubFactory(InstrumentFactory)
    side = "buy"
    order_type = "limit"
    quantity = Decimal("1")
    limit_price = Decimal("100")


def trade(
    order_id: str,
    exec_id: str,
    qty: str,
    price: str,
    *,
    fee: str | None = None,
    fee_asset: str = "USD",
    cl_ord_id: str | None = None,
    side: str | None = None,
    order_status: str | None = None,
    **extra: Any,
) -> ExecutionEvent:
    q, p = Decimal(qty), Decimal(price)
    return ExecutionEvent(
        order_id=order_id,
        exec_type=ExecType.TRADE,
        timestamp=tick(),
        cl_ord_id=cl_ord_id,
        side=side,
        exec_id=exec_id,
        last_qty=q,
        last_price=p,
        cost=q * p,
        fees=(FeeAmount(fee_asset, Decimal(fee)),) if fee is not None else (),
        liquidity_ind="t",
        order_status=order_status,
        **extra,
    )


def status(order_id: str, exec_type: ExecType, *, cl_ord_id: str | None = None, **extra: Any) -> ExecutionEvent:
    return ExecutionEvent(order_id=order_id, exec_type=exec_type, timestamp=tick(), cl_ord_id=cl_ord_id, **extra)


def placed_order(
    *, side: str = "buy", qty: str = "1", price: str = "100", instrument: Instrument | None = None, submit: bool = True
) -> Order:
    """An order made the way the pipeline makes it: `order_create`, then `order_mark_submitted`."""
    from trading.orders import order_create, order_mark_submitted

    order = order_create(
        client_order_id=f"gf-{next(_clock):06d}",
        instrument=instrument or InstrumentFactory(),
        side=side,
        order_type="limit",
        quantity=Decimal(qty),
        limit_price=Decimal(price),
    )
    if submit:
        order = order_mark_submitted(order_id=order.pk)
    return order


def equity_snapshot(
    *, equity: str, high_water_mark: str | None = None, currency: str = "USD", at: datetime | None = None
) -> EquitySnapshot:
    """An equity snapshot as the risk monitor records one (the drawdown follows from the high-water mark)."""
    from django.utils import timezone

    value = Decimal(equity)
    hwm = Decimal(high_water_mark) if high_water_mark is not None else value
    snapshot: EquitySnapshot = EquitySnapshot.objects.create(
        taken_at=at or timezone.now(),
        currency=currency,
        equity=value,
        realised_pnl=0,
        unrealised_pnl=0,
        fees=0,
        high_water_mark=hwm,
        drawdown=(hwm - value) / hwm if hwm else Decimal(0),
    )
    return snapshot
