"""Property tests of the order state machine (`trading.order_states`) as orders really move through it: random
sequences of exchange execution reports (`trading.execution_reports.execution_report_apply`: statuses, trades in
random sizes, repeated trades, any order) and operator cancel requests and exchange cancel rejections
(`trading.orders`), applied to a real order on the database.

After every step:
- a terminal state stays terminal (the one exit is the documented late fill: canceled/expired -> filled);
- the filled quantity never decreases, never exceeds the order's quantity, equals the sum of its fills, and an
  order whose quantity is all filled is `filled`;
- the state's rank never goes down, except by the one backward transition the machine names (a cancel the
  exchange refused returns the order to where it was);
- every state change recorded in the order's history is a legal transition;
- a refused step (a trade beyond the quantity, an illegal local transition) changes nothing.

Also, over every pair of states: a transition that is neither stale nor illegal never lowers the rank, except
pending_cancel -> accepted (the refused cancel) and -> unknown (an outcome not confirmed).
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import ConflictError
from tests.properties import examples
from tests.trading.factories import InstrumentFactory, placed_order, status, trade
from trading.execution_reports import InvalidExecutionReport, execution_report_apply
from trading.executions import ExecType
from trading.models import Fill, Order
from trading.order_states import RANK, TERMINAL, OrderState, can_transition, is_stale
from trading.orders import order_mark_cancel_rejected, order_mark_cancel_requested

pytestmark = pytest.mark.django_db

S = OrderState
TENTH = Decimal("0.1")
_ids = itertools.count(1)

steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("status"),
            st.sampled_from([ExecType.PENDING_NEW, ExecType.NEW, ExecType.FILLED, ExecType.CANCELED, ExecType.EXPIRED]),
        ),
        st.tuples(st.just("trade"), st.integers(min_value=1, max_value=12)),  # tenths of a unit
        st.tuples(st.just("repeat"), st.integers(min_value=0, max_value=20)),  # a trade sent again
        st.tuples(st.just("cancel"), st.none()),
        st.tuples(st.just("cancel_rejected"), st.none()),
    ),
    min_size=1,
    max_size=14,
)


def snapshot(order: Order) -> tuple[str, Decimal, int]:
    order.refresh_from_db()
    return order.state, order.filled_qty, order.events.count()


def apply_step(order: Order, exchange_id: str, step: tuple[str, Any], sent: list[Any]) -> str | None:
    """Apply one step; returns the kind of refusal, or None when applied."""
    kind, arg = step
    cl = order.client_order_id
    try:
        if kind == "status":
            execution_report_apply(event=status(exchange_id, arg, cl_ord_id=cl))
        elif kind == "trade":
            event = trade(exchange_id, f"PX-{next(_ids)}", str(arg * TENTH), "100", cl_ord_id=cl)
            execution_report_apply(event=event)
            sent.append(event)
        elif kind == "repeat" and sent:
            execution_report_apply(event=sent[arg % len(sent)])
        elif kind == "cancel":
            order_mark_cancel_requested(order_id=order.pk, reason="property test", actor="test")
        elif kind == "cancel_rejected":
            order_mark_cancel_rejected(order_id=order.pk, reason="property test", actor="test")
    except InvalidExecutionReport:
        return "invalid_report"
    except ConflictError:  # IllegalOrderTransition: the local step is not allowed from this state
        return "illegal"
    return None


@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(quantity_tenths=st.integers(min_value=1, max_value=30), sequence=steps, submitted=st.booleans())
def test_random_event_sequences_keep_the_order_invariants(
    instrument: Any, quantity_tenths: int, sequence: list[tuple[str, Any]], submitted: bool
) -> None:
    quantity = quantity_tenths * TENTH
    order = placed_order(qty=str(quantity), instrument=instrument, submit=submitted)
    exchange_id = f"OX-{next(_ids)}"
    sent: list[Any] = []
    state, filled, history = snapshot(order)

    for step in sequence:
        refused = apply_step(order, exchange_id, step, sent)
        new_state, new_filled, new_history = snapshot(order)

        if refused is not None:
            assert (new_state, new_filled, new_history) == (state, filled, history), (step, refused)
            continue
        if state in TERMINAL:
            assert new_state == state or (state in (S.CANCELED, S.EXPIRED) and new_state == S.FILLED), (step, state)
        assert filled <= new_filled <= quantity, (step, filled, new_filled)
        assert new_filled == sum((f.quantity for f in Fill.objects.filter(order=order)), Decimal(0))
        if new_filled == quantity:
            assert new_state == S.FILLED, step
        if step[0] != "cancel_rejected":
            assert RANK[S(new_state)] >= RANK[S(state)], (step, state, new_state)
        state, filled, history = new_state, new_filled, new_history

    for event in order.events.order_by("sequence"):
        if event.from_state and event.from_state != event.to_state:
            assert can_transition(event.from_state, event.to_state), (event.kind, event.from_state, event.to_state)
    assert Fill.objects.filter(order=order).count() == len({e.exec_id for e in sent})  # a repeat is no second fill


@pytest.fixture
def instrument() -> Any:
    return InstrumentFactory()


def test_every_allowed_forward_move_keeps_the_rank() -> None:
    for current, proposed in itertools.product(OrderState, OrderState):
        if current == proposed or is_stale(current, proposed) or not can_transition(current, proposed):
            continue
        if (current, proposed) == (S.PENDING_CANCEL, S.ACCEPTED) or proposed == S.UNKNOWN:
            continue  # the refused cancel and the unconfirmed outcome: named exceptions of the machine
        assert RANK[proposed] >= RANK[current], (current, proposed)
    for terminal in TERMINAL:
        assert {s for s in OrderState if can_transition(terminal, s)} <= {S.FILLED}
