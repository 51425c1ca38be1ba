"""The public host's market data (PROTOCOL.md §2.4-2.8): ``book``, ``trade``, ``ticker``, ``ohlc`` and
``instrument`` subscriptions with their snapshots, and the exchange's book changes, trades and status turned into
updates for their subscribers."""

from __future__ import annotations

import logging
from typing import Any

from kraken_sim import messages as M
from kraken_sim.exchange import Exchange
from kraken_sim.faults import Faults
from kraken_sim.feeds import BOOK_DEPTHS, BookFeed
from kraken_sim.marketdata import OHLC_INTERVALS, Candle, PublicTrade
from kraken_sim.wire import Clock
from kraken_sim.ws.connection import Connection, Key, Subscription, Subscriptions

log = logging.getLogger(__name__)

TRADE_SNAPSHOT_SIZE = 50  # trade snapshot: the last 50 trades


def public_options(channel: str, params: dict[str, Any]) -> dict[str, Any]:
    """A subscription's options with their defaults; ``ValueError(name)`` for a bad one."""
    options: dict[str, Any] = {}
    snapshot = params.get("snapshot", channel != "trade")
    if not isinstance(snapshot, bool):
        raise ValueError("snapshot")
    options["snapshot"] = snapshot
    if channel == "book":
        depth = params.get("depth", 10)
        if depth not in BOOK_DEPTHS or isinstance(depth, bool):
            raise ValueError("depth")
        options["depth"] = depth
    elif channel == "ohlc":
        interval = params.get("interval", 1)
        if interval not in OHLC_INTERVALS or isinstance(interval, bool):
            raise ValueError("interval")
        options["interval"] = interval
    elif channel == "ticker":
        trigger = params.get("event_trigger", "trades")
        if trigger not in ("trades", "bbo"):
            raise ValueError("event_trigger")
        options["event_trigger"] = trigger
    return options


def channel_result(sub: Subscription) -> dict[str, Any]:
    """The ``result`` of a subscribe or unsubscribe ack: the channel and the options that identify it."""
    result: dict[str, Any] = {"channel": sub.channel}
    for option in ("depth", "event_trigger", "interval"):
        if option in sub.params:
            result[option] = sub.params[option]
    return result


class PublicFeeds:
    def __init__(self, subscriptions: Subscriptions, exchange: Exchange, faults: Faults, clock: Clock) -> None:
        self.subscriptions = subscriptions
        self.exchange = exchange
        self.registry = exchange.registry
        self.faults = faults
        self.clock = clock
        self.books = {symbol: BookFeed(book) for symbol, book in exchange.books.items()}

    # -- subscriptions ----------------------------------------------------------------------------------
    def subscribe(
        self, conn: Connection, channel: str, symbol: str | None, options: dict[str, Any], req_id: Any, time_in: int
    ) -> None:
        method = "subscribe"
        if symbol is not None and self.registry.by_symbol(symbol) is None:
            unsupported = f"Currency pair not supported {symbol}"
            self.subscriptions.error(conn, method, unsupported, req_id, time_in, symbol=symbol)
            return
        if (channel, symbol) in conn.subs:
            self.subscriptions.error(conn, method, M.ALREADY_SUBSCRIBED, req_id, time_in, symbol=symbol)
            return
        key: Key
        if channel == "book":
            key = ("book", symbol, options["depth"])
        elif channel == "ticker":
            key = ("ticker", symbol, options["event_trigger"])
        elif channel == "ohlc":
            key = ("ohlc", symbol, options["interval"])
        elif channel == "trade":
            key = ("trade", symbol)
        else:
            key = ("instrument",)
        sub = Subscription(channel, symbol, key, options)
        result = channel_result(sub)
        result["snapshot"] = options["snapshot"]
        if symbol is not None:
            result["symbol"] = symbol
        if channel == "ohlc":
            result["warnings"] = M.OHLC_WARNINGS
        elif channel == "instrument":
            result["warnings"] = M.INSTRUMENT_WARNINGS
        self.subscriptions.add(conn, sub)
        if channel == "book":
            assert symbol is not None
            self.books[symbol].activate(options["depth"])
        self.subscriptions.ack(conn, method, req_id, result, time_in)
        if options["snapshot"]:
            self._snapshot(conn, sub)

    def released(self, sub: Subscription) -> None:
        """``sub``'s key lost its last subscriber: stop following that book depth."""
        if sub.channel == "book":
            assert sub.symbol is not None
            self.books[sub.symbol].deactivate(sub.params["depth"])

    def _snapshot(self, conn: Connection, sub: Subscription) -> None:
        if sub.channel == "instrument":
            self.subscriptions.send(conn, M.instrument(self.registry, self.exchange.status, "snapshot"), sub.key)
            return
        assert sub.symbol is not None
        book = self.exchange.books[sub.symbol]
        inst = book.instrument
        md = self.exchange.marketdata[sub.symbol]
        if sub.channel == "book":
            feed = self.books[sub.symbol]
            bids, asks = feed.snapshot(sub.params["depth"])
            self.subscriptions.send(conn, M.book_snapshot(inst, bids, asks, feed.checksum()), sub.key)
        elif sub.channel == "trade":
            recent = list(md.tape)[-TRADE_SNAPSHOT_SIZE:]
            self.subscriptions.send(conn, M.trades(inst, recent, "snapshot"), sub.key)
        elif sub.channel == "ticker":
            self.subscriptions.send(conn, M.ticker(inst, book, md, "snapshot", self.clock.now_ns()), sub.key)
        elif sub.channel == "ohlc":
            candles = list(md.candles[sub.params["interval"]])
            self.subscriptions.send(conn, M.ohlc(inst, candles, "snapshot", self.clock.now_ns()), sub.key)

    # -- the exchange's events --------------------------------------------------------------------------
    def book_changed(self, symbol: str) -> None:
        feed = self.books[symbol]
        if not feed.active_depths:
            return
        updates = feed.advance()
        if not updates:
            return
        checksum = feed.checksum()
        if self.faults.take_corrupt_checksum(symbol):
            log.info("fault: corrupting the checksum of the next %s book update", symbol)
            checksum = (checksum + 1) & 0xFFFFFFFF
        inst = feed.book.instrument
        ts = self.clock.now_ns()
        for update in updates:
            message = M.book_update(inst, update.bids, update.asks, checksum, ts)
            self.subscriptions.publish(("book", symbol, update.depth), message)

    def public_trades(self, symbol: str, trades: list[PublicTrade], candles: list[Candle]) -> None:
        book = self.exchange.books[symbol]
        inst = book.instrument
        if self.subscriptions.has(("trade", symbol)):
            if self.faults.take_withhold_market("trade", symbol):
                log.info("fault: withholding a %s trade message (%d trades)", symbol, len(trades))
            else:
                self.subscriptions.publish(("trade", symbol), M.trades(inst, trades, "update"))
        ts = self.clock.now_ns()
        ticker_key = ("ticker", symbol, "trades")
        if self.subscriptions.has(ticker_key):
            self.subscriptions.publish(ticker_key, M.ticker(inst, book, self.exchange.marketdata[symbol], "update", ts))
        for candle in candles:
            key = ("ohlc", symbol, candle.interval)
            if self.subscriptions.has(key):
                if self.faults.take_withhold_market("ohlc", symbol):
                    log.info("fault: withholding a %s ohlc message", symbol)
                    continue
                self.subscriptions.publish(key, M.ohlc(inst, [candle], "update", ts))

    def bbo_changed(self, symbol: str) -> None:
        key = ("ticker", symbol, "bbo")
        if self.subscriptions.has(key):
            book = self.exchange.books[symbol]
            md = self.exchange.marketdata[symbol]
            self.subscriptions.publish(key, M.ticker(book.instrument, book, md, "update", self.clock.now_ns()))

    def status_changed(self, status: str) -> None:
        self.subscriptions.publish(("instrument",), M.instrument(self.registry, status, "update"))
