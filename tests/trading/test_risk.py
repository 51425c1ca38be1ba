"""The pure pre-trade check: every rejection code, REDUCING semantics, all failures at once (no database)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from trading.risk import (
    DEFAULT_LIMITS,
    InstrumentRules,
    OrderIntent,
    RiskCode,
    RiskSnapshot,
    check_order,
    limits_merged,
)

D = Decimal
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
RULES = InstrumentRules(
    symbol="BTC/USD",
    base="BTC",
    quote="USD",
    tick_size=D("0.1"),
    ordermin=D("0.0001"),
    costmin=D("0.5"),
    qty_increment=D("0.00000001"),
)


def snap(**changes: Any) -> RiskSnapshot:
    base = RiskSnapshot(
        now=NOW,
        trading_state="active",
        rules=RULES,
        limits=DEFAULT_LIMITS,
        base_available=D("10"),
        quote_available=D("100000"),
        mid=D("100"),
        mid_at=NOW - timedelta(seconds=1),
        equity=D("100000"),
        high_water_mark=D("100000"),
    )
    return dataclasses.replace(base, **changes)


def buy(qty: str = "1", price: str | None = "100", **kw: Any) -> OrderIntent:
    return OrderIntent(
        side="buy",
        order_type="limit" if price else "market",
        quantity=D(qty),
        limit_price=D(price) if price else None,
        **kw,
    )


def sell(qty: str = "1", price: str | None = "100", **kw: Any) -> OrderIntent:
    return OrderIntent(
        side="sell",
        order_type="limit" if price else "market",
        quantity=D(qty),
        limit_price=D(price) if price else None,
        **kw,
    )


def codes(intent: OrderIntent, snapshot: RiskSnapshot) -> list[str]:
    return check_order(intent, snapshot).codes


def test_a_sound_order_passes() -> None:
    result = check_order(buy(), snap())
    assert result.ok, result.failures
    assert check_order(sell(price=None), snap()).ok


@pytest.mark.parametrize(
    ("intent", "changes", "code"),
    [
        (buy(), {"trading_state": "halted"}, RiskCode.TRADING_HALTED),
        (buy(), {"trading_state": "reducing"}, RiskCode.REDUCE_ONLY),
        (buy(), {"rules": dataclasses.replace(RULES, status="maintenance")}, RiskCode.EXCHANGE_MAINTENANCE),
        (buy(), {"rules": dataclasses.replace(RULES, status="cancel_only")}, RiskCode.EXCHANGE_CANCEL_ONLY),
        (buy(), {"rules": dataclasses.replace(RULES, status="post_only")}, RiskCode.EXCHANGE_POST_ONLY),
        (buy(price=None), {"rules": dataclasses.replace(RULES, status="limit_only")}, RiskCode.EXCHANGE_LIMIT_ONLY),
        (buy(), {"rules": dataclasses.replace(RULES, status="reduce_only")}, RiskCode.EXCHANGE_REDUCE_ONLY),
        (buy(), {"rules": dataclasses.replace(RULES, status="delisted")}, RiskCode.EXCHANGE_UNAVAILABLE),
        (buy(qty="0.00001"), {}, RiskCode.BELOW_ORDERMIN),
        (buy(qty="0.000000001"), {}, RiskCode.QTY_OFF_INCREMENT),
        (buy(price="100.05"), {}, RiskCode.PRICE_OFF_TICK),
        (buy(qty="0.001"), {}, RiskCode.BELOW_COSTMIN),
        (buy(qty="101"), {}, RiskCode.MAX_ORDER_NOTIONAL),
        (buy(qty="90"), {"position_qty": D("420")}, RiskCode.MAX_POSITION),
        (buy(qty="90"), {"gross_exposure": D("95000")}, RiskCode.MAX_GROSS_EXPOSURE),
        (buy(price="106"), {}, RiskCode.PRICE_BAND),
        (buy(price="94"), {}, RiskCode.PRICE_BAND),
        (buy(), {"recent_orders": [NOW - timedelta(seconds=s) for s in range(30)]}, RiskCode.ORDER_RATE),
        (buy(qty="50"), {"quote_available": D("5000")}, RiskCode.INSUFFICIENT_BALANCE),
        (sell(qty="11"), {}, RiskCode.INSUFFICIENT_BALANCE),
        (buy(), {"mid": None, "mid_at": None}, RiskCode.NO_MARKET_DATA),
        (buy(), {"mid_at": NOW - timedelta(seconds=11)}, RiskCode.STALE_MARKET_DATA),
        (buy(), {"daily_pnl": D("-2000")}, RiskCode.DAILY_LOSS_LIMIT),
        (buy(), {"equity": D("85000")}, RiskCode.MAX_DRAWDOWN),
    ],
)
def test_each_check_rejects_with_its_code(intent: OrderIntent, changes: dict[str, Any], code: RiskCode) -> None:
    result = check_order(intent, snap(**changes))
    assert code.value in result.codes, result.failures
    failure = next(f for f in result.failures if f.code == code)
    assert failure.reason  # a human reason beside the stable code


def test_every_code_is_covered_by_the_table_above() -> None:
    params = test_each_check_rejects_with_its_code.pytestmark[0].args[1]  # type: ignore[attr-defined]
    assert {p[2] for p in params} == set(RiskCode)


def test_all_failures_are_returned_together() -> None:
    result = check_order(
        buy(qty="0.00001", price="100.05"),
        snap(trading_state="halted", mid_at=NOW - timedelta(minutes=5), daily_pnl=D("-5000")),
    )
    assert set(result.codes) >= {"trading_halted", "below_ordermin", "price_off_tick", "stale_market_data"}
    assert "daily_loss_limit" in result.codes


def test_just_inside_the_limits_passes() -> None:
    assert check_order(buy(qty="100"), snap()).ok  # notional exactly 10,000
    assert check_order(buy(price="105"), snap()).ok  # exactly 5% from the mid
    assert check_order(buy(), snap(mid_at=NOW - timedelta(seconds=10))).ok
    assert check_order(buy(), snap(recent_orders=[NOW - timedelta(seconds=61)] * 50)).ok
    assert check_order(buy(), snap(equity=D("85001"))).ok  # drawdown 14.999%


def test_post_only_status_admits_post_only_limit_orders() -> None:
    post_only = dataclasses.replace(RULES, status="post_only")
    assert check_order(buy(post_only=True), snap(rules=post_only)).ok


class TestReducing:
    def test_reducing_admits_an_order_that_shrinks_the_position(self) -> None:
        assert check_order(sell(qty="2"), snap(trading_state="reducing", position_qty=D("3"))).ok
        assert check_order(buy(qty="3"), snap(trading_state="reducing", position_qty=D("-3"))).ok

    def test_reducing_refuses_growing_flipping_and_flat(self) -> None:
        assert "reduce_only" in codes(buy(qty="1"), snap(trading_state="reducing", position_qty=D("3")))
        assert "reduce_only" in codes(sell(qty="4"), snap(trading_state="reducing", position_qty=D("3")))
        assert "reduce_only" in codes(sell(qty="1"), snap(trading_state="reducing"))

    def test_open_orders_in_the_same_direction_count(self) -> None:
        state = snap(trading_state="reducing", position_qty=D("3"), open_sell_qty=D("2"))
        assert check_order(sell(qty="1"), state).ok
        assert "reduce_only" in codes(sell(qty="2"), state)

    def test_a_breached_loss_limit_still_admits_reducing_orders(self) -> None:
        breached = snap(position_qty=D("3"), daily_pnl=D("-9999"), equity=D("50000"))
        assert check_order(sell(qty="3"), breached).ok
        assert set(codes(buy(), breached)) == {"daily_loss_limit", "max_drawdown"}

    def test_halted_refuses_even_reducing_orders(self) -> None:
        assert codes(sell(qty="1"), snap(trading_state="halted", position_qty=D("3"))) == ["trading_halted"]


def test_position_limits_do_not_refuse_an_order_that_reduces_exposure() -> None:
    huge = snap(position_qty=D("1000"), gross_exposure=D("1000000"))
    assert check_order(sell(qty="5"), huge).ok
    assert {"max_position", "max_gross_exposure"} <= set(codes(buy(qty="5"), huge))


def test_open_orders_count_towards_the_position_limit() -> None:
    assert "max_position" in codes(buy(qty="50"), snap(open_buy_qty=D("460")))
    assert check_order(buy(qty="50"), snap(open_buy_qty=D("450"))).ok


def test_limits_merge_only_overrides_given_values() -> None:
    merged = limits_merged(DEFAULT_LIMITS, {"max_order_notional": D("5"), "price_band": None})
    assert merged.max_order_notional == D("5")
    assert merged.price_band == DEFAULT_LIMITS.price_band
