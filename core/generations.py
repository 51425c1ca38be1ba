"""Cache generation counters: one counter per cache key, bumped after a committed change (a model's stages and
aliases, the experiments' transitions); a process that caches what the change affects compares the counter with
the value it loaded under and reloads when it moved.

Reads on the decision path come in pairs (the experiment router's counter, then the serving model's): inside
`generations_snapshot()` the first read fetches every counter this process has read so far in one round trip
(`get_many`) and later reads in the scope use those values, so one decision costs one cache round trip and sees
one moment of every counter. Outside a scope, each read asks the cache.

A cache outage reads as 0 (logged): callers then fall back to their own time-to-live, and a bump that fails is
logged and counted by its caller, never raised into the transaction that already committed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.core.cache import cache

logger = logging.getLogger(__name__)

_watched: set[str] = set()  # every key read in this process: a snapshot fetches them all at once
_scope = threading.local()


@contextmanager
def generations_snapshot() -> Iterator[None]:
    """Within the block, each counter is read from the cache at most once, all of them in one round trip."""
    if getattr(_scope, "values", None) is not None:  # nested: the outer scope's snapshot holds
        yield
        return
    _scope.values = {}
    try:
        yield
    finally:
        _scope.values = None


def generation(key: str) -> int:
    """The counter of `key` (0 before its first bump, or while the cache is unreachable)."""
    _watched.add(key)
    values: dict[str, int] | None = getattr(_scope, "values", None)
    if values is None:
        return _read([key])[key]
    if key not in values:
        values.update(_read(sorted(_watched)))
    return values[key]


def generation_bump(key: str) -> int:
    """Move the counter of `key` on (after the change committed); raises what the cache raises."""
    cache.add(key, 0, timeout=None)
    return int(cache.incr(key))


def _read(keys: list[str]) -> dict[str, int]:
    try:
        found = cache.get_many(keys)
    except Exception:  # an outage must not stop decisions: callers fall back to their time-to-live
        logger.warning("cache generations unavailable", extra={"keys": keys}, exc_info=True)
        found = {}
    return {key: int(found.get(key) or 0) for key in keys}
