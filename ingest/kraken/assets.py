"""Kraken's names for assets: the WebSocket v2 code (``BTC``, ``DOGE``) from the REST altname (``XBT``, ``XDG``) or
the legacy REST id (``XXBT``, ``ZUSD``, ``XBT.M``). One implementation for every caller (instrument sync, balance
reconciliation)."""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["asset_v2_name", "rest_asset_to_v2"]

# Altnames whose v2 code differs (every other altname is its own v2 code).
_V2_CODES = {"XBT": "BTC", "XDG": "DOGE"}
# Legacy four-letter ids are an X (crypto) or Z (fiat) prefix on these altnames.
_PREFIXED = frozenset({"XBT", "XDG", "ETH", "USD", "EUR", "GBP", "LTC", "XRP"})


def asset_v2_name(name: str) -> str:
    """Kraken's v2 name of an asset from its altname: ``XBT`` → ``BTC``, ``XDG`` → ``DOGE``, others unchanged."""
    return _V2_CODES.get(name, name)


def rest_asset_to_v2(name: str, altnames: Mapping[str, str] | None = None) -> str:
    """REST asset id → v2 code: ``XXBT`` → ``BTC``, ``ZUSD`` → ``USD``, ``XETH`` → ``ETH``, ``XBT.M`` → ``BTC.M``;
    ``altnames`` (id → altname, from the public Assets call) wins over the X/Z-prefix rule."""
    base, dot, suffix = name.partition(".")
    known = (altnames or {}).get(name) or (altnames or {}).get(base)
    if known and dot and "." in known:
        return asset_v2_name(known)
    if known:
        base = known
    elif len(base) == 4 and base[0] in "XZ" and base[1:] in _PREFIXED:
        base = base[1:]
    return asset_v2_name(base) + (dot + suffix if dot else "")
