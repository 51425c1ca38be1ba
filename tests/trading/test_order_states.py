"""The order state machine: legal transitions are applied as events, illegal ones are refused and logged."""

from __future__ import annotations

import logging

import pytest

from tests.trading.factories import placed_order
from trading.executions import EventSource
from trading.models import OrderEvent
from trading.order_states import TERMINAL, OrderState, can_transition, check_transition, is_stale
from trading.orders import (
    IllegalOrderTransition,
    order_mark_cancel_rejected,
    order_mark_cancel_requested,
    order_mark_rejected,
    order_mark_submitted,
    order_mark_unknown,
)

S = OrderState


@pytest.mark.parametrize(
    ("from_state", "to_state"),
    [
        (S.CREATED, S.SUBMITTED),
        (S.SUBMITTED, S.ACCEPTED),
        (S.ACCEPTED, S.PARTIALLY_FILLED),
        (S.PARTIALLY_FILLED, S.FILLED),
        (S.ACCEPTED, S.PENDING_CANCEL),
        (S.PENDING_CANCEL, S.CANCELED),
        (S.SUBMITTED, S.REJECTED),
        (S.SUBMITTED, S.UNKNOWN),
        (S.UNKNOWN, S.ACCEPTED),
        (S.CANCELED, S.FILLED),  # a late fill completes a canceled order: the exchange is the truth
    ],
)
def test_legal_transitions(from_state: OrderState, to_state: OrderState) -> None:
    assert can_transition(from_state, to_state)
    check_transition(from_state, to_state)


@pytest.mark.parametrize(
    ("from_state", "to_state"),
    [
        (S.FILLED, S.CANCELED),
        (S.FILLED, S.SUBMITTED),
        (S.REJECTED, S.ACCEPTED),
        (S.CANCELED, S.ACCEPTED),
        (S.ACCEPTED, S.SUBMITTED),
        (S.PARTIALLY_FILLED, S.ACCEPTED),
        (S.CREATED, S.PENDING_CANCEL),
        (S.ACCEPTED, S.REJECTED),
    ],
)
def test_illegal_transitions(from_state: OrderState, to_state: OrderState) -> None:
    assert not can_transition(from_state, to_state)


def test_terminal_states_lead_nowhere_but_a_late_fill() -> None:
    for state in TERMINAL:
        assert {t for t in S if can_transition(state, t)} <= {S.FILLED}


def test_stale_exchange_status_is_told_apart_from_progress() -> None:
    assert is_stale(S.PARTIALLY_FILLED, S.ACCEPTED)
    assert is_stale(S.CANCELED, S.ACCEPTED)
    assert not is_stale(S.SUBMITTED, S.ACCEPTED)
    assert not is_stale(S.CANCELED, S.FILLED)


@pytest.mark.django_db
def test_local_lifecycle_records_each_transition_with_its_source() -> None:
    order = placed_order()
    order_mark_cancel_requested(
        order_id=order.pk, reason="operator pulled it", source=EventSource.OPERATOR, actor="user:ann"
    )
    order = order_mark_cancel_rejected(order_id=order.pk, reason="EOrder:Unknown order")
    events = list(order.events.order_by("sequence").values_list("kind", "source", "from_state", "to_state"))
    assert events == [
        ("created", "system", "created", "created"),
        ("submitted", "system", "created", "submitted"),
        ("cancel_requested", "operator", "submitted", "pending_cancel"),
        ("cancel_rejected", "exchange", "pending_cancel", "accepted"),
    ]
    assert order.submitted_at is not None
    assert order.events.get(kind="cancel_requested").actor == "user:ann"


@pytest.mark.django_db
def test_illegal_transition_is_refused_logged_and_leaves_no_trace(caplog: pytest.LogCaptureFixture) -> None:
    order = placed_order()
    order_mark_rejected(order_id=order.pk, reason="EOrder:Insufficient funds")
    before = OrderEvent.objects.filter(order=order).count()
    with caplog.at_level(logging.WARNING, logger="trading.orders"), pytest.raises(IllegalOrderTransition) as info:
        order_mark_submitted(order_id=order.pk)
    assert info.value.code == "illegal_order_transition"
    assert info.value.details == {"order_id": order.pk, "from": "rejected", "to": "submitted"}
    assert "illegal order transition refused" in caplog.text
    order.refresh_from_db()
    assert order.state == "rejected"
    assert OrderEvent.objects.filter(order=order).count() == before


@pytest.mark.django_db
def test_submitting_twice_is_refused() -> None:
    order = placed_order()
    with pytest.raises(IllegalOrderTransition):
        order_mark_submitted(order_id=order.pk)


@pytest.mark.django_db
def test_unknown_outcome_then_cancel_of_an_unsent_order() -> None:
    unsent = placed_order(submit=False)
    assert order_mark_cancel_requested(order_id=unsent.pk, reason="decision expired").state == "canceled"
    lost = placed_order()
    assert order_mark_unknown(order_id=lost.pk, reason="add_order timed out").state == "unknown"
