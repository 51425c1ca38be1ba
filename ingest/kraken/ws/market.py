"""Public market data: order books (one :class:`~ingest.kraken.book.OrderBook` per subscribed symbol, every
message's checksum verified), instruments (the precisions books need), trades, ticker and ohlc.

On :class:`~ingest.kraken.errors.ChecksumMismatch` or :class:`~ingest.kraken.errors.BookNotSynced` the symbol is
unsubscribed and subscribed again for a fresh snapshot (``stats.book_resyncs``). Consumers get the whole book
through ``on_book`` listeners (sync, on the hot path) or the top of book through a :class:`BookStream` (an async
iterator, conflated per symbol). Hot path: one decoded dict per frame, no typed message objects for books, a
reused :class:`~ingest.kraken.ws.types.BookEvent` per symbol, and no blocking call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ingest.kraken import constants
from ingest.kraken.book import OrderBook
from ingest.kraken.errors import BookNotSynced, ChecksumMismatch, KrakenError, MalformedMessage, RequestTimeout
from ingest.kraken.messages import ChannelMessage, parse_message
from ingest.kraken.wire import Rfc3339Nanos
from ingest.kraken.ws.connection import Endpoint, Subscription
from ingest.kraken.ws.context import WsContext
from ingest.kraken.ws.subscriptions import Subscriptions
from ingest.kraken.ws.types import BookEvent, BookListener, BookTop

__all__ = ["BookStream", "MarketData"]

logger = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class _BookSlot:
    book: OrderBook
    sub: Subscription
    event: BookEvent


class MarketData:
    """The public endpoint's channels: books, instruments, trades, ticker, ohlc."""

    def __init__(self, ctx: WsContext, endpoint: Endpoint, subscriptions: Subscriptions) -> None:
        self.ctx = ctx
        self.endpoint = endpoint
        self.subscriptions = subscriptions
        self._books: dict[str, _BookSlot] = {}
        self._instruments: dict[str, tuple[int, int]] = {}
        self._instrument_event = asyncio.Event()
        self.book_listeners: list[BookListener] = []
        self._streams: list[BookStream] = []
        self._nanos = Rfc3339Nanos()

    # --- reads ---------------------------------------------------------------------------------------------

    def book(self, symbol: str) -> OrderBook | None:
        slot = self._books.get(symbol)
        return slot.book if slot is not None else None

    @property
    def books(self) -> dict[str, OrderBook]:
        return {symbol: slot.book for symbol, slot in self._books.items()}

    def instrument_precisions(self, symbol: str) -> tuple[int, int] | None:
        return self._instruments.get(symbol)

    def book_stats(self) -> tuple[dict[str, Any], dict[str, int]]:
        """The books' counters per symbol, and their totals."""
        books: dict[str, Any] = {}
        totals = {"checksums_verified": 0, "checksum_mismatches": 0, "snapshots": 0, "messages": 0}
        for symbol, slot in self._books.items():
            s = slot.book.stats
            books[symbol] = {
                "messages": s.messages,
                "snapshots": s.snapshots,
                "checksums_verified": s.checksums_verified,
                "checksum_mismatches": s.checksum_mismatches,
                "malformed": s.malformed,
                "rejected_unsynced": s.rejected_unsynced,
                "synced": slot.book.synced,
            }
            for key in totals:
                totals[key] += getattr(s, key)
        return books, totals

    # --- book streams --------------------------------------------------------------------------------------

    def book_stream(self, symbols: Iterable[str] | None) -> BookStream:
        stream = BookStream(self.ctx, frozenset(symbols) if symbols is not None else None, self._streams.remove)
        self._streams.append(stream)
        return stream

    def finish_streams(self) -> None:
        for stream in list(self._streams):
            stream.finish()

    # --- subscriptions ---------------------------------------------------------------------------------------

    async def subscribe_book(
        self,
        symbols: Iterable[str],
        *,
        depth: int,
        precisions: Mapping[str, tuple[int, int]] | None,
        timeout: float | None,
    ) -> None:
        if depth not in constants.BOOK_DEPTHS:
            raise ValueError(f"depth must be one of {constants.BOOK_DEPTHS}")
        wanted = list(dict.fromkeys(symbols))
        for symbol in wanted:
            existing = self._books.get(symbol)
            if existing is not None and existing.book.depth != depth:
                raise ValueError(f"{symbol} book already subscribed at depth {existing.book.depth}")
        missing = [s for s in wanted if (precisions or {}).get(s) is None and s not in self._books]
        if missing:
            await self._await_instruments(missing, timeout)
        subs = self.endpoint.subs
        for symbol in wanted:
            if symbol not in self._books:
                given = (precisions or {}).get(symbol)
                price_precision, qty_precision = given if given is not None else self._instruments[symbol]
                book = OrderBook(symbol, depth, price_precision, qty_precision)
                sub = subs.get(("book", symbol))
                if sub is None:
                    sub = subs[("book", symbol)] = Subscription("book", symbol, {"depth": depth})
                self._books[symbol] = _BookSlot(book, sub, BookEvent(symbol))
        results = await asyncio.gather(
            *(self.subscriptions.subscribe(self.endpoint, "book", s, {"depth": depth}, timeout) for s in wanted),
            return_exceptions=True,
        )
        failure: BaseException | None = None
        for symbol, result in zip(wanted, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, RequestTimeout):
                    self._books.pop(symbol, None)
                failure = failure or result
        if failure is not None:
            raise failure

    async def _await_instruments(self, symbols: list[str], timeout: float | None) -> None:
        if ("instrument", None) not in self.endpoint.subs:
            await self.subscribe_instrument(snapshot=True, timeout=timeout)
        deadline = time.monotonic() + (timeout or self.ctx.config.request_timeout_s)
        while any(s not in self._instruments for s in symbols):
            left = deadline - time.monotonic()
            if left <= 0:
                unknown = [s for s in symbols if s not in self._instruments]
                raise KrakenError(f"no instrument data for {', '.join(unknown)}: give precisions or check symbols")
            self._instrument_event.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._instrument_event.wait(), left)

    async def unsubscribe_book(self, symbols: Iterable[str]) -> None:
        for symbol in symbols:
            slot = self._books.pop(symbol, None)
            if slot is not None:
                await self.subscriptions.unsubscribe(self.endpoint, "book", symbol)

    async def subscribe_instrument(self, *, snapshot: bool, timeout: float | None) -> None:
        await self.subscriptions.subscribe(self.endpoint, "instrument", None, {"snapshot": snapshot}, timeout)

    async def subscribe_many(
        self, channel: str, symbols: Iterable[str], params: dict[str, Any], timeout: float | None
    ) -> None:
        results = await asyncio.gather(
            *(
                self.subscriptions.subscribe(self.endpoint, channel, s, dict(params), timeout)
                for s in dict.fromkeys(symbols)
            ),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result

    # --- frames (the hot path) -------------------------------------------------------------------------------

    def book_message(self, msg: dict[str, Any], received_ns: int) -> None:
        ctx = self.ctx
        data = msg.get("data")
        if type(data) is not list or not data:
            ctx.note_malformed("book", "book message without data")
            return
        if len(data) > 1:  # Kraken sends one symbol per message; split if it ever does not
            kind = msg.get("type")
            for entry in data:
                self.book_message({"channel": "book", "type": kind, "data": [entry]}, received_ns)
            return
        entry = data[0]
        symbol = entry.get("symbol") if type(entry) is dict else None
        slot = self._books.get(symbol)  # type: ignore[arg-type]
        if slot is None:
            ctx.note_unknown("book_symbol", f"book message for unsubscribed symbol {symbol!r}")
            return
        book = slot.book
        try:
            book.apply(msg)
        except ChecksumMismatch as exc:
            ctx.stats.checksum_failures += 1
            self._resync_book(slot, f"checksum mismatch (message {exc.expected}, book {exc.computed})")
            return
        except BookNotSynced:
            ctx.stats.books_not_synced += 1
            self._resync_book(slot, "update while not synced")
            return
        except MalformedMessage as exc:
            ctx.note_malformed("book", exc)
            self._resync_book(slot, "malformed book message")
            return
        event = slot.event
        snapshot = msg.get("type") == "snapshot"
        if snapshot:
            slot.sub.resyncing = False
        event.snapshot = snapshot
        event.checksum = entry["checksum"]
        event.received_ns = received_ns
        ts = entry.get("timestamp")
        event.timestamp = ts
        if ts is not None:
            ts_ns = self._ts_ns(ts)
            event.exchange_ts_ns = ts_ns
            if ts_ns:
                ctx.stats.lag_of("book").add(received_ns - ts_ns)
        else:
            event.exchange_ts_ns = 0
        for listener in self.book_listeners:
            try:
                listener(book, event)
            except Exception:  # a consumer's bug must not kill the connection: log and count
                ctx.stats.callback_errors += 1
                logger.exception("kraken ws: book listener %r failed", listener)
        for stream in self._streams:
            stream.push(book, event)

    def _ts_ns(self, ts: Any) -> int:
        """ns since the epoch of a book message's timestamp; 0 (counted) if unreadable."""
        try:
            return self._nanos(ts)
        except (TypeError, ValueError) as exc:
            self.ctx.note_malformed("timestamp", exc)
            return 0

    def _resync_book(self, slot: _BookSlot, why: str) -> None:
        sub = slot.sub
        endpoint = self.endpoint
        if sub.resyncing or sub.state != "active" or not endpoint.connected.is_set():
            return  # a fresh snapshot is already on its way (resync or resubscription)
        sub.resyncing = True
        self.ctx.stats.book_resyncs += 1
        logger.warning("kraken ws: %s book: %s; resubscribing for a fresh snapshot", sub.symbol, why)
        self.subscriptions.resync(endpoint, sub, sub.symbol or sub.channel)

    def data_message(self, msg: dict[str, Any], received_ns: int) -> None:
        """``trade``, ``ticker``, ``ohlc`` and ``instrument`` messages: parsed and handed to the listeners."""
        channel = msg["channel"]
        try:
            parsed = parse_message(msg)
        except MalformedMessage as exc:
            self.ctx.note_malformed(channel, exc)
            return
        assert isinstance(parsed, ChannelMessage)
        if channel == "instrument":
            for item in parsed.items:
                for pair in item.pairs:
                    known = self._instruments.get(pair.symbol)
                    precisions = (pair.price_precision, pair.qty_precision)
                    if known is not None and known != precisions and pair.symbol in self._books:
                        logger.warning("kraken ws: %s precisions changed %s -> %s", pair.symbol, known, precisions)
                    self._instruments[pair.symbol] = precisions
            self._instrument_event.set()
        self.ctx.emit_channel(channel, parsed)

    def invalidate_books(self) -> None:
        """The public connection is gone: every book waits for a fresh snapshot."""
        for slot in self._books.values():
            slot.book.invalidate()


class BookStream:
    """Async iterator of :class:`~ingest.kraken.ws.types.BookTop`, conflated per symbol (see
    ``KrakenWsClient.book_stream``)."""

    def __init__(
        self, ctx: WsContext, symbols: frozenset[str] | None, unregister: Callable[[BookStream], None]
    ) -> None:
        self._ctx = ctx
        self._symbols = symbols
        self._unregister = unregister
        self._latest: dict[str, BookTop] = {}
        self._wakeup = asyncio.Event()
        self._finished = False
        #: Updates replaced by a newer one before the consumer took them.
        self.conflated = 0

    def push(self, book: OrderBook, event: BookEvent) -> None:
        """A verified book message (called on the hot path)."""
        symbol = event.symbol
        if self._symbols is not None and symbol not in self._symbols:
            return
        if symbol in self._latest:
            self.conflated += 1
            self._ctx.stats.conflated_book_tops += 1
            del self._latest[symbol]  # re-insert at the end: symbols come out in order of their latest update
        self._latest[symbol] = BookTop(
            symbol,
            book.best_bid(),
            book.best_ask(),
            event.checksum,
            event.snapshot,
            event.exchange_ts_ns,
            event.received_ns,
        )
        self._wakeup.set()

    def finish(self) -> None:
        """End the iteration once what is buffered has been taken (the client is closing)."""
        self._finished = True
        self._wakeup.set()

    def close(self) -> None:
        """Stop the stream (the iterator ends)."""
        self.finish()
        with contextlib.suppress(ValueError):
            self._unregister(self)

    def __aiter__(self) -> AsyncIterator[BookTop]:
        return self

    async def __anext__(self) -> BookTop:
        while not self._latest:
            if self._finished:
                raise StopAsyncIteration
            self._wakeup.clear()
            await self._wakeup.wait()
        symbol = next(iter(self._latest))
        return self._latest.pop(symbol)
