"""Level-2 order book for Kraken WebSocket v2 ``book`` messages, with checksum verification on every message.

Rules (PROTOCOL.md §0.3), followed exactly:

1. all levels of a message are applied in order (a price may appear several times in one message);
2. qty 0 deletes the level (a delete of an absent price is ignored and counted);
3. after each message each side is truncated to the subscribed depth (Kraken sends no delete for levels that
   fall out of scope);
4. the checksum covers the top 10 asks (lowest first) then the top 10 bids (highest first), each level being
   ``price`` formatted to ``price_precision`` then ``qty`` formatted to ``qty_precision``, decimal point
   removed, leading zeros stripped; CRC32 of the concatenation, unsigned.

:meth:`OrderBook.apply` takes a WHOLE decoded message (``{"channel":"book","type":...,"data":[...]}``, as
returned by :func:`ingest.kraken.messages.decode`) or a parsed :class:`~ingest.kraken.messages.BookMessage`.
A snapshot replaces the book; an update modifies it. After applying, the message's checksum is compared with
the book's; on a difference :class:`ChecksumMismatch` is raised and the book is invalid (``synced`` is False,
further updates raise :class:`BookNotSynced`) until the next snapshot. A malformed book message also
invalidates the book, since it may have been half applied.

Performance: each side is three parallel lists kept sorted best-first (key = price for asks, -price for
bids), searched with ``bisect``; each level's checksum fragment (bytes) is computed when the level is set,
through per-precision caches of formatted prices and quantities, so a checksum is a join of at most 20
cached fragments and one ``zlib.crc32``; a side's top-10 bytes are re-joined only when a change touched its
top 10.
"""

from __future__ import annotations

import logging
import zlib
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ingest.kraken.errors import BookNotSynced, ChecksumMismatch, MalformedMessage
from ingest.kraken.messages import BookMessage, to_decimal

__all__ = ["BookNotSynced", "BookStats", "ChecksumMismatch", "OrderBook", "level_fragment"]

logger = logging.getLogger(__name__)

CHECKSUM_LEVELS = 10
_ZERO = Decimal(0)
_CACHE_LIMIT = 200_000
# Formatted-number caches shared by every book with the same precision: {precision: {Decimal: bytes}}.
_FRAGMENT_CACHES: dict[int, dict[Decimal, bytes]] = {}


def _cache_for(precision: int) -> dict[Decimal, bytes]:
    return _FRAGMENT_CACHES.setdefault(precision, {})


def _format(value: Decimal, precision: int) -> bytes:
    """``value`` formatted to ``precision`` decimals, point removed, leading zeros stripped."""
    return format(value, f".{precision}f").replace(".", "").lstrip("0").encode("ascii")


def level_fragment(price: Decimal, qty: Decimal, price_precision: int, qty_precision: int) -> str:
    """The checksum text of one level (for diagnostics; the book uses cached bytes)."""
    return (_format(price, price_precision) + _format(qty, qty_precision)).decode("ascii")


@dataclass(slots=True)
class BookStats:
    """Counters, for logs and metrics."""

    messages: int = 0
    snapshots: int = 0
    checksums_verified: int = 0
    checksum_mismatches: int = 0
    malformed: int = 0
    rejected_unsynced: int = 0
    deletes_of_absent_levels: int = 0


class OrderBook:
    """One symbol's book at a subscribed depth. See the module docstring for the rules."""

    __slots__ = (
        "symbol",
        "depth",
        "price_precision",
        "qty_precision",
        "stats",
        "_synced",
        "_ask_keys",
        "_ask_qtys",
        "_ask_frags",
        "_bid_keys",
        "_bid_qtys",
        "_bid_frags",
        "_ask_top",
        "_bid_top",
        "_pcache",
        "_qcache",
    )

    def __init__(self, symbol: str, depth: int, price_precision: int, qty_precision: int) -> None:
        if depth < CHECKSUM_LEVELS:
            raise ValueError(f"depth must be at least {CHECKSUM_LEVELS} (Kraken: 10, 25, 100, 500, 1000)")
        if price_precision < 0 or qty_precision < 0:
            raise ValueError("precisions must be >= 0")
        self.symbol = symbol
        self.depth = depth
        self.price_precision = price_precision
        self.qty_precision = qty_precision
        self.stats = BookStats()
        self._synced = False
        # Asks keyed by price ascending, bids by -price ascending: index 0 is the best level on both sides.
        self._ask_keys: list[Decimal] = []
        self._ask_qtys: list[Decimal] = []
        self._ask_frags: list[bytes] = []
        self._bid_keys: list[Decimal] = []
        self._bid_qtys: list[Decimal] = []
        self._bid_frags: list[bytes] = []
        self._ask_top = b""
        self._bid_top = b""
        self._pcache = _cache_for(price_precision)
        self._qcache = _cache_for(qty_precision)

    # --- reading ---------------------------------------------------------------------------------------

    @property
    def synced(self) -> bool:
        """True once a snapshot was applied and every message since verified."""
        return self._synced

    @property
    def asks(self) -> list[tuple[Decimal, Decimal]]:
        """(price, qty) pairs, lowest price first."""
        return list(zip(self._ask_keys, self._ask_qtys, strict=True))

    @property
    def bids(self) -> list[tuple[Decimal, Decimal]]:
        """(price, qty) pairs, highest price first."""
        return [(-key, qty) for key, qty in zip(self._bid_keys, self._bid_qtys, strict=True)]

    def best_bid(self) -> tuple[Decimal, Decimal] | None:
        return (-self._bid_keys[0], self._bid_qtys[0]) if self._bid_keys else None

    def best_ask(self) -> tuple[Decimal, Decimal] | None:
        return (self._ask_keys[0], self._ask_qtys[0]) if self._ask_keys else None

    def checksum_payload(self) -> str:
        """The string the checksum is computed over (top 10 asks, then top 10 bids)."""
        return (b"".join(self._ask_frags[:CHECKSUM_LEVELS]) + b"".join(self._bid_frags[:CHECKSUM_LEVELS])).decode(
            "ascii"
        )

    def checksum(self) -> int:
        """CRC32 (unsigned) of :meth:`checksum_payload`."""
        return zlib.crc32(
            b"".join(self._bid_frags[:CHECKSUM_LEVELS]),
            zlib.crc32(b"".join(self._ask_frags[:CHECKSUM_LEVELS])),
        )

    def invalidate(self) -> None:
        """Mark the book unusable until the next snapshot (e.g. after a sequence gap or a reconnect)."""
        self._synced = False

    # --- writing ---------------------------------------------------------------------------------------

    def apply(self, message: Mapping[str, Any] | BookMessage) -> None:
        """Apply a whole decoded v2 book message (or a :class:`BookMessage`) and verify its checksum.

        Raises :class:`ChecksumMismatch` (book invalid until a snapshot), :class:`BookNotSynced` (an update
        while invalid; not applied), :class:`MalformedMessage` (book invalid: it may be half applied).
        """
        if isinstance(message, BookMessage):
            entries: Iterable[Mapping[str, Any]] = (_entry_from_parsed(message),)
            kind = message.type
        else:
            try:
                kind = message["type"]
                entries = message["data"]
            except (KeyError, TypeError) as exc:
                self.stats.malformed += 1
                raise MalformedMessage(f"{self.symbol}: book message without type/data") from exc
            if type(entries) is not list:
                self.stats.malformed += 1
                raise MalformedMessage(f"{self.symbol}: book data is not an array")
        for entry in entries:
            self._apply_entry(entry, kind)

    def _apply_entry(self, entry: Any, kind: Any) -> None:
        stats = self.stats
        stats.messages += 1
        if type(entry) is not dict:
            stats.malformed += 1
            self._synced = False
            raise MalformedMessage(f"{self.symbol}: book data entry is not an object")
        if kind == "snapshot":
            stats.snapshots += 1
            self._clear()
            self._synced = True
        elif kind != "update":
            stats.malformed += 1
            self._synced = False
            raise MalformedMessage(f"{self.symbol}: book message type {kind!r}")
        elif not self._synced:
            stats.rejected_unsynced += 1
            raise BookNotSynced(f"{self.symbol}: update while the book has no valid snapshot")
        try:
            if entry.get("symbol") != self.symbol:
                raise MalformedMessage(f"book for {self.symbol} got a message for {entry.get('symbol')!r}")
            expected = entry.get("checksum")
            if type(expected) is not int:
                raise MalformedMessage("book message without an integer checksum")
            asks = entry.get("asks")
            if asks and self._apply_side(asks, self._ask_keys, self._ask_qtys, self._ask_frags, False):
                self._ask_top = b"".join(self._ask_frags[:CHECKSUM_LEVELS])
            bids = entry.get("bids")
            if bids and self._apply_side(bids, self._bid_keys, self._bid_qtys, self._bid_frags, True):
                self._bid_top = b"".join(self._bid_frags[:CHECKSUM_LEVELS])
        except MalformedMessage as exc:
            stats.malformed += 1
            self._synced = False
            raise MalformedMessage(f"{self.symbol}: {exc}") from exc
        depth = self.depth
        if len(self._ask_keys) > depth:
            del self._ask_keys[depth:], self._ask_qtys[depth:], self._ask_frags[depth:]
        if len(self._bid_keys) > depth:
            del self._bid_keys[depth:], self._bid_qtys[depth:], self._bid_frags[depth:]
        computed = zlib.crc32(self._bid_top, zlib.crc32(self._ask_top))
        if computed != expected:
            stats.checksum_mismatches += 1
            self._synced = False
            logger.warning(
                "book checksum mismatch",
                extra={"symbol": self.symbol, "expected": expected, "computed": computed, "type": kind},
            )
            raise ChecksumMismatch(self.symbol, expected, computed)
        stats.checksums_verified += 1

    def _apply_side(
        self, levels: Any, keys: list[Decimal], qtys: list[Decimal], frags: list[bytes], negate: bool
    ) -> bool:
        """Apply levels to one side in order; return True if the top 10 changed."""
        if type(levels) is not list:
            raise MalformedMessage("book side is not an array")
        pcache = self._pcache
        qcache = self._qcache
        top_changed = False
        for level in levels:
            try:
                price = level["price"]
                qty = level["qty"]
            except (KeyError, TypeError) as exc:
                raise MalformedMessage(f"book level {level!r} lacks price/qty") from exc
            if type(price) is not Decimal:
                price = to_decimal(price, "price")
            if type(qty) is not Decimal:
                qty = to_decimal(qty, "qty")
            if qty < _ZERO or price <= _ZERO:
                raise MalformedMessage(f"book level with price {price} qty {qty}")
            key = -price if negate else price
            i = bisect_left(keys, key)
            if i < len(keys) and keys[i] == key:
                if qty:
                    qfrag = qcache.get(qty)
                    if qfrag is None:
                        qfrag = self._remember(qcache, qty, self.qty_precision)
                    pfrag = pcache.get(price)
                    if pfrag is None:
                        pfrag = self._remember(pcache, price, self.price_precision)
                    qtys[i] = qty
                    frags[i] = pfrag + qfrag
                else:
                    del keys[i], qtys[i], frags[i]
            elif qty:
                qfrag = qcache.get(qty)
                if qfrag is None:
                    qfrag = self._remember(qcache, qty, self.qty_precision)
                pfrag = pcache.get(price)
                if pfrag is None:
                    pfrag = self._remember(pcache, price, self.price_precision)
                keys.insert(i, key)
                qtys.insert(i, qty)
                frags.insert(i, pfrag + qfrag)
            else:
                self.stats.deletes_of_absent_levels += 1
                continue
            if i < CHECKSUM_LEVELS:
                top_changed = True
        return top_changed

    @staticmethod
    def _remember(cache: dict[Decimal, bytes], value: Decimal, precision: int) -> bytes:
        if len(cache) >= _CACHE_LIMIT:
            cache.clear()
        fragment = _format(value, precision)
        cache[value] = fragment
        return fragment

    def _clear(self) -> None:
        self._ask_keys.clear()
        self._ask_qtys.clear()
        self._ask_frags.clear()
        self._bid_keys.clear()
        self._bid_qtys.clear()
        self._bid_frags.clear()
        self._ask_top = b""
        self._bid_top = b""


def _entry_from_parsed(message: BookMessage) -> dict[str, Any]:
    return {
        "symbol": message.symbol,
        "checksum": message.checksum,
        "asks": [{"price": p, "qty": q} for p, q in message.asks],
        "bids": [{"price": p, "qty": q} for p, q in message.bids],
    }
