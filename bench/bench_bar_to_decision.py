"""Benchmark: bar close → decision task started (`trading.tasks.decide_on_bar` on the `trading` queue).

    .venv/bin/python bench/bench_bar_to_decision.py [--seconds 300] [--bar-seconds 5] [--rate 1000] [--no-pin]

Processes (see `bench/ingest_harness.py`): the simulator (CPU 1) sends `trade` messages at `--rate` (its `flood`
action); the ingest worker in this process (CPU 0) builds `--bar-seconds` bars, writes each closed bar to
InfluxDB (the writer's flush), then enqueues `decide_on_bar(symbol, bar start)` by name on Celery's Redis broker
(db 6), exactly as `manage.py ingest` does; a real Celery worker
(`celery -A galfriday_site worker -Q trading --concurrency 2 --include bench.bench_bar_to_decision`, prefork as
`manage.py standalone` runs it, CPU 1) takes it.
This module, included in that worker, records `time.time_ns()` in a `task_prerun` signal handler (before the
task body runs) into a Redis list; what the task then does (the decision pipeline) is not part of this figure.

Per closed bar, same system clock:
* from the closing trade's arrival: the `BarEvent`'s `received_time` (the worker's clock when it processed the
  trade that closed the bar) → task started: persist, enqueue, broker, pick-up. Split at `send_task`'s return
  (the worker's part: the writer's flush of the bar, and of the trades pending with it, to InfluxDB, then the
  send) and the rest (broker and Celery's pick-up).
* from the bar being closable: bar end + grace (`bar_grace_s`, the earliest moment the rules allow it to close)
  → task started; adds the wait for the next trade after that moment (about 1 ms at 1,000 messages/s).

Prints one JSON object. No assertion on the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from celery.signals import task_prerun

STARTED_KEY = "galfriday:bench:decide_started"
TASK = "trading.tasks.decide_on_bar"
SYMBOLS = ["BTC/USD", "ETH/USD"]


@task_prerun.connect
def _record_start(sender: Any = None, task_id: str = "", task: Any = None, args: Any = None, **_: Any) -> None:
    """In the Celery worker: when a decide_on_bar task is about to run, push (args, now) to Redis."""
    if getattr(task, "name", "") != TASK:
        return
    now = time.time_ns()
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    client.rpush(STARTED_KEY, json.dumps({"args": list(args or ()), "started_ns": now}))
    client.close()


def _ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


async def run(args: argparse.Namespace, var_dir: Path) -> dict[str, Any]:
    import redis
    from asgiref.sync import sync_to_async
    from channels.layers import get_channel_layer

    from bench import ingest_harness as h
    from galfriday_site.celery import app as celery_app
    from ingest.events import BarEvent, Event
    from ingest.worker import IngestWorker

    await sync_to_async(h.prepare_database)()
    store = await asyncio.to_thread(h.fresh_influx)
    broker = redis.Redis.from_url(os.environ["REDIS_URL"])
    broker.delete(STARTED_KEY, "trading")
    env = {**os.environ, "PYTHONPATH": str(h.ROOT)}
    celery_args = [
        sys.executable, "-m", "celery", "-A", "galfriday_site", "worker", "-Q", "trading",
        "--concurrency", str(args.concurrency), "--without-heartbeat", "--without-gossip", "--without-mingle",
        "-l", "WARNING",
        "--include", "bench.bench_bar_to_decision", "-n", f"bench-decide-{os.getpid()}@%h",
    ]  # fmt: skip
    if args.sim_cpu is not None:
        celery_args = ["taskset", "-c", str(args.sim_cpu), *celery_args]
    celery_log = (var_dir / "celery.log").open("w")
    celery = subprocess.Popen(celery_args, cwd=h.ROOT, env=env, stdout=celery_log, stderr=subprocess.STDOUT)
    h.pin(args.worker_cpu)
    sim = h.Simulator(args.sim_cpu, var_dir / "sim.log", SYMBOLS)

    sent: dict[tuple[str, str], int] = {}

    def enqueue(task: str, task_args: list[Any]) -> None:  # as manage.py ingest does
        celery_app.send_task(task, args=task_args)
        sent[(task_args[0], task_args[1])] = time.time_ns()

    config = h.worker_config(sim, var_dir, SYMBOLS, args.bar_seconds, bar_task=TASK)
    worker = IngestWorker(config, store=store, channel_layer=get_channel_layer(), enqueue=enqueue)
    closing: dict[tuple[str, str], int] = {}

    def on_published(event: Event) -> None:
        if isinstance(event, BarEvent) and not event.revision:
            closing[(event.symbol, event.start.isoformat())] = _ns(event.received_time)

    worker.publisher.on_published = on_published
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    try:
        await h.wait_subscribed(sim, SYMBOLS)
        await asyncio.sleep(2.0)  # the Celery worker is up by now (checked below by the samples themselves)
        load_before = h.loadavg()
        flood = {"action": "flood", "symbols": SYMBOLS, "rate": args.rate, "seconds": args.seconds}
        await asyncio.to_thread(sim.admin, "POST", "/market", flood)
        await asyncio.sleep(args.seconds)
        flood_end_ns = time.time_ns()
        await asyncio.sleep(args.bar_seconds + config.bar_grace_s + 2)
        load_after = h.loadavg()
    finally:
        stop.set()
        try:
            await running
        finally:
            sim.stop()
            celery.terminate()
            celery.wait(timeout=20)
            celery_log.close()
    started = [json.loads(item) for item in broker.lrange(STARTED_KEY, 0, -1)]
    broker.delete(STARTED_KEY)
    from_trade: list[int] = []
    from_closable: list[int] = []
    trade_to_sent: list[int] = []
    sent_to_started: list[int] = []
    grace = timedelta(seconds=config.bar_grace_s)
    skipped_warmup = 0
    first_bars = sorted({start for _, start in closing})[: args.warmup_bars]
    for item in started:
        symbol, start = item["args"]
        bar_start = datetime.fromisoformat(start)
        closable = _ns(bar_start + timedelta(seconds=args.bar_seconds) + grace)
        if (symbol, start) not in closing or start in first_bars or closing[(symbol, start)] > flood_end_ns:
            # the first bars (Celery's children load Django on their first task); the last ones, closed by the
            # heartbeat's clock after the flood ended (no trade to close them)
            skipped_warmup += 1
            continue
        from_trade.append(item["started_ns"] - closing[(symbol, start)])
        if (symbol, start) in sent:
            trade_to_sent.append(sent[(symbol, start)] - closing[(symbol, start)])
            sent_to_started.append(item["started_ns"] - sent[(symbol, start)])
        from_closable.append(item["started_ns"] - closable)
    stats = worker.stats()
    return {
        "benchmark": "bar close -> decide_on_bar task started in a Celery worker (Redis broker)",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "bar_seconds": args.bar_seconds,
        "rate": args.rate,
        "bars_closed": stats["ingest"]["bars_closed"],
        "decisions_enqueued": stats["ingest"]["decisions_enqueued"],
        "tasks_started": len(started),
        "not_counted_first_and_last": skipped_warmup,
        "closing_trade_to_task_started": h.percentiles(from_trade),
        "of_which_closing_trade_to_task_sent": h.percentiles(trade_to_sent),
        "of_which_task_sent_to_started": h.percentiles(sent_to_started),
        "bar_closable_to_task_started": h.percentiles(from_closable),
        "celery": f"prefork, concurrency {args.concurrency}",
        "enqueue_failures": stats["ingest"]["enqueue_failures"],
        "load_average": {"before": load_before, "after": load_after},
        "cpus": {"worker": args.worker_cpu, "simulator_and_celery": args.sim_cpu},
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--bar-seconds", type=int, default=5)
    parser.add_argument("--warmup-bars", type=int, default=3, help="first bar times not counted")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--worker-cpu", type=int, default=0)
    parser.add_argument("--sim-cpu", type=int, default=1)
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes (as standalone)")
    args = parser.parse_args()
    if args.no_pin:
        args.worker_cpu = args.sim_cpu = None
    from bench import ingest_harness as h

    with tempfile.TemporaryDirectory(prefix="bench-bar-decision-") as tmp:
        h.setup_django(Path(tmp))
        result = asyncio.run(run(args, Path(tmp)))
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
