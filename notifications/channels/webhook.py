"""The webhook channel: the message's JSON POSTed to NOTIFY_WEBHOOK_URL, signed with HMAC-SHA256 (generic JSON), or
a Slack-compatible incoming-webhook payload (NOTIFY_WEBHOOK_FORMAT=slack).

The signature, when NOTIFY_WEBHOOK_SECRET is set (required for the generic JSON format):

    X-GalFriday-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>

A receiver recomputes it over the raw body and refuses a timestamp too far from its clock (a replay);
`signature_verify` does exactly that. `X-GalFriday-Delivery` carries the notification id: delivery is at least
once, so a receiver may see an id twice and should drop the second."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import httpx
from django.conf import settings

from notifications.channels.base import DeliveryError, Message, http_status_error
from notifications.config import webhook_format

SIGNATURE_HEADER = "X-GalFriday-Signature"
DELIVERY_HEADER = "X-GalFriday-Delivery"
DEFAULT_TOLERANCE_S = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def signature_verify(
    *, secret: str, header: str, body: bytes, now: float | None = None, tolerance_s: float = DEFAULT_TOLERANCE_S
) -> bool:
    """True when `header` signs `body` with `secret` and its timestamp is within `tolerance_s` of `now`."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def slack_payload(message: Message) -> dict[str, object]:
    return {"text": f"*{message.subject}*\n{message.text}"}


def deliver(message: Message) -> None:
    url = settings.NOTIFY_WEBHOOK_URL
    secret = settings.NOTIFY_WEBHOOK_SECRET
    if not url:
        raise DeliveryError("the webhook channel is not configured (NOTIFY_WEBHOOK_URL)", permanent=True)
    fmt = webhook_format()
    if fmt == "json" and not secret:
        raise DeliveryError("the signed JSON webhook needs NOTIFY_WEBHOOK_SECRET", permanent=True)
    document = slack_payload(message) if fmt == "slack" else {"delivery_id": message.delivery_id, **message.payload}
    body = json.dumps(document, separators=(",", ":"), default=str).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Gal-Friday-Notifications/1",
        DELIVERY_HEADER: str(message.delivery_id),
    }
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, int(time.time()), body)
    try:
        response = httpx.post(url, content=body, headers=headers, timeout=settings.NOTIFY_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"webhook unreachable: {type(exc).__name__}: {exc}") from exc
    if not response.is_success:
        raise http_status_error(response.status_code, response.text, response.headers.get("Retry-After"))
