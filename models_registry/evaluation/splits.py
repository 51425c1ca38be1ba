"""Purged walk-forward cross-validation with an embargo (after López de Prado, *Advances in Financial Machine
Learning*, ch. 7), over samples in time order, one sample per bar.

Layout: the last ``n_splits * test_size`` samples form ``n_splits`` consecutive test folds, in time order;
``test_size`` defaults to ``n_samples // (n_splits + 1)``. Each fold trains on samples before its test fold:
all of them (``train_window="expanding"``) or the last ``max_train_size`` (``"rolling"``), then removes

* purge: sample i's label uses bars i..i+h (``label_horizon`` = h), so a training sample whose label span
  reaches the test fold's first bar a (``i + h >= a``, i.e. the h samples before a) is removed;
* embargo: the ``embargo`` samples right after every earlier test fold [a', b') (``b' <= i < b' + embargo``)
  are removed from later folds' training sets (López de Prado's embargo: training data that follows a test
  set is serially correlated with it). In walk-forward every training sample precedes its own test fold, so
  the embargo only acts on earlier test periods reused for training; leakage into the fold under test is
  prevented by the purge. For a wider safety gap before each test fold, raise ``label_horizon``.

Indices are positions (0..n-1), and samples are assumed to be consecutive bars (drop the warm-up head and the
unlabelled tail first; a gap in the middle would make ``label_horizon`` count samples, not bars).
The class follows scikit-learn's splitter protocol (``split``, ``get_n_splits``), so it can be passed as
``cv=`` to scikit-learn's model-selection helpers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

TrainWindow = Literal["expanding", "rolling"]


@dataclass(frozen=True)
class Fold:
    """One split, with what was removed from the training candidates and why."""

    train: np.ndarray
    test: np.ndarray
    purged: np.ndarray
    embargoed: np.ndarray


def _non_negative_int(name: str, value: Any, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


class PurgedWalkForwardCV:
    """Walk-forward splits in time order with purging of overlapping labels and an embargo after each fold."""

    def __init__(
        self,
        n_splits: int = 5,
        *,
        label_horizon: int,
        embargo: int = 0,
        test_size: int | None = None,
        train_window: TrainWindow = "expanding",
        max_train_size: int | None = None,
        min_train_size: int = 1,
    ) -> None:
        self.n_splits = _non_negative_int("n_splits", n_splits, 1)
        self.label_horizon = _non_negative_int("label_horizon", label_horizon)
        self.embargo = _non_negative_int("embargo", embargo)
        self.test_size = None if test_size is None else _non_negative_int("test_size", test_size, 1)
        if train_window not in ("expanding", "rolling"):
            raise ValueError(f"train_window must be 'expanding' or 'rolling', got {train_window!r}")
        self.train_window: TrainWindow = train_window
        if train_window == "rolling" and max_train_size is None:
            raise ValueError("a rolling train window needs max_train_size")
        self.max_train_size = None if max_train_size is None else _non_negative_int("max_train_size", max_train_size, 1)
        self.min_train_size = _non_negative_int("min_train_size", min_train_size, 1)

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return self.n_splits

    def folds(self, n_samples: int) -> list[Fold]:
        """All folds for `n_samples` consecutive samples, validated up front (clear error, no partial output)."""
        n = _non_negative_int("n_samples", n_samples, 1)
        test_size = self.test_size if self.test_size is not None else n // (self.n_splits + 1)
        if test_size < 1:
            raise ValueError(f"{n} samples are too few for {self.n_splits} test folds")
        first_test = n - self.n_splits * test_size
        if first_test < 1:
            raise ValueError(
                f"{self.n_splits} test folds of {test_size} samples need more than {n} samples (none left to train on)"
            )
        folds = []
        earlier_tests: list[tuple[int, int]] = []
        for k in range(self.n_splits):
            a = first_test + k * test_size
            b = a + test_size
            start = 0
            if self.train_window == "rolling" and self.max_train_size is not None:
                start = max(0, a - self.max_train_size)
            candidates = np.arange(start, a)
            purged_mask = candidates + self.label_horizon >= a
            embargo_mask = np.zeros(candidates.shape, dtype=bool)
            for _, b_prev in earlier_tests:
                embargo_mask |= (candidates >= b_prev) & (candidates < b_prev + self.embargo)
            embargo_mask &= ~purged_mask
            train = candidates[~(purged_mask | embargo_mask)]
            if len(train) < self.min_train_size:
                raise ValueError(
                    f"fold {k} (test samples {a}..{b - 1}) has {len(train)} training samples after purging "
                    f"{int(purged_mask.sum())} and embargoing {int(embargo_mask.sum())}; "
                    f"at least {self.min_train_size} needed: use fewer folds, a shorter horizon or more data"
                )
            folds.append(Fold(train, np.arange(a, b), candidates[purged_mask], candidates[embargo_mask]))
            earlier_tests.append((a, b))
        return folds

    def split(
        self,
        X: Any,
        y: Any = None,
        groups: Any = None,
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (train indices, test indices) per fold, test folds in time order. `X` may be an int (length)."""
        n = X if isinstance(X, int | np.integer) and not isinstance(X, bool) else len(X)
        for fold in self.folds(int(n)):
            yield fold.train, fold.test
