"""Trading over the private WebSocket against the local simulator: the order round trip (ack, executions,
balances), cancels, Kraken's rejections as typed exceptions, and orders whose ack never comes, resolved by a
REST query by client order id (never by a blind resubmit)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest

from ingest.kraken.errors import (
    InsufficientFunds,
    OrderMinimumNotMet,
    OrderOutcomeUnknown,
    RequestTimeout,
    UnknownOrder,
)


@pytest.fixture
async def sim(make_sim: Any) -> Any:
    """A quiet exchange (no generated participants): every fill here comes from liquidity the test places."""
    return await make_sim(market="none")


def buy(qty: str, price: str, **extra: Any) -> dict[str, Any]:
    return {
        "symbol": "BTC/USD",
        "side": "buy",
        "order_type": "limit",
        "order_qty": Decimal(qty),
        "limit_price": Decimal(price),
        **extra,
    }


async def private_client(make_ws: Any, **config: Any) -> tuple[Any, Any]:
    client, recorder = make_ws(**config)
    await client.subscribe_executions()
    await client.subscribe_balances()
    await recorder.until(lambda: {"executions", "balances"} <= set(recorder.messages), what="private snapshots")
    return client, recorder


async def test_marketable_order_round_trip_executions_then_balances(make_ws: Any, sim_admin: Any, rest: Any) -> None:
    client, recorder = await private_client(make_ws)
    await sim_admin.place("BTC/USD", "sell", "60000.0", "1")

    ack = await client.add_order(**buy("0.01", "60000.0", cl_ord_id="round-trip-1"))
    assert ack.order_id
    assert ack.cl_ord_id == "round-trip-1"

    ledger = lambda: [b for b in recorder.items("balances") if b.ledger_id is not None]  # noqa: E731
    await recorder.until(
        lambda: [e.exec_type for e in recorder.executions(ack.order_id)][-1:] == ["filled"] and len(ledger()) == 2,
        what="filled and two ledger entries",
    )
    events = recorder.executions(ack.order_id)
    assert [e.exec_type for e in events] == ["pending_new", "new", "trade", "filled"]
    assert [e.order_status for e in events] == ["pending_new", "new", "filled", "filled"]
    pending, _, trade, filled = events
    assert (pending.cl_ord_id, pending.symbol, pending.order_qty, pending.limit_price) == (
        "round-trip-1",
        "BTC/USD",
        Decimal("0.01"),
        Decimal("60000.0"),
    )
    assert (trade.last_qty, trade.last_price, trade.cost, trade.liquidity_ind) == (
        Decimal("0.01"),
        Decimal("60000.0"),
        Decimal("600"),
        "t",
    )
    assert [(f.asset, f.qty) for f in trade.fees] == [("USD", Decimal("2.4"))]  # 0.40 % taker
    assert (filled.cum_qty, filled.avg_price) == (Decimal("0.01"), Decimal("60000"))

    btc, usd = sorted(ledger(), key=lambda b: b.asset)
    assert btc.ref_id == usd.ref_id
    assert btc.ref_id is not None
    assert (btc.asset, btc.amount, btc.fee, btc.balance) == ("BTC", Decimal("0.01"), Decimal(0), Decimal("1.01"))
    assert (usd.asset, usd.amount, usd.fee, usd.balance) == ("USD", Decimal("-600"), Decimal("2.4"), Decimal("99397.6"))
    assert usd.type == "trade"
    balances = await rest.balance()
    assert (balances["XXBT"], balances["ZUSD"]) == (btc.balance, usd.balance)


async def test_cancel_order_acks_and_streams_canceled(make_ws: Any, rest: Any) -> None:
    client, recorder = await private_client(make_ws)
    ack = await client.add_order(**buy("0.01", "50000.0", cl_ord_id="to-cancel"))
    canceled = await client.cancel_order(cl_ord_id="to-cancel")
    assert (canceled.order_id, canceled.cl_ord_id) == (ack.order_id, "to-cancel")
    await recorder.until(lambda: [e.exec_type for e in recorder.executions(ack.order_id)][-1:] == ["canceled"])
    assert [e.exec_type for e in recorder.executions(ack.order_id)] == ["pending_new", "new", "canceled"]
    assert recorder.executions(ack.order_id)[-1].reason == "User requested"
    assert (await rest.query_orders([ack.order_id]))[ack.order_id].status == "canceled"


@pytest.mark.parametrize(
    ("order", "error", "error_type"),
    [
        (buy("5", "60000.0"), "EOrder:Insufficient funds", InsufficientFunds),
        (buy("0.00001", "60000.0"), "EOrder:Order minimum not met", OrderMinimumNotMet),
    ],
)
async def test_rejections_carry_krakens_exact_error_as_the_typed_exception(
    make_ws: Any, sim_admin: Any, order: dict[str, Any], error: str, error_type: type[Exception]
) -> None:
    client, recorder = await private_client(make_ws)
    with pytest.raises(error_type) as rejected:
        await client.add_order(**order, cl_ord_id="rejected-1")
    assert rejected.value.error == error  # type: ignore[attr-defined]
    assert rejected.value.retryable is False  # type: ignore[attr-defined]
    await client.ping(endpoint="private")
    assert recorder.executions() == []
    assert (await sim_admin.state())["orders"] == []


async def test_cancel_of_unknown_order_is_the_typed_unknown_order(make_ws: Any) -> None:
    client, _ = await private_client(make_ws)
    with pytest.raises(UnknownOrder) as unknown:
        await client.cancel_order(order_id="OAAAAA-BBBBB-CCCCCC")
    assert unknown.value.error == "EOrder:Unknown order"


async def test_add_order_without_an_ack_is_outcome_unknown_and_resolved_by_rest_query(
    make_ws: Any, sim_admin: Any, rest: Any
) -> None:
    # The watchdog is kept longer than the silence: this is a slow exchange, not a dead socket.
    client, recorder = await private_client(make_ws, watchdog_timeout_s=5.0, idle_ping_after_s=2.0)
    connection = client.connection_id("private")
    await sim_admin.fault("silence", seconds=1.0, scope="private", connection_id=connection, mode="hold")

    with pytest.raises(OrderOutcomeUnknown) as unknown:
        await client.add_order(**buy("0.01", "50000.0", cl_ord_id="slow-ack-1"), timeout=0.3)
    assert unknown.value.cl_ord_id == "slow-ack-1"
    assert unknown.value.retryable is False
    assert client.stats.outcome_unknown == 1

    # What a caller must do: ask by client order id, not resubmit.
    (found,) = (await rest.open_orders(cl_ord_id="slow-ack-1")).values()
    assert (found.status, found.cl_ord_id, found.vol) == ("open", "slow-ack-1", Decimal("0.01"))

    # When the exchange's messages finally arrive, the ack is late (counted) and the executions agree.
    await recorder.until(lambda: [e.exec_type for e in recorder.executions(found.txid)] == ["pending_new", "new"])
    assert client.stats.late_acks == 1
    assert client.stats.reconnects == 0
    assert [o["cl_ord_id"] for o in (await sim_admin.state())["orders"]] == ["slow-ack-1"]


async def test_connection_lost_while_add_order_is_in_flight_is_outcome_unknown(
    make_ws: Any, sim_admin: Any, rest: Any
) -> None:
    client, recorder = await private_client(make_ws, watchdog_timeout_s=30.0, idle_ping_after_s=10.0)
    connection = client.connection_id("private")
    await sim_admin.fault("silence", seconds=30, scope="private", connection_id=connection, mode="hold")
    in_flight = asyncio.create_task(client.add_order(**buy("0.01", "50000.0", cl_ord_id="lost-1"), timeout=30))

    async def accepted() -> Any:  # the exchange took the order; its answer is held back
        while True:
            found = await rest.open_orders(cl_ord_id="lost-1")
            if found:
                return next(iter(found.values()))

    order = await asyncio.wait_for(accepted(), 5)
    assert not in_flight.done()
    await sim_admin.fault("drop_connections", scope="private", connection_id=connection)
    with pytest.raises(OrderOutcomeUnknown) as unknown:
        await asyncio.wait_for(in_flight, 5)  # failed by the disconnect, not by its 30 s timeout
    assert unknown.value.cl_ord_id == "lost-1"

    # After the reconnect the executions snapshot (authoritative) lists the order, and reconciliation is asked.
    def snapshot_has_order() -> bool:
        snaps = [m for m in recorder.messages.get("executions", []) if m.type == "snapshot"]
        return len(snaps) == 2 and any(e.order_id == order.txid for e in snaps[-1].items)

    await recorder.until(snapshot_has_order, what="the order in the fresh executions snapshot")
    assert any(r.reason == "reconnect" and r.channel == "executions" for r in recorder.reconciles)
    assert [o["cl_ord_id"] for o in (await sim_admin.state())["orders"]] == ["lost-1"]


async def test_every_private_connection_gets_a_fresh_token(make_ws: Any, sim_admin: Any, rest: Any) -> None:
    tokens: list[str] = []

    async def provider() -> str:
        token = (await rest.websockets_token()).token
        tokens.append(token)
        return token

    client, recorder = make_ws(token_provider=provider)
    await client.subscribe_executions()
    await sim_admin.fault("drop_connections", scope="private")
    await recorder.until(lambda: any(r.reason == "reconnect" for r in recorder.reconciles), what="reconnect")
    assert len(tokens) == 2
    assert tokens[0] != tokens[1]
    ack = await client.add_order(**buy("0.01", "50000.0"))  # trading uses the new connection's token
    assert ack.order_id


async def test_ack_lost_in_a_dropping_silence_is_outcome_unknown_then_the_gap_reveals_the_loss(
    make_ws: Any, sim_admin: Any, rest: Any
) -> None:
    client, recorder = await private_client(make_ws, watchdog_timeout_s=5.0, idle_ping_after_s=2.0)
    connection = client.connection_id("private")
    # Everything the exchange sends on this connection for 0.5 s is lost: the ack and the order's executions.
    await sim_admin.fault("silence", seconds=0.5, scope="private", connection_id=connection, mode="drop")
    with pytest.raises(OrderOutcomeUnknown) as unknown:
        await client.add_order(**buy("0.01", "50000.0", cl_ord_id="lost-ack-1"), timeout=0.3)
    assert unknown.value.cl_ord_id == "lost-ack-1"

    (order,) = (await rest.open_orders(cl_ord_id="lost-ack-1")).values()  # the truth, by client order id
    assert order.status == "open"

    async def heard_again() -> None:  # pings are idempotent: repeat them until the silence is over
        while True:
            try:
                await client.ping(endpoint="private", timeout=0.2)
                return
            except RequestTimeout:
                continue

    await asyncio.wait_for(heard_again(), 5)
    # The lost executions had consumed sequence numbers: the next event exposes the gap.
    await client.cancel_order(cl_ord_id="lost-ack-1")
    await recorder.until(lambda: [g[0] for g in recorder.gaps] == ["executions"], what="the executions gap")
    assert any(r.reason == "gap" and r.channel == "executions" for r in recorder.reconciles)
    assert client.stats.late_acks == 0  # the ack was lost, not late
    assert [o["cl_ord_id"] for o in (await sim_admin.state())["orders"]] == ["lost-ack-1"]
    assert (await rest.query_orders([order.txid]))[order.txid].status == "canceled"


async def test_rest_add_order_delayed_past_its_timeout_is_resolved_by_query_not_resubmit(
    make_rest: Any, sim_admin: Any, rest: Any
) -> None:
    impatient = make_rest(timeout=0.3)
    await sim_admin.fault("rest_delay", ms=1000, count=1, phase="after")  # applied first, answered late
    with pytest.raises(OrderOutcomeUnknown) as unknown:
        await impatient.add_order(
            pair="XBTUSD",
            side="buy",
            ordertype="limit",
            volume=Decimal("0.01"),
            price=Decimal("50000.0"),
            cl_ord_id="r-slow",
        )
    assert unknown.value.cl_ord_id == "r-slow"
    assert len(await rest.open_orders(cl_ord_id="r-slow")) == 1
    assert [o["cl_ord_id"] for o in (await sim_admin.state())["orders"]] == ["r-slow"]


async def test_rest_error_faults_become_typed_errors_and_feed_the_rate_model(rest: Any, sim_admin: Any) -> None:
    from ingest.kraken.errors import ApiRateLimitExceeded, ServiceUnavailable

    await sim_admin.fault("rest_errors", count=1, error="EService:Unavailable")
    with pytest.raises(ServiceUnavailable) as unavailable:
        await rest.balance()
    assert unavailable.value.retryable is True
    await sim_admin.fault("rest_errors", count=1, error="EAPI:Rate limit exceeded")
    with pytest.raises(ApiRateLimitExceeded):
        await rest.balance()
    assert rest.rest_counter.value() >= rest.rest_counter.maximum - 1  # saturated: following calls will wait
    assert (await rest.balance())["ZUSD"] == Decimal(100000)


@pytest.mark.parametrize("keepalive_s", [0.2, 30.0])
async def test_keepalive_pings_hold_an_idle_trading_only_socket_open(
    make_sim: Any, make_rest: Any, keepalive_s: float
) -> None:
    from ingest.kraken.ws.client import KrakenWsClient
    from ingest.kraken.ws.types import WsConfig
    from ingest.kraken.ws.user_stream import token_provider_from

    # A private socket used only for trading has no subscription, hence no heartbeats, and the exchange closes
    # a socket that sends nothing for its idle timeout (60 s on Kraken; 0.6 s here).
    quick_idle = await make_sim(market="none", idle_timeout=0.6)
    config = WsConfig(
        public_url=quick_idle.ws_url,
        private_url=quick_idle.ws_auth_url,
        keepalive_s=keepalive_s,
        idle_ping_after_s=30.0,
        watchdog_timeout_s=60.0,
    )
    dropped = asyncio.Event()
    async with KrakenWsClient(config, token_provider=token_provider_from(make_rest(quick_idle))) as client:
        client.on_connection_state(lambda endpoint, old, new: dropped.set() if new.value == "reconnecting" else None)
        await client.connect(public=False, private=True)
        first = client.connection_id("private")
        if keepalive_s < 0.6:
            with pytest.raises(TimeoutError):  # staying idle for 3x the idle timeout is the point of this test
                await asyncio.wait_for(dropped.wait(), 1.8)
            assert client.connection_id("private") == first
            assert client.stats.idle_pings >= 5
        else:  # control: without keepalive pings the exchange closes the idle socket
            await asyncio.wait_for(dropped.wait(), 5)
        ack = await client.add_order(**buy("0.01", "50000.0"))
        assert ack.order_id
