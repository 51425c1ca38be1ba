"""Average-cost accounting by hand-computed cases (pure functions, no database)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from trading.pnl import PositionState, apply_fill, drawdown, unrealised_pnl

D = Decimal


def run(fills: list[tuple[str, str, str, str]]) -> tuple[PositionState, list[Decimal]]:
    state = PositionState()
    realised: list[Decimal] = []
    for side, qty, price, fee in fills:
        outcome = apply_fill(state, side=side, qty=D(qty), price=D(price), fee=D(fee))
        state = outcome.state
        realised.append(outcome.realised)
    return state, realised


def test_adding_to_a_long_reaverages_and_partial_close_realises_against_the_average() -> None:
    # buy 2@100, buy 1@130 -> 3@110; sell 1@120 -> realise 1*(120-110) = 10, 2@110 left
    state, realised = run([("buy", "2", "100", "0.2"), ("buy", "1", "130", "0.13"), ("sell", "1", "120", "0.12")])
    assert state.quantity == D("2")
    assert state.avg_price == D("110")
    assert realised == [D(0), D(0), D("10")]
    assert state.realised_pnl == D("10")
    assert state.fees == D("0.45")


def test_flip_long_to_short_and_back_realises_the_closed_part_and_opens_the_rest_at_the_fill_price() -> None:
    # 3@110 after two buys; sell 1@120 (+10); sell 3@90: closes 2 at (90-110) = -40, opens short 1@90;
    # buy 2@80: covers 1 at (90-80) = +10, opens long 1@80.
    state, realised = run(
        [
            ("buy", "2", "100", "0"),
            ("buy", "1", "130", "0"),
            ("sell", "1", "120", "0"),
            ("sell", "3", "90", "0.27"),
            ("buy", "2", "80", "0.16"),
        ]
    )
    assert realised == [D(0), D(0), D("10"), D("-40"), D("10")]
    assert state.quantity == D("1")
    assert state.avg_price == D("80")
    assert state.realised_pnl == D("-20")
    assert state.fees == D("0.43")
    assert unrealised_pnl(quantity=state.quantity, avg_price=state.avg_price, mark=D("85")) == D("5")


def test_short_position_gains_when_the_price_falls() -> None:
    # sell 2@50, sell 2@60 -> -4@55; buy 1@40 -> +15 realised; -3@55 marked at 50 -> +15 unrealised
    state, realised = run([("sell", "2", "50", "0"), ("sell", "2", "60", "0"), ("buy", "1", "40", "0")])
    assert state.quantity == D("-3")
    assert state.avg_price == D("55")
    assert realised[-1] == D("15")
    assert unrealised_pnl(quantity=state.quantity, avg_price=state.avg_price, mark=D("50")) == D("15")
    assert unrealised_pnl(quantity=state.quantity, avg_price=state.avg_price, mark=D("60")) == D("-15")


def test_closing_exactly_leaves_a_flat_position_with_no_entry_price() -> None:
    state, realised = run([("buy", "0.5", "20000", "0"), ("sell", "0.5", "21000", "0")])
    assert state.quantity == 0
    assert state.avg_price == 0
    assert realised[-1] == D("500")


def test_average_is_rounded_half_even_to_twelve_places() -> None:
    state, _ = run([("buy", "1", "100", "0"), ("buy", "2", "101", "0")])
    assert state.avg_price == D("100.666666666667")  # 302 / 3


def test_fill_needs_positive_quantity_and_price() -> None:
    with pytest.raises(ValueError):
        apply_fill(PositionState(), side="buy", qty=D("0"), price=D("1"))
    with pytest.raises(ValueError):
        apply_fill(PositionState(), side="hold", qty=D("1"), price=D("1"))


def test_drawdown_is_the_fraction_of_the_high_water_mark_lost() -> None:
    assert drawdown(high_water_mark=D("100000"), equity=D("85000")) == D("0.15")
    assert drawdown(high_water_mark=D("100000"), equity=D("120000")) == 0
    assert drawdown(high_water_mark=D("0"), equity=D("-5")) == 0
