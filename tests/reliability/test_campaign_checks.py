"""The fault campaign's invariant checks (`bench.faults.checks`) can fail: our books against a simulator account
(the shape of its `/_sim/state`) that agrees with them, then with one thing broken at a time."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from bench.faults import checks
from tests.trading.factories import InstrumentFactory
from trading.accounts import balance_set
from trading.models import Fill, Order, Position

pytestmark = pytest.mark.django_db

QTY, PRICE = Decimal("0.00100000"), Decimal("60000.0")
INITIAL = {"USD": Decimal("100000.0000"), "BTC": Decimal("1.0000000000")}


@pytest.fixture
def agreeing() -> dict[str, Any]:
    """One filled buy on both sides; balances moved by its cost and fee; the position it made."""
    instrument = InstrumentFactory()
    now = datetime.now(UTC)
    order = Order.objects.create(
        client_order_id="cid-1",
        exchange_order_id="O-1",
        instrument=instrument,
        side="buy",
        order_type="market",
        quantity=QTY,
        state="filled",
        filled_qty=QTY,
        filled_cost=QTY * PRICE,
        avg_price=PRICE,
    )
    Fill.objects.create(
        order=order,
        instrument=instrument,
        exec_id="T-1",
        side="buy",
        quantity=QTY,
        price=PRICE,
        cost=QTY * PRICE,
        fee=Decimal("0.24"),
        source="exchange",
        executed_at=now,
    )
    Position.objects.create(instrument=instrument, quantity=QTY, avg_price=PRICE)
    usd = INITIAL["USD"] - QTY * PRICE - Decimal("0.24")
    btc = INITIAL["BTC"] + QTY
    balance_set(asset="USD", total=usd)
    balance_set(asset="BTC", total=btc)
    return {
        "orders": [
            {"order_id": "O-1", "cl_ord_id": "cid-1", "source": "api", "filled": str(QTY), "status": "closed"},
            {"order_id": "O-M", "cl_ord_id": "", "source": "market", "filled": "1", "status": "open"},
        ],
        "trades": [{"txid": "T-1", "order_id": "O-1", "qty": str(QTY), "price": str(PRICE)}],
        "balances": {"USD": {"balance": str(usd)}, "BTC": {"balance": str(btc)}},
    }


def violations(state: dict[str, Any]) -> list[str]:
    found, _dust = checks.books(state, INITIAL)
    return checks.orders(state) + checks.fills(state) + found


def test_books_that_agree_with_the_exchange_pass(agreeing: dict[str, Any]) -> None:
    assert violations(agreeing) == []


def test_a_client_order_id_twice_on_the_exchange_is_a_duplicate(agreeing: dict[str, Any]) -> None:
    state = copy.deepcopy(agreeing)
    state["orders"].append({**state["orders"][0], "order_id": "O-2", "filled": "0", "status": "canceled"})
    found = checks.orders(state)
    assert any("duplicate order: client order id cid-1 2 times" in v for v in found), found


def test_an_exchange_trade_without_a_local_fill_is_lost(agreeing: dict[str, Any]) -> None:
    state = copy.deepcopy(agreeing)
    state["trades"].append({"txid": "T-2", "order_id": "O-1", "qty": "0.0001", "price": "60000.0"})
    assert checks.fills(state) == ["lost fill: exchange trade T-2 of order O-1 (0.0001 @ 60000.0)"]


def test_an_open_local_order_and_an_unknown_exchange_order_are_reported(agreeing: dict[str, Any]) -> None:
    Order.objects.filter(client_order_id="cid-1").update(state="submitted")
    state = copy.deepcopy(agreeing)
    state["orders"].append({"order_id": "O-9", "cl_ord_id": "cid-9", "source": "ws", "filled": "0", "status": "open"})
    found = checks.orders(state)
    assert "exchange order O-9 (cid-9) unknown locally" in found
    assert any("still submitted" in v for v in found), found


def test_balances_beyond_the_tolerance_fail_and_dust_within_it_is_only_recorded(agreeing: dict[str, Any]) -> None:
    state = copy.deepcopy(agreeing)
    usd = Decimal(state["balances"]["USD"]["balance"])
    state["balances"]["USD"]["balance"] = str(usd + Decimal("0.0001"))
    found, dust = checks.books(state, INITIAL)
    assert found == []
    assert {k: Decimal(v) for k, v in dust.items()} == {"USD": Decimal("0.0001")}
    state["balances"]["USD"]["balance"] = str(usd + Decimal("5"))
    found, _ = checks.books(state, INITIAL)
    assert [v.split(":")[0] for v in found] == ["balance USD"]


def test_a_position_the_exchange_balance_does_not_show_fails(agreeing: dict[str, Any]) -> None:
    Position.objects.update(quantity=QTY * 2)
    found, _ = checks.books(agreeing, INITIAL)
    assert any(v.startswith("position BTC/USD: ours 0.00200000") for v in found), found
