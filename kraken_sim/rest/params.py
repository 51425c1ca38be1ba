"""REST request parameters: Kraken's form or JSON values read as text, flags, numbers, lists and pair names."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from kraken_sim import errors as E
from kraken_sim.errors import KrakenError
from kraken_sim.instruments import Instrument, InstrumentRegistry

Params = dict[str, Any]


def text(params: Params, name: str) -> str | None:
    value = params.get(name)
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def flag(params: Params, name: str) -> bool:
    value = params.get(name)
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    if word in ("true", "1"):
        return True
    if word in ("false", "0", ""):
        return False
    raise KrakenError(E.INVALID_ARGUMENTS)


def decimal(params: Params, name: str) -> Decimal | None:
    value = params.get(name)
    if value is None or isinstance(value, bool):
        return None
    try:
        result = Decimal(str(value).strip())
    except InvalidOperation as exc:
        raise KrakenError(E.INVALID_ARGUMENTS) from exc
    if not result.is_finite():
        raise KrakenError(E.INVALID_ARGUMENTS)
    return result


def integer(params: Params, name: str, default: int | None = None) -> int | None:
    value = params.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        raise KrakenError(E.INVALID_ARGUMENTS)
    try:
        return int(str(value).strip())
    except ValueError as exc:
        raise KrakenError(E.INVALID_ARGUMENTS) from exc


def time_bound(params: Params, name: str) -> Decimal | None:
    """``start``/``end``/``since`` as Unix seconds (a txid bound is not supported)."""
    return decimal(params, name)


def listed(params: Params, name: str) -> list[str]:
    value = params.get(name)
    if value is None:
        return []
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value).split(",") if v.strip()]


def named_pair(registry: InstrumentRegistry, name: str) -> tuple[str, Instrument]:
    """A requested pair name → (the key its answer goes under, the instrument). Kraken keys the answer by the
    name asked for when it is a slash name (``XBT/USD``, ``BTC/USD``), else by the REST key (``XXBTZUSD`` for
    ``XBTUSD``); PROTOCOL.md §1.3 and §6.8."""
    inst = registry.by_rest_name(name)
    if inst is None:
        raise KrakenError(E.UNKNOWN_PAIR)
    return (name.strip() if "/" in name else inst.rest_key), inst


def one_pair(registry: InstrumentRegistry, params: Params) -> tuple[str, Instrument]:
    """The one ``pair`` of a call: (answer key, instrument)."""
    name = text(params, "pair")
    if not name:
        raise KrakenError(E.INVALID_ARGUMENTS)
    return named_pair(registry, name)


def pairs(registry: InstrumentRegistry, params: Params) -> list[tuple[str, Instrument]]:
    """The ``pair`` list (every listed pair when absent), each with the key of its answer."""
    names = listed(params, "pair")
    if not names:
        return [(i.rest_key, i) for i in registry]
    return [named_pair(registry, name) for name in names]
