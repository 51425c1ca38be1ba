"""Publishes ingest events on the channel layer. Lossy by design (the layer has capacity and expiry): a failed or
refused send is counted and logged, never raised into the ingest loop."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from ingest.events import Event

logger = logging.getLogger(__name__)


class EventPublisher:
    def __init__(self, channel_layer: Any) -> None:
        self.layer = channel_layer
        self.published: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()

    async def publish(self, event: Event) -> bool:
        if self.layer is None:
            self.dropped["no_layer"] += 1
            return False
        try:
            await self.layer.group_send(event.group(), event.as_message())
        except Exception as exc:  # channels' ChannelFull, Redis errors, timeouts: all lossy, all counted
            self.dropped[event.kind] += 1
            logger.warning(
                "event not published", extra={"kind": event.kind, "group": event.group(), "error": repr(exc)}
            )
            return False
        self.published[event.kind] += 1
        return True
