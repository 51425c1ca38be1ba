"""Wire formatting: fixed-precision numbers, Kraken's timestamps, JSON encoding.

Kraken's v2 WebSocket writes prices and quantities as JSON number tokens at the instrument's precision and
keeps trailing zeros (``"qty":0.00044780``). Python floats cannot do that, so numbers are written as text and
embedded with ``orjson.Fragment``. REST writes money as strings, also at a fixed precision.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import orjson

NS = 1_000_000_000


@functools.lru_cache(maxsize=1 << 16)
def fixed(value: Decimal, places: int) -> str:
    """``value`` rounded half-up to ``places`` decimals, in plain notation, never ``-0``. Equal Decimals give
    the same text whatever their exponent, so results are cached (prices and sizes repeat constantly)."""
    quantum = Decimal(1).scaleb(-places)
    q = value.quantize(quantum, rounding=ROUND_HALF_UP)
    if q.is_zero():
        q = q.copy_abs()
    return f"{q:.{places}f}"


def num(value: Decimal, places: int) -> orjson.Fragment:
    """A raw JSON number token at fixed precision (trailing zeros kept)."""
    return orjson.Fragment(fixed(value, places))


def num_text(text: str) -> orjson.Fragment:
    return orjson.Fragment(text)


def dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


def dumps_bytes(obj: Any) -> bytes:
    return orjson.dumps(obj)


def rfc3339(ts_ns: int, digits: int = 6) -> str:
    """``2023-09-24T14:10:23.799685Z`` (6 digits) or with nanoseconds (9 digits)."""
    seconds, frac_ns = divmod(ts_ns, NS)
    base = datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{frac_ns:09d}"[:digits]
    return f"{base}.{frac}Z"


def rfc3339_seconds(ts_ns: int) -> str:
    return datetime.fromtimestamp(ts_ns // NS, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc1123(ts_ns: int) -> str:
    """Kraken's Time endpoint format: ``Thu, 06 Jul 23 18:50:48 +0000``."""
    return datetime.fromtimestamp(ts_ns // NS, tz=UTC).strftime("%a, %d %b %y %H:%M:%S +0000")


def unix_token(ts_ns: int, places: int = 6) -> orjson.Fragment:
    """A Unix time in seconds as a JSON number with a fractional part (REST ``opentm``, ``time``)."""
    seconds, frac_ns = divmod(ts_ns, NS)
    return orjson.Fragment(f"{seconds}.{f'{frac_ns:09d}'[:places]}")


class Clock:
    """Wall clock in integer nanoseconds, which the market warm-up can move into the past."""

    def __init__(self, source: Callable[[], int] = time.time_ns) -> None:
        self._source = source
        self._override: int | None = None
        self._last = 0

    def now_ns(self) -> int:
        now = self._override if self._override is not None else self._source()
        # Strictly increasing, so that events ordered by time keep the order they happened in.
        if now <= self._last:
            now = self._last + 1
        self._last = now
        return now

    def set_override(self, ts_ns: int | None) -> None:
        """Pin the clock to ``ts_ns`` (which may be in the past); ``None`` returns to the wall clock."""
        self._override = ts_ns
        if ts_ns is not None:
            self._last = ts_ns - 1
