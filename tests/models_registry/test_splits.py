"""Purged walk-forward CV: folds in time order, purge of overlapping labels, embargo after test folds."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from models_registry.evaluation.splits import PurgedWalkForwardCV, TrainWindow


def test_purge_and_embargo_remove_exactly_the_overlapping_indices_hand_checked() -> None:
    # 20 samples, 3 test folds of 4: [8..11], [12..15], [16..19]; labels span 2 bars; embargo 1 bar.
    cv = PurgedWalkForwardCV(3, label_horizon=2, embargo=1, test_size=4)
    folds = cv.folds(20)
    assert [f.test.tolist() for f in folds] == [[8, 9, 10, 11], [12, 13, 14, 15], [16, 17, 18, 19]]
    # fold 0: labels of 6 (bars 6..8) and 7 (7..9) reach the test fold -> purged
    assert folds[0].purged.tolist() == [6, 7]
    assert folds[0].embargoed.tolist() == []
    assert folds[0].train.tolist() == [0, 1, 2, 3, 4, 5]
    # fold 1: purge 10, 11; the bar after fold 0's test (12) is in this test fold, nothing to embargo
    assert folds[1].purged.tolist() == [10, 11]
    assert folds[1].embargoed.tolist() == []
    assert folds[1].train.tolist() == list(range(10))
    # fold 2: purge 14, 15; embargo 12 (the bar after fold 0's test fold); 16 (after fold 1) is under test
    assert folds[2].purged.tolist() == [14, 15]
    assert folds[2].embargoed.tolist() == [12]
    assert folds[2].train.tolist() == [*range(12), 13]


def test_rolling_window_keeps_the_last_max_train_size_candidates_before_purging() -> None:
    cv = PurgedWalkForwardCV(2, label_horizon=2, test_size=4, train_window="rolling", max_train_size=6)
    folds = cv.folds(16)  # tests [8..11], [12..15]
    assert folds[0].train.tolist() == [2, 3, 4, 5]
    assert folds[1].train.tolist() == [6, 7, 8, 9]


def test_zero_horizon_and_embargo_reduce_to_plain_walk_forward() -> None:
    folds = PurgedWalkForwardCV(2, label_horizon=0, test_size=3).folds(9)
    assert folds[0].train.tolist() == [0, 1, 2]
    assert folds[1].train.tolist() == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize(
    ("horizon", "embargo", "window"), [(1, 0, "expanding"), (7, 3, "expanding"), (15, 5, "rolling")]
)
def test_no_training_label_overlaps_its_test_fold(horizon: int, embargo: int, window: TrainWindow) -> None:
    cv = PurgedWalkForwardCV(
        4,
        label_horizon=horizon,
        embargo=embargo,
        train_window=window,
        max_train_size=120,
    )
    previous_end = -1
    for fold in cv.folds(500):
        assert fold.test[0] > previous_end  # test folds in time order, no overlap
        previous_end = fold.test[-1]
        assert np.all(fold.train + horizon < fold.test[0])
        assert not np.intersect1d(fold.train, fold.test).size
        assert np.all(np.diff(fold.test) == 1)


@pytest.mark.parametrize(
    ("kwargs", "n", "message"),
    [
        ({"n_splits": 0, "label_horizon": 1}, 100, "n_splits"),
        ({"n_splits": 3, "label_horizon": -1}, 100, "label_horizon"),
        ({"n_splits": 3, "label_horizon": 1, "embargo": -2}, 100, "embargo"),
        ({"n_splits": 3, "label_horizon": 1, "train_window": "sliding"}, 100, "train_window"),
        ({"n_splits": 3, "label_horizon": 1, "train_window": "rolling"}, 100, "max_train_size"),
        ({"n_splits": 5, "label_horizon": 1}, 4, "too few"),
        ({"n_splits": 3, "label_horizon": 1, "test_size": 40}, 100, "none left to train"),
        ({"n_splits": 2, "label_horizon": 30, "test_size": 30}, 80, "fold 0 .* 0 training samples"),
    ],
)
def test_invalid_configuration_raises_a_clear_error(kwargs: dict[str, object], n: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PurgedWalkForwardCV(**kwargs).folds(n)  # type: ignore[arg-type]


def test_splitter_works_as_scikit_learn_cv() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 3))
    y = (X[:, 0] + 0.1 * rng.normal(size=300) > 0).astype(int)
    cv = PurgedWalkForwardCV(3, label_horizon=5, embargo=2)
    assert cv.get_n_splits() == 3
    scores = cross_val_score(LogisticRegression(), X, y, cv=cv)
    assert len(scores) == 3
    assert scores.min() > 0.8
