"""Live execution against the real simulator over loopback: the Celery task functions called directly (their logic),
the exchange's truth read from the simulator's admin state."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ingest.kraken.errors import OrderOutcomeUnknown
from tests.trading.factories import InstrumentFactory
from tests.trading.sim_support import ThreadedSim, point_settings_at, sim  # noqa: F401  (fixture)
from trading.accounts import balance_set
from trading.brokers.base import OrderTicket
from trading.brokers.kraken import KrakenBroker
from trading.execution import TransientExecutionError
from trading.models import Balance, Fill, Instrument, Order, OrderEvent, Position
from trading.order_states import OrderState
from trading.orders import order_create, order_mark_submitted
from trading.tasks import execute_cancel, execute_order, sync_order

pytestmark = pytest.mark.django_db

_n = iter(range(1, 10**6))


@pytest.fixture
def live(settings: Any, sim: ThreadedSim, tmp_path: Path) -> ThreadedSim:  # noqa: F811
    point_settings_at(settings, sim, tmp_path, mode="live")
    return sim


@pytest.fixture
def btc(db: None) -> Instrument:
    instrument = InstrumentFactory()
    balance_set(asset="USD", total=Decimal("100000"))
    balance_set(asset="BTC", total=Decimal("1"))
    return instrument


def submitted(
    instrument: Instrument,
    *,
    side: str = "buy",
    qty: str = "0.5",
    order_type: str = "limit",
    price: str | None = "99.0",
    post_only: bool = False,
    cl: str | None = None,
) -> Order:
    order = order_create(
        client_order_id=cl or f"gf-ex-{next(_n):05d}",
        instrument=instrument,
        side=side,
        order_type=order_type,
        quantity=Decimal(qty),
        limit_price=Decimal(price) if order_type == "limit" and price else None,
        post_only=post_only,
    )
    return order_mark_submitted(order_id=order.pk)


def kinds(order: Order) -> list[str]:
    return list(OrderEvent.objects.filter(order=order).order_by("sequence").values_list("kind", flat=True))


class Killed(BaseException):
    """The worker dies here (nothing after it runs, no except clause of ours catches it)."""


def test_market_order_submitted_accepted_filled_with_fills_position_and_balances(live: ThreadedSim, btc) -> None:
    live.place("sell", "100.0", "0.3")
    live.place("sell", "100.5", "0.5")
    order = submitted(btc, order_type="market", price=None, qty="0.6")

    outcome = execute_order(order.pk)

    order.refresh_from_db()
    assert outcome["action"] == "sent"
    assert order.state == OrderState.FILLED
    assert kinds(order) == ["created", "submitted", "accepted", "fill", "fill"]  # the last fill completes it
    exchange = live.orders(order.client_order_id)
    assert len(exchange) == 1
    assert exchange[0]["order_id"] == order.exchange_order_id
    fills = list(Fill.objects.filter(order=order).order_by("price"))
    assert [(f.quantity, f.price, f.fee, f.liquidity) for f in fills] == [
        (Decimal("0.3"), Decimal("100"), Decimal("0.12"), "t"),
        (Decimal("0.3"), Decimal("100.5"), Decimal("0.1206"), "t"),
    ]
    assert {f.exec_id for f in fills} == set(exchange[0]["trades"])
    assert order.filled_qty == Decimal("0.6")
    assert order.avg_price == Decimal("100.25")
    position = Position.objects.get(instrument=btc)
    assert (position.quantity, position.avg_price, position.fees) == (
        Decimal("0.6"),
        Decimal("100.25"),
        Decimal("0.2406"),
    )
    # Our books agree with the exchange's account.
    sim_balances = live.state()["balances"]
    assert Balance.objects.get(asset="USD").total == Decimal(sim_balances["USD"]["balance"])
    assert Balance.objects.get(asset="BTC").total == Decimal(sim_balances["BTC"]["balance"])


def test_same_task_delivered_twice_sends_once(live: ThreadedSim, btc) -> None:
    order = submitted(btc, price="99.0")
    first = execute_order(order.pk)
    second = execute_order(order.pk)
    order.refresh_from_db()
    assert (first["action"], second["action"]) == ("sent", "skipped")
    assert order.state == OrderState.ACCEPTED
    assert len(live.orders(order.client_order_id)) == 1


def test_worker_killed_after_exchange_accepted_second_run_finds_order_instead_of_placing(
    live: ThreadedSim, btc, monkeypatch: pytest.MonkeyPatch
) -> None:
    live.place("sell", "100.0", "1")
    order = submitted(btc, order_type="market", price=None, qty="0.2")
    real_submit = KrakenBroker.submit

    def submit_then_die(self: KrakenBroker, ticket: OrderTicket) -> Any:
        real_submit(self, ticket)  # the exchange accepted (and filled) it...
        raise Killed  # ...and the worker died before recording anything

    monkeypatch.setattr(KrakenBroker, "submit", submit_then_die)
    with pytest.raises(Killed):
        execute_order(order.pk)
    order.refresh_from_db()
    assert (order.state, order.exchange_order_id) == (OrderState.SUBMITTED, "")  # nothing recorded
    monkeypatch.setattr(KrakenBroker, "submit", real_submit)

    outcome = execute_order(order.pk)  # the redelivered task

    order.refresh_from_db()
    assert outcome["action"] == "found"
    exchange = live.orders(order.client_order_id)
    assert len(exchange) == 1, "a second order was placed"
    assert order.exchange_order_id == exchange[0]["order_id"]
    assert order.state == OrderState.FILLED
    assert order.filled_qty == Decimal("0.2")
    assert Fill.objects.filter(order=order).count() == 1
    assert OrderEvent.objects.filter(order=order, kind="fill").get().source == "rest_query"


def test_add_order_timeout_marks_unknown_then_query_resolves_with_one_exchange_order(
    live: ThreadedSim, btc, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.KRAKEN_TIMEOUT = 0.5
    live.place("sell", "100.0", "1")
    order = submitted(btc, order_type="market", price=None, qty="0.25")
    real_submit = KrakenBroker.submit

    def submit_slowly(self: KrakenBroker, ticket: OrderTicket) -> Any:
        # The exchange applies the AddOrder, then answers after the client's timeout.
        live.fault("rest_delay", ms=1500, count=1, phase="after")
        return real_submit(self, ticket)

    monkeypatch.setattr(KrakenBroker, "submit", submit_slowly)
    outcome = execute_order(order.pk)

    order.refresh_from_db()
    assert outcome["action"] == "resolved"
    assert "unknown" in kinds(order)
    assert order.state == OrderState.FILLED
    assert order.filled_qty == Decimal("0.25")
    assert len(live.orders(order.client_order_id)) == 1


def test_unknown_outcome_not_found_after_bounded_wait_is_resubmitted_once(
    live: ThreadedSim, btc, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A connection lost before the request reached the exchange: the client cannot tell, so it reports an
    # unknown outcome (injected at the client boundary: the simulator cannot lose a request it never got).
    order = submitted(btc, price="99.0")
    real_submit = KrakenBroker.submit
    calls: list[str] = []

    def lost_first(self: KrakenBroker, ticket: OrderTicket) -> Any:
        calls.append(ticket.client_order_id)
        if len(calls) == 1:
            raise OrderOutcomeUnknown("AddOrder: connection lost", cl_ord_id=ticket.client_order_id)
        return real_submit(self, ticket)

    monkeypatch.setattr(KrakenBroker, "submit", lost_first)
    outcome = execute_order(order.pk)

    order.refresh_from_db()
    assert outcome["action"] == "resubmitted"
    assert kinds(order) == ["created", "submitted", "unknown", "submitted", "accepted"]
    assert len(calls) == 2
    assert len(live.orders(order.client_order_id)) == 1


def test_rejection_records_krakens_exact_error_string(live: ThreadedSim, btc) -> None:
    order = submitted(btc, qty="50", price="100000.0")  # 5,000,000 USD: more than the account has
    outcome = execute_order(order.pk)
    order.refresh_from_db()
    assert outcome["action"] == "rejected"
    assert order.state == OrderState.REJECTED
    assert order.reason == "EOrder:Insufficient funds"
    assert OrderEvent.objects.get(order=order, kind="rejected").reason == "EOrder:Insufficient funds"
    assert live.orders(order.client_order_id) == []


def test_market_in_cancel_only_mode_rejects_with_krakens_string(live: ThreadedSim, btc) -> None:
    live.fault("system_status", status="cancel_only")
    order = submitted(btc, price="99.0")
    execute_order(order.pk)
    order.refresh_from_db()
    assert (order.state, order.reason) == (OrderState.REJECTED, "EService:Market in cancel_only mode")


def test_retryable_error_on_add_order_is_retried_by_celery_then_succeeds_with_one_exchange_order(
    live: ThreadedSim, btc, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = submitted(btc, price="99.0")
    real_submit = KrakenBroker.submit
    attempts: list[int] = []

    def unavailable_once(self: KrakenBroker, ticket: OrderTicket) -> Any:
        attempts.append(1)
        if len(attempts) == 1:
            live.fault("rest_errors", count=1, error="EService:Unavailable")  # this AddOrder meets it
        return real_submit(self, ticket)

    monkeypatch.setattr(KrakenBroker, "submit", unavailable_once)
    result = execute_order.apply(kwargs={"order_id": order.pk})  # Celery's own retry loop (eager)

    order.refresh_from_db()
    assert result.successful(), result.traceback
    assert len(attempts) == 2
    assert order.state == OrderState.ACCEPTED
    assert len(live.orders(order.client_order_id)) == 1


def test_transient_errors_only_are_retried_and_exhausted_retries_leave_the_order_unknown(
    live: ThreadedSim, btc
) -> None:
    assert execute_order.autoretry_for == (TransientExecutionError,)
    assert execute_order.acks_late is True
    assert execute_order.retry_jitter is True
    assert execute_order.max_retries is not None
    assert execute_order.soft_time_limit
    assert execute_order.expires
    order = submitted(btc, price="99.0")
    live.fault("rest_errors", count=1000, error="EService:Unavailable")
    result = execute_order.apply(kwargs={"order_id": order.pk})
    order.refresh_from_db()
    assert result.result["action"] == "gave_up"
    assert order.state == OrderState.UNKNOWN
    live.clear_faults()
    assert live.orders(order.client_order_id) == []
    # The next run resolves the unknown order by query (not there) and only then places it, once.
    execute_order(order.pk)
    order.refresh_from_db()
    assert order.state == OrderState.ACCEPTED
    assert len(live.orders(order.client_order_id)) == 1


def test_cancel_of_a_resting_order_cancels_it_on_the_exchange(live: ThreadedSim, btc) -> None:
    from trading.kill_switch import order_cancel_request

    order = submitted(btc, price="99.0")
    execute_order(order.pk)
    order_cancel_request(order_id=order.pk, reason="operator changed their mind", actor="ops")
    outcome = execute_cancel(order.pk)
    again = execute_cancel(order.pk)
    order.refresh_from_db()
    assert (outcome["action"], again["action"]) == ("canceled", "skipped")
    assert order.state == OrderState.CANCELED
    assert live.orders(order.client_order_id)[0]["status"] == "canceled"


def test_partial_fill_learned_by_sync_then_cancel_keeps_the_fill(live: ThreadedSim, btc) -> None:
    from trading.kill_switch import order_cancel_request

    order = submitted(btc, price="99.0", qty="0.5")
    execute_order(order.pk)
    live.place("sell", "98.5", "0.2")  # a participant sells through our bid: 0.2 fill at 99.0 (maker)
    sync_order(order.pk)
    order.refresh_from_db()
    assert (order.state, order.filled_qty) == (OrderState.PARTIALLY_FILLED, Decimal("0.2"))
    fill = Fill.objects.get(order=order)
    assert (fill.price, fill.fee, fill.liquidity) == (Decimal("99"), Decimal("0.0495"), "m")
    order_cancel_request(order_id=order.pk, reason="enough", actor="ops")
    execute_cancel(order.pk)
    order.refresh_from_db()
    assert (order.state, order.filled_qty) == (OrderState.CANCELED, Decimal("0.2"))


def test_post_only_that_would_cross_is_canceled_like_kraken(live: ThreadedSim, btc) -> None:
    live.place("buy", "97.0", "1")
    order = submitted(btc, side="sell", price="97.0", qty="0.1", post_only=True)
    execute_order(order.pk)
    order.refresh_from_db()
    assert order.state == OrderState.CANCELED
    assert order.reason == "Post only order"


def test_cancel_of_an_order_never_placed_cancels_it_locally(live: ThreadedSim, btc) -> None:
    from trading.kill_switch import order_cancel_request

    order = submitted(btc, price="99.0")  # the execute task has not run yet
    order_cancel_request(order_id=order.pk, reason="changed plan", actor="ops")
    outcome = execute_cancel(order.pk)
    execute_order(order.pk)  # the submit task, arriving late, must not send it
    order.refresh_from_db()
    assert outcome["action"] == "canceled_unplaced"
    assert order.state == OrderState.CANCELED
    assert live.orders(order.client_order_id) == []


def test_halt_cancels_every_open_order_on_the_exchange_including_unknown_ones(
    live: ThreadedSim, btc, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from trading.kill_switch import trading_halt

    settings.GALFRIDAY_EXECUTION_GATEWAY = "tests.trading.sim_support.InlineGateway"
    ours = [submitted(btc, price=p) for p in ("99.0", "98.0")]
    for order in ours:
        execute_order(order.pk)
        order.refresh_from_db()
    external = live.fault("external_order", symbol="BTC/USD", side="buy", qty="0.1", price="95.0")
    assert len(live.open_orders()) == 3

    with django_capture_on_commit_callbacks(execute=True):
        trading_halt(reason="drill", actor="ops")

    assert live.open_orders() == []
    assert {o["order_id"] for o in live.orders() if o["status"] == "canceled"} >= {
        external["order_id"],
        *(o.exchange_order_id for o in ours),
    }
    for order in ours:
        order.refresh_from_db()
        assert order.state == OrderState.CANCELED


def test_a_busy_order_is_retried_later_not_given_up(live: ThreadedSim, btc) -> None:
    from celery.exceptions import Retry
    from django.core.cache import cache

    order = submitted(btc, price="99.0")
    cache.add(f"trading:execution:order:{order.pk}", "a killed worker's mutex", timeout=60)
    try:
        with pytest.raises(Retry):
            execute_order.apply(kwargs={"order_id": order.pk}, throw=True, retries=0).get()
    finally:
        cache.delete(f"trading:execution:order:{order.pk}")
    order.refresh_from_db()
    assert order.state == OrderState.SUBMITTED
    assert live.orders(order.client_order_id) == []
