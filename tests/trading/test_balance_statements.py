"""Balance statements of the exchange (`balance_set(as_of=...)`) and fills count each trade once, in any order of
arrival (the simulator-backed case, the one the fault campaign found, is tests/ingest/test_balance_statements.py)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from tests.trading.factories import T0, placed_order, trade
from trading.accounts import balance_set, fill_fee_correct
from trading.execution_reports import execution_report_apply
from trading.models import Balance, Fill

pytestmark = pytest.mark.django_db
D = Decimal


def totals() -> dict[str, Decimal]:
    return {b.asset: b.total for b in Balance.objects.all()}


def at(seconds: float):  # type: ignore[no-untyped-def]
    return T0 + timedelta(hours=1, seconds=seconds)


def sell_fill(exec_id: str, seconds: float):  # type: ignore[no-untyped-def]
    order = placed_order(side="sell", qty="0.5", price="100")
    event = trade("O-" + exec_id, exec_id, "0.5", "100", fee="0.2", cl_ord_id=order.client_order_id)
    return replace(event, timestamp=at(seconds))


def test_a_fill_the_statement_already_holds_does_not_move_the_balance_again() -> None:
    balance_set(asset="BTC", total=D("1"), as_of=at(0))
    balance_set(asset="USD", total=D("1000"), as_of=at(0))
    balance_set(asset="BTC", total=D("0.5"), as_of=at(10))  # the exchange, after the sell at 5
    balance_set(asset="USD", total=D("1049.8"), as_of=at(10))
    execution_report_apply(event=sell_fill("T-held", 5))  # its execution comes late
    assert totals() == {"BTC": D("0.5"), "USD": D("1049.8")}
    execution_report_apply(event=sell_fill("T-new", 15))  # a trade after the statement moves it
    assert totals() == {"BTC": D("0"), "USD": D("1099.6")}


def test_a_statement_that_does_not_hold_an_applied_fill_keeps_it_and_an_older_statement_is_ignored() -> None:
    balance_set(asset="BTC", total=D("1"), as_of=at(0))
    balance_set(asset="USD", total=D("1000"), as_of=at(0))
    execution_report_apply(event=sell_fill("T-1", 5))
    assert totals() == {"BTC": D("0.5"), "USD": D("1049.8")}
    balance_set(asset="BTC", total=D("1"), as_of=at(3))  # stated before the sell (a late snapshot)
    balance_set(asset="USD", total=D("1000"), as_of=at(3))
    assert totals() == {"BTC": D("0.5"), "USD": D("1049.8")}
    balance_set(asset="BTC", total=D("9"), as_of=at(1))  # older than the last statement: ignored
    assert totals() == {"BTC": D("0.5"), "USD": D("1049.8")}
    balance_set(asset="USD", total=D("1049.7"), as_of=at(6))  # the exchange's own number wins (its rounding)
    assert totals() == {"BTC": D("0.5"), "USD": D("1049.7")}


def test_without_a_statement_time_fills_move_balances_as_before() -> None:
    balance_set(asset="BTC", total=D("1"))
    balance_set(asset="USD", total=D("1000"))
    execution_report_apply(event=sell_fill("T-1", 5))
    assert totals() == {"BTC": D("0.5"), "USD": D("1049.8")}
    balance_set(asset="BTC", total=D("2"))  # a REST read (reconciliation): set as given
    assert totals()["BTC"] == D("2")


def test_a_fee_correction_the_statement_already_holds_does_not_move_the_balance_again() -> None:
    balance_set(asset="BTC", total=D("1"), as_of=at(0))
    balance_set(asset="USD", total=D("1000"), as_of=at(0))
    execution_report_apply(event=sell_fill("T-fee", 5))  # fee 0.2 recorded
    assert totals() == {"BTC": D("0.5"), "USD": D("1049.8")}
    balance_set(asset="USD", total=D("1049.9"), as_of=at(10))  # the exchange charged 0.1 in the end
    fill_fee_correct(exec_id="T-fee", fee=D("0.1"), fee_asset="USD")
    assert totals() == {"BTC": D("0.5"), "USD": D("1049.9")}  # not 1050.0: the statement holds the true fee
    assert Fill.objects.get(exec_id="T-fee").fee == D("0.1")
    execution_report_apply(event=sell_fill("T-later", 15))  # a fill after the statement still moves it
    fill_fee_correct(exec_id="T-later", fee=D("0.1"), fee_asset="USD")
    assert totals() == {"BTC": D("0"), "USD": D("1099.8")}  # 1049.9 + 50 - 0.2, then the 0.1 back
