"""Labels: sign of the forward return with a round-trip-fee dead zone; the unlabelled tail stays NaN."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from models_registry.labels import forward_return, make_labels, round_trip_dead_zone


def _close(values: list[float]) -> pd.Series:
    return pd.Series(values, index=pd.date_range("2024-01-01", periods=len(values), freq="min", tz="UTC"))


def test_labels_use_a_dead_zone_of_two_taker_fees_by_default() -> None:
    assert round_trip_dead_zone() == pytest.approx(0.008)
    labels = make_labels(_close([100, 101, 100.5, 99, 99.9, 100]), horizon=1)
    # returns: +1.0%, -0.495%, -1.493%, +0.909%, +0.100%, (none)
    np.testing.assert_allclose(
        labels["forward_return"].to_numpy()[:5], [0.01, 100.5 / 101 - 1, 99 / 100.5 - 1, 99.9 / 99 - 1, 100 / 99.9 - 1]
    )
    assert labels["label"].to_numpy()[:5].tolist() == [1.0, 0.0, -1.0, 1.0, 0.0]
    assert math.isnan(labels["label"].iloc[-1])


def test_a_move_of_exactly_the_dead_zone_is_labelled_zero() -> None:
    labels = make_labels(_close([100, 125, 100, 75]), horizon=1, dead_zone=0.25)
    # +25% (exactly the zone) -> 0, -20% -> 0, -25% (exactly) -> 0
    assert labels["label"].to_numpy()[:3].tolist() == [0.0, 0.0, 0.0]
    assert make_labels(_close([100, 125.01]), horizon=1, dead_zone=0.25)["label"].iloc[0] == 1.0


def test_the_last_horizon_rows_are_nan_and_never_filled() -> None:
    close = _close(list(np.linspace(100, 120, 12)))
    labels = make_labels(close, horizon=3)
    assert labels["label"].iloc[-3:].isna().all()
    assert labels["forward_return"].iloc[-3:].isna().all()
    assert labels["label"].iloc[:-3].notna().all()
    assert labels.iloc[-4]["forward_return"] == pytest.approx(close.iloc[-1] / close.iloc[-4] - 1)


def test_fee_is_configurable_and_moves_the_dead_zone() -> None:
    close = _close([100, 100.5, 100.5])
    assert make_labels(close, horizon=1)["label"].iloc[0] == 0.0  # +0.5% < 0.8%
    assert make_labels(close, horizon=1, taker_fee=0.001)["label"].iloc[0] == 1.0  # +0.5% > 0.2%


def test_log_forward_return_option() -> None:
    fwd = forward_return(_close([100, 110, 121]), 2, kind="log")
    assert fwd.iloc[0] == pytest.approx(math.log(1.21))
    assert fwd.iloc[1:].isna().all()


def test_horizon_longer_than_history_labels_nothing() -> None:
    assert make_labels(_close([100, 101]), horizon=5)["label"].isna().all()


@pytest.mark.parametrize("horizon", [0, -1, 1.5, True])
def test_invalid_horizon_is_rejected(horizon: object) -> None:
    with pytest.raises(ValueError, match="horizon"):
        forward_return(_close([100, 101]), horizon)  # type: ignore[arg-type]


def test_non_positive_close_is_rejected() -> None:
    with pytest.raises(ValueError, match="close must be finite"):
        make_labels(_close([100, 0, 101]), horizon=1)
