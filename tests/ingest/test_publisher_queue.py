"""The hot path's publishing (`EventPublisher.submit`): never waits, keeps order per channel, batches the Redis
work, and counts everything it drops (queue full, channel full, layer down) instead of raising."""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from channels.layers import InMemoryChannelLayer

from ingest.events import Event, TradeEvent
from ingest.publisher import EventPublisher
from tests.conftest import free_port

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def trade(trade_id: int, symbol: str = "BTC/USD") -> TradeEvent:
    return TradeEvent(symbol, "buy", Decimal("60000.1"), Decimal("0.01000000"), trade_id, NOW, NOW)


def redis_layer(capacity: int = 1000, url: str | None = None):  # type: ignore[no-untyped-def]
    from channels_redis.core import RedisChannelLayer

    return RedisChannelLayer(
        hosts=[url or os.environ["REDIS_URL"]], prefix=f"galfriday-test-{uuid.uuid4().hex[:8]}", capacity=capacity
    )


async def test_submitted_events_reach_the_in_memory_layer_in_order() -> None:
    layer = InMemoryChannelLayer(capacity=1000)
    channel = await layer.new_channel()
    await layer.group_add("market.BTC-USD", channel)
    seen: list[Event] = []
    publisher = EventPublisher(layer, on_published=seen.append)
    for i in range(50):
        assert publisher.submit(trade(i))
    await publisher.drain()
    received = [(await layer.receive(channel))["event"]["trade_id"] for _ in range(50)]
    assert received == list(range(50))
    assert publisher.published["trade"] == 50
    assert len(seen) == 50
    await publisher.close()


async def test_a_full_queue_drops_and_counts_without_waiting() -> None:
    publisher = EventPublisher(InMemoryChannelLayer(), queue_limit=3)
    results = [publisher.submit(trade(i)) for i in range(5)]  # the sender has not run yet: nothing was sent
    assert results == [True, True, True, False, False]
    assert publisher.dropped["queue_full"] == 2
    assert publisher.dropped["trade"] == 2
    await publisher.close()
    assert publisher.published["trade"] == 3


def test_no_layer_is_counted() -> None:
    publisher = EventPublisher(None)
    assert not publisher.submit(trade(1))
    assert publisher.dropped["no_layer"] == 1


@pytest.mark.services("redis")
async def test_batches_over_redis_keep_order_per_channel_and_reach_every_group() -> None:
    sender, receiver = redis_layer(), redis_layer()
    receiver.prefix = sender.prefix
    btc, eth = await receiver.new_channel(), await receiver.new_channel()
    await receiver.group_add("market.BTC-USD", btc)
    await receiver.group_add("market.ETH-USD", eth)
    await receiver.group_add("market.ETH-USD", btc)  # one channel in two groups
    publisher = EventPublisher(sender)
    for i in range(300):
        publisher.submit(trade(i, "BTC/USD" if i % 3 else "ETH/USD"))
    await publisher.drain()
    assert publisher.published["trade"] == 300
    assert not publisher.dropped

    on_btc = [(await receiver.receive(btc))["event"]["trade_id"] for _ in range(300)]
    on_eth = [(await receiver.receive(eth))["event"]["trade_id"] for _ in range(100)]
    assert on_btc == list(range(300))  # both groups' events, in the order they were submitted
    assert on_eth == list(range(0, 300, 3))
    message = await _one_more(receiver, eth)
    assert message is None  # nothing duplicated
    await publisher.close()
    await sender.flush()


@pytest.mark.services("redis")
async def test_a_full_channel_keeps_its_capacity_and_the_overflow_is_counted() -> None:
    sender = redis_layer(capacity=5)
    channel = await sender.new_channel()
    await sender.group_add("market.BTC-USD", channel)
    publisher = EventPublisher(sender)
    for i in range(8):
        publisher.submit(trade(i))
    await publisher.drain()
    assert publisher.dropped["channel_full"] == 3
    received = [(await sender.receive(channel))["event"]["trade_id"] for _ in range(5)]
    assert received == [0, 1, 2, 3, 4]
    await publisher.close()
    await sender.flush()


async def test_an_unreachable_redis_drops_and_counts_the_batch() -> None:
    publisher = EventPublisher(redis_layer(url=f"redis://127.0.0.1:{free_port()}/0"))
    for i in range(4):
        assert publisher.submit(trade(i))
    await publisher.drain()
    assert publisher.dropped["trade"] == 4
    assert publisher.published["trade"] == 0
    await publisher.close()


async def _one_more(layer, channel):  # type: ignore[no-untyped-def]
    import asyncio

    try:
        return await asyncio.wait_for(layer.receive(channel), timeout=0.2)
    except TimeoutError:
        return None
