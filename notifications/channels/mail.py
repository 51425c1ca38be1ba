"""The e-mail channel: Django's e-mail backend (EMAIL_BACKEND, EMAIL_HOST, ...) to NOTIFY_EMAIL_TO. SMTP answers in
the 5xx range (a refused recipient, failed authentication) are permanent; refused connections, timeouts and 4xx
answers are retried."""

from __future__ import annotations

import smtplib

from django.conf import settings
from django.core.mail import EmailMessage, get_connection

from notifications.channels.base import DeliveryError, Message
from notifications.channels.webhook import DELIVERY_HEADER


def _smtp_error(exc: smtplib.SMTPException) -> DeliveryError:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        permanent = bool(codes) and all(code >= 500 for code in codes)
        return DeliveryError(f"recipients refused: {exc.recipients}", permanent=permanent)
    if isinstance(exc, smtplib.SMTPResponseException):
        detail = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return DeliveryError(f"SMTP {exc.smtp_code}: {detail[:300]}", permanent=exc.smtp_code >= 500)
    return DeliveryError(f"SMTP: {type(exc).__name__}: {exc}")


def deliver(message: Message) -> None:
    recipients = list(settings.NOTIFY_EMAIL_TO)
    if not recipients:
        raise DeliveryError("the e-mail channel is not configured (NOTIFY_EMAIL_TO)", permanent=True)
    email = EmailMessage(
        subject=message.subject,
        body=message.text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
        headers={DELIVERY_HEADER: str(message.delivery_id)},
    )
    try:
        connection = get_connection(fail_silently=False, timeout=settings.EMAIL_TIMEOUT)
        sent = connection.send_messages([email])
    except smtplib.SMTPException as exc:
        raise _smtp_error(exc) from exc
    except OSError as exc:  # refused, reset, timed out, DNS
        raise DeliveryError(f"SMTP server unreachable: {type(exc).__name__}: {exc}") from exc
    if not sent:
        raise DeliveryError("the e-mail backend sent nothing")
