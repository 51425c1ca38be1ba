"""The Kraken REST clients of the Django side, built in one place from the KRAKEN_* settings.

An authenticated client carries the API key and secret with the nonce source every process of this machine shares
(`KRAKEN_NONCE_FILE`), so the execution session, the tasks and reconciliation can use one key without racing each
other's nonces; every client counts its calls with the configured tier's counter model.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ingest.kraken.auth import FileLockNonce
from ingest.kraken.ratelimit import Tier
from ingest.kraken.rest import KrakenRestClientSync


def kraken_nonce_source() -> FileLockNonce:
    """The nonce of the configured API key, shared by every process of this machine."""
    return FileLockNonce(str(settings.KRAKEN_NONCE_FILE))


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
