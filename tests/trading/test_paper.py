"""The paper broker: fills against the exchange's book (the simulator's REST Depth, or a snapshot), through the same
state machine and events as live; and paper and live giving the same books for the same market."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.trading.factories import InstrumentFactory
from tests.trading.sim_support import ThreadedSim, point_settings_at, sim  # noqa: F401  (fixture)
from trading.accounts import balance_set
from trading.brokers.paper import BookSnapshot, PaperBroker, PaperConfig, StaticBooks, paper_order_id
from trading.execution import order_execute
from trading.models import Balance, Fill, Instrument, Order, OrderEvent, Position
from trading.order_states import OrderState
from trading.orders import order_create, order_mark_submitted
from trading.paper import paper_sweep
from trading.tasks import execute_cancel, execute_order, paper_broker_sweep, sync_order

pytestmark = pytest.mark.django_db

_n = iter(range(1, 10**6))


@pytest.fixture
def btc(db: None) -> Instrument:
    instrument = InstrumentFactory()
    balance_set(asset="USD", total=Decimal("100000"))
    balance_set(asset="BTC", total=Decimal("1"))
    return instrument


def submitted(instrument: Instrument, cl: str | None = None, **params: Any) -> Order:
    order = order_create(
        client_order_id=cl or f"gf-pp-{next(_n):05d}",
        instrument=instrument,
        side=params.get("side", "buy"),
        order_type=params.get("order_type", "limit"),
        quantity=Decimal(params.get("qty", "0.5")),
        limit_price=Decimal(params["price"]) if params.get("price") else None,
        post_only=params.get("post_only", False),
        time_in_force=params.get("tif", "gtc"),
    )
    return order_mark_submitted(order_id=order.pk)


BOOK = BookSnapshot.of(bids=[("97.0", "1")], asks=[("100.0", "0.3"), ("100.5", "0.5")])


def paper(book: BookSnapshot = BOOK, **config: Any) -> PaperBroker:
    return PaperBroker(StaticBooks({"BTC/USD": book}), PaperConfig(**config))


def test_market_order_walks_the_book_at_taker_fee(btc: Instrument) -> None:
    order = submitted(btc, order_type="market", qty="0.6")
    order_execute(order_id=order.pk, broker=paper())
    order.refresh_from_db()
    assert order.state == OrderState.FILLED
    assert order.exchange_order_id == paper_order_id(order.client_order_id)
    assert order.avg_price == Decimal("100.25")  # VWAP of 0.3 @ 100.0 and 0.3 @ 100.5
    assert order.fees == Decimal("0.2406")  # 0.40 % of 60.15
    assert [e.kind for e in OrderEvent.objects.filter(order=order)] == [
        "created",
        "submitted",
        "accepted",
        "fill",
        "fill",
    ]
    assert Position.objects.get(instrument=btc).quantity == Decimal("0.6")
    assert Balance.objects.get(asset="USD").total == Decimal("100000") - Decimal("60.15") - Decimal("0.2406")


def test_slippage_worsens_taker_prices_by_the_configured_bps(btc: Instrument) -> None:
    order = submitted(btc, order_type="market", qty="0.3")
    order_execute(order_id=order.pk, broker=paper(slippage_bps=Decimal("10")))
    fill = Fill.objects.get(order=order)
    assert fill.price == Decimal("100.1")  # 100.0 + 10 bps
    assert fill.fee == Decimal("0.3") * Decimal("100.1") * Decimal("0.004")


def test_market_order_larger_than_the_book_fills_what_is_there_and_cancels_the_rest(btc: Instrument) -> None:
    order = submitted(btc, order_type="market", qty="1.0")
    order_execute(order_id=order.pk, broker=paper())
    order.refresh_from_db()
    assert (order.state, order.filled_qty, order.reason) == (
        OrderState.CANCELED,
        Decimal("0.8"),
        "Insufficient liquidity",
    )


def test_ioc_limit_fills_the_marketable_part_and_cancels_the_rest(btc: Instrument) -> None:
    order = submitted(btc, price="100.2", qty="0.5", tif="ioc")
    order_execute(order_id=order.pk, broker=paper())
    order.refresh_from_db()
    assert (order.state, order.filled_qty, order.reason) == (OrderState.CANCELED, Decimal("0.3"), "Immediate or cancel")


def test_post_only_that_would_cross_is_canceled(btc: Instrument) -> None:
    order = submitted(btc, side="sell", price="97.0", qty="0.1", post_only=True)
    order_execute(order_id=order.pk, broker=paper())
    order.refresh_from_db()
    assert (order.state, order.reason, order.filled_qty) == (OrderState.CANCELED, "Post only order", Decimal(0))


def test_resting_limit_fills_as_maker_when_the_market_trades_through_and_the_sweep_is_idempotent(
    btc: Instrument,
) -> None:
    order = submitted(btc, price="99.0", qty="0.5")
    order_execute(order_id=order.pk, broker=paper())
    order.refresh_from_db()
    assert order.state == OrderState.ACCEPTED
    at_limit = paper(BookSnapshot.of(bids=[("97.0", "1")], asks=[("99.0", "5")]))
    assert paper_sweep(broker=at_limit)["filled"] == []  # touching the limit is not trading through it
    through = paper(BookSnapshot.of(bids=[("97.0", "1")], asks=[("98.5", "0.2"), ("100.0", "1")]))
    assert paper_sweep(broker=through)["filled"] == [order.pk]
    order.refresh_from_db()
    fill = Fill.objects.get(order=order)
    assert (order.state, fill.quantity, fill.price, fill.fee, fill.liquidity) == (
        OrderState.PARTIALLY_FILLED,
        Decimal("0.2"),
        Decimal("99"),
        Decimal("0.0495"),
        "m",
    )
    # The same sweep again, from the same fill count (a duplicate run): the same exec id, recorded once.
    from trading.brokers.base import OrderTicket
    from trading.execution import exchange_order_apply

    ticket = OrderTicket.from_order(order)
    stale = OrderTicket(
        **{**{f: getattr(ticket, f) for f in ticket.__slots__}, "filled_qty": Decimal(0), "fill_count": 0}
    )
    again = through.match_resting(stale)
    assert again is not None
    exchange_order_apply(again, actor="test")
    assert Fill.objects.filter(order=order).count() == 1


def test_paper_task_runs_twice_fills_once(btc: Instrument, settings: Any, sim: ThreadedSim, tmp_path: Path) -> None:  # noqa: F811
    point_settings_at(settings, sim, tmp_path, mode="paper")
    settings.KRAKEN_API_KEY = settings.KRAKEN_API_SECRET = ""  # paper needs no keys
    sim.place("sell", "100.0", "1")
    order = submitted(btc, order_type="market", qty="0.4")
    assert execute_order(order.pk)["action"] == "sent"
    assert execute_order(order.pk)["action"] == "skipped"
    order.refresh_from_db()
    assert (order.state, Fill.objects.filter(order=order).count()) == (OrderState.FILLED, 1)
    assert sim.orders() == []  # nothing went to the exchange


# --- paper and live: the same books for the same market ------------------------------------------------------


def _run_scenario(sim: ThreadedSim, instrument: Instrument, *, live: bool) -> dict[str, Any]:  # noqa: F811
    """The same deterministic market for both: participants' liquidity placed through the simulator's market
    controls, then a market buy, a resting bid that the market trades through, a post-only that would cross and
    a cancel. Live learns the resting fill by a REST sync; paper by its sweep."""
    sim.place("sell", "100.0", "0.3")
    sim.place("sell", "100.5", "0.5")
    sim.place("buy", "97.0", "1")
    market = submitted(instrument, cl="gf-same-1", order_type="market", qty="0.6")
    execute_order(market.pk)
    resting = submitted(instrument, cl="gf-same-2", price="99.0", qty="0.5")
    execute_order(resting.pk)
    sim.place("sell", "98.5", "0.2")  # trades through our 99.0 bid
    if live:
        sync_order(resting.pk)
    else:
        paper_broker_sweep()
    post_only = submitted(instrument, cl="gf-same-3", side="sell", price="97.0", qty="0.1", post_only=True)
    execute_order(post_only.pk)
    from trading.kill_switch import order_cancel_request

    order_cancel_request(order_id=resting.pk, reason="scenario", actor="ops")
    execute_cancel(resting.pk)
    return _books(instrument)


def _books(instrument: Instrument) -> dict[str, Any]:
    orders = {
        o.client_order_id: (o.state, o.filled_qty, o.avg_price, o.fees, o.reason if o.state != "rejected" else "")
        for o in Order.objects.order_by("client_order_id")
    }
    fills = sorted(
        (f.order.client_order_id, f.side, f.quantity, f.price, f.cost, f.fee, f.liquidity)
        for f in Fill.objects.select_related("order")
    )
    position = Position.objects.get(instrument=instrument)
    return {
        "orders": orders,
        "transitions": {
            o.client_order_id: [e.to_state for e in o.events.order_by("sequence")] for o in Order.objects.all()
        },
        "fills": fills,
        "position": (position.quantity, position.avg_price, position.realised_pnl, position.fees),
        "balances": {b.asset: b.total for b in Balance.objects.all()},
    }


def _reset_books() -> None:
    Fill.objects.all().delete()
    Order.objects.all().delete()
    Position.objects.all().delete()
    balance_set(asset="USD", total=Decimal("100000"))
    balance_set(asset="BTC", total=Decimal("1"))


def test_paper_and_live_give_the_same_order_fill_position_and_balance_state_for_the_same_market(
    btc: Instrument, settings: Any, tmp_path: Path
) -> None:
    paper_sim, live_sim = ThreadedSim(), ThreadedSim()
    try:
        point_settings_at(settings, paper_sim, tmp_path, mode="paper")
        paper_books = _run_scenario(paper_sim, btc, live=False)
        assert paper_sim.orders() == []

        _reset_books()
        point_settings_at(settings, live_sim, tmp_path, mode="live")
        live_books = _run_scenario(live_sim, btc, live=True)
        assert len(live_sim.orders()) == 3
    finally:
        paper_sim.close()
        live_sim.close()

    assert live_books == paper_books
    assert paper_books["orders"]["gf-same-1"][:2] == (OrderState.FILLED, Decimal("0.6"))
    assert paper_books["orders"]["gf-same-2"][:2] == (OrderState.CANCELED, Decimal("0.2"))
    assert paper_books["orders"]["gf-same-3"][0] == OrderState.CANCELED
    assert paper_books["position"][0] == Decimal("0.8")
