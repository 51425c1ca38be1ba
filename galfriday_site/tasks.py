from __future__ import annotations

import socket
from typing import Any

from celery import shared_task


@shared_task(name="galfriday_site.ping", acks_late=True, expires=60)
def ping(token: str) -> dict[str, Any]:
    """Answers with the token and the worker's host: proves a worker consumes from the broker."""
    return {"token": token, "host": socket.gethostname()}
