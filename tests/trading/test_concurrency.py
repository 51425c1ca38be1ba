"""Concurrent execution reports on PostgreSQL: row locks keep orders, positions and balances exact.

SQLite ignores row locks (and serialises writers differently), so this runs on PostgreSQL only."""

from __future__ import annotations

import random
import threading
from decimal import Decimal

import pytest
from django.db import connection

from tests.trading.factories import InstrumentFactory, placed_order, trade
from trading.execution_reports import execution_report_apply
from trading.executions import ExecutionEvent
from trading.models import Balance, Fill, Order, OrderEvent, Position

D = Decimal
THREADS = 8


def run_in_threads(batches: list[list[ExecutionEvent]]) -> list[BaseException]:
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(batches))

    def worker(events: list[ExecutionEvent]) -> None:
        try:
            barrier.wait(timeout=30)
            for event in events:
                execution_report_apply(event=event)
        except BaseException as exc:  # reported to the test below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(batch,)) for batch in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a worker did not finish"
    return errors


@pytest.mark.services("postgres")
@pytest.mark.django_db(transaction=True)
def test_concurrent_fills_of_one_instrument_keep_position_orders_and_balances_exact() -> None:
    rng = random.Random(5)
    instrument = InstrumentFactory()
    specs = [("buy", 5), ("buy", 5), ("buy", 5), ("buy", 5), ("sell", 4), ("sell", 4), ("sell", 4)]
    events: list[ExecutionEvent] = []
    expected_cash = D(0)
    expected_fees = D(0)
    for n, (side, fills) in enumerate(specs):
        order = placed_order(side=side, qty=str(fills), price="100", instrument=instrument)
        for k in range(fills):
            price = D(95 + rng.randrange(0, 1000)) / 100 + 90  # 90.95 .. 100.94
            fee = (price * D("0.0026")).quantize(D("0.00000001"))
            events.append(
                trade(f"OC-{n}", f"T-{n}-{k}", "1", str(price), fee=str(fee), cl_ord_id=order.client_order_id)
            )
            expected_cash += price if side == "sell" else -price
            expected_fees += fee
    # every event twice, in a shuffled order, spread over the threads: duplicates race their originals
    stream = events + events
    rng.shuffle(stream)
    batches = [stream[i::THREADS] for i in range(THREADS)]

    errors = run_in_threads(batches)
    assert errors == []

    position = Position.objects.get(instrument=instrument)
    assert position.quantity == D(20 - 12)
    assert position.fees == expected_fees
    assert Fill.objects.count() == len(events)
    assert OrderEvent.objects.filter(kind="fill").count() == len(events)
    assert Balance.objects.get(asset="BTC").total == D(8)
    assert Balance.objects.get(asset="USD").total == expected_cash - expected_fees
    for order in Order.objects.all():
        assert order.filled_qty == order.quantity
        assert order.state == "filled"
        assert list(order.events.order_by("sequence").values_list("sequence", flat=True)) == list(
            range(1, order.events.count() + 1)
        )
    # Average cost depends on the order fills happened to be applied in, total PnL does not: realised +
    # unrealised at any mark equals the cash flows plus the holding at that mark (to the averaging precision).
    mark = D("97.5")
    total = position.realised_pnl + position.quantity * (mark - position.avg_price)
    assert abs(total - (expected_cash + position.quantity * mark)) < D("1e-9")
