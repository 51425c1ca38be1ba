"""core.generations: the cache generation counters every cache of a model or an experiment reloads by, against the
real cache (Redis when REDIS_URL is set, as in CI)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.cache import cache

from core import generations
from core.generations import generation, generation_bump, generations_snapshot


@pytest.fixture
def keys() -> Iterator[list[str]]:
    made = [f"test:generations:{uuid.uuid4().hex}:{i}" for i in range(3)]
    yield made
    cache.delete_many(made)


@pytest.fixture
def round_trips(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every `get_many` the module sends to the cache (passed through to the real one)."""
    calls: list[list[str]] = []
    real = cache.get_many

    def counting(keys: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(list(keys))
        return real(keys, *args, **kwargs)

    monkeypatch.setattr(generations.cache, "get_many", counting)
    return calls


def test_a_counter_starts_at_zero_and_moves_with_each_bump(keys: list[str]) -> None:
    assert generation(keys[0]) == 0
    assert generation_bump(keys[0]) == 1
    assert generation_bump(keys[0]) == 2
    assert generation(keys[0]) == 2
    assert generation(keys[1]) == 0


def test_outside_a_snapshot_each_read_asks_the_cache(keys: list[str], round_trips: list[list[str]]) -> None:
    generation(keys[0])
    generation_bump(keys[0])
    assert generation(keys[0]) == 1
    assert round_trips == [[keys[0]], [keys[0]]]


def test_a_snapshot_reads_every_watched_counter_in_one_round_trip(
    keys: list[str], round_trips: list[list[str]]
) -> None:
    generation(keys[0])
    generation(keys[1])  # both now watched by this process
    generation_bump(keys[0])
    generation_bump(keys[1])
    round_trips.clear()
    with generations_snapshot():
        assert generation(keys[0]) == 1
        assert generation(keys[1]) == 1
        assert generation(keys[0]) == 1
    assert len(round_trips) == 1
    assert {keys[0], keys[1]} <= set(round_trips[0])


def test_a_snapshot_is_one_moment_a_later_bump_shows_after_it(keys: list[str]) -> None:
    with generations_snapshot():
        assert generation(keys[2]) == 0
        generation_bump(keys[2])  # another process's committed change, meanwhile
        assert generation(keys[2]) == 0
        with generations_snapshot():  # nested: still the outer moment
            assert generation(keys[2]) == 0
    assert generation(keys[2]) == 1
    with generations_snapshot():
        assert generation(keys[2]) == 1


def test_a_cache_outage_reads_as_zero_and_does_not_raise(keys: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    generation_bump(keys[0])

    def down(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("cache unreachable")

    monkeypatch.setattr(generations.cache, "get_many", down)
    assert generation(keys[0]) == 0
    with generations_snapshot():
        assert generation(keys[0]) == 0
