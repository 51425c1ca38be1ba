from __future__ import annotations

import socket
from typing import Any

from celery import shared_task

from galfriday_site import heartbeat


@shared_task(name="galfriday_site.ping", acks_late=True, expires=60)
def ping(token: str) -> dict[str, Any]:
    """Answers with the token and the worker's host: proves a worker consumes from the broker."""
    return {"token": token, "host": socket.gethostname()}


@shared_task(name="galfriday_site.heartbeat_ping", acks_late=True, expires=60, ignore_result=True)
def heartbeat_ping() -> str:
    """Beat's heartbeat to GALFRIDAY_HEARTBEAT_URL while the system is healthy (galfriday_site.heartbeat)."""
    return heartbeat.heartbeat_ping()
