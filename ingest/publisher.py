"""Publishes ingest events on the channel layer. Lossy by design (the layer has capacity and expiry): a failed or
refused send is counted and logged, never raised into the ingest loop.

Two ways in:
- `await publish(event)` sends one event now (`group_send`) and says whether it went out.
- `submit(event)` is for the hot path (trades at tens of thousands a second): it never waits and never touches the
  network; the event joins a bounded queue that one sender task drains in batches. When the queue is full the
  event is dropped and counted (`dropped[kind]`, `dropped["queue_full"]`): socket reading must never wait for the
  channel layer. On channels_redis' `RedisChannelLayer` a batch costs two Redis round trips whatever its size
  (the groups' members in one pipeline, then every message in one Lua script doing what `group_send` does per
  message: expire old messages, respect each channel's capacity, add, refresh the key's expiry; the members are
  reused for a quarter of a second, so usually one round trip, none when a group has no member), where
  `group_send` costs two to four round trips per event (~0.4 ms of this process's CPU each). Other layers (the
  in-memory one) get one `group_send` per event. Events keep their order per channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from ingest.events import Event

logger = logging.getLogger(__name__)

#: Events waiting for the sender; beyond this, `submit` drops (a consumer cannot use a backlog this old anyway).
QUEUE_LIMIT = 20_000
#: Events per batch: bounds one Lua script's size and the time it holds Redis.
BATCH_LIMIT = 5_000
#: Seconds a group's member list is reused before it is read from Redis again.
MEMBERS_TTL = 0.25
_LOG_FIRST = 5
_LOG_EVERY = 10_000

# KEYS: channel keys, each once. ARGV: now, expiry, first score, then per key: capacity, n, n messages.
# Scores rise by a microsecond per message so that BZPOPMIN hands them out in the order they were submitted.
_BATCH_LUA = """
local now = tonumber(ARGV[1])
local expiry = tonumber(ARGV[2])
local score = tonumber(ARGV[3])
local i = 4
local over = 0
for k = 1, #KEYS do
    local capacity = tonumber(ARGV[i])
    local n = tonumber(ARGV[i + 1])
    i = i + 2
    redis.call('ZREMRANGEBYSCORE', KEYS[k], 0, now - expiry)
    local count = redis.call('ZCOUNT', KEYS[k], '-inf', '+inf')
    for j = 1, n do
        if count < capacity then
            redis.call('ZADD', KEYS[k], score + (j - 1) * 0.000001, ARGV[i])
            count = count + 1
        else
            over = over + 1
        end
        i = i + 1
    end
    redis.call('EXPIRE', KEYS[k], expiry)
end
return over
"""


class EventPublisher:
    def __init__(
        self,
        channel_layer: Any,
        *,
        queue_limit: int = QUEUE_LIMIT,
        on_published: Callable[[Event], None] | None = None,
    ) -> None:
        """`on_published(event)`, when given, is called right after each event was handed to the layer
        (benchmarks time the exchange → published latency with it)."""
        self.layer = channel_layer
        self.published: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        self.queue_limit = queue_limit
        self.on_published = on_published
        self._queue: deque[Event] = deque()
        self._wake: asyncio.Event | None = None
        self._sender: asyncio.Task[None] | None = None
        self._idle: asyncio.Event | None = None
        self._scripts: dict[int, tuple[Any, Any]] = {}  # connection index → (connection, registered script)
        self._failures = 0
        self._members: dict[str, tuple[float, list[str]]] = {}  # group → (read at, channels)
        self._last_score = 0.0
        self._batched = _is_redis_layer(channel_layer)

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def publish(self, event: Event) -> bool:
        if self.layer is None:
            self.dropped["no_layer"] += 1
            return False
        try:
            await self.layer.group_send(event.group(), event.as_message())
        except Exception as exc:  # channels' ChannelFull, Redis errors, timeouts: all lossy, all counted
            self._failed([event], exc)
            return False
        self.published[event.kind] += 1
        if self.on_published is not None:
            self.on_published(event)
        return True

    def submit(self, event: Event) -> bool:
        """Queue the event for the sender task; False (counted) when there is no layer or the queue is full.
        Needs a running event loop (the sender task is started on first use)."""
        if self.layer is None:
            self.dropped["no_layer"] += 1
            return False
        if len(self._queue) >= self.queue_limit:
            self.dropped[event.kind] += 1
            self.dropped["queue_full"] += 1
            full = self.dropped["queue_full"]
            if full <= _LOG_FIRST or full % _LOG_EVERY == 0:
                logger.warning("event queue full: events dropped", extra={"dropped": full, "kind": event.kind})
            return False
        self._queue.append(event)
        if self._sender is None or self._sender.done():
            self._wake = asyncio.Event()
            self._idle = asyncio.Event()
            self._sender = asyncio.get_running_loop().create_task(self._send_loop(), name="event-publisher")
        assert self._wake is not None
        self._wake.set()
        return True

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait (up to `timeout`) until every submitted event was sent or dropped."""
        if self._sender is None or self._idle is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained(), timeout)

    async def _drained(self) -> None:
        assert self._idle is not None
        while self._queue or not self._idle.is_set():
            self._idle.clear()
            await self._idle.wait()

    async def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (up to `timeout`), then stop the sender; whatever is left is counted as dropped."""
        await self.drain(timeout)
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender
            self._sender = None
        for event in self._queue:
            self.dropped[event.kind] += 1
        self._queue.clear()

    # -- the sender --------------------------------------------------------------------------------------------
    async def _send_loop(self) -> None:
        assert self._wake is not None
        assert self._idle is not None
        while True:
            if not self._queue:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            self._idle.clear()
            count = min(len(self._queue), BATCH_LIMIT)
            batch = [self._queue.popleft() for _ in range(count)]
            try:
                if self._batched:
                    await self._send_batch(batch)
                else:
                    for event in batch:
                        await self.publish(event)
                    continue
            except Exception as exc:  # Redis down or refusing: the batch is lost for the layer, counted
                self._failed(batch, exc)
                continue
            for event in batch:
                self.published[event.kind] += 1
            if self.on_published is not None:
                for event in batch:
                    self.on_published(event)

    async def _send_batch(self, batch: list[Event]) -> None:
        """`group_send` for a whole batch: members of every group in one pipeline, messages in one script."""
        layer = self.layer
        groups = list(dict.fromkeys(event.group() for event in batch))
        now = time.time()
        # channels_redis keeps groups on the connection of the group's hash; members anywhere in the ring.
        # Members are read again once MEMBERS_TTL old, so a batch usually costs one round trip (none when nobody
        # listens); a consumer that joins a group starts receiving at most MEMBERS_TTL later.
        cache = self._members
        members: dict[str, list[str]] = {}
        pipes: dict[int, Any] = {}
        order: dict[int, list[str]] = {}
        monotonic = time.monotonic()
        for group in groups:
            cached = cache.get(group)
            if cached is not None and monotonic - cached[0] < MEMBERS_TTL:
                members[group] = cached[1]
                continue
            index = layer.consistent_hash(group)
            pipe = pipes.get(index)
            if pipe is None:
                pipe = pipes[index] = layer.connection(index).pipeline(transaction=False)
            key = layer._group_key(group)
            pipe.zremrangebyscore(key, min=0, max=int(now) - layer.group_expiry)
            pipe.zrange(key, 0, -1)
            order.setdefault(index, []).append(group)
        for index, pipe in pipes.items():
            replies = await pipe.execute()
            for group, names in zip(order[index], replies[1::2], strict=True):
                members[group] = [name.decode("utf8") for name in names]
                cache[group] = (monotonic, members[group])
        # Where each group's events go: (connection index, channel key, the channels on that key).
        targets: dict[str, list[tuple[int, str, list[str]]]] = {}
        for group in groups:
            per_key: dict[str, list[str]] = {}
            for channel in members[group]:
                # Channels sharing a Redis key (process-local channels of one process) get one message listing them.
                name = layer.non_local_name(channel) if "!" in channel else channel
                per_key.setdefault(layer.prefix + name, []).append(channel)
            targets[group] = [
                (layer.consistent_hash(key[len(layer.prefix) :]), key, names) for key, names in per_key.items()
            ]
        # Per connection: channel key → [capacity, serialized messages in submission order].
        keys: dict[int, dict[str, list[Any]]] = {}
        for event in batch:
            found = targets[event.group()]
            if not found:
                continue
            message = event.as_message()
            for index, channel_key, names in found:
                slot = keys.setdefault(index, {}).get(channel_key)
                if slot is None:
                    slot = keys[index][channel_key] = [layer.get_capacity(names[0]), []]
                slot[1].append(layer.serialize({**message, "__asgi_channel__": names}))
        for index, per_channel in keys.items():
            score = max(now, self._last_score + 0.000001)
            args: list[Any] = [now, int(layer.expiry), score]
            total = 0
            for capacity, messages in per_channel.values():
                args += [capacity, len(messages), *messages]
                total += len(messages)
            self._last_score = score + total * 0.000001
            over = await self._script(index)(keys=list(per_channel), args=args)
            if over:
                self.dropped["channel_full"] += int(over)

    def _script(self, index: int) -> Any:
        """The batch script registered on the layer's connection (EVALSHA, loaded once per connection)."""
        connection = self.layer.connection(index)
        cached = self._scripts.get(index)
        if cached is None or cached[0] is not connection:
            cached = self._scripts[index] = (connection, connection.register_script(_BATCH_LUA))
        return cached[1]

    def _failed(self, events: list[Event], exc: Exception) -> None:
        for event in events:
            self.dropped[event.kind] += 1
        self._failures += 1
        if self._failures <= _LOG_FIRST or self._failures % _LOG_EVERY == 0:
            first = events[0]
            logger.warning(
                "event not published",
                extra={"kind": first.kind, "group": first.group(), "events": len(events), "error": repr(exc)},
            )


def _is_redis_layer(layer: Any) -> bool:
    try:
        from channels_redis.core import RedisChannelLayer
    except ImportError:  # pragma: no cover - channels_redis is a dependency
        return False
    return isinstance(layer, RedisChannelLayer)
