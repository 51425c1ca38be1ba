"""The Telegram channel: the Bot API's `sendMessage` at NOTIFY_TELEGRAM_API_URL (default https://api.telegram.org)
for NOTIFY_TELEGRAM_BOT_TOKEN and NOTIFY_TELEGRAM_CHAT_ID. The token is part of the URL: it is scrubbed from every
error kept in the delivery log."""

from __future__ import annotations

import httpx
from django.conf import settings

from notifications.channels.base import DeliveryError, Message, http_status_error

MAX_TEXT = 4096  # Telegram's limit for one message


def _text(message: Message) -> str:
    text = f"{message.subject}\n\n{message.text}"
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def deliver(message: Message) -> None:
    token = settings.NOTIFY_TELEGRAM_BOT_TOKEN
    chat_id = settings.NOTIFY_TELEGRAM_CHAT_ID
    if not (token and chat_id):
        raise DeliveryError(
            "the Telegram channel is not configured (NOTIFY_TELEGRAM_BOT_TOKEN, NOTIFY_TELEGRAM_CHAT_ID)",
            permanent=True,
        )
    url = f"{settings.NOTIFY_TELEGRAM_API_URL.rstrip('/')}/bot{token}/sendMessage"
    body = {"chat_id": chat_id, "text": _text(message), "disable_web_page_preview": True}
    try:
        response = httpx.post(url, json=body, timeout=settings.NOTIFY_TIMEOUT_S)
    except httpx.HTTPError as exc:
        raise DeliveryError(f"Telegram unreachable: {type(exc).__name__}: {exc}".replace(token, "<token>")) from exc
    try:
        answer = response.json()
    except ValueError:
        answer = {}
    if response.is_success and isinstance(answer, dict) and answer.get("ok") is True:
        return
    detail = answer.get("description", response.text) if isinstance(answer, dict) else response.text
    retry_after = None
    if isinstance(answer, dict) and isinstance(answer.get("parameters"), dict):
        retry_after = str(answer["parameters"].get("retry_after", "")) or None
    status = response.status_code if not response.is_success else 502  # 200 without ok: treat as a server fault
    raise http_status_error(status, str(detail).replace(token, "<token>"), retry_after)
