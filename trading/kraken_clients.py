"""The Kraken REST clients of the Django side, built in one place from the KRAKEN_* settings.

An authenticated client carries the API key and secret with the one nonce source of that key
(`kraken_nonce_source`: Redis across machines, or a file on one machine, per KRAKEN_NONCE_SOURCE), so the execution
session, the tasks, reconciliation and the ingest worker, on any machine, use one key without racing each other's
nonces; every client counts its calls with the configured tier's counter model.
"""

from __future__ import annotations

import functools
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ingest.kraken.auth import FileLockNonce, NonceSource, RedisNonce
from ingest.kraken.ratelimit import Tier
from ingest.kraken.rest import KrakenRestClientSync


def kraken_nonce_source(api_key: str | None = None) -> NonceSource:
    """The nonce source of `api_key` (default KRAKEN_API_KEY) that every authenticated client of every process
    draws from. KRAKEN_NONCE_SOURCE "redis": a counter in REDIS_URL's Redis, strictly increasing across processes
    and machines (a draw while Redis is down raises `ingest.kraken.auth.NonceUnavailable`: the call is not sent);
    "file": KRAKEN_NONCE_FILE under a file lock, across the processes of this machine only."""
    kind = str(settings.KRAKEN_NONCE_SOURCE)
    if kind == "redis":
        url = str(settings.REDIS_URL or "")
        if not url:
            raise ImproperlyConfigured("KRAKEN_NONCE_SOURCE=redis needs REDIS_URL")
        return _redis_nonce_source(url, str(settings.KRAKEN_API_KEY or "") if api_key is None else api_key)
    if kind == "file":
        return FileLockNonce(str(settings.KRAKEN_NONCE_FILE))
    raise ImproperlyConfigured(f"KRAKEN_NONCE_SOURCE must be 'redis' or 'file', not {kind!r}")


@functools.lru_cache(maxsize=8)
def _redis_nonce_source(url: str, api_key: str) -> RedisNonce:
    """One `RedisNonce` (and its connection pool, thread-safe and reopened after fork) per Redis and key."""
    return RedisNonce.from_url(url, api_key)


def kraken_credentials() -> tuple[str, str]:
    """The configured API key and secret; refused when either is missing."""
    key, secret = str(settings.KRAKEN_API_KEY or ""), str(settings.KRAKEN_API_SECRET or "")
    if not key or not secret:
        raise ImproperlyConfigured("TRADING_MODE=live needs KRAKEN_API_KEY and KRAKEN_API_SECRET")
    return key, secret


def kraken_credentials_configured() -> bool:
    return bool(settings.KRAKEN_API_KEY and settings.KRAKEN_API_SECRET)


def kraken_rest_client(
    *, private: bool = True, tier: str | None = None, timeout: float | None = None, **options: Any
) -> KrakenRestClientSync:
    """A REST client for the configured exchange: authenticated (`private`: key, secret, the shared nonce) or
    public; `tier` (default GALFRIDAY_KRAKEN_TIER) names the counter model, `timeout` defaults to KRAKEN_TIMEOUT;
    `options` go to the client as they are (e.g. `history_cost`)."""
    kwargs: dict[str, Any] = {
        "base_url": str(settings.KRAKEN_REST_URL),
        "timeout": float(settings.KRAKEN_TIMEOUT if timeout is None else timeout),
        "tier": Tier[str(tier or settings.GALFRIDAY_KRAKEN_TIER).upper()],
        **options,
    }
    if private:
        key, secret = kraken_credentials()
        kwargs.update(api_key=key, api_secret=secret, nonce_source=kraken_nonce_source())
    return KrakenRestClientSync(**kwargs)
