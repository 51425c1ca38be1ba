"""The v2 ``book`` channel's view of each book: per subscribed depth, what a client holds, the updates that
bring it to the engine's current book, and the CRC32 checksum (PROTOCOL.md §0.3).

A client applies every level of an update, then truncates each side to its depth. So an update carries the
levels whose quantity changed inside the new top-N, deletions (qty 0) of levels that left the book, and levels
that came back into scope; a level merely pushed below the depth is not sent (Kraken sends no delete for it).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from decimal import Decimal

from kraken_sim.engine import BookSide, OrderBook
from kraken_sim.wire import fixed

BOOK_DEPTHS: tuple[int, ...] = (10, 25, 100, 500, 1000)
CHECKSUM_LEVELS = 10
ZERO = Decimal(0)

Level = tuple[Decimal, Decimal]


def _checksum_part(price: Decimal, qty: Decimal, price_decimals: int, qty_decimals: int) -> str:
    p = fixed(price, price_decimals).replace(".", "").lstrip("0")
    q = fixed(qty, qty_decimals).replace(".", "").lstrip("0")
    return p + q


def book_checksum(asks: list[Level], bids: list[Level], price_decimals: int, qty_decimals: int) -> int:
    """Top 10 asks (lowest first) then top 10 bids (highest first), each level as price then qty at the
    instrument's precision without the point and leading zeros; CRC32 of the concatenation."""
    parts = [_checksum_part(p, q, price_decimals, qty_decimals) for p, q in asks[:CHECKSUM_LEVELS]]
    parts += [_checksum_part(p, q, price_decimals, qty_decimals) for p, q in bids[:CHECKSUM_LEVELS]]
    return zlib.crc32("".join(parts).encode()) & 0xFFFFFFFF


@dataclass(slots=True)
class BookUpdate:
    depth: int
    bids: list[Level]
    asks: list[Level]


class _DepthView:
    def __init__(self, book: OrderBook, depth: int) -> None:
        self.depth = depth
        self.bids: dict[Decimal, Decimal] = dict(book.bids.top(depth))
        self.asks: dict[Decimal, Decimal] = dict(book.asks.top(depth))

    @staticmethod
    def _diff(old: dict[Decimal, Decimal], side: BookSide, depth: int) -> tuple[dict[Decimal, Decimal], list[Level]]:
        new = dict(side.top(depth))
        changes: list[Level] = [(p, q) for p, q in new.items() if old.get(p) != q]
        changes += [(p, ZERO) for p in old if p not in new and p not in side.qty]
        return new, changes

    def advance(self, book: OrderBook) -> BookUpdate | None:
        self.bids, bid_changes = self._diff(self.bids, book.bids, self.depth)
        self.asks, ask_changes = self._diff(self.asks, book.asks, self.depth)
        if not bid_changes and not ask_changes:
            return None
        bid_changes.sort(key=lambda lv: lv[0], reverse=True)
        ask_changes.sort(key=lambda lv: lv[0])
        return BookUpdate(self.depth, bid_changes, ask_changes)


class BookFeed:
    """Book views of one instrument for the depths that currently have subscribers."""

    def __init__(self, book: OrderBook) -> None:
        self.book = book
        self._views: dict[int, _DepthView] = {}

    def activate(self, depth: int) -> None:
        if depth not in self._views:
            self._views[depth] = _DepthView(self.book, depth)

    def deactivate(self, depth: int) -> None:
        self._views.pop(depth, None)

    @property
    def active_depths(self) -> list[int]:
        return list(self._views)

    def snapshot(self, depth: int) -> tuple[list[Level], list[Level]]:
        return self.book.bids.top(depth), self.book.asks.top(depth)

    def checksum(self) -> int:
        inst = self.book.instrument
        return book_checksum(
            self.book.asks.top(CHECKSUM_LEVELS),
            self.book.bids.top(CHECKSUM_LEVELS),
            inst.price_decimals,
            inst.lot_decimals,
        )

    def advance(self) -> list[BookUpdate]:
        """Bring every active view to the current book; the updates to send, per depth."""
        updates = []
        for view in self._views.values():
            update = view.advance(self.book)
            if update is not None:
                updates.append(update)
        return updates
