"""Incremental sufficient statistics and the sequential test that decides experiments (pure Python, no Django).

Each metric of an arm (split) or of a treatment-vs-control difference (shadow, paired) is a `Stream`: values
arrive one at a time (an outcome maturing), a revised value replaces its old contribution (`remove` then
`add`), and the state is a small JSON-able dict, so results for any number of outcomes cost O(1) to compute.

The decision statistic is the mixture SPRT of Johari et al. (`experiments.statistics.always_valid_p`), made
valid in practice:

* sigma^2 is NOT the running sample variance alone (an A/A simulation with a look after every outcome rejected 24 %
  of the time at alpha = 5 %, see BENCHMARKS.md: early variances from a handful of values are tiny). A burn-in fixes
  a floor: the first `burn_in` values of the stream are kept, their variance (Newey-West long-run variance with
  `lags`, 0 for the experiments' streams) becomes `sigma2`, and only the values after the burn-in enter the test
  (its mean and n). At each look the variance used is the larger of that floor and the sample variance of every
  value so far (`Stream.look_variance`): a burn-in that saw little dispersion by chance (on the learnable scenario a
  version's position persists for a regime of hours, so paired differences are sparse and clustered and a 100-hour
  burn-in can miss most disagreements) no longer fixes a variance that is too small for the rest of the run. The
  variance can only rise above the burn-in's, and 1/Lambda rises with it, so p is never below what the fixed burn-in
  variance gives (with a data-dependent variance Lambda is no longer exactly a martingale: the error rates are shown
  by simulation). A/A on that scenario, 10,000 runs x 14 days, burn-in 100 / 30 / 10: 0.065 / 0.19 / 0.31 with the
  burn-in variance fixed, 0.015 / 0.015 / 0.017 with the look variance (BENCHMARKS.md; the Newey-West variance of
  the burn-in and batch means were measured and were worse: they add noise to an already noisy estimate). tau^2 =
  `mixing` x the look's variance.
* Outcomes over an h-bar horizon predicted every bar overlap; only one decision every h bars enters the test
  (`on_grid`), so its values do not overlap; every value enters the estimates (and the look variance).
* p is the running minimum of 1/Lambda_n evaluated after every value (a look after every outcome), so reading
  the results at any moment never inflates the error rate.
* Two-sample (split): Lambda with the mean difference of the two arms' post-burn-in means and
  V = sigma_t^2 / n_t + sigma_c^2 / n_c in place of sigma^2 / n, tau^2 = mixing x (sigma_t^2 + sigma_c^2)
  (Johari et al. 2017, section 4, the two-stream normal mSPRT), each arm's sigma^2 its look variance.

tests/experiments/test_sequential.py checks the A/A type-I error with continuous peeking by simulation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from models_registry.evaluation.intervals import long_run_variance

BURN = "burn"
TEST = "test"
ESTIMATE_ONLY = "estimate"


@dataclass
class Moments:
    """n, sum and sum of squares (shifted by the first value, so the variance does not cancel catastrophically)."""

    n: int = 0
    total: float = 0.0
    total_sq: float = 0.0
    shift: float | None = None

    def add(self, x: float) -> None:
        if self.shift is None:
            self.shift = x
        y = x - self.shift
        self.n += 1
        self.total += y
        self.total_sq += y * y

    def remove(self, x: float) -> None:
        if self.n <= 0 or self.shift is None:
            raise ValueError("cannot remove a value from empty moments")
        y = x - self.shift
        self.n -= 1
        self.total -= y
        self.total_sq -= y * y
        if self.n == 0:
            self.total = self.total_sq = 0.0

    @property
    def mean(self) -> float:
        return (self.shift or 0.0) + self.total / self.n if self.n else math.nan

    @property
    def variance(self) -> float:
        """Sample variance (ddof = 1); NaN below two values."""
        if self.n < 2:
            return math.nan
        return max(self.total_sq - self.total * self.total / self.n, 0.0) / (self.n - 1)

    def as_dict(self) -> dict[str, Any]:
        return {"n": self.n, "total": self.total, "total_sq": self.total_sq, "shift": self.shift}

    @classmethod
    def of(cls, raw: dict[str, Any] | None) -> Moments:
        raw = raw or {}
        return cls(
            int(raw.get("n", 0)), float(raw.get("total", 0.0)), float(raw.get("total_sq", 0.0)), raw.get("shift")
        )


def inverse_lambda(theta: float, var_mean: float, tau2: float) -> float:
    """1 / Lambda of the normal mSPRT for an estimate `theta` of a mean (difference) whose variance is
    `var_mean` (sigma^2 / n, or the two-sample sum), mixing variance tau2 (Johari et al. 2022, eq. 11):
    Lambda = sqrt(V / (V + tau2)) exp(tau2 theta^2 / (2 V (V + tau2)))."""
    if not (var_mean > 0.0 and tau2 > 0.0) or not math.isfinite(theta):
        return 1.0
    spread = var_mean + tau2
    log_lambda = 0.5 * math.log(var_mean / spread) + tau2 * theta * theta / (2.0 * var_mean * spread)
    return min(1.0, math.exp(-log_lambda)) if log_lambda < 700 else 0.0


def always_valid_interval(theta: float, var_mean: float, tau2: float, alpha: float) -> tuple[float, float]:
    """The confidence sequence that inverts the same mSPRT at `alpha`: every mean m with Lambda(theta - m) <
    1/alpha, i.e. theta -/+ sqrt(2 V (V + tau2) / tau2 x (log(1/alpha) + log((V + tau2) / V) / 2))."""
    if not (var_mean > 0.0 and tau2 > 0.0) or not math.isfinite(theta):
        return math.nan, math.nan
    spread = var_mean + tau2
    half = math.sqrt(2.0 * var_mean * spread / tau2 * (math.log(1.0 / alpha) + 0.5 * math.log(spread / var_mean)))
    return theta - half, theta + half


@dataclass
class Stream:
    """One metric's values: every value in `all` (estimates, and the running variance of `look_variance`), the first
    `burn_in` kept in `burn_values` to fix sigma^2's floor, the later ones in `test` (the sequential test's mean
    and n)."""

    burn_in: int
    lags: int = 0
    all: Moments = field(default_factory=Moments)
    test: Moments = field(default_factory=Moments)
    burn_values: list[float] = field(default_factory=list)
    sigma2: float | None = None

    def add(self, x: float, *, sequential: bool = True) -> str:
        """Add a value; returns the phase it went to (burn, test, or only the estimates: `sequential` False, a
        decision off the non-overlapping grid), which `remove` needs."""
        self.all.add(x)
        if not sequential:
            return ESTIMATE_ONLY
        if self.sigma2 is None:
            self.burn_values.append(x)
            if len(self.burn_values) >= self.burn_in:
                lrv = long_run_variance(self.burn_values, self.lags) if len(self.burn_values) > 1 else 0.0
                if math.isfinite(lrv) and lrv > 0.0:
                    self.sigma2 = lrv  # frozen from now on
            return BURN
        self.test.add(x)
        return TEST

    def remove(self, x: float, phase: str) -> None:
        """Take out a value added earlier (a revised outcome). A burn-in value is replaced in the kept values, but
        sigma^2, once fixed, stays as it was."""
        self.all.remove(x)
        if phase == ESTIMATE_ONLY:
            return
        if phase == TEST:
            self.test.remove(x)
            return
        for i in range(len(self.burn_values) - 1, -1, -1):
            if self.burn_values[i] == x:
                del self.burn_values[i]
                return

    @property
    def ready(self) -> bool:
        return self.sigma2 is not None and self.test.n >= 1

    @property
    def look_variance(self) -> float | None:
        """The variance the test uses now: the burn-in's `sigma2` (None until fixed), raised to the sample
        variance of every value so far when that is larger."""
        if self.sigma2 is None:
            return None
        running = self.all.variance
        return max(self.sigma2, running) if math.isfinite(running) else self.sigma2

    def as_dict(self) -> dict[str, Any]:
        return {
            "burn_in": self.burn_in,
            "lags": self.lags,
            "all": self.all.as_dict(),
            "test": self.test.as_dict(),
            "burn_values": self.burn_values,
            "sigma2": self.sigma2,
        }

    @classmethod
    def of(cls, raw: dict[str, Any] | None, *, burn_in: int, lags: int) -> Stream:
        if not raw:
            return cls(burn_in=burn_in, lags=lags)
        return cls(
            burn_in=int(raw.get("burn_in", burn_in)),
            lags=int(raw.get("lags", lags)),
            all=Moments.of(raw.get("all")),
            test=Moments.of(raw.get("test")),
            burn_values=[float(v) for v in raw.get("burn_values", [])],
            sigma2=raw.get("sigma2"),
        )


def on_grid(bar_time: datetime, horizon: int | None) -> bool:
    """Whether a decision at `bar_time` (1-minute bars) enters the sequential test: one decision every `horizon`
    bars (bar index since the epoch divisible by h), so the outcomes in the test do not overlap.

    Outcomes of predictions made every bar over an h-bar horizon overlap: consecutive values share h - 1 bars of
    forward return, so they are strongly serially correlated, and the mixture SPRT (whose martingale needs
    independent increments) rejects far too often: by simulation of overlapping 5-bar sums, 18-20 % at alpha 5 %
    even with sigma^2 the Newey-West long-run variance of a 100-value burn-in; the estimate converges only with
    burn-ins of hundreds of horizons. The non-overlapping subsample is (for h-bar sums) independent, holds alpha
    with a 100-value burn-in (tests/experiments/test_sequential.py), and loses little: overlapping outcomes
    carry about one horizon's worth of information per h decisions anyway. Estimates use every decision."""
    h = int(horizon or 1)
    return h <= 1 or int(bar_time.timestamp() // 60) % h == 0


@dataclass(frozen=True)
class Look:
    """The sequential test at one moment: estimate (mean or mean difference), its variance, and 1/Lambda."""

    estimate: float
    var_mean: float
    tau2: float
    inverse_lambda: float


def paired_look(stream: Stream, mixing: float) -> Look | None:
    """The one-sample mSPRT on a stream of paired differences (None until the burn-in is done and one value
    followed it)."""
    sigma2 = stream.look_variance
    if not stream.ready or sigma2 is None:
        return None
    var_mean = sigma2 / stream.test.n
    tau2 = mixing * sigma2
    theta = stream.test.mean
    return Look(theta, var_mean, tau2, inverse_lambda(theta, var_mean, tau2))


def two_sample_look(control: Stream, treatment: Stream, mixing: float) -> Look | None:
    """The two-stream mSPRT on the difference of the arms' post-burn-in means (None until both are ready)."""
    sigma2_c, sigma2_t = control.look_variance, treatment.look_variance
    if not (control.ready and treatment.ready) or sigma2_c is None or sigma2_t is None:
        return None
    var_mean = sigma2_t / treatment.test.n + sigma2_c / control.test.n
    tau2 = mixing * (sigma2_t + sigma2_c)
    theta = treatment.test.mean - control.test.mean
    return Look(theta, var_mean, tau2, inverse_lambda(theta, var_mean, tau2))
