"""Events become plain channel-layer messages; publishing is lossy but counted."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from channels.layers import InMemoryChannelLayer

from ingest.events import SystemEvent, TopOfBook, TradeEvent, market_group
from ingest.publisher import EventPublisher
from tests.conftest import free_port

NOW = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def trade_event() -> TradeEvent:
    return TradeEvent("BTC/USD", "buy", Decimal("83744.3"), Decimal("0.00044780"), 109116693, NOW, NOW)


def test_market_group_names_are_channel_layer_safe() -> None:
    assert market_group("BTC/USD") == "market.BTC-USD"
    assert market_group("XDG/USD") == "market.XDG-USD"


def test_event_message_keeps_decimals_exact_as_strings() -> None:
    message = trade_event().as_message()
    assert message["type"] == "ingest.event"
    event = message["event"]
    assert event["kind"] == "trade"
    assert (event["price"], event["qty"]) == ("83744.3", "0.00044780")
    assert event["exchange_time"] == "2026-11-22T10:00:00+00:00"


def test_system_events_reach_the_system_websocket_handler() -> None:
    message = SystemEvent("exchange_status", {"status": "maintenance"}, NOW).as_message()
    assert message == {
        "type": "system.event",
        "event": {"topic": "exchange_status", "status": "maintenance", "at": "2026-11-22T10:00:00+00:00"},
    }


async def test_published_event_reaches_group_members() -> None:
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("market.BTC-USD", channel)
    publisher = EventPublisher(layer)
    assert await publisher.publish(trade_event())
    received = await layer.receive(channel)
    assert received["event"]["trade_id"] == 109116693
    assert publisher.published["trade"] == 1


async def test_an_unreachable_channel_layer_drops_the_event_and_counts_it() -> None:
    from channels_redis.core import RedisChannelLayer

    dead = RedisChannelLayer(hosts=[f"redis://127.0.0.1:{free_port()}/0"])
    publisher = EventPublisher(dead)
    assert not await publisher.publish(TopOfBook("BTC/USD", None, None, None, None, None, NOW))
    assert publisher.dropped["book.top"] == 1


@pytest.mark.services("redis")
async def test_events_cross_processes_over_redis() -> None:
    from channels_redis.core import RedisChannelLayer

    sender = RedisChannelLayer(hosts=[os.environ["REDIS_URL"]], prefix="galfriday-test")
    receiver = RedisChannelLayer(hosts=[os.environ["REDIS_URL"]], prefix="galfriday-test")
    channel = await receiver.new_channel()
    await receiver.group_add("orders", channel)
    from ingest.events import OrderUpdateEvent

    event = OrderUpdateEvent("O1", "c1", "new", "new", "BTC/USD", None, None, NOW, NOW)
    assert await EventPublisher(sender).publish(event)
    received = await receiver.receive(channel)
    assert received["event"]["order_id"] == "O1"
    await receiver.group_discard("orders", channel)
    await sender.flush()
