"""Distances between a reference sample and a current sample, for drift checks: pure functions (numpy and scipy,
no Django), importable without settings.

Binning (``psi``, ``jensen_shannon``, ``shares``)
    Equal-frequency bins from the REFERENCE: the inner edges are its k/bins quantiles, k = 1..bins-1, with
    numpy's default (linear) interpolation; the outer bins are open (-inf, e1) and [e_{bins-1}, +inf). A value
    equal to an edge goes to the upper bin (``searchsorted(edges, x, side="right")``). Each sample's share per
    bin is count / n, and a bin with no value gets the share 0.0001 instead of 0 (Evidently's rule, so the
    logarithm stays finite; the shares are not renormalised). Ties in the reference can make edges coincide:
    the bins between equal edges stay empty for both samples and so contribute nothing to either distance.

Formulas
    PSI      sum_i (c_i - r_i) ln(c_i / r_i) over the bin shares r (reference) and c (current): the population
             stability index (Siddiqi, *Credit Risk Scorecards*, 2006; Yurdakul, "Statistical properties of
             population stability index", 2018). Rule of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 significant.
    JS       scipy.spatial.distance.jensenshannon(r, c, base=2): the Jensen-Shannon DISTANCE (the square root of
             the divergence; Lin, "Divergence measures based on the Shannon entropy", IEEE Trans. Inf. Theory
             1991; Endres & Schindelin 2003), in [0, 1] with base 2; scipy normalises r and c to sum 1 first.
    Wasserstein (normed)
             W1(reference, current) / sigma_ref: the first Wasserstein (earth mover's) distance of the two
             empirical distributions (scipy.stats.wasserstein_distance; Vallender 1974: the L1 distance of the
             two CDFs) divided by the reference's POPULATION standard deviation (ddof = 0). As in Evidently, the
             divisor is at least 0.001, so a constant reference feature gives a finite figure.
    KS       the two-sample Kolmogorov-Smirnov test (scipy.stats.ks_2samp, two-sided, exact for small samples and
             asymptotic otherwise): statistic sup |F_ref - F_cur| and its p-value.

Non-finite values (NaN, inf) are dropped from each sample before any of these; an empty sample is an error.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from scipy.spatial.distance import jensenshannon

EMPTY_SHARE = 0.0001
WASSERSTEIN_MIN_STD = 0.001


@dataclass(frozen=True)
class KSResult:
    statistic: float
    p_value: float


def _sample(values: Iterable[Any] | np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64).ravel()
    array = array[np.isfinite(array)]
    if array.size == 0:
        raise ValueError(f"the {name} sample has no finite value")
    return array


def bin_edges(reference: Iterable[Any] | np.ndarray, bins: int = 10) -> np.ndarray:
    """The bins - 1 inner edges: the reference's k/bins quantiles (numpy's default interpolation)."""
    if isinstance(bins, bool) or not isinstance(bins, int | np.integer) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
    ref = _sample(reference, "reference")
    return np.quantile(ref, np.arange(1, bins) / bins)


def shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The share of `values` in each of len(edges) + 1 bins (a value on an edge in the upper bin), an empty bin's
    share replaced by EMPTY_SHARE."""
    index = np.searchsorted(edges, values, side="right")
    counts = np.bincount(index, minlength=len(edges) + 1).astype(np.float64)
    out = counts / len(values)
    out[counts == 0] = EMPTY_SHARE
    return out


def binned_shares(
    reference: Iterable[Any] | np.ndarray, current: Iterable[Any] | np.ndarray, bins: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """(reference shares, current shares) over the reference's equal-frequency bins (see the module doc)."""
    ref = _sample(reference, "reference")
    cur = _sample(current, "current")
    edges = bin_edges(ref, bins)
    return shares(ref, edges), shares(cur, edges)


def psi_of_shares(reference_shares: np.ndarray, current_shares: np.ndarray) -> float:
    """PSI of two share vectors (already binned, no zero share)."""
    r = np.asarray(reference_shares, dtype=np.float64)
    c = np.asarray(current_shares, dtype=np.float64)
    return float(np.sum((c - r) * np.log(c / r)))


def js_of_shares(reference_shares: np.ndarray, current_shares: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2) of two share vectors."""
    return float(jensenshannon(np.asarray(reference_shares), np.asarray(current_shares), base=2))


def category_shares(values: Iterable[Any] | np.ndarray, categories: Iterable[Any]) -> np.ndarray:
    """The share of each category in `values` (for class mixes), an absent category's share EMPTY_SHARE."""
    array = np.asarray(values, dtype=np.float64).ravel()
    cats = np.asarray(list(categories), dtype=np.float64)
    if array.size == 0:
        raise ValueError("the sample is empty")
    counts = (array[:, None] == cats[None, :]).sum(axis=0).astype(np.float64)
    out = counts / array.size
    out[counts == 0] = EMPTY_SHARE
    return out


def psi(reference: Iterable[Any] | np.ndarray, current: Iterable[Any] | np.ndarray, bins: int = 10) -> float:
    """Population stability index of `current` against `reference` on the reference's equal-frequency bins."""
    r, c = binned_shares(reference, current, bins)
    return psi_of_shares(r, c)


def jensen_shannon(reference: Iterable[Any] | np.ndarray, current: Iterable[Any] | np.ndarray, bins: int = 10) -> float:
    """Jensen-Shannon distance (scipy's, base 2) of the two samples' shares on the reference's bins."""
    r, c = binned_shares(reference, current, bins)
    return js_of_shares(r, c)


def wasserstein_normed(reference: Iterable[Any] | np.ndarray, current: Iterable[Any] | np.ndarray) -> float:
    """First Wasserstein distance divided by the reference's population standard deviation (at least 0.001)."""
    ref = _sample(reference, "reference")
    cur = _sample(current, "current")
    return float(stats.wasserstein_distance(ref, cur) / max(float(np.std(ref)), WASSERSTEIN_MIN_STD))


def ks(reference: Iterable[Any] | np.ndarray, current: Iterable[Any] | np.ndarray) -> KSResult:
    """Two-sample Kolmogorov-Smirnov test (two-sided)."""
    ref = _sample(reference, "reference")
    cur = _sample(current, "current")
    result = stats.ks_2samp(ref, cur)
    return KSResult(statistic=float(result.statistic), p_value=float(result.pvalue))
