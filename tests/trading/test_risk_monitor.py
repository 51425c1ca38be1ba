"""The continuous risk monitor: an equity snapshot at the last quotes, a halt when the drawdown or the daily loss
limit is breached (agreeing with the pre-trade check at the limit), and its periodic task."""

from __future__ import annotations

from decimal import Decimal

import pytest

from galfriday_site.periodic import PERIODIC_TASKS
from tests.trading.conftest import quote, states
from tests.trading.factories import placed_order, trade
from trading.accounts import balance_set, equity_snapshot_take
from trading.execution_reports import execution_report_apply
from trading.kill_switch import trading_reduce
from trading.limits import risk_limit_set
from trading.models import Alert, EquitySnapshot, Order
from trading.selectors import trading_state_get
from trading.submission import order_submit_checked
from trading.tasks import risk_monitor_run

pytestmark = pytest.mark.django_db
D = Decimal


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
