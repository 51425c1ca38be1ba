"""What every channel receives and raises."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Message:
    """A sealed notification as the channels see it: `delivery_id` (the notification id, sent as a header or in
    the payload so a receiver can drop a duplicate of an at-least-once delivery), subject, plain text and the
    structured payload (the webhook's JSON)."""

    delivery_id: int
    subject: str
    text: str
    payload: dict[str, Any] = field(default_factory=dict)


class DeliveryError(Exception):
    """A delivery that did not happen. `permanent`: retrying cannot help (a refused address, a bad token, a channel
    not configured); otherwise the channel is down or busy and the message is retried, after `retry_after` seconds
    when the receiver said so."""

    def __init__(self, message: str, *, permanent: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


def http_status_error(status: int, detail: str, retry_after: str | None = None) -> DeliveryError:
    """The error for an HTTP answer that is not 2xx: timeouts, rate limits and server errors are worth a retry,
    other client errors are not."""
    transient = status in (408, 425, 429) or status >= 500
    delay: float | None = None
    if retry_after:
        try:
            delay = max(0.0, float(retry_after))
        except ValueError:
            delay = None
    return DeliveryError(f"HTTP {status}: {detail[:300]}", permanent=not transient, retry_after=delay)
