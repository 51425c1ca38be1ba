"""Every change to orders, positions, balances and the trading state leaves an audit record with the actor and
the values before and after."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.audit import audit_actor, audit_trail
from core.errors import ApplicationError
from tests.trading.factories import placed_order, status, trade
from trading.accounts import balance_set
from trading.execution_reports import execution_report_apply
from trading.executions import ExecType
from trading.kill_switch import trading_state_set
from trading.models import Balance, Position, TradingState
from trading.orders import order_mark_cancel_requested
from trading.selectors import trading_state_get

pytestmark = pytest.mark.django_db
D = Decimal


def test_order_changes_are_audited_with_actor_and_before_after() -> None:
    with audit_actor("celery:trading.submit_order"):
        order = placed_order(qty="1")
    with audit_actor("ingest"):
        execution_report_apply(event=status("OA-9", ExecType.NEW, cl_ord_id=order.client_order_id))
        execution_report_apply(event=trade("OA-9", "T-a9", "1", "100", fee="0.1"))

    trail = audit_trail(order)
    assert [e.action for e in trail] == ["created", "changed", "changed", "changed"]
    assert [e.actor for e in trail] == ["celery:trading.submit_order"] * 2 + ["ingest"] * 2
    assert trail[1].changes["state"] == ("created", "submitted")
    assert trail[2].changes["state"] == ("submitted", "accepted")
    assert trail[2].changes["exchange_order_id"] == ("", "OA-9")
    assert trail[3].changes["state"] == ("accepted", "filled")
    assert trail[3].changes["filled_qty"] == (D("0"), D("1"))
    assert trail[3].reason == "trade T-a9"
    assert set(order.events.values_list("actor", flat=True)) == {"celery:trading.submit_order", "ingest"}


def test_position_and_balance_changes_are_audited() -> None:
    order = placed_order(qty="1")
    with audit_actor("ingest"):
        execution_report_apply(event=trade("OB-9", "T-b9", "1", "100", cl_ord_id=order.client_order_id))
    with audit_actor("reconciliation:run-7", reason="balance snapshot"):
        balance_set(asset="USD", total=D("1000"))

    position_trail = audit_trail(Position.objects.get())
    assert position_trail[-1].actor == "ingest"
    assert position_trail[-1].changes["quantity"] == (D("0"), D("1"))
    usd_trail = audit_trail(Balance.objects.get(asset="USD"))
    assert [e.actor for e in usd_trail] == ["ingest", "ingest", "reconciliation:run-7"]
    assert usd_trail[-1].changes["total"] == (D("-100"), D("1000"))
    assert usd_trail[-1].reason == "balance snapshot"


def test_system_source_without_an_actor_is_named_after_the_source() -> None:
    order = placed_order()
    assert {e.actor for e in audit_trail(order)} == {"trading:system"}


def test_operator_cancel_carries_the_operator() -> None:
    order = placed_order()
    order_mark_cancel_requested(order_id=order.pk, reason="fat finger", actor="user:ann")
    last = audit_trail(order)[-1]
    assert (last.actor, last.reason, last.changes["state"]) == (
        "user:ann",
        "fat finger",
        ("submitted", "pending_cancel"),
    )


def test_trading_state_switches_record_who_why_and_when() -> None:
    assert trading_state_get().state == "active"
    trading_state_set(state="halted", reason="drawdown 15.2% > 15%", actor="risk:drawdown")
    trading_state_set(state="active", reason="reviewed, resuming", actor="user:ann")
    state = TradingState.objects.get()
    assert (state.state, state.changed_by, state.reason) == ("active", "user:ann", "reviewed, resuming")
    assert state.changed_at is not None
    trail = audit_trail(state)
    assert [(e.actor, e.reason) for e in trail][-2:] == [
        ("risk:drawdown", "drawdown 15.2% > 15%"),
        ("user:ann", "reviewed, resuming"),
    ]
    assert trail[-1].changes["state"] == ("halted", "active")


def test_trading_state_change_needs_a_reason_and_a_known_state() -> None:
    with pytest.raises(ApplicationError):
        trading_state_set(state="halted", reason=" ", actor="risk")
    with pytest.raises(ApplicationError):
        trading_state_set(state="paused", reason="x", actor="risk")
