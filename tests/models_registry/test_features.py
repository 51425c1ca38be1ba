"""Feature set: no look-ahead, one implementation for batch and live rows, warm-up, book policy, reference values."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from models_registry.features import (
    FEATURE_DTYPES,
    FEATURE_NAMES,
    FEATURE_SET_NAME,
    FEATURE_SET_VERSION,
    WARMUP_BARS,
    FeatureInputError,
    IncrementalFeatures,
    compute_features,
    drop_warmup,
    feature_signature,
)
from tests.models_registry.synthetic import make_bars

FeatureFn = Callable[[pd.DataFrame], pd.DataFrame]


def assert_no_look_ahead(feature_fn: FeatureFn, bars: pd.DataFrame, cut_points: list[int]) -> None:
    """Features at t computed on bars[: t + 1] must equal the full-history features at t."""
    full = feature_fn(bars)
    for t in cut_points:
        partial = feature_fn(bars.iloc[: t + 1])
        np.testing.assert_allclose(
            partial.iloc[-1].to_numpy(),
            full.iloc[t].to_numpy(),
            rtol=1e-12,
            atol=0,
            equal_nan=True,
            err_msg=f"features at row {t} change when later bars are added",
        )


CUT_POINTS = [0, 1, 59, 60, 61, WARMUP_BARS - 1, WARMUP_BARS, WARMUP_BARS + 1, *range(300, 1500, 61), 1499]


def test_signature_lists_every_column_once_as_float64() -> None:
    assert FEATURE_SET_NAME
    assert FEATURE_SET_VERSION >= 1
    assert len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    assert [s["name"] for s in feature_signature()] == list(FEATURE_NAMES)
    assert set(FEATURE_DTYPES.values()) == {"float64"}
    features = compute_features(make_bars(300))
    assert list(features.columns) == list(FEATURE_NAMES)
    assert (features.dtypes == np.float64).all()


def test_features_at_t_are_identical_on_data_ending_at_t_and_on_full_history() -> None:
    assert_no_look_ahead(compute_features, make_bars(1500, seed=11), CUT_POINTS)


def test_no_look_ahead_check_fails_on_a_feature_that_peeks_at_the_next_bar() -> None:
    def leaky(bars: pd.DataFrame) -> pd.DataFrame:
        features = compute_features(bars)
        close = bars["close"].astype(float)
        features["next_return"] = np.log(close.shift(-1) / close)  # uses bar t+1: look-ahead
        return features

    with pytest.raises(AssertionError, match="change when later bars are added"):
        assert_no_look_ahead(leaky, make_bars(1500, seed=11), CUT_POINTS)


def test_no_look_ahead_check_fails_on_a_centred_rolling_window() -> None:
    def leaky(bars: pd.DataFrame) -> pd.DataFrame:
        features = compute_features(bars)
        features["centred_mean"] = bars["close"].astype(float).rolling(5, center=True).mean()
        return features

    with pytest.raises(AssertionError):
        assert_no_look_ahead(leaky, make_bars(1500, seed=11), CUT_POINTS)


def _incremental_rows(bars: pd.DataFrame, inc: IncrementalFeatures | None = None) -> np.ndarray:
    inc = inc or IncrementalFeatures()
    return np.array([inc.update(ts, row).values for ts, row in zip(bars.index, bars.to_dict("records"), strict=True)])


def test_incremental_rows_equal_batch_rows_over_thousands_of_bars() -> None:
    bars = make_bars(4000, seed=3)
    batch = compute_features(bars).to_numpy()
    rows = _incremental_rows(bars)
    np.testing.assert_allclose(rows, batch, rtol=1e-10, atol=1e-14, equal_nan=True)
    assert np.isfinite(rows[WARMUP_BARS:]).all()


def test_incremental_equals_batch_with_decimal_input_and_no_book_columns() -> None:
    bars = make_bars(800, seed=5, book=False, as_decimal=True)
    assert isinstance(bars["close"].iloc[0], Decimal)
    batch = compute_features(bars)
    np.testing.assert_allclose(_incremental_rows(bars), batch.to_numpy(), rtol=1e-10, atol=1e-14, equal_nan=True)
    warm = drop_warmup(batch)
    assert (warm["book_missing"] == 1.0).all()
    assert (warm["spread_rel"] == 0.0).all()
    assert (warm["book_imbalance"] == 0.0).all()


def test_incremental_primed_from_history_continues_like_batch() -> None:
    bars = make_bars(2000, seed=9)
    batch = compute_features(bars).to_numpy()
    inc = IncrementalFeatures.from_history(bars.iloc[:1500])
    assert inc.bars_seen == 1500
    assert inc.is_warm
    np.testing.assert_allclose(_incremental_rows(bars.iloc[1500:], inc), batch[1500:], rtol=1e-10, atol=1e-14)


def test_incremental_state_stays_bounded() -> None:
    bars = make_bars(3000, seed=2)
    inc = IncrementalFeatures.from_history(bars.iloc[:100])
    sizes_before = [inc._state.log_close_tail.size, inc._state.ret_tail.size, inc._state.volume_tail.size]
    _incremental_rows(bars.iloc[100:], inc)
    assert [inc._state.log_close_tail.size, inc._state.ret_tail.size, inc._state.volume_tail.size] == sizes_before


def test_warmup_rows_are_nan_and_drop_warmup_removes_exactly_them() -> None:
    features = compute_features(make_bars(1000))
    assert features.iloc[:WARMUP_BARS].isna().all().all()
    assert features.iloc[WARMUP_BARS:].notna().all().all()
    kept = drop_warmup(features)
    assert kept.index.equals(features.index[WARMUP_BARS:])


def test_history_started_later_matches_full_history_after_warmup() -> None:
    bars = make_bars(3000, seed=4)
    full = compute_features(bars)
    start = 1000
    late = compute_features(bars.iloc[start:])
    np.testing.assert_allclose(
        late.iloc[WARMUP_BARS:].to_numpy(), full.iloc[start + WARMUP_BARS :].to_numpy(), rtol=1e-6, atol=1e-9
    )


def test_features_match_an_independent_pandas_reference() -> None:
    bars = make_bars(1200, seed=8)
    features = drop_warmup(compute_features(bars))
    close, volume = bars["close"], bars["volume"]
    ret1 = np.log(close).diff()
    change = close.diff().iloc[1:]
    gain = change.clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    loss = (-change).clip(lower=0).ewm(alpha=1 / 14, adjust=False).mean()
    macd = close.ewm(span=12, adjust=False).mean() - close.ewm(span=26, adjust=False).mean()
    signal = macd.ewm(span=9, adjust=False).mean()
    mid = (bars["best_bid"] + bars["best_ask"]) / 2
    expected = pd.DataFrame(
        {
            "ret_1": ret1,
            "ret_5": np.log(close / close.shift(5)),
            "ret_15": np.log(close / close.shift(15)),
            "ret_60": np.log(close / close.shift(60)),
            "vol_15": ret1.rolling(15).std(),
            "vol_60": ret1.rolling(60).std(),
            "rsi_14": 100 - 100 / (1 + gain / loss),
            "macd": macd / close,
            "macd_signal": signal / close,
            "macd_hist": (macd - signal) / close,
            "volume_z_60": (volume - volume.rolling(60).mean()) / volume.rolling(60).std(),
            "spread_rel": (bars["best_ask"] - bars["best_bid"]) / mid,
            "book_imbalance": (bars["bid_qty"] - bars["ask_qty"]) / (bars["bid_qty"] + bars["ask_qty"]),
            "book_missing": 0.0,
            "range_rel": (bars["high"] - bars["low"]) / close,
            "close_pos": ((close - bars["low"]) / (bars["high"] - bars["low"])).fillna(0.5),
        }
    ).loc[features.index]
    pd.testing.assert_frame_equal(features, expected[list(FEATURE_NAMES)], rtol=1e-9, atol=1e-12)


def test_unusable_book_rows_are_flagged_and_neutral() -> None:
    bars = make_bars(400, seed=6)
    rows = bars.index[[300, 301, 302]]
    bars.loc[rows[0], "best_bid"] = np.nan
    bars.loc[rows[1], "best_ask"] = bars.loc[rows[1], "best_bid"] * 0.99  # crossed book
    bars.loc[rows[2], ["bid_qty", "ask_qty"]] = 0.0
    features = compute_features(bars)
    bad = features.loc[rows]
    assert (bad["book_missing"] == 1.0).all()
    assert (bad["spread_rel"] == 0.0).all()
    assert (bad["book_imbalance"] == 0.0).all()
    good = features.loc[bars.index[303]]
    assert good["book_missing"] == 0.0
    assert good["spread_rel"] > 0


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b.drop(columns=["volume"]), "lack required columns"),
        (lambda b: b.tz_convert(None), "UTC"),
        (lambda b: b.iloc[[0, 2, 1, 3]], "strictly increasing"),
        (lambda b: b.assign(close=b["high"] * 1.01), "within \\[low, high\\]"),
        (lambda b: b.assign(volume=-1.0), "volume must be >= 0"),
        (lambda b: b.assign(close=np.nan), "close is missing"),
    ],
)
def test_invalid_bars_are_rejected_with_a_clear_error(
    mutate: Callable[[pd.DataFrame], pd.DataFrame], message: str
) -> None:
    with pytest.raises(FeatureInputError, match=message):
        compute_features(mutate(make_bars(10)))


def test_incremental_rejects_out_of_order_and_naive_timestamps() -> None:
    bars = make_bars(3)
    inc = IncrementalFeatures()
    row = bars.iloc[1].to_dict()
    inc.update(bars.index[1], row)
    with pytest.raises(FeatureInputError, match="does not follow"):
        inc.update(bars.index[0], row)
    with pytest.raises(FeatureInputError, match="UTC"):
        inc.update(bars.index[2].tz_localize(None), row)
    with pytest.raises(FeatureInputError, match="required field 'close'"):
        inc.update(bars.index[2], {k: v for k, v in row.items() if k != "close"})
    assert inc.bars_seen == 1
