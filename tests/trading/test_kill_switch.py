"""The kill switch: halt (every open order's cancel requested, an alert), reduce, resume; audited."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.audit import audit_trail
from core.errors import ApplicationError
from tests.trading.conftest import states
from trading.kill_switch import trading_halt, trading_reduce, trading_resume
from trading.models import Alert, Order, TradingState
from trading.selectors import trading_state_get

pytestmark = pytest.mark.django_db
D = Decimal


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


def test_a_long_reason_stays_whole_on_the_state_and_is_clipped_in_the_audit_record(db) -> None:  # type: ignore[no-untyped-def]
    reason = "volatility " * 40
    trading_halt(reason=reason, actor="user:ann")
    state = TradingState.objects.get()
    assert state.reason == reason
    assert len(audit_trail(state)[-1].reason) == 100
