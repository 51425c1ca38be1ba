"""Gap repair from the exchange's REST API: the trades (and, where Trades no longer reaches, the 1-minute OHLC
bars) the worker did not see live, after a restart, a disconnect, or a bar that differs from the exchange's own.

Plain asyncio and the protocol layer's REST client (no Django): the worker adapts what these return into its bar
builders and records each repair (`ingest.services.backfill_record_save`).

- `fetch_trades` pages `Trades` with Kraken's nanosecond `since` cursor (`last` of one page is the `since` of the
  next) until it has caught up with what the socket delivers (a trade id already held from the live stream), the
  exchange has nothing newer, or a trade past `until` comes back.
- `fetch_ohlc` pages `OHLC` (interval 1) and keeps committed bars only (`time <= last`; the newest row is still
  forming). `ohlc_committed` is the paging step, shared with `models_registry.history`'s training backfill.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, Protocol

from ingest.bars import Bar
from ingest.kraken.messages import OHLC, Trade
from ingest.kraken.rest_types import OHLCBar, OHLCResult, PublicTrade, PublicTrades, unix_to_datetime

NS = 1_000_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TRADES_PAGE = 1000  # Kraken returns at most 1000 trades per Trades call
OHLC_INTERVAL_SECONDS = 60


class RestMarketData(Protocol):
    async def trades(self, pair: str, *, since: str | int | None = None, count: int | None = None) -> PublicTrades: ...

    async def ohlc(self, pair: str, *, interval: int = 1, since: int | None = None) -> OHLCResult: ...


def to_ns(moment: datetime) -> int:
    delta = moment - EPOCH
    return (delta.days * 86_400 + delta.seconds) * NS + delta.microseconds * 1000


def trade_from_rest(symbol: str, row: PublicTrade) -> Trade | None:
    """A REST trade as the socket's `Trade` (None without a trade id: it could not be deduplicated)."""
    if row.trade_id is None:
        return None
    return Trade(
        symbol=symbol,
        side="buy" if row.side == "b" else "sell",
        price=row.price,
        qty=row.volume,
        ord_type="market" if row.order_type == "m" else "limit",
        trade_id=row.trade_id,
        timestamp=unix_to_datetime(row.time),
    )


@dataclass
class TradesFetch:
    trades: list[Trade] = field(default_factory=list)
    calls: int = 0
    caught_up: bool = False  # the exchange had nothing newer, or the live stream's trades were reached


async def fetch_trades(
    rest: RestMarketData,
    *,
    pair: str,
    symbol: str,
    since_ns: int,
    until: datetime | None = None,
    live_from_id: int | None = None,
    max_calls: int = 50,
) -> TradesFetch:
    """Trades of `symbol` after `since_ns` (exclusive), oldest first, deduplicated by trade id.

    Stops at the first trade at or after `until`, once a trade id `>= live_from_id` (the first trade the socket
    delivered, so the live stream covers the rest) comes back, when a page is not full, or after `max_calls`."""
    out = TradesFetch()
    seen: set[int] = set()
    cursor = since_ns
    while out.calls < max_calls:
        page = await rest.trades(pair, since=str(cursor))
        out.calls += 1
        for row in page.trades:
            trade = trade_from_rest(symbol, row)
            if trade is None or trade.trade_id in seen:
                continue
            if until is not None and trade.timestamp >= until:
                out.caught_up = True
                return out
            seen.add(trade.trade_id)
            out.trades.append(trade)
            if live_from_id is not None and trade.trade_id >= live_from_id:
                out.caught_up = True
        if out.caught_up or len(page.trades) < TRADES_PAGE:
            out.caught_up = True
            return out
        next_cursor = int(page.last)
        if next_cursor <= cursor:
            out.caught_up = True
            return out
        cursor = next_cursor
    return out


def ohlc_committed(result: OHLCResult, cursor: int | None, end: int | None = None) -> list[OHLCBar]:
    """The committed bars of one OHLC page after `cursor` (unix seconds, exclusive) and before `end`: rows after
    `last` are still forming and are left out."""
    return [
        b
        for b in result.bars
        if b.time <= result.last and (cursor is None or b.time > cursor) and (end is None or b.time < end)
    ]


async def fetch_ohlc(
    rest: RestMarketData, *, pair: str, since_s: int, end_s: int | None = None, max_calls: int = 5
) -> tuple[dict[int, OHLCBar], int]:
    """Committed 1-minute bars with `since_s < time < end_s` by start time, and the number of calls made."""
    bars: dict[int, OHLCBar] = {}
    cursor = since_s
    calls = 0
    while calls < max_calls:
        result = await rest.ohlc(pair, interval=1, since=cursor)
        calls += 1
        committed = ohlc_committed(result, cursor, end_s)
        bars.update((b.time, b) for b in committed)
        if not committed or result.last <= cursor or (end_s is not None and result.last >= end_s):
            break
        cursor = result.last
    return bars, calls


def bar_from_ohlc(symbol: str, raw: OHLCBar) -> Bar:
    return Bar(
        symbol,
        OHLC_INTERVAL_SECONDS,
        EPOCH + timedelta(seconds=raw.time),
        raw.open,
        raw.high,
        raw.low,
        raw.close,
        raw.volume,
        raw.vwap,
        raw.count,
    )


def flat_bar(symbol: str, start: datetime, close: Decimal) -> Bar:
    zero = Decimal(0)
    return Bar(symbol, OHLC_INTERVAL_SECONDS, start, close, close, close, close, zero, close, 0)


def bar_differences(bar: Bar, exchange: OHLC) -> dict[str, tuple[Any, Any]]:
    """Fields where our closed bar and the exchange's ohlc bar for the same minute differ (ours, theirs). VWAP is
    not compared: the exchange rounds it its own way."""
    diffs: dict[str, tuple[Any, Any]] = {}
    for name, ours, theirs in (
        ("open", bar.open, exchange.open),
        ("high", bar.high, exchange.high),
        ("low", bar.low, exchange.low),
        ("close", bar.close, exchange.close),
        ("volume", bar.volume, exchange.volume),
        ("trades", bar.trades, exchange.trades),
    ):
        if ours != theirs:
            diffs[name] = (ours, theirs)
    return diffs


def merge_trades(*groups: Iterable[Trade]) -> list[Trade]:
    """All trades, each trade id once (the first seen wins), in exchange order (timestamp, trade id)."""
    by_id: dict[int, Trade] = {}
    for group in groups:
        for trade in group:
            by_id.setdefault(trade.trade_id, trade)
    return sorted(by_id.values(), key=lambda t: (t.timestamp, t.trade_id))
