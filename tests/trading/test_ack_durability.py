"""Which commits on the way to the exchange wait for the disk (core.durability): the order's creation and the send
attempt do; the exchange's acknowledgement of our own send does not, since a crash that loses it leaves a
committed send attempt, and every later delivery then asks the exchange first and applies what it finds
(tests/trading/test_execution_sigkill.py covers that path)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from core.durability import commit_without_flush_wait
from tests.trading.factories import InstrumentFactory
from trading.accounts import balance_set
from trading.brokers.paper import BookSnapshot, PaperBroker, PaperConfig, StaticBooks
from trading.execution import order_execute
from trading.models import Order
from trading.order_states import OrderState
from trading.orders import order_create, order_mark_submitted

NO_FLUSH_WAIT = "SET LOCAL synchronous_commit = off"


def _synchronous_commit() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return str(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True)
def test_only_the_transaction_that_asks_skips_the_flush_wait() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("synchronous_commit is PostgreSQL's")
    with pytest.raises(RuntimeError, match="needs a transaction"):
        commit_without_flush_wait()
    with transaction.atomic():
        assert _synchronous_commit() == "on"
        commit_without_flush_wait()
        assert _synchronous_commit() == "off"
    assert _synchronous_commit() == "on"  # SET LOCAL: that transaction only


@pytest.mark.django_db(transaction=True)
def test_the_send_attempt_commits_durably_before_the_request_and_the_ack_without_waiting() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("synchronous_commit is PostgreSQL's")
    instrument = InstrumentFactory()
    balance_set(asset="USD", total=Decimal("100000"))
    order = order_create(
        client_order_id="gf-durable-1", instrument=instrument, side="buy", order_type="market", quantity=Decimal("0.1")
    )
    order_mark_submitted(order_id=order.pk)
    broker = PaperBroker(
        StaticBooks({instrument.symbol: BookSnapshot.of(bids=[("97.0", "1")], asks=[("100.0", "1")])}), PaperConfig()
    )
    with CaptureQueriesContext(connection) as captured:
        order_execute(order_id=order.pk, broker=broker)
    sqls = [q["sql"] for q in captured.captured_queries]
    attempt = next(i for i, sql in enumerate(sqls) if "send_attempts" in sql and sql.lstrip().startswith("UPDATE"))
    relaxed = [i for i, sql in enumerate(sqls) if NO_FLUSH_WAIT in sql]
    assert relaxed, "the acknowledgement's transaction waits for the disk"
    assert all(i > attempt for i in relaxed)  # the attempt's own commit (autocommit) waited
    assert Order.objects.get(pk=order.pk).state == OrderState.FILLED
