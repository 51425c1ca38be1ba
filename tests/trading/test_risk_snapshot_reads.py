"""The risk snapshot's reads (`selectors.risk_snapshot_reads`, statements compiled once, the same on every
backend) read the book: every open-order group (own instrument, other instruments sharing the quote or the base,
limit and market orders, partly filled, excluded states, the order being checked), positions (zero ones left out),
the order-rate window (external orders left out), today's fills only, and the latest equity of the account
currency."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.utils import timezone

from tests.trading.conftest import quote
from tests.trading.factories import EthInstrumentFactory, InstrumentFactory, OrderFactory, equity_snapshot
from trading.models import Fill, Instrument, Order, Position
from trading.selectors import risk_snapshot_reads

pytestmark = pytest.mark.django_db  # every backend: the same statements run on each


def _order(instrument: Instrument, side: str, qty: str, *, price: str | None, state: str, **extra: object) -> Order:
    order: Order = OrderFactory(
        instrument=instrument,
        side=side,
        order_type="limit" if price else "market",
        quantity=D(qty),
        limit_price=D(price) if price else None,
        state=state,
        **extra,
    )
    return order


def _fill(order: Order, exec_id: str, *, pnl: str, fee: str, at: object) -> None:
    Fill.objects.create(
        order=order,
        instrument=order.instrument,
        exec_id=exec_id,
        side=order.side,
        quantity=D("0.1"),
        price=D("100"),
        cost=D("10"),
        fee=D(fee),
        realised_pnl=D(pnl),
        source="exchange",
        executed_at=at,
    )


@pytest.fixture
def book() -> tuple[Instrument, Order]:
    now = timezone.now()
    btc = InstrumentFactory()
    eth = EthInstrumentFactory()
    eth_btc = InstrumentFactory(
        symbol="ETH/BTC", rest_symbol="XETHXXBT", altname="ETHXBT", v1_symbol="ETH/XBT", base="ETH", quote="BTC"
    )
    quote(btc, "100.05")
    quote(eth, "20.5")
    recent = now - timedelta(seconds=10)
    # Open orders related to BTC/USD: its own buys (two at one price: one group), a partly filled sell, a buy of
    # another USD instrument (market: priced at its mark), a sell of another BTC-base instrument: none here, but
    # ETH/BTC buys spend BTC (not USD) and its sells deliver ETH: both unrelated.
    checked = _order(btc, "buy", "1", price="90", state="submitted", submitted_at=recent)
    _order(btc, "buy", "2", price="90", state="accepted", submitted_at=recent)
    _order(btc, "buy", "0.5", price="95.5", state="pending_cancel", submitted_at=now - timedelta(minutes=5))
    _order(btc, "sell", "0.3", price="110", state="partially_filled", filled_qty=D("0.1"), submitted_at=recent)
    _order(eth, "buy", "4", price=None, state="unknown", submitted_at=recent)
    _order(eth, "sell", "1", price="21", state="accepted", submitted_at=recent)  # ETH base: unrelated
    _order(eth_btc, "buy", "1", price="0.2", state="accepted", submitted_at=recent)
    _order(eth_btc, "sell", "1", price="0.3", state="accepted", submitted_at=recent)
    # Not open, or nothing left: excluded.
    _order(btc, "buy", "7", price="90", state="canceled", submitted_at=recent)
    _order(btc, "buy", "1", price="90", state="created")
    _order(btc, "sell", "1", price="120", state="accepted", filled_qty=D("1"), submitted_at=recent)
    # An order the exchange told us about: open, but not ours for the order rate.
    _order(btc, "sell", "0.2", price="130", state="accepted", external=True, submitted_at=recent)
    filled = _order(btc, "buy", "1", price="100", state="filled", submitted_at=recent)
    _fill(filled, "T-TODAY-1", pnl="12.5", fee="0.25", at=now)
    _fill(filled, "T-TODAY-2", pnl="-2.125", fee="0.1", at=now - timedelta(microseconds=1))
    _fill(filled, "T-YESTERDAY", pnl="1000", fee="1", at=now - timedelta(days=1, hours=1))
    Position.objects.create(instrument=btc, quantity=D("1.5"), avg_price=D("98.25"))
    Position.objects.create(instrument=eth, quantity=D("-3"), avg_price=D("21"))
    Position.objects.create(instrument=eth_btc)  # flat
    equity_snapshot(equity="10500", high_water_mark="11000", at=now - timedelta(minutes=2))
    equity_snapshot(equity="10400", high_water_mark="11000", at=now - timedelta(minutes=1))
    equity_snapshot(equity="1", high_water_mark="2", currency="EUR", at=now)  # another currency's, newer
    return btc, checked


def test_the_reads_are_the_book(  # type: ignore[no-untyped-def]
    book: tuple[Instrument, Order], django_assert_num_queries
) -> None:
    btc, checked = book
    now = timezone.now()
    risk_snapshot_reads(btc, exclude_pk=checked.pk, now=now)  # compiled on first use
    with django_assert_num_queries(3):  # whatever the size of the book
        reads = risk_snapshot_reads(btc, exclude_pk=checked.pk, now=now)

    assert reads.quotes["BTC/USD"][0] == D("100.05")
    assert set(reads.quotes) == {"BTC/USD", "ETH/USD"}
    groups = {(g.symbol, g.side, g.limit_price): g.remaining for g in reads.open_groups}
    assert groups == {
        ("BTC/USD", "buy", D("90")): D("2"),  # the checked order left out
        ("BTC/USD", "buy", D("95.5")): D("0.5"),
        ("BTC/USD", "sell", D("110")): D("0.2"),
        ("BTC/USD", "sell", D("130")): D("0.2"),
        ("ETH/USD", "buy", None): D("4"),
    }
    assert sorted((p.symbol, p.quantity, p.avg_price) for p in reads.positions) == [
        ("BTC/USD", D("1.5"), D("98.25")),
        ("ETH/USD", D("-3"), D("21")),
    ]
    assert len(reads.recent_submissions) == 10  # submitted within the minute, ours (any state)
    assert reads.realised_today == D("12.5") - D("0.25") - D("2.125") - D("0.1")
    assert reads.latest_equity == (D("10400"), D("11000"))
    with_checked = risk_snapshot_reads(btc, exclude_pk=None, now=now)
    assert {(g.symbol, g.side, g.limit_price): g.remaining for g in with_checked.open_groups}[
        ("BTC/USD", "buy", D("90"))
    ] == D("3")


def test_an_empty_book_reads_empty(db: object) -> None:
    btc = InstrumentFactory()
    reads = risk_snapshot_reads(btc, exclude_pk=None, now=timezone.now())
    assert reads.quotes == {}
    assert reads.open_groups == []
    assert reads.positions == []
    assert reads.recent_submissions == []
    assert reads.realised_today == 0
    assert reads.latest_equity is None
