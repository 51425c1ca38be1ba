"""Benchmark: decode + OrderBook.apply + checksum verification per WebSocket v2 book message, on one core.

    .venv/bin/python bench/bench_book.py [--messages N] [--cpu K] [--synthetic-depth D]

Two streams:

* ``recording``: the real BTC/USD depth-10 recording in shared/ (510 messages, snapshot first), replayed in a
  loop; each pass starts with the snapshot, which resets the book.
* ``synthetic``: a generated stream for one pair (default depth 10; ``--synthetic-depth`` 25/100/500/1000),
  a snapshot then updates of 1-3 levels (inserts, qty changes, deletes, mostly near the top), number tokens
  written at fixed precision like the live wire, checksums computed by an independent reference model here.

For each stream the frames are ``str`` (what the websockets library yields for text frames). Throughput is
measured over N messages without per-message timers; latency percentiles come from a second pass timing each
message with ``perf_counter_ns`` (includes ~50 ns of timer overhead). The process is pinned to one CPU.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import random
import sys
import time
import zlib
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ingest.kraken.book import OrderBook  # noqa: E402
from ingest.kraken.messages import decode  # noqa: E402

RECORDING_NAME = "kraken/recordings/book-v2-btcusd-depth10.jsonl"


def find_recording() -> Path:
    for base in (ROOT.parent / "shared", Path("/work/shared")):
        if (base / RECORDING_NAME).is_file():
            return base / RECORDING_NAME
    raise SystemExit(f"bench_book: shared/{RECORDING_NAME} not found beside the repository")


# --- synthetic stream (independent reference model) ---------------------------------------------------


def _ref_checksum(asks: dict[int, int], bids: dict[int, int], pp: int, qp: int) -> int:
    # Integer ticks and lots: the formatted level without point and leading zeros is the integer's digits.
    top = sorted(asks.items())[:10] + sorted(bids.items(), reverse=True)[:10]
    return zlib.crc32("".join(f"{p}{q}" for p, q in top).encode())


def synthetic_stream(n: int, depth: int, seed: int = 7) -> list[str]:
    """A snapshot then ``n - 1`` updates, BTC/USD-like: price precision 1, qty precision 8."""
    rng = random.Random(seed)
    pp, qp = 1, 8
    mid = 300_000  # 30000.0 in ticks

    def lot() -> int:
        return rng.choice([rng.randint(1, 10_000), rng.randint(10_000, 100_000_000), 100_000_000 * rng.randint(1, 5)])

    def token(value: int, precision: int) -> str:
        return str(Decimal(value).scaleb(-precision).quantize(Decimal(1).scaleb(-precision)))

    def levels(rows: list[tuple[int, int]]) -> str:
        return ",".join(f'{{"price":{token(p, pp)},"qty":{token(q, qp)}}}' for p, q in rows)

    def frame(kind: str, a: list[tuple[int, int]], b: list[tuple[int, int]], checksum: int) -> str:
        return (
            f'{{"channel":"book","type":"{kind}","data":[{{"symbol":"BTC/USD","bids":[{levels(b)}],'
            f'"asks":[{levels(a)}],"checksum":{checksum},"timestamp":"2023-07-30T15:29:58.343415Z"}}]}}'
        )

    asks = {mid + 1 + i * rng.randint(1, 3): lot() for i in range(depth)}
    bids = {mid - i * rng.randint(1, 3): lot() for i in range(depth)}
    asks = dict(sorted(asks.items())[:depth])
    bids = dict(sorted(bids.items(), reverse=True)[:depth])
    out = [
        frame(
            "snapshot",
            sorted(asks.items()),
            sorted(bids.items(), reverse=True),
            _ref_checksum(asks, bids, pp, qp),
        )
    ]
    for _ in range(n - 1):
        new_asks: list[tuple[int, int]] = []
        new_bids: list[tuple[int, int]] = []
        for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
            is_ask = rng.random() < 0.5
            side = asks if is_ask else bids
            best = min(asks) if is_ask else max(bids)
            roll = rng.random()
            if roll < 0.3 and side:
                price = rng.choice(sorted(side, reverse=not is_ask)[:15])
                level = (price, 0)
            elif roll < 0.7 and side:
                price = rng.choice(sorted(side, reverse=not is_ask)[:15])
                level = (price, lot())
            else:
                offset = int(rng.expovariate(1 / 8))
                price = best + offset if is_ask else best - offset
                if price <= max(bids) if is_ask else price >= min(asks):
                    price = max(bids) + 1 if is_ask else min(asks) - 1
                level = (price, lot())
            (new_asks if is_ask else new_bids).append(level)
            if level[1] == 0:
                side.pop(level[0], None)
            else:
                side[level[0]] = level[1]
        asks = dict(sorted(asks.items())[:depth])
        bids = dict(sorted(bids.items(), reverse=True)[:depth])
        # Keep both sides populated so the stream stays realistic.
        while len(asks) < 10:
            asks[max(asks) + 1] = lot()
            new_asks.append((max(asks), asks[max(asks)]))
        while len(bids) < 10:
            bids[min(bids) - 1] = lot()
            new_bids.append((min(bids), bids[min(bids)]))
        out.append(frame("update", new_asks, new_bids, _ref_checksum(asks, bids, pp, qp)))
    return out


# --- measurement --------------------------------------------------------------------------------------


def run(frames: list[str], depth: int, messages: int) -> dict[str, float | int]:
    book = OrderBook("BTC/USD", depth=depth, price_precision=1, qty_precision=8)
    # Warm-up pass (fills the fragment caches the way a running process has them).
    for raw in frames:
        book.apply(decode(raw))
    passes, rest = divmod(messages, len(frames))
    stream = frames * passes + frames[:rest]
    apply = book.apply
    gc.collect()
    gc.disable()
    try:
        start = time.perf_counter_ns()
        for raw in stream:
            apply(decode(raw))
        elapsed = time.perf_counter_ns() - start
        latencies = []
        clock = time.perf_counter_ns
        for raw in stream[: min(len(stream), 200_000)]:
            t0 = clock()
            apply(decode(raw))
            latencies.append(clock() - t0)
    finally:
        gc.enable()
    latencies.sort()
    verified = book.stats.checksums_verified
    assert book.stats.checksum_mismatches == 0, "benchmark stream failed verification"
    return {
        "messages": len(stream),
        "messages_per_s": round(len(stream) / (elapsed / 1e9)),
        "mean_us": round(elapsed / len(stream) / 1000, 3),
        "p50_us": round(latencies[len(latencies) // 2] / 1000, 3),
        "p99_us": round(latencies[int(len(latencies) * 0.99)] / 1000, 3),
        "checksums_verified": verified,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=1_000_000, help="messages per stream (default 1e6)")
    parser.add_argument("--cpu", type=int, default=None, help="CPU to pin to (default: the first allowed)")
    parser.add_argument("--synthetic-depth", type=int, default=10, choices=(10, 25, 100, 500, 1000))
    parser.add_argument("--synthetic-size", type=int, default=20_000, help="distinct synthetic messages")
    args = parser.parse_args()

    allowed = sorted(os.sched_getaffinity(0))
    cpu = args.cpu if args.cpu is not None else allowed[0]
    os.sched_setaffinity(0, {cpu})

    recording = find_recording().read_text().splitlines()
    synthetic = synthetic_stream(args.synthetic_size, args.synthetic_depth)
    result = {
        "benchmark": "decode + OrderBook.apply + checksum verify, per v2 book message",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "pinned_cpu": cpu,
        "recording": {"file": RECORDING_NAME, "depth": 10, **run(recording, 10, args.messages)},
        "synthetic": {"depth": args.synthetic_depth, **run(synthetic, args.synthetic_depth, args.messages)},
    }
    print(json.dumps(result, indent=2))
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    sys.exit(main())
