"""Public REST endpoints: names, precisions and shapes of PROTOCOL.md §1.3 and §5."""

from __future__ import annotations

from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import httpx
import pytest


async def test_asset_pairs_lists_kraken_names_and_precisions(rest: Any) -> None:
    body = await rest.public("AssetPairs", pair="XBTUSD,ETHUSD")
    btc, eth = body["result"]["XXBTZUSD"], body["result"]["XETHZUSD"]
    assert (btc["altname"], btc["wsname"], btc["base"], btc["quote"]) == ("XBTUSD", "XBT/USD", "XXBT", "ZUSD")
    assert (btc["pair_decimals"], btc["lot_decimals"], btc["cost_decimals"]) == (1, 8, 5)
    assert (btc["tick_size"], btc["ordermin"], btc["costmin"]) == ("0.1", "0.00005", "0.5")
    assert (eth["pair_decimals"], eth["tick_size"], eth["ordermin"]) == (2, "0.01", "0.002")


@pytest.mark.parametrize("method", ["AssetPairs", "Ticker", "OHLC", "Depth", "Trades", "Spread"])
async def test_answers_are_keyed_as_kraken_keys_the_pair_name_asked_for(rest: Any, method: str) -> None:
    """Kraken keys a market data answer by the REST key for an altname or REST key, and by the name itself for a
    slash name (PROTOCOL.md §1.3, §6.8): a client reading ``result["BTC/USD"]`` after asking for BTC/USD works."""
    for name, key in (("XBTUSD", "XXBTZUSD"), ("XXBTZUSD", "XXBTZUSD"), ("XBT/USD", "XBT/USD"), ("BTC/USD", "BTC/USD")):
        body = await rest.public(method, pair=name)
        assert body["error"] == [], (method, name)
        assert [k for k in body["result"] if k != "last"] == [key], (method, name)


async def test_a_pair_list_keys_each_answer_by_its_own_name(rest: Any) -> None:
    body = await rest.public("Ticker", pair="BTC/USD,ETHUSD")
    assert list(body["result"]) == ["BTC/USD", "XETHZUSD"]
    pairs = (await rest.public("AssetPairs", pair="ETH/USD"))["result"]
    assert pairs["ETH/USD"]["altname"] == "ETHUSD"


async def test_unknown_pair_gets_equery_error(rest: Any) -> None:
    body = await rest.public("Ticker", pair="DOGEJPY")
    assert body == {"error": ["EQuery:Unknown asset pair"]}


async def test_time_and_system_status_shapes(rest: Any) -> None:
    t = (await rest.public("Time"))["result"]
    s = (await rest.public("SystemStatus"))["result"]
    assert t["rfc1123"].endswith("+0000")
    assert s["status"] == "online"
    assert s["timestamp"].endswith("Z")


async def test_depth_ticker_and_trades_reflect_the_book_and_a_trade(
    rest: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    await kit.place(admin, "BTC/USD", "buy", "59990.0", "0.5")
    await kit.place(admin, "BTC/USD", "sell", "60010.0", "0.25")
    await kit.place(admin, "BTC/USD", "sell", "59990.0", "0.1")  # trades 0.1 against the bid

    depth = (await rest.public("Depth", pair="XBTUSD", count=5))["result"]["XXBTZUSD"]
    assert depth["bids"][0][:2] == ["59990.00000", "0.40000000"]
    assert depth["asks"][0][:2] == ["60010.00000", "0.25000000"]

    ticker = (await rest.public("Ticker", pair="XBTUSD"))["result"]["XXBTZUSD"]
    assert ticker["a"][0] == "60010.00000"
    assert ticker["b"][0] == "59990.00000"
    assert ticker["c"] == ["59990.00000", "0.10000000"]
    assert ticker["t"] == [1, 1]

    trades = (await rest.public("Trades", pair="XBTUSD"))["result"]
    row = trades["XXBTZUSD"][-1]
    assert row[0:2] == ["59990.00000", "0.10000000"]
    assert row[3:5] == ["s", "l"]  # taker sold with a limit order
    assert int(trades["last"]) > 10**18  # a nanosecond cursor


async def test_ohlc_rows_have_krakens_eight_columns(rest: Any, admin: httpx.AsyncClient, kit: SimpleNamespace) -> None:
    await kit.place(admin, "ETH/USD", "buy", "3000.00", "1")
    await kit.place(admin, "ETH/USD", "sell", "3000.00", "0.4")
    await kit.place(admin, "ETH/USD", "sell", "2999.00", "0.6")  # fills the rest of the bid at 3000.00
    result = (await rest.public("OHLC", pair="ETHUSD", interval=5))["result"]
    rows = result["XETHZUSD"]
    assert len(rows) == 1
    begin, o, h, low, c, vwap, volume, count = rows[0]
    assert begin % 300 == 0
    assert (o, h, low, c, vwap, volume, count) == (
        "3000.00",
        "3000.00",
        "3000.00",
        "3000.00",
        "3000.00",
        "1.00000000",
        2,
    )
    assert isinstance(result["last"], int)


async def test_ohlc_rejects_an_unsupported_interval(rest: Any) -> None:
    body = await rest.public("OHLC", pair="XBTUSD", interval=7)
    assert body == {"error": ["EGeneral:Invalid arguments"]}


async def test_public_trade_decimals_are_exact(rest: Any, admin: httpx.AsyncClient, kit: SimpleNamespace) -> None:
    await kit.place(admin, "BTC/USD", "sell", "61000.1", "0.00012345")
    await kit.place(admin, "BTC/USD", "buy", "61000.1", "0.00012345")
    row = (await rest.public("Trades", pair="XBTUSD"))["result"]["XXBTZUSD"][-1]
    assert Decimal(row[0]) * Decimal(row[1]) == Decimal("7.530462345")


async def test_trades_with_a_count_and_no_since_are_the_latest(
    rest: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    """``count`` without ``since`` gives the most recent trades (Kraken's "last N trades"), oldest first; with
    ``since`` it pages forward from the cursor."""
    for price in ("60000.0", "60001.0", "60002.0", "60003.0"):
        await kit.place(admin, "BTC/USD", "sell", price, "0.01")
        await kit.place(admin, "BTC/USD", "buy", price, "0.01")
    latest = (await rest.public("Trades", pair="XBTUSD", count=2))["result"]
    assert [row[0] for row in latest["XXBTZUSD"]] == ["60002.00000", "60003.00000"]
    first = (await rest.public("Trades", pair="XBTUSD", count=2, since=0))["result"]
    assert [row[0] for row in first["XXBTZUSD"]] == ["60000.00000", "60001.00000"]
    after = (await rest.public("Trades", pair="XBTUSD", since=first["last"]))["result"]
    assert [row[0] for row in after["XXBTZUSD"]] == ["60002.00000", "60003.00000"]


async def test_spread_lists_the_best_bid_and_ask_as_they_changed(
    rest: Any, admin: httpx.AsyncClient, kit: SimpleNamespace
) -> None:
    assert (await rest.public("Spread", pair="XBTUSD"))["result"]["XXBTZUSD"] == []  # one side only: no spread
    await kit.place(admin, "BTC/USD", "buy", "59990.0", "0.5")
    await kit.place(admin, "BTC/USD", "sell", "60010.0", "0.5")
    await kit.place(admin, "BTC/USD", "buy", "59995.0", "0.5")
    result = (await rest.public("Spread", pair="XBTUSD"))["result"]
    rows = result["XXBTZUSD"]
    assert [row[1:] for row in rows] == [["59990.00000", "60010.00000"], ["59995.00000", "60010.00000"]]
    assert all(isinstance(row[0], int) for row in rows)
    assert result["last"] == rows[-1][0]
    later = (await rest.public("Spread", pair="BTC/USD", since=result["last"]))["result"]
    assert later == {"BTC/USD": [], "last": result["last"]}
