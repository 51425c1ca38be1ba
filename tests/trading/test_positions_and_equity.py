"""Positions, PnL and equity computed from fills in the database (hand-computed expectations)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from core.errors import ApplicationError
from tests.trading.factories import T0, InstrumentFactory, placed_order, trade
from trading.accounts import balance_set, equity_snapshot_take
from trading.execution_reports import execution_report_apply
from trading.models import Balance, Fill, Position
from trading.selectors import position_valuation

pytestmark = pytest.mark.django_db
D = Decimal


def fill(side: str, qty: str, price: str, fee: str) -> Fill:
    order = placed_order(side=side, qty=qty, price=price)
    result = execution_report_apply(
        event=trade(
            f"O-{order.client_order_id}",
            f"T-{order.client_order_id}",
            qty,
            price,
            fee=fee,
            cl_ord_id=order.client_order_id,
        )
    )
    return Fill.objects.get(pk=result.fill_id)


def test_long_partial_close_flip_short_and_flip_back_with_fees() -> None:
    realised = [
        fill("buy", "2", "100", "0.2").realised_pnl,
        fill("buy", "1", "130", "0.13").realised_pnl,
        fill("sell", "1", "120", "0.12").realised_pnl,  # +10 against the 110 average
        fill("sell", "3", "90", "0.27").realised_pnl,  # closes 2 at -20 each, opens short 1@90
        fill("buy", "2", "80", "0.16").realised_pnl,  # covers 1 at +10, opens long 1@80
    ]
    assert realised == [D(0), D(0), D("10"), D("-40"), D("10")]
    position = Position.objects.get()
    assert (position.quantity, position.avg_price, position.realised_pnl, position.fees) == (
        D("1"),
        D("80"),
        D("-20"),
        D("0.88"),
    )
    assert position.net_realised_pnl == D("-20.88")
    valuation = position_valuation(position=position, mark=D("85"))
    assert valuation.unrealised_pnl == D("5")
    assert valuation.total_pnl == D("-15.88")
    # cash: -200 -130 +120 +270 -160 = -100, less 0.88 fees; coin: +2 +1 -1 -3 +2 = 1
    assert Balance.objects.get(asset="USD").total == D("-100.88")
    assert Balance.objects.get(asset="BTC").total == D("1")
    # total PnL agrees with the cash view: cash + coin at the mark
    assert Balance.objects.get(asset="USD").total + D("85") == valuation.total_pnl


def test_position_opened_at_follows_flat_and_flip() -> None:
    fill("buy", "1", "100", "0")
    opened = Position.objects.get().opened_at
    assert opened is not None
    fill("sell", "1", "100", "0")
    assert Position.objects.get().opened_at is None
    fill("sell", "1", "100", "0")
    assert Position.objects.get().opened_at is not None


def test_equity_snapshots_track_high_water_mark_and_drawdown() -> None:
    InstrumentFactory()
    balance_set(asset="USD", total=D("10000"))
    fill("buy", "1", "5000", "5")  # USD 4995, BTC 1 at 5000 avg
    first = equity_snapshot_take(marks={"BTC/USD": D("6000")}, at=T0)
    assert (first.equity, first.unrealised_pnl, first.fees, first.high_water_mark, first.drawdown) == (
        D("10995"),
        D("1000"),
        D("5"),
        D("10995"),
        D("0"),
    )
    second = equity_snapshot_take(marks={"BTC/USD": D("4000")}, at=T0 + timedelta(minutes=1))
    assert second.equity == D("8995")
    assert second.high_water_mark == D("10995")
    assert second.drawdown == D("0.18190086")  # 2000 / 10995
    third = equity_snapshot_take(marks={"BTC/USD": D("7000")}, at=T0 + timedelta(minutes=2))
    assert (third.high_water_mark, third.drawdown) == (D("11995"), D("0"))


def test_equity_needs_a_mark_for_every_holding() -> None:
    fill("buy", "1", "100", "0")
    with pytest.raises(ApplicationError) as info:
        equity_snapshot_take(marks={})
    assert info.value.code == "missing_marks"
    assert info.value.details == {"missing": ["BTC", "BTC/USD"]}


def test_balance_snapshot_overrides_the_running_total() -> None:
    fill("buy", "1", "100", "0.1")
    assert Balance.objects.get(asset="USD").total == D("-100.1")
    balance_set(asset="USD", total=D("899.9"))
    assert Balance.objects.get(asset="USD").total == D("899.9")
