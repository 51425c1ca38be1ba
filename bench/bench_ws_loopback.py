"""Benchmark: Kraken WebSocket v2 book stream → ``KrakenWsClient`` over loopback, every checksum verified.

    .venv/bin/python bench/bench_ws_loopback.py [--messages N] [--latency-seconds S] [--rate R]
        [--depth D] [--sim-messages N] [--sim-rate STEPS] [--skip-feeder] [--skip-sim]

The client runs in this process, pinned to one CPU; the sender runs in a child process pinned to the other
CPU (on a 2-core machine: one core each). Four phases:

1. ``feeder_throughput``: a MINIMAL websockets server written here (NOT the simulator) sends pre-encoded book
   frames (``bench_book.synthetic_stream``: BTC/USD-like, checksums from an independent reference model; a
   snapshot every 20,000 messages) back to back. Figure: messages/s the client decodes, applies and verifies,
   from the first frame processed to the last.
2. ``feeder_latency``: the same server sends at ``--rate`` messages/s, each update stamped at send time with
   the wall clock (RFC 3339, microseconds, the book message's ``timestamp`` field). Figure: p50/p99 of
   "book updated in the client" (``time.time_ns()`` inside the client's book callback) minus that timestamp.
   Both processes read the same system clock.
3. ``sim_throughput``: the real simulator (``python -m kraken_sim``, market generator, no background flow)
   driven by ``POST /_sim/market {"action":"step"}`` in chunks; the client subscribes BTC/USD and ETH/USD at
   depth 10. The simulator generates the market synchronously, so this figure is bounded by the simulator.
4. ``sim_latency``: the real simulator's background market at ``--sim-rate`` steps/s, the client subscribed at
   depth 1000 on both pairs (nearly every step changes the book). Latency = book updated in the client minus
   the ``timestamp`` the simulator puts on each update when it publishes it.

Prints one JSON object. No assertion on the figures: the targets are compared in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402

from bench import stats  # noqa: E402
from bench.bench_book import synthetic_stream  # noqa: E402
from ingest.kraken.book import OrderBook  # noqa: E402
from ingest.kraken.ws.client import KrakenWsClient  # noqa: E402
from ingest.kraken.ws.reconnect import ReconnectPolicy  # noqa: E402
from ingest.kraken.ws.types import BookEvent, WsConfig  # noqa: E402

SYMBOL = "BTC/USD"
FRAME_TS = '"timestamp":"2023-07-30T15:29:58.343415Z"'
DISTINCT_FRAMES = 20_000
STATUS = (
    '{"channel":"status","type":"update","data":[{"version":"2.0.10","system":"online","api_version":"v2",'
    '"connection_id":18125794168470749634,"upcoming_maintenance":[],"emergency":[]}]}'
)
BENCH_CONFIG: dict[str, Any] = {"watchdog_timeout_s": 30.0, "idle_ping_after_s": 10.0, "request_timeout_s": 30.0}


def percentiles(values_ns: list[int]) -> dict[str, float]:
    return stats.percentiles(values_ns, count_key="samples")


def rfc3339_now() -> str:
    ns = time.time_ns()
    seconds, frac = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{frac // 1000:06d}Z"


# --- the minimal feeder (child process) ------------------------------------------------------------------


async def run_feeder(mode: str, messages: int, rate: float, depth: int) -> None:
    frames = synthetic_stream(min(messages, DISTINCT_FRAMES), depth)
    finished = asyncio.Event()

    async def stream(ws: ServerConnection) -> None:
        send = ws.send
        count = len(frames)
        if mode == "burst":
            for k in range(messages):
                await send(frames[k % count])
        else:
            interval = 1.0 / rate
            start = time.perf_counter()
            for k in range(messages):
                delay = start + k * interval - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                frame = frames[k % count]
                await send(frame.replace(FRAME_TS, f'"timestamp":"{rfc3339_now()}"', 1))

    async def handler(ws: ServerConnection) -> None:
        await ws.send(STATUS)
        task: asyncio.Task[None] | None = None
        try:
            async for raw in ws:
                request = json.loads(raw)
                method, req_id = request.get("method"), request.get("req_id")
                if method == "ping":
                    await ws.send(json.dumps({"method": "pong", "req_id": req_id}))
                elif method == "subscribe" and task is None:
                    result = {"channel": "book", "depth": depth, "snapshot": True, "symbol": SYMBOL}
                    await ws.send(
                        json.dumps({"method": "subscribe", "req_id": req_id, "result": result, "success": True})
                    )
                    task = asyncio.create_task(stream(ws))
        finally:
            if task is not None:
                task.cancel()
            finished.set()

    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        print(json.dumps({"url": f"ws://127.0.0.1:{port}/v2"}), flush=True)
        await finished.wait()


# --- child processes -----------------------------------------------------------------------------------------


class Child:
    """A child process pinned to ``cpu`` that prints one JSON line (its endpoints) when ready."""

    def __init__(self, args: list[str], cpu: int | None) -> None:
        self.proc = subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env={**os.environ}
        )
        if cpu is not None:
            os.sched_setaffinity(self.proc.pid, {cpu})
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"child {args} exited before it was ready")
        self.info: dict[str, Any] = json.loads(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def feeder(mode: str, messages: int, rate: float, depth: int, cpu: int | None) -> Child:
    args = [sys.executable, __file__, "--feeder", mode, "--messages", str(messages), "--rate", str(rate)]
    return Child([*args, "--depth", str(depth)], cpu)


def simulator(rate: float, cpu: int | None) -> Child:
    args = ["--market", "generate", "--rate", str(rate), "--warmup", "0", "--no-rate-limits", "--log-level", "WARNING"]
    return Child([sys.executable, "-m", "kraken_sim", *args], cpu)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# --- phases ------------------------------------------------------------------------------------------------


async def feeder_throughput(messages: int, depth: int, cpu: int | None) -> dict[str, Any]:
    child = feeder("burst", messages, 0, depth, cpu)
    done = asyncio.Event()
    seen = 0
    first = last = 0

    def on_book(book: OrderBook, event: BookEvent) -> None:
        nonlocal seen, first, last
        seen += 1
        if seen == 1:
            first = time.perf_counter_ns()
        elif seen == messages:
            last = time.perf_counter_ns()
            done.set()

    config = WsConfig(public_url=child.info["url"], **BENCH_CONFIG)
    try:
        async with KrakenWsClient(config) as client:
            client.on_book(on_book)
            cpu_before = cpu_seconds()
            await client.subscribe_book([SYMBOL], depth=depth, precisions={SYMBOL: (1, 8)})
            await asyncio.wait_for(done.wait(), 600)
            cpu_used = cpu_seconds() - cpu_before
            stats = client.stats_snapshot()
    finally:
        child.stop()
    book = stats["books"][SYMBOL]
    elapsed = (last - first) / 1e9
    return {
        "sender": "minimal websockets server in this benchmark (pre-encoded frames), NOT the simulator",
        "depth": depth,
        "messages": seen,
        "seconds": round(elapsed, 3),
        "messages_per_s": round((seen - 1) / elapsed),
        "client_cpu_us_per_message": round(cpu_used / seen * 1e6, 2),
        "checksums_verified": book["checksums_verified"],
        "checksum_mismatches": book["checksum_mismatches"],
        "snapshots": book["snapshots"],
        "malformed": stats["malformed"],
    }


async def feeder_latency(seconds: float, rate: float, depth: int, cpu: int | None) -> dict[str, Any]:
    messages = int(seconds * rate)
    child = feeder("paced", messages, rate, depth, cpu)
    done = asyncio.Event()
    latencies: list[int] = []
    to_client: list[int] = []
    processing: list[int] = []
    seen = 0
    first = last = 0

    def on_book(book: OrderBook, event: BookEvent) -> None:
        nonlocal seen, first, last
        now = time.time_ns()
        if event.exchange_ts_ns:
            latencies.append(now - event.exchange_ts_ns)
            to_client.append(event.received_ns - event.exchange_ts_ns)
            processing.append(now - event.received_ns)
        seen += 1
        if seen == 1:
            first = time.perf_counter_ns()
        if seen == messages:
            last = time.perf_counter_ns()
            done.set()

    config = WsConfig(public_url=child.info["url"], **BENCH_CONFIG)
    try:
        async with KrakenWsClient(config) as client:
            client.on_book(on_book)
            await client.subscribe_book([SYMBOL], depth=depth, precisions={SYMBOL: (1, 8)})
            await asyncio.wait_for(done.wait(), seconds * 3 + 60)
            stats = client.stats_snapshot()
    finally:
        child.stop()
    book = stats["books"][SYMBOL]
    return {
        "sender": "minimal websockets server in this benchmark, frames stamped at send, NOT the simulator",
        "depth": depth,
        "target_rate": rate,
        "achieved_rate": round((seen - 1) / ((last - first) / 1e9)),
        "latency_send_to_book_updated": percentiles(latencies),
        "of_which_send_to_client_handler": percentiles(to_client),
        "of_which_client_decode_apply_verify": percentiles(processing),
        "checksums_verified": book["checksums_verified"],
        "checksum_mismatches": book["checksum_mismatches"],
    }


async def sim_throughput(messages: int, cpu: int | None) -> dict[str, Any]:
    child = simulator(0, cpu)
    symbols = ["BTC/USD", "ETH/USD"]
    config = WsConfig(public_url=child.info["ws_url"], reconnect=ReconnectPolicy(), **BENCH_CONFIG)
    try:
        async with KrakenWsClient(config) as client, httpx.AsyncClient(base_url=child.info["admin_url"]) as admin:
            await client.subscribe_book(symbols, depth=10)
            await client.ping()
            base = client.stats_snapshot()["book_totals"]["messages"]
            cpu_before = cpu_seconds()
            start = time.perf_counter_ns()
            steps = 0
            while client.stats_snapshot()["book_totals"]["messages"] - base < messages:
                r = await admin.post("/market", json={"action": "step", "steps": 2000})
                r.raise_for_status()
                steps += 2000
            await client.ping()
            elapsed = (time.perf_counter_ns() - start) / 1e9
            cpu_used = cpu_seconds() - cpu_before
            stats = client.stats_snapshot()
            market = (await admin.get("/state", params={"messages": "0"})).json()["market"]
            tops_match = all(
                client.books[s].best_bid()[0] == _dec(market[s]["best_bid"])  # type: ignore[index]
                and client.books[s].best_ask()[0] == _dec(market[s]["best_ask"])  # type: ignore[index]
                for s in symbols
            )
    finally:
        child.stop()
    received = stats["book_totals"]["messages"] - base
    return {
        "sender": "python -m kraken_sim (generator stepped in chunks of 2000 over /_sim/market)",
        "depth": 10,
        "symbols": symbols,
        "steps": steps,
        "messages": received,
        "seconds": round(elapsed, 3),
        "messages_per_s": round(received / elapsed),
        "client_cpu_share": round(cpu_used / elapsed, 3),
        "checksums_verified": stats["book_totals"]["checksums_verified"],
        "checksum_mismatches": stats["book_totals"]["checksum_mismatches"],
        "client_top_of_book_equals_simulator": tops_match,
    }


async def sim_latency(seconds: float, steps_per_s: float, cpu: int | None) -> dict[str, Any]:
    child = simulator(steps_per_s, cpu)
    symbols = ["BTC/USD", "ETH/USD"]
    latencies: list[int] = []
    to_client: list[int] = []
    processing: list[int] = []
    measuring = False

    def on_book(book: OrderBook, event: BookEvent) -> None:
        if measuring and event.exchange_ts_ns:
            now = time.time_ns()
            latencies.append(now - event.exchange_ts_ns)
            to_client.append(event.received_ns - event.exchange_ts_ns)
            processing.append(now - event.received_ns)

    config = WsConfig(public_url=child.info["ws_url"], **BENCH_CONFIG)
    try:
        async with KrakenWsClient(config) as client:
            client.on_book(on_book)
            await client.subscribe_book(symbols, depth=1000)
            await asyncio.sleep(2.0)  # warm-up: let the generator settle
            measuring = True
            before = client.stats_snapshot()["book_totals"]["messages"]
            start = time.perf_counter()
            await asyncio.sleep(seconds)  # the measurement window
            measuring = False
            window = time.perf_counter() - start
            stats = client.stats_snapshot()
    finally:
        child.stop()
    return {
        "sender": f"python -m kraken_sim --rate {steps_per_s} (background market generator)",
        "depth": 1000,
        "symbols": symbols,
        "achieved_rate": round((stats["book_totals"]["messages"] - before) / window),
        "latency_send_to_book_updated": percentiles(latencies),
        "of_which_send_to_client_handler": percentiles(to_client),
        "of_which_client_decode_apply_verify": percentiles(processing),
        "timestamp_resolution": "1 us (the simulator's RFC 3339 timestamp)",
        "checksums_verified": stats["book_totals"]["checksums_verified"],
        "checksum_mismatches": stats["book_totals"]["checksum_mismatches"],
        "book_resyncs": stats["book_resyncs"],
    }


def _dec(text: str | None) -> Any:
    from decimal import Decimal

    return Decimal(text) if text is not None else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    allowed = sorted(os.sched_getaffinity(0))
    client_cpu = allowed[0]
    sender_cpu = allowed[1] if len(allowed) > 1 else None
    os.sched_setaffinity(0, {client_cpu})
    result: dict[str, Any] = {
        "benchmark": "Kraken WS v2 book stream -> KrakenWsClient over loopback, checksum verified on every message",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpus": len(allowed),
        "client_cpu": client_cpu,
        "sender_cpu": sender_cpu,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    if not args.skip_feeder:
        result["feeder_throughput"] = await feeder_throughput(args.messages, args.depth, sender_cpu)
        result["feeder_latency"] = await feeder_latency(args.latency_seconds, args.rate, args.depth, sender_cpu)
    if not args.skip_sim:
        result["sim_throughput"] = await sim_throughput(args.sim_messages, sender_cpu)
        result["sim_latency"] = await sim_latency(args.latency_seconds, args.sim_rate, sender_cpu)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=500_000, help="feeder burst size (default 500000)")
    parser.add_argument("--latency-seconds", type=float, default=20.0, help="latency window (default 20 s)")
    parser.add_argument("--rate", type=float, default=1000.0, help="feeder paced rate, messages/s (default 1000)")
    parser.add_argument("--depth", type=int, default=10, choices=(10, 25, 100, 500, 1000), help="feeder book depth")
    parser.add_argument("--sim-messages", type=int, default=100_000, help="simulator throughput messages")
    parser.add_argument("--sim-rate", type=float, default=500.0, help="simulator market steps/s (default 500)")
    parser.add_argument("--skip-feeder", action="store_true")
    parser.add_argument("--skip-sim", action="store_true")
    parser.add_argument("--feeder", choices=("burst", "paced"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.feeder:
        asyncio.run(run_feeder(args.feeder, args.messages, args.rate, args.depth))
        return 0
    print(json.dumps(asyncio.run(bench(args)), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
