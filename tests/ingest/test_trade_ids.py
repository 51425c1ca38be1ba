"""`TradeIds` (a bar's duplicate detection) behaves exactly like a set of ints, in constant memory for
consecutive ids."""

from __future__ import annotations

import random

from ingest.bars import TradeIds


def test_it_answers_like_a_set_whatever_the_arrival_order() -> None:
    rng = random.Random(7)
    for trial in range(200):
        ids, reference = TradeIds(), set()
        for _ in range(rng.randint(0, 60)):
            trade_id = rng.randint(0, 40) if trial % 2 else rng.choice([len(reference), rng.randint(0, 80)])
            ids.add(trade_id)
            reference.add(trade_id)
            assert list(ids) == sorted(reference)
            assert len(ids) == len(reference)
        assert [n for n in range(-3, 90) if n in ids] == sorted(reference)
        assert "7" not in ids


def test_consecutive_ids_are_one_range() -> None:
    ids = TradeIds(range(1_000_000, 1_600_000))
    assert ids.ranges == 1
    assert len(ids) == 600_000
    ids.add(1_700_000)  # a gap (a trade of this bar not seen yet)
    ids.add(1_599_999)  # a duplicate
    assert ids.ranges == 2
    ids.add(1_650_000)
    assert ids.ranges == 3
    assert 1_650_000 in ids
    assert 1_650_001 not in ids
    assert 999_999 not in ids
