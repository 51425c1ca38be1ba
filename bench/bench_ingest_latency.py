"""Benchmark: event latency, exchange message sent → event published on the channel layer, at 1,000 messages/s.

    .venv/bin/python bench/bench_ingest_latency.py [--seconds 60] [--rate 1000] [--warmup 5] [--no-pin]

Target (ingest issue): p99 under 10 ms. Processes (see `bench/ingest_harness.py`): the simulator (CPU 1) sends
`trade` messages at `--rate` (its `flood` action), each stamped with the wall clock when it is made (the trade's
`timestamp`, microseconds); the ingest worker in this process (CPU 0) decodes, builds bars, queues the trade for
InfluxDB and publishes a `TradeEvent` on the Redis channel layer (`channels_redis`, Redis db 6). Two figures, same
system clock:

* published: `time.time_ns()` when the publisher's batch send to Redis returned (its `on_published` hook) minus the
  trade's timestamp. This is "exchange message sent → event published on the channel layer".
  Split at the worker's trade listener (the event's `received_time`): simulator + kernel + websockets receive +
  decode, then bar building, queueing and the publisher's batch round trips to Redis.
  The groups have a member (so each event is serialized and written to Redis by the publisher's Lua script);
  a thread drains that channel's Redis key every 2 ms (`sent_to_drained_from_redis_2ms_poll`: up to 2 ms of
  polling on top).
* received (with --consumer): a consumer in this process (its own channel-layer instance and connections, a
  channel added to the `market.<symbol>` groups) receives each event; `time.time_ns()` at receipt minus the
  trade's timestamp (includes the consumer's BZPOPMIN hop).

The first `--warmup` seconds are not counted. Prints one JSON object. No assertion on the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import ingest_harness as h

SYMBOLS = ["BTC/USD", "ETH/USD"]


def _ns(iso: str) -> int:
    moment = datetime.fromisoformat(iso)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


async def run(args: argparse.Namespace, var_dir: Path) -> dict[str, Any]:
    import redis
    from asgiref.sync import sync_to_async
    from channels.layers import get_channel_layer
    from channels_redis.core import RedisChannelLayer
    from django.conf import settings

    from ingest.events import Event, TradeEvent, market_group
    from ingest.worker import IngestWorker

    await sync_to_async(h.prepare_database)()
    store = await asyncio.to_thread(h.fresh_influx)
    h.pin(args.worker_cpu)
    sim = h.Simulator(args.sim_cpu, var_dir / "sim.log", SYMBOLS)
    worker = IngestWorker(h.worker_config(sim, var_dir, SYMBOLS, 60), store=store, channel_layer=get_channel_layer())
    published: list[int] = []
    received: list[int] = []
    counting = False

    to_worker: list[int] = []
    in_worker: list[int] = []

    def ns(moment: datetime) -> int:
        return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000

    def on_published(event: Event) -> None:
        if counting and isinstance(event, TradeEvent):
            now = time.time_ns()
            published.append(now - ns(event.exchange_time))
            to_worker.append(ns(event.received_time) - ns(event.exchange_time))
            in_worker.append(now - ns(event.received_time))

    worker.publisher.on_published = on_published
    config = settings.CHANNEL_LAYERS["default"]["CONFIG"]
    consumer = RedisChannelLayer(**config)
    channel = await consumer.new_channel()
    for symbol in SYMBOLS if args.consumer else []:
        await consumer.group_add(market_group(symbol), channel)

    async def consume() -> None:
        while True:
            message = await consumer.receive(channel)
            event = message.get("event", {})
            if counting and event.get("kind") == "trade":
                received.append(time.time_ns() - _ns(event["exchange_time"]))

    # A member in the groups, so every event is really written to Redis (a group without members costs nothing):
    # a thread drains its Redis key every 2 ms (ZPOPMIN, no channels machinery) and times what it finds.
    member = await consumer.new_channel()
    for symbol in SYMBOLS:
        await consumer.group_add(market_group(symbol), member)
    member_key = consumer.prefix + consumer.non_local_name(member)
    drained: list[int] = []
    drained_total = [0]
    done = threading.Event()

    def drain() -> None:
        client = redis.Redis.from_url(os.environ["REDIS_URL"])
        while not done.is_set():
            items = client.zpopmin(member_key, 1000)
            now = time.time_ns()
            for raw, _score in items:
                event = consumer.deserialize(raw).get("event", {})
                drained_total[0] += 1
                if counting and event.get("kind") == "trade":
                    drained.append(now - _ns(event["exchange_time"]))
            time.sleep(0.002)
        client.close()

    drainer = threading.Thread(target=drain, name="drainer", daemon=True)
    drainer.start()
    stop = asyncio.Event()
    running = asyncio.create_task(worker.run(stop))
    consuming = asyncio.create_task(consume() if args.consumer else asyncio.sleep(0))
    try:
        await h.wait_subscribed(sim, SYMBOLS)
        await asyncio.sleep(1.0)
        load_before = h.loadavg()
        flood = {"action": "flood", "symbols": SYMBOLS, "rate": args.rate, "seconds": args.warmup + args.seconds}
        await asyncio.to_thread(sim.admin, "POST", "/market", flood)
        await asyncio.sleep(args.warmup)
        counting = True
        await asyncio.sleep(args.seconds)
        counting = False
        load_after = h.loadavg()
        status = await asyncio.to_thread(sim.admin, "GET", "/flood?seconds=0")
    finally:
        done.set()
        consuming.cancel()
        stop.set()
        try:
            await running
        finally:
            sim.stop()
    for symbol in SYMBOLS:
        await consumer.group_discard(market_group(symbol), member)
        if args.consumer:
            await consumer.group_discard(market_group(symbol), channel)
    stats = worker.stats()
    return {
        "benchmark": "event latency: simulator trade sent -> TradeEvent published on the Redis channel layer",
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "rate": args.rate,
        "seconds_measured": args.seconds,
        "simulator": {k: status[k] for k in ("messages_sent", "skipped", "messages_unheard")},
        "sent_to_published": h.percentiles(published),
        "of_which_sent_to_worker_listener": h.percentiles(to_worker),
        "of_which_listener_to_published": h.percentiles(in_worker),
        "sent_to_drained_from_redis_2ms_poll": h.percentiles(drained),
        "drained_from_redis": drained_total[0],
        "sent_to_received_by_consumer": h.percentiles(received),
        "published": stats["published"],
        "dropped_events": stats["dropped_events"],
        "load_average": {"before": load_before, "after": load_after},
        "cpus": {"worker": args.worker_cpu, "simulator": args.sim_cpu},
        "python": platform.python_version(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--worker-cpu", type=int, default=0)
    parser.add_argument("--sim-cpu", type=int, default=1)
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--consumer", action="store_true", help="also receive the events in this process")
    args = parser.parse_args()
    if args.no_pin:
        args.worker_cpu = args.sim_cpu = None
    with tempfile.TemporaryDirectory(prefix="bench-ingest-latency-") as tmp:
        h.setup_django(Path(tmp))
        result = asyncio.run(run(args, Path(tmp)))
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
