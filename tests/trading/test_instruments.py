"""Instruments: synced from REST AssetPairs (Kraken's names mapped to v2), then updated; bad values refused."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ingest.kraken.rest_types import AssetPair
from trading.instruments import instrument_sync_from_asset_pair, instrument_upsert
from trading.models import Instrument

pytestmark = pytest.mark.django_db
D = Decimal


def test_instrument_from_asset_pairs_then_updated() -> None:
    pair = AssetPair(
        key="XXBTZUSD",
        altname="XBTUSD",
        wsname="XBT/USD",
        base="XXBT",
        quote="ZUSD",
        pair_decimals=1,
        lot_decimals=8,
        cost_decimals=5,
        ordermin=D("0.0001"),
        costmin=D("0.5"),
        tick_size=D("0.1"),
        status="online",
        raw={},
    )
    instrument = instrument_sync_from_asset_pair(pair=pair)
    assert (instrument.symbol, instrument.base, instrument.quote, instrument.rest_symbol, instrument.v1_symbol) == (
        "BTC/USD",
        "BTC",
        "USD",
        "XXBTZUSD",
        "XBT/USD",
    )
    instrument_upsert(
        symbol="BTC/USD",
        base="BTC",
        quote="USD",
        status="post_only",
        price_precision=1,
        qty_precision=8,
        tick_size=D("0.1"),
        qty_increment=D("0.00000001"),
        ordermin=D("0.00005"),
        costmin=D("0.5"),
    )
    instrument = Instrument.objects.get()
    assert (instrument.status, instrument.ordermin, instrument.altname) == ("post_only", D("0.00005"), "XBTUSD")
    assert [h.history_type for h in instrument.history.order_by("history_date")] == ["+", "~"]


def test_instrument_with_a_bad_status_is_refused() -> None:
    with pytest.raises(Exception, match="status"):
        instrument_upsert(
            symbol="ETH/USD",
            base="ETH",
            quote="USD",
            status="exploded",
            price_precision=2,
            qty_precision=8,
            tick_size=D("0.01"),
            qty_increment=None,
            ordermin=D("0.001"),
            costmin=None,
        )
