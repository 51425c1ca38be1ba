"""The kill switch (halt / reduce / resume), the continuous risk monitor and its periodic task, risk limit audit."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from core.audit import audit_trail
from core.errors import ApplicationError
from galfriday_site.periodic import PERIODIC_TASKS
from tests.trading.conftest import quote
from tests.trading.factories import placed_order, status, trade
from trading.accounts import balance_set, equity_snapshot_take
from trading.execution_reports import execution_report_apply
from trading.executions import ExecType
from trading.kill_switch import trading_halt, trading_reduce, trading_resume
from trading.limits import risk_limit_set
from trading.models import Alert, EquitySnapshot, Order, RiskLimit, TradingState
from trading.selectors import risk_limits_effective, trading_state_get
from trading.submission import order_submit_checked
from trading.tasks import risk_monitor_run

pytestmark = pytest.mark.django_db
D = Decimal


@pytest.fixture
def book(market) -> dict[str, Order]:  # type: ignore[no-untyped-def]
    """Orders in every interesting state."""
    submitted = placed_order(instrument=market)
    accepted = placed_order(instrument=market, side="sell")
    execution_report_apply(event=status("OK-A", ExecType.NEW, cl_ord_id=accepted.client_order_id))
    partial = placed_order(instrument=market, qty="2")
    execution_report_apply(event=trade("OK-P", "T-p1", "1", "100", cl_ord_id=partial.client_order_id))
    unsent = placed_order(instrument=market, submit=False)
    done = placed_order(instrument=market)
    execution_report_apply(event=trade("OK-D", "T-d1", "1", "100", cl_ord_id=done.client_order_id))
    return {
        name: Order.objects.get(pk=o.pk)
        for name, o in {
            "submitted": submitted,
            "accepted": accepted,
            "partial": partial,
            "unsent": unsent,
            "done": done,
        }.items()
    }


def states(book: dict[str, Order]) -> dict[str, str]:
    return {name: Order.objects.get(pk=o.pk).state for name, o in book.items()}


def test_halt_cancels_every_open_order_hands_cancels_to_the_gateway_after_commit_and_alerts(
    book, gateway, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        result = trading_halt(reason="exchange acting up", actor="user:ann")
        assert gateway == []
    for callback in callbacks:
        callback()
    assert trading_state_get().state == "halted"
    assert states(book) == {
        "submitted": "pending_cancel",
        "accepted": "pending_cancel",
        "partial": "pending_cancel",
        "unsent": "canceled",
        "done": "filled",
    }
    live = sorted(book[n].pk for n in ("submitted", "accepted", "partial"))
    assert sorted(pk for kind, pk in gateway if kind == "cancel") == live
    assert len(gateway) == 3
    assert result.changed
    assert result.alert is not None
    alert = Alert.objects.get()
    assert (alert.kind, alert.severity) == ("trading_halted", "critical")
    assert "exchange acting up" in alert.message
    event = Order.objects.get(pk=book["accepted"].pk).events.get(kind="cancel_requested")
    assert (event.actor, event.source, event.reason) == ("user:ann", "operator", "halt: exchange acting up")


def test_halt_is_audited_and_halting_again_adds_no_switch_and_no_alert(book, gateway) -> None:  # type: ignore[no-untyped-def]
    trading_halt(reason="first", actor="user:ann")
    again = trading_halt(reason="second", actor="user:bob")
    assert not again.changed
    assert again.alert is None
    assert sorted(again.sweep.already_pending) == sorted(book[n].pk for n in ("submitted", "accepted", "partial"))
    assert Alert.objects.count() == 1
    trail = audit_trail(TradingState.objects.get())
    assert trail[-1].actor == "user:ann"
    assert trail[-1].reason == "first"
    assert trail[-1].changes["state"] == ("active", "halted")


def test_reduce_and_resume_need_a_reason_and_are_audited(db) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ApplicationError):
        trading_reduce(reason="  ", actor="user:ann")
    with pytest.raises(ApplicationError):
        trading_halt(reason="", actor="user:ann")
    trading_reduce(reason="news at 14:00", actor="user:ann")
    trading_resume(reason="news passed", actor="user:bob")
    trail = audit_trail(TradingState.objects.get())
    assert [(e.actor, e.reason, e.changes.get("state")) for e in trail[-2:]] == [
        ("user:ann", "news at 14:00", ("active", "reducing")),
        ("user:bob", "news passed", ("reducing", "active")),
    ]


class TestMonitor:
    def test_drawdown_breach_halts_cancels_and_alerts(self, book, gateway, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
        market = book["submitted"].instrument
        balance_set(asset="BTC", total=D("100"))  # 10,000 USD + 100 BTC × 100 = 20,000
        balance_set(asset="USD", total=D("10000"))
        assert risk_monitor_run()["status"] == "ok"
        quote(market, "50")  # 15,000: 25% below the high-water mark
        with django_capture_on_commit_callbacks(execute=True):
            outcome = risk_monitor_run()
        assert outcome["status"] == "breach"
        assert outcome["halted"] is True
        assert outcome["drawdown"] == "0.25000000"
        state = trading_state_get()
        assert (state.state, state.changed_by) == ("halted", "risk:monitor")
        assert "drawdown" in state.reason
        assert states(book)["accepted"] == "pending_cancel"
        assert len([c for c in gateway if c[0] == "cancel"]) == 3
        alert = Alert.objects.get()
        assert (alert.kind, alert.severity) == ("drawdown_breach", "critical")
        assert D(alert.context["limits"]["max_drawdown"]) == D("0.15")

    def test_running_twice_halts_once(self, book, gateway, django_capture_on_commit_callbacks) -> None:  # type: ignore[no-untyped-def]
        market = book["submitted"].instrument
        balance_set(asset="BTC", total=D("100"))
        risk_monitor_run()
        quote(market, "50")
        with django_capture_on_commit_callbacks(execute=True):
            first = risk_monitor_run()
            second = risk_monitor_run()
        assert (first["halted"], second["halted"]) == (True, False)
        assert second["status"] == "breach"
        assert Alert.objects.count() == 1
        assert len(gateway) == 3
        assert Order.objects.get(pk=book["accepted"].pk).events.filter(kind="cancel_requested").count() == 1
        assert EquitySnapshot.objects.count() == 3

    def test_daily_loss_breach_halts(self, market, gateway) -> None:  # type: ignore[no-untyped-def]
        risk_limit_set(instrument=None, values={"daily_loss_limit": D("50")}, reason="tight", actor="user:risk")
        order = placed_order(instrument=market, qty="10")
        execution_report_apply(event=trade("OL-1", "T-l1", "10", "100", cl_ord_id=order.client_order_id))
        assert risk_monitor_run()["status"] == "ok"
        quote(market, "94")  # 10 BTC lose 60 USD
        outcome = risk_monitor_run()
        assert outcome["daily_pnl"] == "-60.000000000000"
        assert outcome["halted"] is True
        assert Alert.objects.get().kind == "daily_loss_breach"
        assert trading_state_get().state == "halted"

    def test_the_pre_trade_check_and_the_monitor_agree_at_the_drawdown_limit(self, market, gateway) -> None:  # type: ignore[no-untyped-def]
        # 0.149999996 of the high-water mark lost: 0.15000000 to the eight places a drawdown is kept in, which is
        # the limit itself. Both sides compute it with `trading.pnl.drawdown`, so both see the breach.
        balance_set(asset="BTC", total=D("0"))
        balance_set(asset="USD", total=D("1000000000"))
        assert risk_monitor_run()["status"] == "ok"  # the high-water mark: 1,000,000,000
        balance_set(asset="USD", total=D("850000004"))
        equity_snapshot_take(marks={"BTC/USD": D("100")})  # the latest equity the pre-trade check reads
        checked = order_submit_checked(order_id=placed_order(instrument=market, qty="0.01", submit=False).pk)
        assert [f.code.value for f in checked.failures] == ["max_drawdown"]
        outcome = risk_monitor_run()
        assert (outcome["status"], outcome["drawdown"], outcome["halted"]) == ("breach", "0.15000000", True)
        assert Alert.objects.get().kind == "drawdown_breach"

    def test_reducing_is_left_to_the_operator_and_a_missing_mark_raises_one_alert(self, market, gateway) -> None:  # type: ignore[no-untyped-def]
        balance_set(asset="BTC", total=D("100"))
        risk_monitor_run()
        trading_reduce(reason="unwinding", actor="user:ann")
        quote(market, "50")
        assert risk_monitor_run()["halted"] is False
        assert trading_state_get().state == "reducing"
        balance_set(asset="DOGE", total=D("5"))  # a holding without a quote
        assert risk_monitor_run()["status"] == "missing_marks"
        assert risk_monitor_run()["status"] == "missing_marks"
        assert list(Alert.objects.values_list("kind", flat=True)) == ["risk_monitor_blind"]


def test_the_monitor_is_a_periodic_task_on_the_trading_queue() -> None:
    from galfriday_site.celery import app

    spec = next(s for s in PERIODIC_TASKS if s.task == "trading.tasks.risk_monitor_run")
    assert (spec.every_seconds, spec.queue) == (10, "trading")
    assert "trading.tasks.risk_monitor_run" in app.tasks
    assert app.amqp.router.route({}, spec.task)["queue"].name == "trading"
    assert risk_monitor_run.acks_late is True


class TestRiskLimits:
    def test_changes_are_audited_with_actor_reason_before_and_after(self, market) -> None:  # type: ignore[no-untyped-def]
        row = risk_limit_set(
            instrument=market, values={"max_order_notional": D("500")}, reason="new pair", actor="user:risk"
        )
        risk_limit_set(instrument=market, values={"max_order_notional": D("800")}, reason="more room", actor="user:cro")
        trail = audit_trail(row)
        assert [(e.actor, e.reason) for e in trail] == [("user:risk", "new pair"), ("user:cro", "more room")]
        assert trail[-1].changes["max_order_notional"] == (D("500"), D("800"))
        effective = risk_limits_effective(instrument=market)
        assert effective.max_order_notional == D("800")
        assert effective.max_drawdown == D("0.15")  # inherited

    def test_database_constraints_refuse_bad_limits(self, market) -> None:  # type: ignore[no-untyped-def]
        for values in ({"max_drawdown": D("1")}, {"max_drawdown": D("0")}, {"max_order_notional": D("-1")}):
            with pytest.raises(ValidationError):
                risk_limit_set(instrument=None, values=values, reason="bad", actor="user:risk")
        with pytest.raises(ApplicationError):
            risk_limit_set(instrument=market, values={"max_drawdown": D("0.2")}, reason="x", actor="user:risk")
        from django.db import IntegrityError, transaction

        with pytest.raises(IntegrityError), transaction.atomic():
            RiskLimit.objects.filter(instrument__isnull=True).update(max_drawdown=D("1.5"))
        with pytest.raises(IntegrityError), transaction.atomic():
            RiskLimit.objects.create(instrument=None)  # a second, incomplete global row


def test_a_long_reason_stays_whole_on_the_state_and_is_clipped_in_the_audit_record(db) -> None:  # type: ignore[no-untyped-def]
    reason = "volatility " * 40
    trading_halt(reason=reason, actor="user:ann")
    state = TradingState.objects.get()
    assert state.reason == reason
    assert len(audit_trail(state)[-1].reason) == 100
