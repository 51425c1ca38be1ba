"""The execution-report path writes its rows without `save()`: plain UPDATEs with their audit rows (read from what
was written, the same statements on every database), order events inserted with the order, the order lock compiled
once. These tests hold those writes to what `save()` and simple-history's signal would have recorded."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from core.audit import audit_actor, audit_trail, audited_row_insert, audited_rows_update
from tests.trading.factories import InstrumentFactory, placed_order, status, trade
from trading import lock_objects
from trading.execution_reports import execution_report_apply
from trading.executions import ExecType
from trading.models import Balance, Order, OrderEvent, Position

pytestmark = pytest.mark.django_db
D = Decimal


def test_fill_audits_order_position_and_balances_with_actor_reason_and_new_values() -> None:
    order = placed_order(qty="1", price="100")
    Balance.objects.create(asset="USD", total=D("1000"))
    cl = order.client_order_id
    with audit_actor("ingest", reason="exchange report"):
        execution_report_apply(event=status("OH-1", ExecType.NEW, cl_ord_id=cl))
        execution_report_apply(event=trade("OH-1", "T-h1", "1", "100", fee="0.26", order_status="filled"))

    order.refresh_from_db()
    order_trail = audit_trail(order)
    assert [(e.action, e.actor, e.reason) for e in order_trail[-2:]] == [
        ("changed", "ingest", "exchange report"),
        ("changed", "ingest", "exchange report"),
    ]
    assert order_trail[-2].changes["state"] == ("submitted", "accepted")
    assert order_trail[-2].changes["exchange_order_id"] == ("", "OH-1")
    assert order_trail[-1].changes["state"] == ("accepted", "filled")
    assert order_trail[-1].changes["filled_qty"][1] == D(1)
    # The audit row holds what the row holds, updated_at included (stamped like auto_now).
    last = order.history.order_by("-history_id").first()
    assert (last.state, last.filled_qty, last.updated_at) == (order.state, order.filled_qty, order.updated_at)

    position = Position.objects.get(instrument=order.instrument)
    position_last = audit_trail(position)[-1]
    assert (position_last.actor, position_last.reason) == ("ingest", "exchange report")
    assert position_last.changes["quantity"][1] == D(1)
    for asset, after in (("USD", D("1000") - D("100") - D("0.26")), ("BTC", D(1))):
        balance_last = audit_trail(Balance.objects.get(asset=asset))[-1]
        assert (balance_last.actor, balance_last.reason, balance_last.changes["total"][1]) == (
            "ingest",
            "exchange report",
            after,
        )
    kinds = list(OrderEvent.objects.filter(order=order).order_by("sequence").values_list("kind", "actor"))
    assert kinds == [("created", kinds[0][1]), ("submitted", kinds[1][1]), ("accepted", "ingest"), ("fill", "ingest")]
    assert order.last_event_sequence == 4


def test_update_of_a_missing_row_raises_and_records_nothing() -> None:
    order = placed_order(qty="1", price="100")
    gone = Order.objects.get(pk=order.pk)
    gone.pk = order.pk + 10_000
    audit_rows = Order.history.count()
    with pytest.raises(Order.DoesNotExist):
        audited_rows_update([gone], ["state"], when=order.updated_at)
    assert Order.history.count() == audit_rows


def test_audited_update_of_several_rows_writes_each_value_and_audit_row() -> None:
    usd = Balance.objects.create(asset="USD", total=D("10"))
    eur = Balance.objects.create(asset="EUR", total=D("20"))
    usd.total, eur.total = D("11.5"), D("19.25")
    with audit_actor("test-writer"):
        audited_rows_update([usd, eur], ["total"], when=timezone.now())
    assert {b.asset: b.total for b in Balance.objects.all()} == {"USD": D("11.5"), "EUR": D("19.25")}
    for balance, before, after in ((usd, D("10"), D("11.5")), (eur, D("20"), D("19.25"))):
        last = audit_trail(balance)[-1]
        assert (last.action, last.actor, last.changes["total"]) == ("changed", "test-writer", (before, after))


@pytest.mark.parametrize("by", ["exchange", "client", "both"])
def test_compiled_order_lock_returns_what_the_queryset_returns(by: str, django_assert_num_queries) -> None:  # type: ignore[no-untyped-def]
    order = placed_order(qty="1", price="100")
    other = placed_order(qty="2", price="100")
    Order.objects.filter(pk=order.pk).update(exchange_order_id="OL-1")
    exchange_id = "OL-1" if by != "client" else "OL-none"
    client_id = None if by == "exchange" else (other.client_order_id if by == "both" else order.client_order_id)
    expected = list(
        lock_objects.order_qs_select_for_update().filter(exchange_order_id=exchange_id)
        | lock_objects.order_qs_select_for_update().filter(client_order_id=client_id or "-")
    )
    with django_assert_num_queries(1):
        got = lock_objects.orders_lock_matching(exchange_order_id=exchange_id, client_order_id=client_id)
        symbols = [o.instrument.symbol for o in got]  # loaded with the orders: no further query
    assert got
    assert [o.pk for o in got] == [o.pk for o in expected]
    assert symbols == [o.instrument.symbol for o in expected]
    fields = [f.attname for f in Order._meta.concrete_fields]
    assert [[getattr(o, f) for f in fields] for o in got] == [[getattr(o, f) for f in fields] for o in expected]


def test_duplicate_trade_after_the_fill_changes_nothing_and_writes_no_audit_row() -> None:
    order = placed_order(qty="1", price="100")
    Balance.objects.create(asset="USD", total=D("1000"))
    fill = trade("OD-1", "T-d1", "1", "100", cl_ord_id=order.client_order_id, order_status="filled")
    execution_report_apply(event=fill)
    counts = (Order.history.count(), Position.history.count(), Balance.history.count(), OrderEvent.objects.count())
    again = execution_report_apply(event=fill)
    assert again.duplicate_fill
    after = (Order.history.count(), Position.history.count(), Balance.history.count(), OrderEvent.objects.count())
    assert after == counts
    assert Position.objects.get(instrument=order.instrument).quantity == D(1)


def test_audited_insert_writes_the_row_its_audit_row_and_its_children(django_assert_max_num_queries) -> None:  # type: ignore[no-untyped-def]
    """A new order inserted the way the risk-checked submission inserts it, the same statements on every database:
    the row, its "created" audit row read from what was inserted, and its events."""
    order = Order(
        client_order_id="gf-insert-1",
        instrument=InstrumentFactory(),
        side="buy",
        order_type="limit",
        quantity=D("1.5"),
        limit_price=D("100.1"),
        state="submitted",
        last_event_sequence=2,
    )
    events = [
        OrderEvent(order=order, sequence=1, kind="created", source="system", to_state="created", actor="pipeline"),
        OrderEvent(
            order=order, sequence=2, kind="submitted", source="system", from_state="created", to_state="submitted"
        ),
    ]
    with (
        audit_actor("pipeline", reason="decision X"),
        django_assert_max_num_queries(3),
    ):
        audited_row_insert(order, when=timezone.now(), children=events)
    assert order.pk is not None
    assert not order._state.adding
    assert all(e.order_id == order.pk for e in events)
    stored = Order.objects.get(pk=order.pk)
    assert stored.created_at == order.created_at  # auto_now_add applied to the object too
    assert stored.created_at is not None
    assert (stored.client_order_id, stored.quantity, stored.limit_price, stored.state) == (
        "gf-insert-1",
        D("1.5"),
        D("100.1"),
        "submitted",
    )
    assert list(stored.events.order_by("sequence").values_list("sequence", "kind", "to_state")) == [
        (1, "created", "created"),
        (2, "submitted", "submitted"),
    ]
    (entry,) = audit_trail(stored)
    assert (entry.action, entry.actor, entry.reason) == ("created", "pipeline", "decision X")
    assert entry.changes["state"] == (None, "submitted")
    assert entry.changes["quantity"] == (None, D("1.5"))
    # A duplicate key fails the whole statement: no audit row, no events of its own.
    again = Order(
        client_order_id="gf-insert-1", instrument=order.instrument, side="buy", order_type="market", quantity=D("1")
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        audited_row_insert(again, when=timezone.now(), children=[OrderEvent(order=again, sequence=1, kind="created")])
    assert Order.history.filter(client_order_id="gf-insert-1").count() == 1
    assert OrderEvent.objects.count() == 2
