"""The delivery channels: one module each (webhook, mail, telegram) with the same `deliver(message)` function;
`deliver(channel, message)` here picks one. A channel raises `DeliveryError` saying whether a retry can help."""

from __future__ import annotations

from notifications.channels import mail, telegram, webhook
from notifications.channels.base import DeliveryError, Message
from notifications.models import Channel

__all__ = ["DeliveryError", "Message", "deliver"]

_DELIVER = {Channel.WEBHOOK: webhook.deliver, Channel.EMAIL: mail.deliver, Channel.TELEGRAM: telegram.deliver}


def deliver(channel: str, message: Message) -> None:
    try:
        send = _DELIVER[Channel(channel)]
    except (KeyError, ValueError) as exc:
        raise DeliveryError(f"unknown channel {channel!r}", permanent=True) from exc
    send(message)
