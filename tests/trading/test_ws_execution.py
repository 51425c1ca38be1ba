"""Live execution over the private WebSocket (trading.ws_session + KrakenBroker), against the real simulator on
loopback: orders placed with `add_order` carrying the client order id, REST as the fallback when the socket is
down, an outcome lost with the socket resolved by query (never a duplicate), the dead man's switch kept armed by a
live session and firing once it is gone, and the per-process clients' behaviour across fork.

Faults are the simulator's own (silence, dropped connections, a closed port); nothing here is mocked except where a
test says so."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port
from tests.trading.factories import InstrumentFactory
from tests.trading.sim_support import ThreadedSim, point_settings_at, sim  # noqa: F401  (fixture)
from tests.waiting import wait_for
from trading import ws_session
from trading.accounts import balance_set
from trading.brokers import kraken as kraken_broker
from trading.models import Fill, Instrument, Order, OrderEvent
from trading.order_states import OrderState
from trading.orders import order_create, order_mark_submitted
from trading.tasks import execute_cancel, execute_order

pytestmark = pytest.mark.django_db

_n = iter(range(1, 10**6))


@pytest.fixture(autouse=True)
def _fresh_session() -> Iterator[None]:
    """Each test starts and ends without a process session (its socket would point at another test's sim)."""
    ws_session.close_session()
    yield
    ws_session.close_session()


@pytest.fixture
def live(settings: Any, sim: ThreadedSim, tmp_path: Path) -> ThreadedSim:  # noqa: F811
    point_settings_at(settings, sim, tmp_path, mode="live", ws=True)
    return sim


@pytest.fixture
def btc(db: None) -> Instrument:
    instrument = InstrumentFactory()
    balance_set(asset="USD", total=Decimal("100000"))
    balance_set(asset="BTC", total=Decimal("1"))
    return instrument


def submitted(instrument: Instrument, *, qty: str = "0.5", price: str | None = "99.0", cl: str | None = None) -> Order:
    order = order_create(
        client_order_id=cl or f"gf-ws-{next(_n):05d}",
        instrument=instrument,
        side="buy",
        order_type="limit" if price else "market",
        quantity=Decimal(qty),
        limit_price=Decimal(price) if price else None,
    )
    return order_mark_submitted(order_id=order.pk)


def kinds(order: Order) -> list[str]:
    return list(OrderEvent.objects.filter(order=order).order_by("sequence").values_list("kind", flat=True))


def connected_session() -> ws_session.ExchangeSession:
    current = ws_session.session()
    assert current.ws() is not None
    deadline = time.monotonic() + 10
    while not current.ws_connected():
        assert time.monotonic() < deadline, "the private socket did not connect"
        time.sleep(0.02)
    return current


def rest_requests() -> int:
    return ws_session.session().rest.client.stats["requests"]


class Killed(BaseException):
    """The worker dies here (nothing after it runs, no except clause of ours catches it)."""


def test_order_goes_over_the_private_socket_with_its_client_order_id_and_no_rest_call(
    live: ThreadedSim, btc: Instrument
) -> None:
    connected_session()  # the socket is up (its token came over REST)
    order = submitted(btc)
    before = rest_requests()

    outcome = execute_order(order.pk)

    order.refresh_from_db()
    assert (outcome["action"], outcome["via"]) == ("sent", "ws")
    # Never attempted before: no query by client order id first; WS ack: no REST read-back on the hot path.
    assert rest_requests() == before
    # The ack is Kraken's `pending_new`: the exchange order id is recorded; `new` (accepted) and fills come on the
    # executions stream, which the ingest worker applies.
    assert order.state == OrderState.SUBMITTED
    assert order.exchange_order_id
    assert order.send_attempts == 1
    exchange = live.orders(order.client_order_id)
    assert len(exchange) == 1
    assert (exchange[0]["order_id"], exchange[0]["source"]) == (order.exchange_order_id, "ws")
    assert kinds(order) == ["created", "submitted"]


def test_ws_ack_then_the_scheduled_sync_brings_the_fill(live: ThreadedSim, btc: Instrument, settings: Any) -> None:
    from galfriday_site.celery import app

    # The post-ack read-back is a Celery task scheduled after the ack; run eagerly here (no worker in this test).
    settings.GALFRIDAY_EXECUTION_POST_ACK_SYNC_S = 0.01
    live.place("sell", "100.0", "1")
    order = submitted(btc, qty="0.3", price=None)
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        outcome = execute_order(order.pk)
    finally:
        app.conf.task_always_eager = eager

    order.refresh_from_db()
    assert outcome["via"] == "ws"
    assert order.state == OrderState.FILLED
    assert order.filled_qty == Decimal("0.3")
    assert Fill.objects.filter(order=order).count() == 1
    assert kinds(order) == ["created", "submitted", "accepted", "fill"]


def test_socket_down_falls_back_to_rest_and_places_one_order(live: ThreadedSim, btc: Instrument, settings: Any) -> None:
    settings.KRAKEN_WS_AUTH_URL = f"ws://127.0.0.1:{free_port()}/v2"  # nothing listens there
    settings.GALFRIDAY_EXECUTION_WS_CONNECT_WAIT_S = 0.3
    fallbacks = kraken_broker.counters["ws_submit_fallback_rest"]
    order = submitted(btc)

    outcome = execute_order(order.pk)

    order.refresh_from_db()
    assert (outcome["action"], outcome["via"]) == ("sent", "rest")
    assert kraken_broker.counters["ws_submit_fallback_rest"] == fallbacks + 1
    assert order.state == OrderState.ACCEPTED
    exchange = live.orders(order.client_order_id)
    assert [(o["order_id"], o["source"]) for o in exchange] == [(order.exchange_order_id, "api")]


def test_refused_session_token_falls_back_to_rest_and_the_socket_gets_a_fresh_token(
    live: ThreadedSim, btc: Instrument
) -> None:
    connected_session()
    tokens = ws_session.counters["ws_tokens"]
    # The exchange forgets every session token (as if revoked): the next trading request on the socket meets
    # `ESession:Invalid session`. Done on the simulator's own loop, the only place its state changes.
    live.loop.call_soon_threadsafe(live.sim.tokens._tokens.clear)
    first = submitted(btc)

    refused = execute_order(first.pk)

    assert (refused["action"], refused["via"]) == ("sent", "rest")
    assert [o["source"] for o in live.orders(first.client_order_id)] == ["api"]
    current = ws_session.session()
    deadline = time.monotonic() + 10
    while ws_session.counters["ws_tokens"] == tokens or not current.ws_connected():
        assert time.monotonic() < deadline, "the socket did not reconnect with a new token"
        time.sleep(0.02)
    second = submitted(btc)
    assert execute_order(second.pk)["via"] == "ws"
    assert [o["source"] for o in live.orders(second.client_order_id)] == ["ws"]


def test_socket_dropped_after_send_leaves_the_order_unknown_until_the_query_finds_it(
    live: ThreadedSim, btc: Instrument
) -> None:
    connected_session()
    order = submitted(btc, cl="gf-ws-dropped-1")
    sim_loop = live.loop
    exchange = live.sim.exchange

    async def drop_once_placed() -> None:
        # On the simulator's loop: the instant the order exists (its ack held back by the silence), cut the
        # private socket, as a network failure between the exchange's accept and our read would.
        while not any(o.cl_ord_id == "gf-ws-dropped-1" for o in exchange.orders.values()):
            await asyncio.sleep(0.001)
        live.sim.faults.drop_connections(scope="private")

    live.fault("silence", seconds=30, scope="private", mode="hold")
    watcher = asyncio.run_coroutine_threadsafe(drop_once_placed(), sim_loop)

    outcome = execute_order(order.pk)

    watcher.result(5)
    live.clear_faults()
    order.refresh_from_db()
    assert outcome["action"] == "resolved"
    assert kinds(order) == ["created", "submitted", "unknown", "accepted"]
    exchange_orders = live.orders("gf-ws-dropped-1")
    assert len(exchange_orders) == 1, "a second order was placed"
    assert order.exchange_order_id == exchange_orders[0]["order_id"]
    assert order.send_attempts == 1


def test_no_ack_within_the_timeout_is_unknown_then_resolved_with_one_order(
    live: ThreadedSim, btc: Instrument, settings: Any
) -> None:
    settings.KRAKEN_TIMEOUT = 1.0  # the ack wait
    connected_session()
    live.fault("silence", seconds=30, scope="private", mode="drop")  # the ack is lost, the socket stays up
    order = submitted(btc)

    outcome = execute_order(order.pk)

    live.clear_faults()
    order.refresh_from_db()
    assert outcome["action"] == "resolved"
    assert "unknown" in kinds(order)
    assert order.state == OrderState.ACCEPTED
    assert len(live.orders(order.client_order_id)) == 1


def test_duplicate_deliveries_make_one_order_even_when_the_first_died_after_sending(
    live: ThreadedSim, btc: Instrument, monkeypatch: pytest.MonkeyPatch
) -> None:
    connected_session()
    order = submitted(btc)
    real_add = ws_session.ExchangeSession.add_order

    def add_then_die(self: ws_session.ExchangeSession, **params: Any) -> Any:
        real_add(self, **params)  # the exchange accepted it...
        raise Killed  # ...and the worker died before recording anything

    monkeypatch.setattr(ws_session.ExchangeSession, "add_order", add_then_die)
    with pytest.raises(Killed):
        execute_order(order.pk)
    monkeypatch.setattr(ws_session.ExchangeSession, "add_order", real_add)
    order.refresh_from_db()
    assert (order.state, order.exchange_order_id, order.send_attempts) == (OrderState.SUBMITTED, "", 1)

    second = execute_order(order.pk)  # redelivered: an attempt was recorded, so it asks the exchange first
    third = execute_order(order.pk)  # and once more: nothing left to do

    order.refresh_from_db()
    assert (second["action"], third["action"]) == ("found", "skipped")
    assert len(live.orders(order.client_order_id)) == 1
    assert order.exchange_order_id == live.orders(order.client_order_id)[0]["order_id"]
    assert order.send_attempts == 1


def test_cancel_goes_over_the_socket(live: ThreadedSim, btc: Instrument) -> None:
    from trading.kill_switch import order_cancel_request

    connected_session()
    order = submitted(btc)
    execute_order(order.pk)
    ws_cancels = ws_session.counters["ws_cancel_order"]
    order_cancel_request(order_id=order.pk, reason="operator", actor="ops")

    outcome = execute_cancel(order.pk)

    order.refresh_from_db()
    assert outcome["action"] == "canceled"
    assert ws_session.counters["ws_cancel_order"] == ws_cancels + 1
    assert order.state == OrderState.CANCELED
    assert live.orders(order.client_order_id)[0]["status"] == "canceled"


def test_live_session_keeps_the_dead_man_switch_armed_and_orders_fall_when_it_is_gone(
    live: ThreadedSim, btc: Instrument, settings: Any
) -> None:
    settings.GALFRIDAY_DEADMAN_TIMEOUT_S = 10
    settings.GALFRIDAY_DEADMAN_REFRESH_S = 0.1
    order = submitted(btc)
    execute_order(order.pk)  # builds the session: it arms the switch and keeps re-arming it
    # The switch counts down on the simulator's clock, moved here 6 s at a time: 18 s of a 10 s countdown pass, and
    # only the session's re-arming between the steps keeps the order alive.
    for _ in range(3):
        refreshed = ws_session.counters["deadman_refreshed"]
        wait_for(lambda n=refreshed: ws_session.counters["deadman_refreshed"] > n, 10, "a dead man's switch refresh")
        assert advance_dead_man_switch(live, 6)["fired_now"] is False
    assert live.orders(order.client_order_id)[0]["status"] == "open"
    assert live.state()["dead_man_switch"]["trigger"] is not None

    ws_session.close_session()  # the worker is gone: nobody re-arms the switch
    assert advance_dead_man_switch(live, 10)["fired_now"] is True

    assert live.orders(order.client_order_id)[0]["status"] == "canceled"
    assert live.state()["dead_man_switch"]["fired"] == 1


def advance_dead_man_switch(simulator: ThreadedSim, seconds: float) -> dict[str, Any]:
    """Let `seconds` of the simulator's dead man's switch countdown pass now (it fires in the call if it runs out)."""
    r = simulator.admin.post("/dead_man_switch", json={"advance": seconds})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_a_forked_child_builds_its_own_clients_and_never_uses_the_parents(live: ThreadedSim, btc: Instrument) -> None:
    parent = connected_session()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running any of the parent's cleanup
        status = 1
        try:
            stale = False
            try:
                parent.rest.server_time()
            except RuntimeError:
                stale = True  # refused at once instead of waiting forever for a loop that is not in this process
            child = ws_session.session()
            fresh = child is not parent and child.pid == os.getpid() and child.rest.server_time() is not None
            status = 0 if (stale and fresh and not parent.rest.usable) else 2
            child.close()
        finally:
            os.write(write, bytes([status]))
            os._exit(0)
    os.close(write)
    try:
        result = os.read(read, 1)
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    assert result == bytes([0])
    assert ws_session.session() is parent
    assert parent.usable
    assert parent.rest.server_time() is not None
