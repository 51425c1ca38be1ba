"""The time-series store interface: write a batch, query a range, read the latest point, ping.

Market series (bars, trades, book tops) go through this interface so that the InfluxDB adapter (production)
and the relational adapter (embedded default) are interchangeable. A point is identified by its measurement,
its tags and its time: writing the same identity again replaces its fields (InfluxDB's semantics), which makes
replays and backfills idempotent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Protocol

FieldValue = Decimal | int | bool | str
# InfluxDB keeps decimal fields as float64: exact for decimals of at most 15 significant digits, so the store
# refuses anything longer rather than silently rounding money.
MAX_DECIMAL_DIGITS = 15
# Names are restricted to identifiers so that both adapters can filter on them without quoting surprises.
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
ACCEPTED_NAMES: set[str] = set()  # names that passed name_allowed (bounded)


def name_allowed(name: object) -> bool:
    """Whether `name` may be a measurement, tag or field name (NAME_RE without a double underscore, which the
    relational adapter's JSON lookups would read as a path). Accepted names are remembered in ACCEPTED_NAMES."""
    if name in ACCEPTED_NAMES:
        return True
    if not isinstance(name, str) or not NAME_RE.match(name) or "__" in name:
        return False
    if len(ACCEPTED_NAMES) < 10_000:
        ACCEPTED_NAMES.add(name)
    return True


class TimeSeriesError(Exception):
    """The store could not be reached or refused the request. `retryable` is False when the store rejected
    the data itself (sending it again cannot help)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class InvalidPoint(ValueError):
    """A point that cannot be stored as given (names, tag values, field types, naive time, precision)."""


@dataclass(frozen=True)
class Point:
    measurement: str
    time: datetime
    fields: Mapping[str, FieldValue]
    tags: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Hot path (every trade is a point): names already accepted once are not matched again.
        for kind, names in (("measurement", [self.measurement]), ("tag", self.tags), ("field", self.fields)):
            for name in names:
                if name not in ACCEPTED_NAMES and not name_allowed(name):
                    raise InvalidPoint(
                        f"{kind} name {name!r} is not allowed: use letters, digits and single underscores"
                    )
        if self.time.tzinfo is None or self.time.utcoffset() is None:
            raise InvalidPoint(f"point time must be timezone-aware UTC, got naive {self.time!r}")
        if not self.fields:
            raise InvalidPoint(f"point {self.measurement!r} at {self.time.isoformat()} has no fields")
        for key, tag in self.tags.items():
            if not isinstance(tag, str) or tag == "" or "\n" in tag:
                raise InvalidPoint(f"tag {key!r} must be a non-empty one-line string, got {tag!r}")
        for key, value in self.fields.items():
            if isinstance(value, float):
                raise InvalidPoint(f"field {key!r} is a float; pass a Decimal so nothing is rounded silently")
            if isinstance(value, Decimal):
                if not value.is_finite():
                    raise InvalidPoint(f"field {key!r} is not finite: {value}")
                if (
                    len(value.as_tuple().digits) > MAX_DECIMAL_DIGITS  # cheap: normalizing only removes digits
                    and len(value.normalize().as_tuple().digits) > MAX_DECIMAL_DIGITS
                ):
                    raise InvalidPoint(
                        f"field {key!r}={value} has more than {MAX_DECIMAL_DIGITS} significant digits; "
                        "quantize it first"
                    )
            elif not isinstance(value, int | str):
                raise InvalidPoint(f"field {key!r} has unsupported type {type(value).__name__}")

    @classmethod
    def stored(
        cls, measurement: str, time: datetime, fields: Mapping[str, FieldValue], tags: Mapping[str, str]
    ) -> Point:
        """A point read back from a store: it was validated when written, so reading skips `__post_init__`'s
        checks (they cost more than the query itself on a few hundred bars read on the decision path)."""
        point = object.__new__(cls)
        object.__setattr__(point, "measurement", measurement)
        object.__setattr__(point, "time", time)
        object.__setattr__(point, "fields", fields)
        object.__setattr__(point, "tags", tags)
        return point

    @property
    def series_key(self) -> str:
        """Canonical text of measurement and sorted tags: the series identity."""
        return self.measurement + "".join(f",{k}={v}" for k, v in sorted(self.tags.items()))


class TimeSeriesStore(Protocol):
    backend: str

    def write_batch(self, points: Sequence[Point]) -> int:
        """Store the points (all or nothing per call where the backend allows); returns how many."""
        ...

    def query_range(
        self, measurement: str, start: datetime, end: datetime, tags: Mapping[str, str] | None = None
    ) -> list[Point]:
        """Points with start <= time < end, matching every given tag, oldest first."""
        ...

    def latest(self, measurement: str, tags: Mapping[str, str] | None = None) -> Point | None:
        """The newest point of the measurement matching the tags, or None."""
        ...

    def ping(self) -> None:
        """Raise TimeSeriesError unless the store answers."""
        ...


def query_fields(
    store: TimeSeriesStore,
    measurement: str,
    start: datetime,
    end: datetime,
    tags: Mapping[str, str] | None,
    fields: Sequence[str],
    *,
    require: str | None = None,
    last: int | None = None,
) -> list[Point]:
    """`query_range` narrowed to what a reader needs: each point carries only those of `fields` it has; with
    `require`, only points that have that field; with `last`, only the newest `last` of them (still oldest
    first). A store with a `query_fields` method of its own answers it (the relational store reads just those
    values, without decoding every field of every row); any other store is read with `query_range` and
    narrowed here, with the same result."""
    own = getattr(store, "query_fields", None)
    if own is not None:
        points: list[Point] = own(measurement, start, end, tags, fields, require=require, last=last)
        return points
    wanted = tuple(fields)
    narrowed = [
        Point.stored(p.measurement, p.time, {k: p.fields[k] for k in wanted if k in p.fields}, p.tags)
        for p in store.query_range(measurement, start, end, tags)
        if require is None or require in p.fields
    ]
    return narrowed[-last:] if last is not None else narrowed
