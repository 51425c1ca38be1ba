"""Query budgets of the two latency paths (issue #5): a closed bar's decision (`decide_on_bar`: order created,
risk-checked and submitted) and an execution report applied (`execution_report_apply`). Each statement is a round
trip to PostgreSQL on the way to the exchange or to the dashboard; these bounds keep the cut from ~49 and ~22
statements from silently growing back. Counted by pytest-django on the test's connection, so they include the
savepoints of atomic blocks nested in the test's own transaction (two per block) that production does not pay.
Each test also asserts the path it measures was really taken."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.utils import timezone

from tests.trading.factories import placed_order, status, trade
from timeseries import Point
from timeseries.relational import RelationalStore
from trading.accounts import equity_snapshot_take
from trading.executions import ExecType
from trading.kill_switch import trading_state_set
from trading.models import Balance, Decision, Order, OrderEvent, Position
from trading.orders import OrderRequest, order_create_in_transaction
from trading.pipeline import decide_on_bar
from trading.submission import order_place_in_transaction

pytestmark = pytest.mark.django_db
D = Decimal

# decide_on_bar, ordered: the inputs (1), the bars, read once for the predictor and the sizing (1), the limits (1),
# the trading-state lock and the look for an order under the client order id (2), the risk snapshot without the
# limits: position and balances locked (2), then the rest read (3), the
# order inserted in its checked state, its audit row read from what was inserted, and both events (3), the decision
# inserted with its order, and its audit row (2); plus the savepoint of the pipeline's transaction inside the
# test's (2). The same statements on every database (core.audit).
DECIDE_MAX_QUERIES = {"postgresql": 17, "sqlite": 17}
# execution_report_apply, plus the savepoint of its transaction inside the test's (2). A row's UPDATE, its audit row
# (read from what was written) and the order's events are three statements on every database (core.audit): a `new`
# locks the order, saves it (with its history and event) and looks for parked reports (5); a filling `trade` also
# checks the fill is new, locks and saves the position and both balances (each save with its history) and records
# the fill (13).
APPLY_NEW_MAX_QUERIES = {"postgresql": 7, "sqlite": 7}
APPLY_TRADE_MAX_QUERIES = {"postgresql": 15, "sqlite": 15}


@pytest.fixture(autouse=True)
def _relational_time_series(settings) -> None:  # type: ignore[no-untyped-def]
    settings.INFLUXDB_URL = ""


def _rising_bars(end: datetime, n: int = 61) -> None:
    start = end - timedelta(minutes=n - 1)
    RelationalStore().write_batch(
        [
            Point(
                "bars",
                start + timedelta(minutes=i),
                {"close": D(f"{100 + i * 0.1:.1f}"), "open": D(100), "high": D(107), "low": D(99), "trades": 1},
                {"symbol": "BTC/USD", "interval": "1m"},
            )
            for i in range(n)
        ]
    )


def _sequences_match_counter(order: Order) -> None:
    order.refresh_from_db()
    sequences = list(order.events.order_by("sequence").values_list("sequence", flat=True))
    assert sequences == list(range(1, len(sequences) + 1))
    assert order.last_event_sequence == len(sequences)


def test_decide_on_bar_places_an_order_within_its_query_budget(  # type: ignore[no-untyped-def]
    market, gateway, django_assert_max_num_queries, settings
) -> None:
    settings.GALFRIDAY_PREDICTOR = "tests.trading.doubles.MomentumTestModel"  # a served model that buys here
    equity_snapshot_take(marks={"BTC/USD": D("100")})
    trading_state_set(state="active", reason="rows that exist in production", actor="test")
    Position.objects.create(instrument=market)
    bar_time = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=1)
    _rising_bars(bar_time)
    with django_assert_max_num_queries(DECIDE_MAX_QUERIES[connection.vendor]):
        decision = decide_on_bar(symbol="BTC/USD", bar_time=bar_time, now=bar_time + timedelta(minutes=1, seconds=2))
    assert decision.status == Decision.Status.ORDERED
    order = decision.order
    assert order is not None
    assert order.state == "submitted"
    assert list(order.events.order_by("sequence").values_list("kind", flat=True)) == ["created", "submitted"]
    _sequences_match_counter(order)
    # The replay finds the decision in its input query and trades nothing more: the bars (1), the inputs, the
    # decision.
    with django_assert_max_num_queries(3):
        again = decide_on_bar(symbol="BTC/USD", bar_time=bar_time, now=bar_time + timedelta(minutes=1, seconds=3))
    assert again.pk == decision.pk
    assert Order.objects.count() == 1


def test_execution_reports_apply_within_their_query_budget(django_assert_max_num_queries) -> None:  # type: ignore[no-untyped-def]
    order = placed_order(qty="1", price="100")
    Balance.objects.create(asset="USD", total=D("1000"))
    Balance.objects.create(asset="BTC", total=D("0"))
    Position.objects.create(instrument=order.instrument)
    from trading.execution_reports import execution_report_apply

    with django_assert_max_num_queries(APPLY_NEW_MAX_QUERIES[connection.vendor]):
        accepted = execution_report_apply(event=status("OQ-1", ExecType.NEW, cl_ord_id=order.client_order_id))
    assert accepted.events == ["accepted"]
    with django_assert_max_num_queries(APPLY_TRADE_MAX_QUERIES[connection.vendor]):
        filled = execution_report_apply(event=trade("OQ-1", "T-q1", "1", "100", fee="0.26", order_status="filled"))
    assert filled.events == ["fill"]  # the fill completes it: its event says filled, the status adds nothing
    assert filled.state == "filled"
    assert Position.objects.get(instrument=order.instrument).quantity == D(1)
    assert Balance.objects.get(asset="USD").total == D("1000") - D("100") - D("0.26")
    assert Balance.objects.get(asset="BTC").total == D(1)
    _sequences_match_counter(order)


def test_balances_moved_together_by_a_fill_are_audited_with_the_actor() -> None:
    """The two balances a fill moves are saved in one statement; each still gets its audit record, attributed."""
    from core.audit import audit_actor, audit_trail
    from trading.execution_reports import execution_report_apply

    order = placed_order(qty="1", price="100")
    Balance.objects.create(asset="USD", total=D("1000"))
    with audit_actor("ingest", reason="fill report"):
        execution_report_apply(event=trade("OQ-2", "T-q2", "1", "100", cl_ord_id=order.client_order_id))
    for asset, after in (("USD", D("900")), ("BTC", D("1"))):
        last = audit_trail(Balance.objects.get(asset=asset))[-1]
        assert (last.actor, last.reason, last.changes["total"][1]) == ("ingest", "fill report", after)


def test_order_events_keep_one_sequence_across_every_kind_of_writer() -> None:
    """The counter on the order row numbers events from creation, transitions, reports and corrections alike."""
    from trading.accounts import fill_fee_correct
    from trading.execution_reports import execution_report_apply
    from trading.orders import order_mark_cancel_rejected, order_mark_cancel_requested

    order = placed_order(qty="2", price="100")
    execution_report_apply(event=status("OQ-3", ExecType.NEW, cl_ord_id=order.client_order_id))
    execution_report_apply(event=trade("OQ-3", "T-q3", "1", "100", fee="0.1"))
    order_mark_cancel_requested(order_id=order.pk, reason="test")
    order_mark_cancel_rejected(order_id=order.pk, reason="too late")
    fill_fee_correct(exec_id="T-q3", fee=D("0.05"), fee_asset="USD")
    kinds = list(OrderEvent.objects.filter(order=order).order_by("sequence").values_list("kind", flat=True))
    assert kinds == ["created", "submitted", "accepted", "fill", "cancel_requested", "cancel_rejected", "amended"]
    _sequences_match_counter(order)


@pytest.mark.django_db(transaction=True)
def test_in_transaction_variants_refuse_to_run_outside_a_transaction(market, gateway) -> None:  # type: ignore[no-untyped-def]
    """The risk check and the `submitted` state it allows must commit together: no autocommit placement."""
    with pytest.raises(RuntimeError, match="transaction"):
        order_place_in_transaction(
            OrderRequest(
                instrument=market, client_order_id="q-outside", side="buy", order_type="market", quantity=D("0.01")
            )
        )
    with pytest.raises(RuntimeError, match="transaction"):
        order_create_in_transaction(
            OrderRequest(
                client_order_id="q-outside", instrument=market, side="buy", order_type="market", quantity=D("0.01")
            )
        )
    assert not Order.objects.exists()
    with transaction.atomic():
        placed = order_place_in_transaction(
            OrderRequest(
                instrument=market, client_order_id="q-inside", side="buy", order_type="market", quantity=D("0.01")
            )
        )
    assert placed.submitted
    assert Order.objects.get(client_order_id="q-inside").state == "submitted"
