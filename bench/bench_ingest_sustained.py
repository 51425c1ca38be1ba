"""Benchmark: sustained ingest from the simulator with persistence to InfluxDB and bar building, no loss.

    .venv/bin/python bench/bench_ingest_sustained.py [--duration 600] [--rate 20000] [--bar-seconds 60]
        [--symbols BTC/USD,ETH/USD] [--trades-per-message 1] [--profile FILE]

Target (ingest issue): at least 20,000 messages/s for 10 minutes with no loss, and resident memory growth of the
worker under 20 MB over the run. Processes (see `bench/ingest_harness.py`): the simulator pinned to CPU 1 sends
`trade` messages at `--rate` for `--duration` seconds (its `flood` action); the ingest worker in this process
(not pinned by default: with `--worker-cpu 0` it shared CPU 0 with the other jobs on this machine and got ~50% of
it, see BENCHMARKS.md) decodes them, builds `--bar-seconds` bars, writes every trade and every bar to InfluxDB (batched,
in its writer thread) and publishes the trade and bar events on the Redis channel layer. InfluxDB, Redis and
PostgreSQL (heartbeat) run on the same two cores.

No loss is checked against the simulator's own record, per symbol and per second: the number of trades, their
trade ids (count, min, max and sum of the ids in InfluxDB's `trades` measurement) and the volume; and every bar
stored in InfluxDB (open, high, low, close, volume, VWAP, trade count) equals the one computed here from the
simulator's record. Resident memory (VmRSS of this process, sampled every second) is reported at the start of
the flood, after 10 s (warm-up: pools, caches, first batches), at its peak and at the end; the growth figure is
end minus the 10 s sample. Events on the channel layer are lossy by design: published and dropped are reported.

Prints one JSON object. No assertion on the figures: the targets are compared in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import platform
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import ingest_harness as h


def _expected_bars(seconds: dict[str, dict[str, Any]], bar_seconds: int, quantum: Decimal) -> dict[int, dict]:
    """Bars (keyed by start, epoch seconds) computed from the simulator's per-second record."""
    bars: dict[int, dict[str, Any]] = {}
    for sec in sorted(seconds, key=int):
        rec = seconds[sec]
        start = int(sec) - int(sec) % bar_seconds
        bar = bars.get(start)
        price = {k: Decimal(rec[k]) for k in ("open", "high", "low", "close")}
        if bar is None:
            bar = bars[start] = {**price, "volume": Decimal(0), "notional": Decimal(0), "trades": 0}
        bar["high"] = max(bar["high"], price["high"])
        bar["low"] = min(bar["low"], price["low"])
        bar["close"] = price["close"]
        bar["volume"] += Decimal(rec["volume"])
        bar["notional"] += Decimal(rec["notional"])
        bar["trades"] += rec["count"]
    for bar in bars.values():
        bar["vwap"] = (bar.pop("notional") / bar["volume"]).quantize(quantum, rounding=ROUND_HALF_EVEN)
    return bars


def _check_trades(store: Any, symbol: str, seconds: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per second: count, min/max/sum of trade ids and volume in InfluxDB versus the simulator's record."""
    if not seconds:
        return {"seconds": 0, "mismatched_seconds": 0}
    first, last = min(int(s) for s in seconds), max(int(s) for s in seconds)
    stored: dict[int, list[Any]] = {}
    for chunk in range(first, last + 1, 60):  # a minute per query: InfluxDB 1.x aggregates in memory
        results = store._query(
            "SELECT count(trade_id), min(trade_id), max(trade_id), sum(trade_id), sum(qty) FROM trades "
            f"WHERE symbol = '{symbol}' AND time >= {chunk}s AND time < {min(chunk + 60, last + 1)}s "
            "GROUP BY time(1s)"
        )
        for series in results[0].get("series", []) if results else []:
            for row in series["values"]:
                if row[1]:
                    stored[int(row[0]) // 1_000_000_000] = row[1:]
    mismatched = []
    stored_trades = 0
    for sec, rec in seconds.items():
        got = stored.pop(int(sec), None)
        ids = range(rec["first_id"], rec["last_id"] + 1)
        want = [rec["count"], rec["first_id"], rec["last_id"], sum(ids)]
        if got is not None:
            stored_trades += int(got[0])
        volume_ok = got is not None and abs(Decimal(got[4]) - Decimal(rec["volume"])) <= Decimal("1e-6")
        if got is None or [int(v) for v in got[:4]] != want or len(ids) != rec["count"] or not volume_ok:
            mismatched.append({"second": int(sec), "sent": want + [rec["volume"]], "stored": got})
    return {
        "seconds": len(seconds),
        "trades_sent": sum(r["count"] for r in seconds.values()),
        "trades_stored": stored_trades,
        "mismatched_seconds": len(mismatched),
        "extra_seconds_stored": len(stored),
        "examples": mismatched[:3],
    }


def _check_bars(store: Any, symbol: str, expected: dict[int, dict[str, Any]], bar_seconds: int) -> dict[str, Any]:
    from ingest.bars import Bar

    label = Bar(symbol, bar_seconds, datetime.now(UTC), *[Decimal(0)] * 6, 0).interval_label
    start = datetime.fromtimestamp(min(expected), UTC)
    end = datetime.fromtimestamp(max(expected) + bar_seconds, UTC)
    points = store.query_range("bars", start, end, {"symbol": symbol, "interval": label})
    stored = {int(p.time.timestamp()): p.fields for p in points}
    mismatched = []
    for bar_start, want in expected.items():
        got = stored.get(bar_start)
        if got is None or any(got[k] != want[k] for k in want) or got.get("revision", 0) != 0:
            mismatched.append({"start": bar_start, "expected": {k: str(v) for k, v in want.items()}, "stored": got})
    return {
        "bars_expected": len(expected),
        "bars_stored": sum(1 for s in expected if s in stored),
        "mismatched_bars": len(mismatched),
        "examples": [{k: str(v) for k, v in m.items()} for m in mismatched[:2]],
    }


class LoopWatch:
    """Event-loop stalls: a task sleeps 10 ms and records how late it wakes; a thread samples the main thread's
    stack whenever the loop has not ticked for `dump_after` seconds (with --debug-stalls)."""

    def __init__(self, dump_after: float | None) -> None:
        self.max_lag_ms = 0.0
        self.stalls_over_100ms = 0
        self._beat = time.monotonic()
        self._dump_after = dump_after
        self.stacks: list[str] = []

    async def run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(0.01)
            self._beat = now = time.monotonic()
            lag = (now - before - 0.01) * 1000
            self.max_lag_ms = max(self.max_lag_ms, lag)
            if lag > 100:
                self.stalls_over_100ms += 1

    def start_sampler(self) -> None:
        import threading
        import traceback

        main = threading.main_thread().ident

        def sample() -> None:
            while True:
                time.sleep(0.05)
                if self._dump_after and time.monotonic() - self._beat > self._dump_after and len(self.stacks) < 20:
                    frame = sys._current_frames().get(main)
                    if frame is not None:
                        self.stacks.append("".join(traceback.format_stack(frame)[-12:]))
                        time.sleep(0.5)

        threading.Thread(target=sample, daemon=True).start()


async def run(args: argparse.Namespace, var_dir: Path) -> dict[str, Any]:
    from asgiref.sync import sync_to_async
    from channels.layers import get_channel_layer

    from ingest.worker import IngestWorker

    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    await sync_to_async(h.prepare_database)()
    store = await asyncio.to_thread(h.fresh_influx)
    h.pin(args.worker_cpu)
    sim = h.Simulator(args.sim_cpu, var_dir / "sim.log", symbols, args.sim_queue)
    worker = IngestWorker(
        h.worker_config(sim, var_dir, symbols, args.bar_seconds), store=store, channel_layer=get_channel_layer()
    )
    stop = asyncio.Event()
    gc_pauses: list[float] = []
    gc_started: list[float] = []

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_started[:] = [time.perf_counter()]
        elif gc_started and info.get("generation") == 2:
            gc_pauses.append((time.perf_counter() - gc_started[0]) * 1000)

    gc.callbacks.append(on_gc)
    if args.gc_freeze:
        gc.freeze()
    running = asyncio.create_task(worker.run(stop))
    watch = LoopWatch(0.2 if args.debug_stalls else None)
    watcher = asyncio.create_task(watch.run())
    if args.debug_stalls:
        watch.start_sampler()
    profiler = cProfile.Profile() if args.profile else None
    rss: list[tuple[float, int]] = []
    try:
        await h.wait_subscribed(sim, symbols)
        await asyncio.sleep(1.0)
        load_before = os.getloadavg()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        threads0 = h.thread_cpu()
        sim_cpu0 = sim.cpu_seconds()
        t0 = time.monotonic()
        flood = {"action": "flood", "symbols": symbols, "rate": args.rate, "seconds": args.duration}
        flood["trades_per_message"] = args.trades_per_message
        if profiler is not None:
            profiler.enable()
        await asyncio.to_thread(sim.admin, "POST", "/market", flood)
        while True:
            await asyncio.sleep(1.0)
            rss.append((round(time.monotonic() - t0, 1), h.rss_kb()))
            status = await asyncio.to_thread(sim.admin, "GET", "/flood?seconds=0")
            if not status["running"]:
                break
        sent = status["messages_sent"]
        # Every message received, then every bar closed (exchange clock past its end + grace; the heartbeat
        # advances the clock on a quiet market), then stop: the worker flushes its writer on close.
        last_count, last_change = -1, time.monotonic()
        while worker.ws.stats.messages.get("trade", 0) < sent and time.monotonic() - last_change < 5:
            count = worker.ws.stats.messages.get("trade", 0)
            if count != last_count:
                last_count, last_change = count, time.monotonic()
            await asyncio.sleep(0.05)
        received_at = (last_change if worker.ws.stats.messages.get("trade", 0) < sent else time.monotonic()) - t0
        if profiler is not None:
            profiler.disable()
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        threads1 = h.thread_cpu()
        sim_cpu1 = sim.cpu_seconds()
        load_after = os.getloadavg()
        rss.append((round(time.monotonic() - t0, 1), h.rss_kb()))
        last_end = (status["finished_ns"] // 1_000_000_000) // args.bar_seconds * args.bar_seconds + args.bar_seconds
        # The last bar closes on the heartbeat's estimate of the exchange clock, which trails by the worker's lag.
        record = await asyncio.to_thread(sim.admin, "GET", "/flood")
        bars_due = sum(len({int(sec) // args.bar_seconds for sec in seconds}) for seconds in record["symbols"].values())
        settle = worker.config.bar_grace_s + worker.config.heartbeat_s + 1
        close_at = max(last_end + settle, time.time() + settle)
        deadline = time.time() + 120
        while time.time() < deadline and (time.time() < close_at or worker.counters["bars_closed"] < bars_due):
            await asyncio.sleep(0.5)
    finally:
        watcher.cancel()
        stop.set()
        try:
            await running
        finally:
            sim.stop()
    if profiler is not None:
        profiler.dump_stats(args.profile)
    stats = worker.stats()
    partial = {"sent": record["messages_sent"], "received": stats["ws"]["messages"].get("trade", 0), "rss": rss}
    print("before the checks:", json.dumps({**partial, "worker": stats["ingest"]}), file=sys.stderr, flush=True)
    from timeseries import get_store
    from timeseries.influx import InfluxStore

    closed = get_store()  # the worker closed its own on shutdown; aggregates over millions of points take time
    store = InfluxStore(url=closed.url, database=closed.database, timeout=300)
    seconds_run = (record["finished_ns"] - record["started_ns"]) / 1e9
    checks: dict[str, Any] = {}
    for symbol in symbols:
        per_second = record["symbols"].get(symbol, {})
        quantum = worker.builders[(symbol, args.bar_seconds)]._quantum
        expected = _expected_bars(per_second, args.bar_seconds, quantum)
        checks[symbol] = {
            "trades": await asyncio.to_thread(_check_trades, store, symbol, per_second),
            "bars": await asyncio.to_thread(_check_bars, store, symbol, expected, args.bar_seconds),
        }
    warm = next((kb for t, kb in rss if t >= 10), rss[0][1] if rss else 0)
    cpu_user = cpu1.ru_utime - cpu0.ru_utime
    cpu_sys = cpu1.ru_stime - cpu0.ru_stime
    return {
        "benchmark": "sustained ingest: simulator trade flood -> worker -> InfluxDB trades + bars, channel layer",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "duration_s": args.duration,
        "offered_rate": args.rate,
        "symbols": symbols,
        "trades_per_message": args.trades_per_message,
        "sent": {
            "messages": record["messages_sent"],
            "trades": record["trades_sent"],
            "seconds": round(seconds_run, 2),
            "messages_per_s": round(record["messages_sent"] / seconds_run),
            "skipped_by_simulator_pacing": record["skipped"],
            "unheard": record["messages_unheard"],
        },
        "received": {
            "messages": stats["ws"]["messages"].get("trade", 0),
            "all_received_after_s": round(received_at, 2),
            "messages_per_s_until_all_received": round(stats["ws"]["messages"].get("trade", 0) / received_at),
            "malformed": stats["ws"].get("malformed"),
            "handler_errors": stats["ws"].get("handler_errors"),
            "callback_errors": stats["ws"].get("callback_errors"),
        },
        "worker": {
            "trades": stats["ingest"]["trades"],
            "bars_closed": stats["ingest"]["bars_closed"],
            "bar_revisions": stats["ingest"]["bar_revisions"],
            "writer": stats["writer"],
            "published": stats["published"],
            "dropped_events": stats["dropped_events"],
            "cpu_s": {"user": round(cpu_user, 1), "system": round(cpu_sys, 1)},
            "cpu_busy_pct": round(100 * (cpu_user + cpu_sys) / received_at, 1),
            "cpu_us_per_message": round(
                1e6 * (cpu_user + cpu_sys) / max(1, stats["ws"]["messages"].get("trade", 0)), 1
            ),
            "cpu_s_by_thread": {
                name: round(threads1[name] - threads0.get(name, 0.0), 2)
                for name in sorted(threads1)
                if threads1[name] - threads0.get(name, 0.0) >= 0.05
            },
        },
        "event_loop": {"max_lag_ms": round(watch.max_lag_ms, 1), "stalls_over_100ms": watch.stalls_over_100ms},
        "gc_full_collections": {"count": len(gc_pauses), "max_ms": round(max(gc_pauses, default=0), 1)},
        "reconnects": stats["ws"].get("connections", 0) - 1,
        "simulator_cpu_busy_pct": round(100 * (sim_cpu1 - sim_cpu0) / received_at, 1),
        "rss_mb": {
            "at_start": round(rss[0][1] / 1024, 1) if rss else None,
            "after_10s": round(warm / 1024, 1),
            "peak": round(max(kb for _, kb in rss) / 1024, 1) if rss else None,
            "end": round(rss[-1][1] / 1024, 1) if rss else None,
            "growth_after_warmup": round((rss[-1][1] - warm) / 1024, 1) if rss else None,
            "samples": len(rss),
            "every_30s": [round(kb / 1024, 1) for t, kb in rss[::30]],
        },
        "no_loss": checks,
        "load_average": {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in load_after]},
        "python": platform.python_version(),
        "_stacks": watch.stacks,
        "cpus": {"worker": args.worker_cpu, "simulator": args.sim_cpu},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of flood (default 600)")
    parser.add_argument("--rate", type=float, default=20_000.0, help="messages/s offered (default 20000)")
    parser.add_argument("--symbols", default="BTC/USD,ETH/USD")
    parser.add_argument("--trades-per-message", type=int, default=1)
    parser.add_argument("--bar-seconds", type=int, default=60)
    parser.add_argument("--worker-cpu", type=int, default=-1, help="pin the worker to this CPU (-1: not pinned)")
    parser.add_argument("--sim-cpu", type=int, default=1)
    parser.add_argument("--sim-queue", type=int, default=200_000, help="simulator's per-connection send buffer")
    parser.add_argument("--no-pin", action="store_true", help="let the scheduler place worker and simulator")
    parser.add_argument("--uvloop", action="store_true", help="run the worker on uvloop's event loop")
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() before the worker starts")
    parser.add_argument("--debug-stalls", action="store_true", help="print the stack of event-loop stalls")
    parser.add_argument("--profile", default="", help="write a cProfile of the worker during the flood here")
    args = parser.parse_args()
    if args.no_pin:
        args.worker_cpu = args.sim_cpu = None
    if args.worker_cpu is not None and args.worker_cpu < 0:
        args.worker_cpu = None  # only the simulator pinned
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        var_dir = Path(tmp)
        h.setup_django(var_dir)
        if args.uvloop:
            import uvloop

            result = uvloop.run(run(args, var_dir))
        else:
            result = asyncio.run(run(args, var_dir))
    stacks = result.pop("_stacks", [])
    print(json.dumps(result, indent=2, default=str))
    for stack in stacks:
        print("--- stall ---", file=sys.stderr)
        print(stack, file=sys.stderr)


if __name__ == "__main__":
    main()
