"""Which broker trades (TRADING_MODE: `live` → `KrakenBroker` on the process's exchange session, `paper` →
`PaperBroker` reading the exchange's public book through the process's shared public REST client)."""

from __future__ import annotations

import os
import threading
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ingest.kraken.rest import KrakenRestClientSync
from trading.brokers.base import Broker
from trading.brokers.kraken import KrakenBroker
from trading.brokers.paper import PaperBroker, RestDepthBooks
from trading.kraken_clients import kraken_rest_client
from trading.ws_session import session


def trading_mode() -> str:
    mode = str(settings.TRADING_MODE).lower()
    if mode not in ("paper", "live"):
        raise ImproperlyConfigured(f"TRADING_MODE must be 'paper' or 'live', not {mode!r}")
    return mode


def broker_for_mode() -> Broker:
    """TRADING_MODE=live → `KrakenBroker` on this process's exchange session (shared REST client, private socket
    unless GALFRIDAY_EXECUTION_WS is off); paper → `PaperBroker` filling against the exchange's public book read
    through this process's shared public REST client."""
    if trading_mode() == "live":
        current = session()
        return KrakenBroker(current.rest, session=current if current.config.ws_enabled else None, owns_client=False)

    class SharedDepthBooks(RestDepthBooks):
        def close(self) -> None:  # the process's shared client stays open for the next task
            pass

    return PaperBroker(SharedDepthBooks(_public_rest_client()))


_public_lock = threading.Lock()
_public_client: tuple[tuple[Any, ...], KrakenRestClientSync] | None = None


def _public_rest_client() -> KrakenRestClientSync:
    """One public (unsigned) REST client per process for the paper broker's book reads; rebuilt when the
    settings change, after a fork (`KrakenRestClientSync.usable` is False in a child) or once closed."""
    global _public_client
    key = (
        str(settings.KRAKEN_REST_URL),
        float(settings.KRAKEN_TIMEOUT),
        str(settings.GALFRIDAY_KRAKEN_TIER),
    )
    with _public_lock:
        current = _public_client
        if current is not None and current[0] == key and current[1].usable:
            return current[1]
        if current is not None:
            current[1].close()  # a no-op for a client inherited through fork
        client = kraken_rest_client(private=False)
        _public_client = (key, client)
        return client


def _public_after_fork() -> None:
    global _public_lock, _public_client
    _public_lock = threading.Lock()
    _public_client = None


os.register_at_fork(after_in_child=_public_after_fork)
