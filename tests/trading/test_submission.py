"""The checked submission: check and `submitted` in one transaction; the gateway only after commit."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from core.audit import audit_trail
from tests.trading.conftest import quote
from tests.trading.factories import equity_snapshot, placed_order
from trading import orders, submission
from trading.kill_switch import trading_reduce
from trading.limits import risk_limit_set
from trading.models import Balance, MarketQuote, Order, Position, RiskLimit
from trading.submission import order_place, order_submit_checked

D = Decimal


def new_order(instrument, *, side: str = "buy", qty: str = "1", price: str = "100"):  # type: ignore[no-untyped-def]
    return placed_order(side=side, qty=qty, price=price, instrument=instrument, submit=False)


@pytest.mark.django_db
def test_a_passing_order_is_submitted_and_handed_to_the_gateway_after_commit(
    market, gateway, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    order = new_order(market)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        decision = order_submit_checked(order_id=order.pk)
        assert gateway == []  # not before the commit
    assert decision.submitted
    assert decision.order.state == "submitted"
    for callback in callbacks:
        callback()
    assert gateway == [("submit", order.pk)]
    event = decision.order.events.get(kind="submitted")
    assert event.payload["risk"] == "passed"


@pytest.mark.django_db
def test_a_failing_order_is_rejected_with_every_reason_and_nothing_else_changes(
    market, gateway, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    order = new_order(market, qty="200", price="130")  # notional 26,000 and 30% off the mid and more than the cash
    before = {b.asset: b.total for b in Balance.objects.all()}
    with django_capture_on_commit_callbacks(execute=True):
        decision = order_submit_checked(order_id=order.pk)
    order.refresh_from_db()
    assert order.state == "rejected"
    assert {f.code.value for f in decision.failures} >= {"max_order_notional", "price_band", "insufficient_balance"}
    assert "risk:" in order.reason
    assert "band" in order.reason
    assert order.events.get(kind="rejected").payload["risk"][0]["code"]
    assert audit_trail(order)[-1].changes["state"] == ("created", "rejected")
    assert {b.asset: b.total for b in Balance.objects.all()} == before
    assert Position.objects.get(instrument=market).quantity == 0
    assert gateway == []


@pytest.mark.django_db
def test_submitting_twice_checks_once(market, gateway) -> None:  # type: ignore[no-untyped-def]
    order = new_order(market)
    first = order_submit_checked(order_id=order.pk)
    again = order_submit_checked(order_id=order.pk)
    assert first.submitted
    assert not first.already_decided
    assert again.already_decided
    assert again.order.state == "submitted"
    assert order.events.filter(kind="submitted").count() == 1


@pytest.mark.django_db
def test_the_snapshot_is_read_from_the_books(market, gateway) -> None:  # type: ignore[no-untyped-def]
    # A stale quote, a per-instrument override and REDUCING all reach the check.
    fresh_at = MarketQuote.objects.get(instrument=market).quoted_at
    MarketQuote.objects.filter(instrument=market).update(quoted_at=timezone.now() - timedelta(seconds=30))
    quote(market, "120", at=fresh_at - timedelta(seconds=60))  # an older quote never replaces a newer one
    assert MarketQuote.objects.get(instrument=market).mid == D("100")
    assert "stale_market_data" in [f.code for f in order_submit_checked(order_id=new_order(market).pk).failures]
    quote(market, "100")
    risk_limit_set(instrument=market, values={"max_order_notional": D("50")}, reason="small", actor="user:risk")
    assert [f.code for f in order_submit_checked(order_id=new_order(market).pk).failures] == ["max_order_notional"]
    risk_limit_set(instrument=market, values={"max_order_notional": None}, reason="back", actor="user:risk")
    trading_reduce(reason="volatile", actor="user:ann")
    assert [f.code for f in order_submit_checked(order_id=new_order(market).pk).failures] == ["reduce_only"]


@pytest.mark.django_db
def test_open_orders_hold_balance_and_count_towards_the_order_rate(market, gateway) -> None:  # type: ignore[no-untyped-def]
    risk_limit_set(instrument=None, values={"max_orders_per_minute": 3}, reason="slow", actor="user:risk")
    for _ in range(3):
        assert order_submit_checked(order_id=new_order(market, qty="30").pk).submitted  # 3 × 3,000 USD held
    decision = order_submit_checked(order_id=new_order(market, qty="30").pk)
    assert {f.code.value for f in decision.failures} == {"order_rate", "insufficient_balance"}


@pytest.mark.django_db
def test_drawdown_and_daily_loss_come_from_snapshots_and_fills(market, gateway) -> None:  # type: ignore[no-untyped-def]
    equity_snapshot(equity="80", high_water_mark="100")  # 20% down
    assert [f.code for f in order_submit_checked(order_id=new_order(market).pk).failures] == ["max_drawdown"]


@pytest.mark.django_db(transaction=True)
def test_a_crash_after_the_check_leaves_nothing_submitted_and_nothing_enqueued(market, gateway, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    order = new_order(market)
    checked: list[bool] = []
    real_check = submission.check_order

    def check_then_note(*args, **kwargs):  # type: ignore[no-untyped-def]
        result = real_check(*args, **kwargs)
        checked.append(result.ok)
        return result

    real_event = orders.order_event_new

    def crash_on_submitted(order, **kwargs):  # type: ignore[no-untyped-def]
        if kwargs["kind"] == "submitted":
            raise RuntimeError("worker killed between the check and the commit")
        return real_event(order, **kwargs)

    monkeypatch.setattr(submission, "check_order", check_then_note)
    monkeypatch.setattr(orders, "order_event_new", crash_on_submitted)
    with pytest.raises(RuntimeError):
        order_submit_checked(order_id=order.pk)
    assert checked == [True]
    order.refresh_from_db()
    assert order.state == "created"
    assert order.submitted_at is None
    assert order.events.count() == 1
    assert gateway == []

    monkeypatch.setattr(orders, "order_event_new", real_event)
    assert order_submit_checked(order_id=order.pk).submitted  # the retry runs the check again
    assert checked == [True, True]
    assert gateway == [("submit", order.pk)]


@pytest.mark.django_db
def test_order_place_with_bad_parameters_writes_nothing(market, gateway) -> None:  # type: ignore[no-untyped-def]
    from core.errors import ApplicationError

    with pytest.raises(ApplicationError):
        order_place(
            instrument=market,
            client_order_id="bad-1",
            side="buy",
            order_type="market",
            quantity=D("1"),
            limit_price=D("100"),
        )
    assert not Order.objects.exists()


@pytest.mark.services("postgres")
@pytest.mark.django_db(transaction=True)
def test_concurrent_checked_submissions_cannot_both_use_the_same_headroom(market, gateway) -> None:  # type: ignore[no-untyped-def]
    """Two orders of 6,000 USD each against a 10,000 USD position limit: the trading-state lock serialises the
    checks, so exactly one passes."""
    RiskLimit.objects.all().delete()
    risk_limit_set(instrument=market, values={"max_position_notional": D("10000")}, reason="t", actor="user:risk")
    orders = [new_order(market, qty="60"), new_order(market, qty="60")]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def submit(order_id: int) -> None:
        try:
            barrier.wait(timeout=10)
            order_submit_checked(order_id=order_id)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(o.pk,)) for o in orders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    states = sorted(Order.objects.values_list("state", flat=True))
    assert states == ["rejected", "submitted"]
    rejected = Order.objects.get(state="rejected")
    assert "max_position" in [e["code"] for e in rejected.events.get(kind="rejected").payload["risk"]]
