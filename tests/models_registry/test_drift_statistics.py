"""models_registry.drift.statistics against hand-computed values and scipy (no database)."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from models_registry.drift.statistics import (
    EMPTY_SHARE,
    bin_edges,
    binned_shares,
    jensen_shannon,
    ks,
    psi,
    wasserstein_normed,
)

REF_1_10 = np.arange(1, 11, dtype=float)


def test_inner_edges_are_reference_quantiles_with_linear_interpolation():
    assert bin_edges([0.0, 10.0], bins=4).tolist() == [2.5, 5.0, 7.5]
    assert bin_edges(REF_1_10, bins=2).tolist() == [5.5]


def test_psi_by_hand_two_bins():
    # edge 5.5: reference 1/2, 1/2; current 2/6 below, 4/6 above
    expected = (1 / 3 - 1 / 2) * math.log((1 / 3) / (1 / 2)) + (2 / 3 - 1 / 2) * math.log((2 / 3) / (1 / 2))
    assert expected == pytest.approx(math.log(2) / 6)
    assert psi(REF_1_10, [1, 2, 6, 7, 8, 9], bins=2) == pytest.approx(expected, rel=1e-12)


def test_value_on_an_edge_goes_to_the_upper_bin_and_empty_bin_gets_floor_share():
    ref_shares, cur_shares = binned_shares([0.0, 1.0, 2.0, 3.0], [1.5, 1.5], bins=2)  # edge 1.5
    assert ref_shares.tolist() == [0.5, 0.5]
    assert cur_shares.tolist() == [EMPTY_SHARE, 1.0]
    expected = (EMPTY_SHARE - 0.5) * math.log(EMPTY_SHARE / 0.5) + 0.5 * math.log(1.0 / 0.5)
    assert psi([0.0, 1.0, 2.0, 3.0], [1.5, 1.5], bins=2) == pytest.approx(expected, rel=1e-12)


def test_outer_bins_are_open():
    _, cur = binned_shares(REF_1_10, [-1e9, 1e9], bins=2)
    assert cur.tolist() == [0.5, 0.5]


def test_identical_samples_have_zero_psi_and_js():
    rng = np.random.default_rng(1)
    x = rng.normal(size=500)
    assert psi(x, x) == pytest.approx(0.0, abs=1e-15)
    assert jensen_shannon(x, x) == pytest.approx(0.0, abs=1e-7)


def test_jensen_shannon_by_hand_base_two():
    p, q = np.array([0.5, 0.5]), np.array([1 / 3, 2 / 3])
    m = (p + q) / 2
    kl = lambda a, b: float(np.sum(a * np.log2(a / b)))  # noqa: E731
    expected = math.sqrt((kl(p, m) + kl(q, m)) / 2)
    assert jensen_shannon(REF_1_10, [1, 2, 6, 7, 8, 9], bins=2) == pytest.approx(expected, rel=1e-9)
    assert expected == pytest.approx(float(jensenshannon(p, q, base=2)), rel=1e-12)


def test_jensen_shannon_is_scipys_on_the_share_vectors_with_floor():
    rng = np.random.default_rng(2)
    ref, cur = rng.normal(size=2000), rng.normal(0.7, 1.3, size=300)
    r, c = binned_shares(ref, cur, bins=10)
    assert jensen_shannon(ref, cur) == pytest.approx(float(jensenshannon(r, c, base=2)), rel=1e-12)
    assert 0.0 < jensen_shannon(ref, cur) <= 1.0


def test_wasserstein_normed_by_population_std():
    ref = np.array([0.0, 1.0, 2.0, 3.0])
    assert wasserstein_normed(ref, ref + 1.0) == pytest.approx(1.0 / math.sqrt(1.25), rel=1e-12)
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=400), rng.normal(0.3, 2.0, size=250)
    assert wasserstein_normed(a, b) == pytest.approx(stats.wasserstein_distance(a, b) / np.std(a, ddof=0))


def test_wasserstein_of_a_constant_reference_is_finite():
    assert wasserstein_normed([0.0, 0.0, 0.0], [0.0, 0.0]) == 0.0
    assert wasserstein_normed([0.0, 0.0], [0.001, 0.001]) == pytest.approx(1.0)


def test_ks_matches_scipy():
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=300), rng.normal(0.2, size=200)
    result = ks(a, b)
    expected = stats.ks_2samp(a, b)
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue)
    same = ks([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    assert same.statistic == 0.0
    assert same.p_value == 1.0


def test_non_finite_values_are_dropped_and_empty_samples_refused():
    assert psi([1.0, 2.0, np.nan, 3.0, 4.0], [1.0, 2.0, 3.0, np.inf, 4.0], bins=2) == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError, match="current"):
        psi([1.0, 2.0], [np.nan])
    with pytest.raises(ValueError, match="bins"):
        psi([1.0, 2.0], [1.0], bins=1)


def test_psi_detects_a_shift_and_not_a_resample():
    rng = np.random.default_rng(5)
    ref = rng.normal(size=20_000)
    assert psi(ref, rng.normal(size=5_000)) < 0.01
    assert psi(ref, rng.normal(1.0, size=5_000)) > 0.25


def test_importable_without_django_settings():
    code = "import sys, models_registry.drift.statistics as s; s.psi([1,2,3],[1,2]); assert 'django' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={"PATH": ""}, check=False)
    assert result.returncode == 0, result.stderr
