"""Each channel against a real local server. There is no internet here: a local HTTP server stands in for the
webhook endpoint, Slack and Telegram's Bot API; the e-mail goes through Django's SMTP backend to a real SMTP server
(aiosmtpd) on loopback."""

from __future__ import annotations

import json
import time
from email import message_from_string
from typing import Any

import pytest

from notifications.channels import DeliveryError, Message, deliver
from notifications.channels.webhook import DELIVERY_HEADER, SIGNATURE_HEADER, signature, signature_verify
from tests.notifications.conftest import BOT_TOKEN, CHAT_ID, SECRET
from tests.notifications.support import HttpReceiver, http_receiver, verify_hmac

MESSAGE = Message(
    delivery_id=41,
    subject="[Gal-Friday] CRITICAL: Trading halted",
    text="[CRITICAL] Trading halted: kill switch engaged",
    payload={"version": 1, "kind": "alerts", "alerts": [{"alert_id": 7, "severity": "critical"}]},
)


def test_webhook_posts_json_that_the_receiver_verifies_with_the_shared_secret(webhook: HttpReceiver) -> None:
    deliver("webhook", MESSAGE)

    [got] = webhook.received
    assert got.path == "/hook"
    assert got.headers[DELIVERY_HEADER] == "41"
    assert verify_hmac(SECRET, got.headers[SIGNATURE_HEADER], got.body)
    assert got.json() == {"delivery_id": 41, **MESSAGE.payload}
    # The signature covers the body and the timestamp: another body, another secret or an old stamp fail.
    assert not verify_hmac(SECRET, got.headers[SIGNATURE_HEADER], got.body + b" ")
    assert not verify_hmac("another-secret", got.headers[SIGNATURE_HEADER], got.body)
    replayed = signature(SECRET, int(time.time()) - 3600, got.body)
    assert not verify_hmac(SECRET, replayed, got.body)
    # The helper a receiver written in Python can use agrees.
    assert signature_verify(secret=SECRET, header=got.headers[SIGNATURE_HEADER], body=got.body)
    assert not signature_verify(secret=SECRET, header=replayed, body=got.body)


def test_webhook_in_slack_format_posts_a_text_payload(webhook: HttpReceiver, settings: Any) -> None:
    settings.NOTIFY_WEBHOOK_FORMAT = "slack"
    settings.NOTIFY_WEBHOOK_SECRET = ""  # a Slack URL is its own secret

    deliver("webhook", MESSAGE)

    [got] = webhook.received
    assert got.json() == {"text": f"*{MESSAGE.subject}*\n{MESSAGE.text}"}
    assert SIGNATURE_HEADER not in got.headers


def test_the_signed_json_webhook_without_a_secret_is_a_permanent_error(webhook: HttpReceiver, settings: Any) -> None:
    settings.NOTIFY_WEBHOOK_SECRET = ""
    with pytest.raises(DeliveryError, match="NOTIFY_WEBHOOK_SECRET") as caught:
        deliver("webhook", MESSAGE)
    assert caught.value.permanent
    assert webhook.received == []


@pytest.mark.parametrize(("status", "permanent"), [(500, False), (503, False), (429, False), (400, True), (404, True)])
def test_webhook_errors_say_whether_a_retry_can_help(quiet_settings: Any, status: int, permanent: bool) -> None:
    with http_receiver(lambda _: (status, {"error": "no"})) as receiver:
        quiet_settings.NOTIFY_WEBHOOK_URL = receiver.url
        quiet_settings.NOTIFY_WEBHOOK_SECRET = SECRET
        with pytest.raises(DeliveryError, match=f"HTTP {status}") as caught:
            deliver("webhook", MESSAGE)
    assert caught.value.permanent is permanent


def test_a_webhook_that_is_down_is_a_transient_error(quiet_settings: Any) -> None:
    receiver = HttpReceiver()  # never started: the port refuses connections
    quiet_settings.NOTIFY_WEBHOOK_URL = receiver.url
    quiet_settings.NOTIFY_WEBHOOK_SECRET = SECRET
    with pytest.raises(DeliveryError, match="unreachable") as caught:
        deliver("webhook", MESSAGE)
    assert not caught.value.permanent


def test_email_goes_through_a_real_smtp_server(mailbox: list[dict[str, Any]]) -> None:
    deliver("email", MESSAGE)

    [mail] = mailbox
    assert mail["from"] == "gal-friday@example.com"
    assert mail["to"] == ["ops@example.com", "oncall@example.com"]
    parsed = message_from_string(mail["data"])
    assert parsed["Subject"] == MESSAGE.subject
    assert parsed[DELIVERY_HEADER] == "41"
    payload = parsed.get_payload(decode=True)
    assert isinstance(payload, bytes)
    assert MESSAGE.text in payload.decode()


def test_an_smtp_server_that_is_down_is_a_transient_error(quiet_settings: Any) -> None:
    quiet_settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    quiet_settings.EMAIL_HOST = "127.0.0.1"
    quiet_settings.EMAIL_PORT = HttpReceiver().port  # nothing listens there
    quiet_settings.NOTIFY_EMAIL_TO = ["ops@example.com"]
    with pytest.raises(DeliveryError, match="unreachable") as caught:
        deliver("email", MESSAGE)
    assert not caught.value.permanent


def test_telegram_calls_send_message_of_the_bot_api(telegram: HttpReceiver) -> None:
    deliver("telegram", MESSAGE)

    [got] = telegram.received
    assert got.path == f"/bot{BOT_TOKEN}/sendMessage"
    body = got.json()
    assert body["chat_id"] == CHAT_ID
    assert body["text"] == f"{MESSAGE.subject}\n\n{MESSAGE.text}"


def test_telegram_errors_keep_the_token_out_of_the_log(quiet_settings: Any) -> None:
    def refuse(got: Any) -> tuple[int, dict[str, Any]]:
        return 400, {"ok": False, "error_code": 400, "description": f"Bad Request: chat not found ({got.path})"}

    with http_receiver(refuse) as receiver:
        quiet_settings.NOTIFY_TELEGRAM_API_URL = receiver.url
        quiet_settings.NOTIFY_TELEGRAM_BOT_TOKEN = BOT_TOKEN
        quiet_settings.NOTIFY_TELEGRAM_CHAT_ID = CHAT_ID
        with pytest.raises(DeliveryError) as caught:
            deliver("telegram", MESSAGE)
    assert caught.value.permanent
    assert "chat not found" in str(caught.value)
    assert BOT_TOKEN not in str(caught.value)


def test_telegram_rate_limit_is_retried_after_the_time_it_asks(quiet_settings: Any) -> None:
    answer = {"ok": False, "error_code": 429, "description": "Too Many Requests", "parameters": {"retry_after": 7}}
    with http_receiver(lambda _: (429, answer)) as receiver:
        quiet_settings.NOTIFY_TELEGRAM_API_URL = receiver.url
        quiet_settings.NOTIFY_TELEGRAM_BOT_TOKEN = BOT_TOKEN
        quiet_settings.NOTIFY_TELEGRAM_CHAT_ID = CHAT_ID
        with pytest.raises(DeliveryError) as caught:
            deliver("telegram", MESSAGE)
    assert not caught.value.permanent
    assert caught.value.retry_after == 7


def test_a_long_message_fits_telegram_s_limit(telegram: HttpReceiver) -> None:
    deliver("telegram", Message(delivery_id=1, subject="s", text="x" * 10_000, payload={}))
    assert len(json.loads(telegram.received[0].body)["text"]) == 4096
