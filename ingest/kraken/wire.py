"""How values look on Kraken's wire, shared by the REST and WebSocket clients: RFC 3339 timestamps read into aware
UTC datetimes (or nanoseconds since the epoch, on the book's hot path), and JSON request bodies with exact
decimals. One implementation of each, so the two clients cannot drift apart."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

import orjson

from ingest.kraken.errors import MalformedMessage

__all__ = ["Rfc3339Nanos", "encode_json", "parse_rfc3339", "parse_rfc3339_optional"]

_NS = 1_000_000_000


# --- RFC 3339 --------------------------------------------------------------------------------------------------


def parse_rfc3339(value: Any, name: str = "timestamp") -> datetime:
    """An aware UTC datetime from an RFC 3339 string (``2023-09-21T15:49:29.123456789Z``; nanoseconds are
    truncated to microseconds). Anything else, or a time without a zone, is :class:`MalformedMessage`."""
    if type(value) is not str:
        raise MalformedMessage(f"{name}: expected an RFC3339 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise MalformedMessage(f"{name}: {value!r} is not an RFC3339 timestamp") from exc
    if parsed.tzinfo is None:
        raise MalformedMessage(f"{name}: {value!r} has no timezone")
    try:
        return parsed if parsed.tzinfo is UTC else parsed.astimezone(UTC)
    except OverflowError as exc:  # year 1 or 9999 with an offset: outside datetime's range once in UTC
        raise MalformedMessage(f"{name}: {value!r} is out of range in UTC") from exc


def parse_rfc3339_optional(value: Any, name: str = "timestamp") -> datetime | None:
    """:func:`parse_rfc3339`, except that Kraken's "no time" (absent, empty, ``"0"`` or ``0``) is None."""
    if value in (None, "", "0", 0):
        return None
    return parse_rfc3339(value, name)


class Rfc3339Nanos:
    """Nanoseconds since the epoch from ``YYYY-MM-DDTHH:MM:SS[.fffffffff]Z``, for the hot path: the seconds part is
    cached (consecutive messages share it). Raises ``ValueError`` or ``TypeError`` for what it cannot read."""

    __slots__ = ("_head", "_head_ns")

    def __init__(self) -> None:
        self._head = ""
        self._head_ns = 0

    def __call__(self, ts: Any) -> int:
        head = ts[:19]
        if head != self._head:
            self._head_ns = int(datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp()) * _NS
            self._head = head
        frac = ts[20:-1] if ts[19:20] == "." else ""
        return self._head_ns + (int(frac[:9].ljust(9, "0")) if frac else 0)


# --- JSON request bodies ---------------------------------------------------------------------------------------


def _check(value: Any) -> None:
    """Refuse what has no exact JSON form (orjson would write a float, or hide the reason in its own error)."""
    if isinstance(value, float):
        raise TypeError("floats are not accepted in request parameters; use Decimal or str")
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise TypeError("non-finite Decimal in a request")
    elif isinstance(value, Mapping):
        for item in value.values():
            _check(item)
    elif isinstance(value, list | tuple | set | frozenset):
        for item in value:
            _check(item)


def _as_number(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(format(value, "f"))
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__} in a request")


def _as_string(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, tuple | set | frozenset):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__} in a request")


def encode_json(message: Mapping[str, Any], *, decimals: Literal["number", "string"]) -> str:
    """Compact JSON for a request. Decimals are written in plain notation (never an exponent, never a float):
    as raw number tokens (the WebSocket API's numbers) or as strings (the REST API's). Floats and non-finite
    decimals are refused (``TypeError``), at any depth."""
    _check(message)
    default = _as_number if decimals == "number" else _as_string
    return orjson.dumps(message, default=default).decode()
