"""Replay a JSON-lines recording of WebSocket v2 book messages through the decoder and :class:`OrderBook`.

    python -m ingest.kraken.replay FILE --depth 10 --price-precision 1 --qty-precision 8

Prints one JSON line ``{"messages": N, "checksums_verified": V, "mismatches": M}`` on stdout, where
``messages`` counts book messages (one per symbol entry; other channels, acks and heartbeats are skipped),
``checksums_verified`` those whose checksum matched, and ``mismatches`` those that could not be verified: a
checksum mismatch, or an update that arrived while its book had no valid snapshot (before the first
snapshot, or after a mismatch until the next snapshot). Books are kept per symbol.

Exit status: 0 when every message verified, 1 on any mismatch, 2 on bad usage, an unreadable file or a
malformed line (with a message on stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ingest.kraken.book import OrderBook
from ingest.kraken.errors import BookNotSynced, ChecksumMismatch, MalformedMessage
from ingest.kraken.messages import decode

__all__ = ["ReplayResult", "main", "replay_lines"]

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class ReplayResult:
    messages: int = 0
    checksums_verified: int = 0
    mismatches: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "messages": self.messages,
            "checksums_verified": self.checksums_verified,
            "mismatches": self.mismatches,
        }


class ReplayInputError(Exception):
    """A line of the recording cannot be used (not JSON, or a malformed book message)."""


def replay_lines(lines: Iterable[str], *, depth: int, price_precision: int, qty_precision: int) -> ReplayResult:
    """Replay ``lines`` (one JSON message each; blank lines ignored). Raises :class:`ReplayInputError`."""
    result = ReplayResult()
    books: dict[str, OrderBook] = {}
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            message = decode(line)
        except MalformedMessage as exc:
            raise ReplayInputError(f"line {lineno}: {exc}") from exc
        if message.get("channel") != "book" or "method" in message:
            continue
        kind = message.get("type")
        data = message.get("data")
        if type(data) is not list:
            raise ReplayInputError(f"line {lineno}: book message without a data array")
        for entry in data:
            symbol = entry.get("symbol") if type(entry) is dict else None
            if type(symbol) is not str:
                raise ReplayInputError(f"line {lineno}: book entry without a symbol")
            book = books.get(symbol)
            if book is None:
                book = books[symbol] = OrderBook(symbol, depth, price_precision, qty_precision)
            result.messages += 1
            try:
                book.apply({"channel": "book", "type": kind, "data": [entry]})
            except ChecksumMismatch as exc:
                result.mismatches += 1
                logger.warning("line %d: %s", lineno, exc)
            except BookNotSynced:
                result.mismatches += 1
                logger.warning("line %d: %s update without a valid snapshot, not verified", lineno, symbol)
            except MalformedMessage as exc:
                raise ReplayInputError(f"line {lineno}: {exc}") from exc
            else:
                result.checksums_verified += 1
    return result


def _non_negative(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be >= 0")
    return value


def _depth(text: str) -> int:
    value = int(text)
    if value < 10:
        raise argparse.ArgumentTypeError("must be >= 10 (Kraken depths: 10, 25, 100, 500, 1000)")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ingest.kraken.replay",
        description="Replay a JSON-lines recording of Kraken WS v2 book messages and verify every checksum.",
    )
    parser.add_argument("file", help="JSON-lines recording, one v2 message per line")
    parser.add_argument("--depth", type=_depth, default=10, help="subscribed book depth (default 10)")
    parser.add_argument("--price-precision", type=_non_negative, required=True, help="pair price precision")
    parser.add_argument("--qty-precision", type=_non_negative, required=True, help="pair qty precision")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s")
    try:
        with open(args.file, encoding="utf-8") as handle:
            result = replay_lines(
                handle,
                depth=args.depth,
                price_precision=args.price_precision,
                qty_precision=args.qty_precision,
            )
    except OSError as exc:
        print(f"replay: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    except UnicodeDecodeError as exc:
        print(f"replay: {args.file} is not UTF-8 text: {exc}", file=sys.stderr)
        return 2
    except ReplayInputError as exc:
        print(f"replay: {args.file}: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result.as_dict()))
    return 1 if result.mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
