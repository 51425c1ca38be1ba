"""OrderBook: PROTOCOL.md §0.3 rules, checked against the real recording and an independent reference model.

The reference model and checksum below are written from the §0.3 text only (a dict per side, sorted and
truncated after each message, ``format`` for precision), without calling the code under test.
"""

from __future__ import annotations

import json
import random
import zlib
from decimal import Decimal

import pytest

from ingest.kraken.book import OrderBook
from ingest.kraken.errors import BookNotSynced, ChecksumMismatch, MalformedMessage
from ingest.kraken.messages import BookMessage, decode

# --- independent reference ----------------------------------------------------------------------------


def ref_checksum(asks: dict[Decimal, Decimal], bids: dict[Decimal, Decimal], pp: int, qp: int) -> int:
    def level(price: Decimal, qty: Decimal) -> str:
        text = f"{price:.{pp}f}".replace(".", "").lstrip("0") + f"{qty:.{qp}f}".replace(".", "").lstrip("0")
        return text

    top_asks = sorted(asks.items())[:10]
    top_bids = sorted(bids.items(), reverse=True)[:10]
    payload = "".join(level(p, q) for p, q in top_asks) + "".join(level(p, q) for p, q in top_bids)
    return zlib.crc32(payload.encode()) & 0xFFFFFFFF


class RefBook:
    def __init__(self, depth: int) -> None:
        self.depth = depth
        self.asks: dict[Decimal, Decimal] = {}
        self.bids: dict[Decimal, Decimal] = {}

    def apply(self, asks: list[tuple[Decimal, Decimal]], bids: list[tuple[Decimal, Decimal]]) -> None:
        for side, levels in ((self.asks, asks), (self.bids, bids)):
            for price, qty in levels:
                if qty == 0:
                    side.pop(price, None)
                else:
                    side[price] = qty
        self.asks = dict(sorted(self.asks.items())[: self.depth])
        self.bids = dict(sorted(self.bids.items(), reverse=True)[: self.depth])


def frame(kind: str, symbol: str, asks, bids, checksum: int) -> str:
    """A v2 book frame with number tokens written at fixed precision, like the live wire."""

    def levels(rows):
        return ",".join(f'{{"price":{p:f},"qty":{q:f}}}' for p, q in rows)

    return (
        f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"{symbol}","bids":[{levels(bids)}],'
        f'"asks":[{levels(asks)}],"checksum":{checksum},"timestamp":"2023-07-30T15:29:58.343415Z"}}]}}'
    )


def d(text: str) -> Decimal:
    return Decimal(text)


# --- the real recording -------------------------------------------------------------------------------


def test_recorded_stream_verifies_all_510_checksums(recorded_lines: list[str]) -> None:
    book = OrderBook("BTC/USD", depth=10, price_precision=1, qty_precision=8)
    lines = recorded_lines
    for line in lines:
        book.apply(decode(line))
    assert len(lines) == 510
    assert book.stats.checksums_verified == 510
    assert book.stats.checksum_mismatches == 0
    assert book.synced


def test_recorded_stream_matches_the_reference_book_after_every_message(recorded_lines: list[str]) -> None:
    book = OrderBook("BTC/USD", depth=10, price_precision=1, qty_precision=8)
    ref = RefBook(10)
    for line in recorded_lines:
        message = decode(line)
        entry = message["data"][0]
        if message["type"] == "snapshot":
            ref = RefBook(10)
        ref.apply(
            [(lv["price"], lv["qty"]) for lv in entry["asks"]],
            [(lv["price"], lv["qty"]) for lv in entry["bids"]],
        )
        book.apply(message)
        assert book.asks == sorted(ref.asks.items())
        assert book.bids == sorted(ref.bids.items(), reverse=True)
        assert book.checksum() == ref_checksum(ref.asks, ref.bids, 1, 8) == entry["checksum"]


def test_first_update_truncates_the_ask_pushed_out_of_depth(recorded_lines: list[str]) -> None:
    # PROTOCOL.md §2.6: deletes 29431.1, inserts 29433.3 and 29430.6; the 11th ask must then be dropped.
    lines = recorded_lines
    book = OrderBook("BTC/USD", depth=10, price_precision=1, qty_precision=8)
    book.apply(decode(lines[0]))
    book.apply(decode(lines[1]))  # raises ChecksumMismatch if truncation were wrong
    prices = [p for p, _ in book.asks]
    assert len(prices) == 10
    assert d("29431.1") not in prices
    assert d("29430.6") in prices
    assert d("29433.3") not in prices  # pushed out: it was the 11th ask after the message
    assert prices[-1] == d("29433.1")


def test_untruncated_book_would_fail_the_recorded_checksums(recorded_lines: list[str]) -> None:
    # The reference model without truncation disagrees with Kraken's checksums: the rule is load-bearing.
    untruncated = RefBook(depth=10_000)
    mismatches = 0
    for line in recorded_lines:
        entry = decode(line)["data"][0]
        untruncated.apply(
            [(lv["price"], lv["qty"]) for lv in entry["asks"]],
            [(lv["price"], lv["qty"]) for lv in entry["bids"]],
        )
        mismatches += ref_checksum(untruncated.asks, untruncated.bids, 1, 8) != entry["checksum"]
    assert mismatches > 100


def test_wrong_checksum_raises_mismatch_and_invalidates_the_book(recorded_lines: list[str]) -> None:
    lines = recorded_lines
    book = OrderBook("BTC/USD", depth=10, price_precision=1, qty_precision=8)
    book.apply(decode(lines[0]))
    bad = decode(lines[1])
    bad["data"][0]["checksum"] += 1
    with pytest.raises(ChecksumMismatch) as info:
        book.apply(bad)
    assert info.value.expected == 3547452596 + 1
    assert info.value.computed == 3547452596
    assert not book.synced
    assert book.stats.checksum_mismatches == 1
    with pytest.raises(BookNotSynced):
        book.apply(decode(lines[2]))
    assert book.stats.rejected_unsynced == 1


def test_changed_qty_raises_mismatch(recorded_lines: list[str]) -> None:
    lines = recorded_lines
    book = OrderBook("BTC/USD", depth=10, price_precision=1, qty_precision=8)
    book.apply(decode(lines[0]))
    book.apply(decode(lines[1]))
    corrupted = lines[2].replace("8.25182177", "8.25182178")
    assert corrupted != lines[2]
    with pytest.raises(ChecksumMismatch):
        book.apply(decode(corrupted))


def test_new_snapshot_restores_a_book_invalidated_by_a_mismatch(recorded_lines: list[str]) -> None:
    lines = recorded_lines
    book = OrderBook("BTC/USD", depth=10, price_precision=1, qty_precision=8)
    book.apply(decode(lines[0]))
    bad = decode(lines[1])
    bad["data"][0]["asks"][2]["qty"] = Decimal("0.9")  # 29430.6 (asks[1], 29433.3, is truncated away)
    with pytest.raises(ChecksumMismatch):
        book.apply(bad)
    book.apply(decode(lines[0]))
    book.apply(decode(lines[1]))
    assert book.synced


def test_update_before_any_snapshot_is_rejected(recorded_lines: list[str]) -> None:
    book = OrderBook("BTC/USD", depth=10, price_precision=1, qty_precision=8)
    with pytest.raises(BookNotSynced):
        book.apply(decode(recorded_lines[1]))


# --- synthetic cases ----------------------------------------------------------------------------------

SNAP_ASKS = [(d("100.5"), d("1.00000000")), (d("100.6"), d("2.50000000")), (d("100.9"), d("0.00010000"))]
SNAP_BIDS = [(d("100.4"), d("3.00000000")), (d("100.1"), d("0.10000000"))]


def snapshot_book(depth: int = 10) -> tuple[OrderBook, RefBook]:
    ref = RefBook(depth)
    ref.apply(SNAP_ASKS, SNAP_BIDS)
    book = OrderBook("X/Y", depth=depth, price_precision=1, qty_precision=8)
    book.apply(decode(frame("snapshot", "X/Y", SNAP_ASKS, SNAP_BIDS, ref_checksum(ref.asks, ref.bids, 1, 8))))
    return book, ref


def test_qty_zero_deletes_the_level() -> None:
    book, ref = snapshot_book()
    delete = [(d("100.6"), d("0.00000000"))]
    ref.apply(delete, [])
    book.apply(decode(frame("update", "X/Y", delete, [], ref_checksum(ref.asks, ref.bids, 1, 8))))
    assert [p for p, _ in book.asks] == [d("100.5"), d("100.9")]


def test_delete_of_an_absent_level_is_ignored_and_counted() -> None:
    book, ref = snapshot_book()
    delete = [(d("99.0"), d("0.00000000"))]
    book.apply(decode(frame("update", "X/Y", [], delete, ref_checksum(ref.asks, ref.bids, 1, 8))))
    assert book.stats.deletes_of_absent_levels == 1
    assert book.bids == SNAP_BIDS


def test_several_updates_to_one_price_in_a_message_apply_in_order() -> None:
    book, ref = snapshot_book()
    # Like the v1 stress message in §3.2: five updates to one price, then a delete, then a re-insert.
    asks = [
        (d("100.7"), d("0.01237956")),
        (d("100.7"), d("0.01075407")),
        (d("100.7"), d("0.01028228")),
        (d("100.7"), d("0.00028228")),
        (d("100.7"), d("0.00000000")),
        (d("100.5"), d("4.00000000")),
        (d("100.5"), d("4.25513312")),
    ]
    ref.apply(asks, [])
    book.apply(decode(frame("update", "X/Y", asks, [], ref_checksum(ref.asks, ref.bids, 1, 8))))
    assert book.asks == [(d("100.5"), d("4.25513312")), (d("100.6"), d("2.5")), (d("100.9"), d("0.0001"))]


def test_level_out_of_depth_then_deleted_in_the_same_message_is_restored_before_truncation() -> None:
    # Truncation is per message, not per level: inserting an 11th ask then deleting a top ask leaves 10.
    asks = [(Decimal(100) + Decimal(i) / 10, d("1.00000000")) for i in range(10)]
    ref = RefBook(10)
    ref.apply(asks, SNAP_BIDS)
    book = OrderBook("X/Y", depth=10, price_precision=1, qty_precision=8)
    book.apply(decode(frame("snapshot", "X/Y", asks, SNAP_BIDS, ref_checksum(ref.asks, ref.bids, 1, 8))))
    update = [(d("101.5"), d("2.00000000")), (d("100.0"), d("0.00000000"))]
    ref.apply(update, [])
    book.apply(decode(frame("update", "X/Y", update, [], ref_checksum(ref.asks, ref.bids, 1, 8))))
    assert book.asks[-1] == (d("101.5"), d("2"))
    assert len(book.asks) == 10


@pytest.mark.parametrize("depth", [25, 100])
def test_deep_books_match_the_reference_through_random_updates(depth: int) -> None:
    rng = random.Random(depth)
    pp, qp = 2, 8

    def qty() -> Decimal:
        return Decimal(rng.randint(1, 500_000_000)).scaleb(-qp)

    asks = [(Decimal(200_000 + i * rng.randint(1, 3)).scaleb(-pp), qty()) for i in range(depth)]
    bids = [(Decimal(199_999 - i * rng.randint(1, 3)).scaleb(-pp), qty()) for i in range(depth)]
    asks = list(dict(asks).items())
    bids = list(dict(bids).items())
    ref = RefBook(depth)
    ref.apply(asks, bids)
    book = OrderBook("ETH/USD", depth=depth, price_precision=pp, qty_precision=qp)
    book.apply(decode(frame("snapshot", "ETH/USD", asks, bids, ref_checksum(ref.asks, ref.bids, pp, qp))))
    for _ in range(300):
        new_asks, new_bids = [], []
        for _ in range(rng.randint(1, 6)):
            side_is_ask = rng.random() < 0.5
            side = ref.asks if side_is_ask else ref.bids
            existing = list(side)
            roll = rng.random()
            if roll < 0.3 and existing:
                level = (rng.choice(existing), Decimal(0).scaleb(-qp))
            elif roll < 0.6 and existing:
                level = (rng.choice(existing), qty())
            else:
                # New price anywhere around the book, including inside the top 10 and beyond the depth.
                base = 200_000 if side_is_ask else 199_999
                offset = rng.randint(0, depth * 3)
                level = (Decimal(base + offset if side_is_ask else base - offset).scaleb(-pp), qty())
            (new_asks if side_is_ask else new_bids).append(level)
        ref.apply(new_asks, new_bids)
        expected = ref_checksum(ref.asks, ref.bids, pp, qp)
        book.apply(decode(frame("update", "ETH/USD", new_asks, new_bids, expected)))
        assert book.asks == sorted(ref.asks.items())
        assert book.bids == sorted(ref.bids.items(), reverse=True)
    assert book.stats.checksums_verified == 301
    assert len(book.asks) <= depth
    assert len(book.bids) <= depth


def test_checksum_formats_to_precision_when_the_wire_drops_trailing_zeros() -> None:
    # The recording was re-serialised through floats ("4.0", "0.001"); formatting restores the zeros.
    asks = [(d("29430.3"), d("4.0"))]
    bids = [(d("29430.2"), d("0.001"))]
    payload = "294303" + "400000000" + "294302" + "100000"
    book = OrderBook("BTC/USD", depth=10, price_precision=1, qty_precision=8)
    book.apply(decode(frame("snapshot", "BTC/USD", asks, bids, zlib.crc32(payload.encode()))))
    assert book.checksum_payload() == payload


def test_book_accepts_a_parsed_book_message() -> None:
    ref = RefBook(10)
    ref.apply(SNAP_ASKS, SNAP_BIDS)
    message = BookMessage(
        symbol="X/Y",
        type="snapshot",
        bids=tuple(SNAP_BIDS),
        asks=tuple(SNAP_ASKS),
        checksum=ref_checksum(ref.asks, ref.bids, 1, 8),
    )
    book = OrderBook("X/Y", depth=10, price_precision=1, qty_precision=8)
    book.apply(message)
    assert book.best_bid() == SNAP_BIDS[0]
    assert book.best_ask() == SNAP_ASKS[0]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda e: e.pop("checksum"), "checksum"),
        (lambda e: e.update(checksum="123"), "checksum"),
        (lambda e: e.update(symbol="ETH/USD"), "ETH/USD"),
        (lambda e: e.update(asks=[{"price": Decimal("1.0")}]), "price/qty"),
        (lambda e: e.update(asks=[{"price": Decimal("1.0"), "qty": Decimal("-1")}]), "qty -1"),
        (lambda e: e.update(asks=[{"price": Decimal("1.0"), "qty": 1.5}]), "float"),
        (lambda e: e.update(asks={"price": 1}), "array"),
    ],
)
def test_malformed_book_message_raises_and_invalidates(mutate, reason: str) -> None:
    book, _ = snapshot_book()
    message = json.loads(frame("update", "X/Y", [], [], 0), parse_float=Decimal)
    mutate(message["data"][0])
    with pytest.raises(MalformedMessage, match=reason):
        book.apply(message)
    assert not book.synced
    assert book.stats.malformed == 1


def test_unknown_message_type_is_malformed() -> None:
    book, _ = snapshot_book()
    with pytest.raises(MalformedMessage):
        book.apply({"channel": "book", "type": "delta", "data": [{"symbol": "X/Y", "checksum": 0}]})


def test_depth_below_the_checksum_window_is_refused() -> None:
    with pytest.raises(ValueError, match="depth"):
        OrderBook("X/Y", depth=5, price_precision=1, qty_precision=8)
