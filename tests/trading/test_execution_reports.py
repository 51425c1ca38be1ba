"""execution_report_apply: orders, fills, positions and balances move together, idempotently and regardless of
the order in which the exchange's messages arrive."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from django.db import transaction

from ingest.kraken.messages import parse
from tests.trading.factories import InstrumentFactory, placed_order, status, trade
from trading import execution_reports
from trading.execution_reports import InvalidExecutionReport, execution_report_apply
from trading.executions import ExecType, ExecutionEvent, InvalidExecutionEvent
from trading.models import Balance, Fill, Order, ParkedExecution, Position

pytestmark = pytest.mark.django_db
D = Decimal


def books() -> dict[str, object]:
    return {
        "balances": {b.asset: b.total for b in Balance.objects.all()},
        "positions": {
            p.instrument.symbol: (p.quantity, p.avg_price, p.realised_pnl, p.fees) for p in Position.objects.all()
        },
        "fills": sorted(Fill.objects.values_list("exec_id", flat=True)),
    }


def order_snapshot(order: Order) -> tuple[object, ...]:
    order.refresh_from_db()
    return (order.state, order.filled_qty, order.filled_cost, order.avg_price, order.fees, order.fills.count())


def test_new_then_trades_fill_the_order_and_move_position_and_balances() -> None:
    order = placed_order(side="buy", qty="2", price="100")
    cl = order.client_order_id
    execution_report_apply(event=status("OA-1", ExecType.NEW, cl_ord_id=cl, order_status="new"))
    first = execution_report_apply(event=trade("OA-1", "T-1", "0.5", "99", fee="0.1", cl_ord_id=cl))
    assert first.state == "partially_filled"
    execution_report_apply(event=trade("OA-1", "T-2", "1.5", "100", fee="0.3", order_status="filled"))
    execution_report_apply(event=status("OA-1", ExecType.FILLED, order_status="filled"))

    order.refresh_from_db()
    assert order.exchange_order_id == "OA-1"
    assert order.state == "filled"
    assert order.filled_qty == D("2")
    assert order.filled_cost == D("199.5")  # 49.5 + 150
    assert order.avg_price == D("99.75")
    assert order.fees == D("0.4")
    assert order.closed_at is not None
    assert list(order.events.values_list("kind", flat=True)) == ["created", "submitted", "accepted", "fill", "fill"]
    assert books() == {
        "balances": {"BTC": D("2"), "USD": D("-199.9")},  # cost 199.5 + fees 0.4 leave the quote balance
        "positions": {"BTC/USD": (D("2"), D("99.75"), D("0"), D("0.4"))},
        "fills": ["T-1", "T-2"],
    }


def test_duplicate_execution_report_does_not_double_fill() -> None:
    order = placed_order(qty="1")
    fill = trade("OD-1", "T-dup", "0.4", "100", fee="0.04", cl_ord_id=order.client_order_id)
    execution_report_apply(event=fill)
    before = books()
    again = execution_report_apply(event=fill)
    assert again.duplicate_fill
    assert again.fill_id is None
    assert books() == before
    order.refresh_from_db()
    assert order.filled_qty == D("0.4")
    assert order.events.filter(kind="fill").count() == 1


def test_replaying_a_whole_stream_twice_changes_nothing() -> None:
    order = placed_order(qty="1")
    cl = order.client_order_id
    stream = [
        status("OR-1", ExecType.NEW, cl_ord_id=cl),
        trade("OR-1", "T-r1", "0.25", "100", fee="0.1"),
        trade("OR-1", "T-r2", "0.75", "104", fee="0.2"),
        status("OR-1", ExecType.FILLED),
    ]
    for event in stream:
        execution_report_apply(event=event)
    once = (order_snapshot(order), books(), order.events.count())
    for event in stream:
        execution_report_apply(event=event)
    assert (order_snapshot(order), books(), order.events.count()) == once


def test_events_in_any_order_leave_the_same_final_state() -> None:
    instrument = InstrumentFactory()
    outcomes = set()
    for n, permutation in enumerate(itertools.permutations(range(5))):
        order = placed_order(qty="1", instrument=instrument)
        oid = f"OP-{n}"
        cl = order.client_order_id
        events = [
            status(oid, ExecType.PENDING_NEW, cl_ord_id=cl, order_status="pending_new"),
            status(oid, ExecType.NEW, cl_ord_id=cl, order_status="new"),
            trade(oid, f"T-{n}-a", "0.4", "100", fee="0.1", cl_ord_id=cl, order_status="partially_filled"),
            trade(oid, f"T-{n}-b", "0.6", "110", fee="0.2", cl_ord_id=cl, order_status="filled"),
            status(oid, ExecType.FILLED, cl_ord_id=cl, order_status="filled"),
        ]
        for index in permutation:
            execution_report_apply(event=events[index])
        outcomes.add(order_snapshot(order))
    assert outcomes == {("filled", D("1"), D("106"), D("106"), D("0.3"), 2)}
    # 120 orders of 1 BTC each, bought for 106 USD plus 0.3 fees
    assert Position.objects.get(instrument=instrument).quantity == D("120")
    assert Balance.objects.get(asset="USD").total == D("-12756")


def test_fill_before_new_then_stale_new_is_ignored() -> None:
    order = placed_order(qty="1")
    cl = order.client_order_id
    execution_report_apply(event=trade("OF-1", "T-f1", "0.5", "100", cl_ord_id=cl))
    result = execution_report_apply(event=status("OF-1", ExecType.NEW, cl_ord_id=cl, order_status="new"))
    assert result.state == "partially_filled"
    assert result.events == []
    order.refresh_from_db()
    assert order.accepted_at is not None  # a fill proves the exchange accepted it


def test_fill_for_an_order_we_thought_canceled_is_applied_and_recorded() -> None:
    order = placed_order(qty="1")
    cl = order.client_order_id
    execution_report_apply(event=status("OC-1", ExecType.NEW, cl_ord_id=cl))
    execution_report_apply(event=status("OC-1", ExecType.CANCELED, reason="User requested"))
    late = execution_report_apply(event=trade("OC-1", "T-late", "0.3", "100", fee="0.03"))

    assert late.fill_id is not None
    order.refresh_from_db()
    assert order.state == "canceled"  # the rest of the order is still canceled
    assert order.filled_qty == D("0.3")
    assert order.reason == "User requested"
    fill_event = order.events.get(kind="fill")
    assert (fill_event.from_state, fill_event.to_state, fill_event.exec_id) == ("canceled", "canceled", "T-late")
    assert Position.objects.get().quantity == D("0.3")
    assert execution_reports.counters["fill_after_close_applied"] >= 1


def test_late_fill_that_completes_a_canceled_order_makes_it_filled() -> None:
    order = placed_order(qty="1")
    cl = order.client_order_id
    execution_report_apply(event=status("OC-2", ExecType.CANCELED, cl_ord_id=cl))
    execution_report_apply(event=trade("OC-2", "T-all", "1", "100"))
    order.refresh_from_db()
    assert order.state == "filled"
    assert list(order.events.values_list("to_state", flat=True))[-2:] == ["canceled", "filled"]


def test_cancel_after_filled_is_stale_and_ignored() -> None:
    order = placed_order(qty="1")
    cl = order.client_order_id
    execution_report_apply(event=trade("OS-1", "T-s", "1", "100", cl_ord_id=cl))
    result = execution_report_apply(event=status("OS-1", ExecType.CANCELED))
    assert result.state == "filled"
    assert result.events == []


def test_trade_for_an_unknown_order_is_parked_then_replayed_when_the_order_appears() -> None:
    InstrumentFactory()
    parked = execution_report_apply(event=trade("OX-1", "T-x1", "0.2", "50000", fee="1", side="buy"))
    assert parked.parked
    assert ParkedExecution.objects.filter(exchange_order_id="OX-1").count() == 1
    assert not Fill.objects.exists()

    new = status(
        "OX-1",
        ExecType.NEW,
        symbol="BTC/USD",
        side="buy",
        order_type="limit",
        order_qty=D("0.5"),
        limit_price=D("50000"),
        order_status="new",
    )
    result = execution_report_apply(event=new)
    assert result.replayed == 1
    assert result.state == "partially_filled"
    order = Order.objects.get(exchange_order_id="OX-1")
    assert order.external
    assert order.filled_qty == D("0.2")
    assert not ParkedExecution.objects.exists()


def test_fill_beyond_the_order_quantity_is_refused_and_nothing_is_written() -> None:
    order = placed_order(qty="1")
    before = books()
    with pytest.raises(InvalidExecutionReport), transaction.atomic():
        execution_report_apply(event=trade("OV-1", "T-over", "1.5", "100", cl_ord_id=order.client_order_id))
    assert books() == before
    order.refresh_from_db()
    assert (order.state, order.filled_qty, order.exchange_order_id) == ("submitted", 0, "")


def test_fee_in_base_currency_is_valued_at_the_fill_price_and_taken_from_the_base_balance() -> None:
    order = placed_order(side="buy", qty="1", price="200")
    execution_report_apply(
        event=trade("OB-1", "T-b", "1", "200", fee="0.001", fee_asset="BTC", cl_ord_id=order.client_order_id)
    )
    order.refresh_from_db()
    assert order.fees == D("0.2")
    assert Balance.objects.get(asset="BTC").total == D("0.999")
    assert Balance.objects.get(asset="USD").total == D("-200")


def test_amended_event_changes_quantity_and_price() -> None:
    order = placed_order(qty="1", price="100")
    cl = order.client_order_id
    execution_report_apply(event=status("OM-1", ExecType.NEW, cl_ord_id=cl))
    result = execution_report_apply(
        event=status("OM-1", ExecType.AMENDED, order_qty=D("2"), limit_price=D("101"), order_status="new")
    )
    assert result.events == ["amended"]
    order.refresh_from_db()
    assert (order.quantity, order.limit_price, order.state) == (D("2"), D("101"), "accepted")


def test_client_order_id_bound_to_another_exchange_order_is_refused() -> None:
    order = placed_order()
    cl = order.client_order_id
    execution_report_apply(event=status("OK-1", ExecType.NEW, cl_ord_id=cl))
    with pytest.raises(InvalidExecutionReport):
        execution_report_apply(event=status("OK-2", ExecType.NEW, cl_ord_id=cl))


def test_kraken_v2_messages_adapt_to_execution_events() -> None:
    InstrumentFactory()
    frames = [
        '{"channel":"executions","type":"update","data":[{"order_id":"OK4GJX-KSTLS-7DZZO5","order_userref":3,'
        '"symbol":"BTC/USD","order_qty":0.005,"cum_cost":0.0,"time_in_force":"GTC","exec_type":"pending_new",'
        '"side":"sell","order_type":"limit","limit_price_type":"static","limit_price":26500.0,"stop_price":0.0,'
        '"order_status":"pending_new","fee_usd_equiv":0.0,"fee_ccy_pref":"fciq",'
        '"timestamp":"2023-09-22T10:33:05.709950Z"}],"sequence":8}',
        '{"channel":"executions","type":"update","data":[{"timestamp":"2023-09-22T10:33:05.709982Z",'
        '"order_status":"new","exec_type":"new","order_userref":3,"order_id":"OK4GJX-KSTLS-7DZZO5"}],"sequence":9}',
        '{"channel":"executions","type":"update","data":[{"order_id":"OK4GJX-KSTLS-7DZZO5","order_userref":3,'
        '"exec_id":"TGBB7L-HT5LX-J3BZ4A","exec_type":"trade","trade_id":62887576,"symbol":"BTC/USD",'
        '"side":"sell","last_qty":0.005,"last_price":26599.9,"liquidity_ind":"t","cost":132.9995,'
        '"order_type":"limit","timestamp":"2023-09-22T10:33:05.709993Z","order_status":"partially_filled",'
        '"cum_qty":0.005,"cum_cost":132.9995,"avg_price":26599.9,"fee_usd_equiv":0.3458,'
        '"fees":[{"asset":"USD","qty":0.3458}]}],"sequence":10}',
    ]
    for frame in frames:
        message = parse(frame)
        for item in message.items:  # type: ignore[union-attr]
            execution_report_apply(event=ExecutionEvent.from_kraken(item))
    order = Order.objects.get(exchange_order_id="OK4GJX-KSTLS-7DZZO5")
    assert (order.side, order.quantity, order.state) == ("sell", D("0.005"), "filled")
    fill = order.fills.get()
    assert (fill.trade_id, fill.cost, fill.fee, fill.liquidity) == (62887576, D("132.9995"), D("0.3458"), "t")
    assert Balance.objects.get(asset="USD").total == D("132.6537")
    assert Position.objects.get().quantity == D("-0.005")


def test_malformed_events_are_refused_before_touching_the_books() -> None:
    with pytest.raises(InvalidExecutionEvent):
        trade("OE-1", "T-e", "0", "100")
    with pytest.raises(InvalidExecutionEvent):
        ExecutionEvent(order_id="OE-1", exec_type=ExecType.TRADE, last_qty=D("1"), last_price=D("1"))
    with pytest.raises(InvalidExecutionEvent):
        ExecutionEvent.from_json({"order_id": "OE-1", "exec_type": "new", "order_qty": 1.5})


def test_event_round_trips_through_json() -> None:
    event = trade("OJ-1", "T-j", "0.1", "123.45", fee="0.01", side="buy")
    assert ExecutionEvent.from_json(event.to_json()) == event
