"""Market scenarios whose predictability is known exactly: the per-minute return process, its path, its back-dated
history and its ground truth.

The process (per symbol, per UTC 1-minute bar ``t``, bars aligned to epoch minutes)::

    r_t   = mu_t + sigma_t * eps_t,          eps_t iid N(0, 1)        (log return of bar t)
    mu_t  = d_t * s_t,                       s_t in {-1, +1}
    s_t   = s_{t-1} * (-1)^{u_t},            u_t iid Bernoulli(p),  p = 1 / regime_minutes

``s`` is a hidden symmetric two-state Markov chain started from its stationary law (s = +/-1 with probability 1/2).
``d_t`` and ``sigma_t`` are constant per phase: the change scenarios switch them at ``change_at`` minutes after
the origin (the simulator's start, floored to the minute).

Scenarios (``--scenario NAME[:k=v,...]``):

- ``random_walk`` (``vol``): d = 0; no edge at any horizon.
- ``trend`` (``drift``, ``regime_minutes``, ``vol``): the learnable scenario.
- ``regime_change`` (trend's, plus ``change_at``, ``vol_mult``, ``half_life``): after ``change_at`` minutes d = 0
  (the momentum edge vanishes) and sigma is multiplied by ``vol_mult`` (default 1). With ``half_life`` > 0 the
  market moves to another learnable regime, reversal: from the change on, the log price is its level at the
  change plus a Gaussian AR(1) deviation ``x_t = phi x_{t-1} + sigma' eps_t`` (``x`` = 0 at the change,
  ``phi = 2^(-1 / half_life)``, ``sigma' = sigma * vol_mult``), so ``r_t = x_t - x_{t-1}``: a move away from the
  level predicts a move back, and a model that learnt momentum before the change now loses.
- ``volatility_change`` (trend's with ``drift`` 0 by default, plus ``change_at``, ``vol_mult`` default 2): sigma
  is multiplied at the change, the drift stays (label drift).
- ``regimes``: the historical regime-mix order-flow generator of ``kraken_sim.market`` (no ground truth).

Determinism: the random draws (eps_t, the switch uniforms, s at the origin) are a pure function of
``(seed, symbol, minute index)``, drawn in blocks of a day from ``numpy``'s PCG64 seeded through a
``SeedSequence`` of a SHA-256 digest; the scenario maps them to returns. The path (log closes) is accumulated
outward from the origin, block by block, always in the same order, so a close is the same float whatever range
was asked for. Two scenarios with the same seed share their noise (common random numbers): ``regime_change``
equals ``trend`` before its change.
"""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
from scipy.signal import lfilter

from kraken_sim.errors import ConfigError

MINUTE_NS = 60_000_000_000
BLOCK = 1440  # minutes per block of draws (one day)


# -- the scenario specification ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ParamSpec:
    default: float
    low: float  # inclusive lower bound
    high: float  # inclusive upper bound
    meaning: str
    integer: bool = False


_VOL = ParamSpec(0.001, 1e-6, 0.05, "sigma of the 1-minute log return")
_DRIFT = ParamSpec(0.0002, 0.0, 0.01, "|mean| of the 1-minute log return while the hidden regime lasts")
_REGIME = ParamSpec(240, 3, 10**9, "mean regime length in minutes (switch probability 1/regime_minutes)", True)
_CHANGE_AT = ParamSpec(60, 0, 10**7, "minutes after the simulator's start when the change happens", True)
_HALF_LIFE = ParamSpec(
    0.0,
    0.0,
    10**6,
    "after the change, half-life in minutes of the price's reversion to its level at the change "
    "(0: none, the edge vanishes)",
)


@dataclass(frozen=True, slots=True)
class ScenarioKind:
    """One scenario of ``--scenario``: what it is (the CLI's help line) and the parameters it takes."""

    summary: str
    params: dict[str, ParamSpec]


SCENARIOS: dict[str, ScenarioKind] = {
    "random_walk": ScenarioKind("d = 0: no edge at any horizon", {"vol": _VOL}),
    "trend": ScenarioKind(
        "hidden +/-drift regimes (two-state Markov chain): a known, learnable edge",
        {"drift": _DRIFT, "regime_minutes": _REGIME, "vol": _VOL},
    ),
    "regime_change": ScenarioKind(
        "trend until change_at, then the edge vanishes (d = 0), sigma x vol_mult; with half_life > 0 the price "
        "then reverts to its level at the change (another learnable edge, the opposite sign)",
        {
            "drift": _DRIFT,
            "regime_minutes": _REGIME,
            "vol": _VOL,
            "change_at": _CHANGE_AT,
            "vol_mult": ParamSpec(1.0, 0.01, 100.0, "sigma multiplier applied at the change"),
            "half_life": _HALF_LIFE,
        },
    ),
    "volatility_change": ScenarioKind(
        "sigma x vol_mult at change_at (label drift); drift stays",
        {
            "drift": ParamSpec(0.0, 0.0, 0.01, _DRIFT.meaning),
            "regime_minutes": _REGIME,
            "vol": _VOL,
            "change_at": _CHANGE_AT,
            "vol_mult": ParamSpec(2.0, 0.01, 100.0, "sigma multiplier applied at the change"),
        },
    ),
    "regimes": ScenarioKind("the historical regime-mix order flow (no ground truth)", {}),
}


@dataclass(frozen=True, slots=True)
class Phase:
    """Constant parameters from minute ``start`` (relative to the origin; None: from the beginning of time)."""

    name: str
    start: int | None
    drift: float
    vol: float
    half_life: float = 0.0  # > 0: the log price reverts to its level at the phase's start (AR(1) deviation)

    @property
    def phi(self) -> float:
        """The AR(1) coefficient of the deviation (0 without reversion)."""
        return 2.0 ** (-1.0 / self.half_life) if self.half_life > 0 else 0.0


@dataclass(frozen=True, slots=True)
class ScenarioSpec:
    name: str
    params: tuple[tuple[str, float], ...]  # every parameter, defaults filled in, in declaration order

    @property
    def p(self) -> dict[str, float]:
        return dict(self.params)

    @property
    def is_process(self) -> bool:
        """True for the scenarios of the return process (everything except ``regimes``)."""
        return self.name != "regimes"

    @property
    def text(self) -> str:
        if not self.params:
            return self.name
        return self.name + ":" + ",".join(f"{k}={_fmt(v)}" for k, v in self.params)

    @property
    def switch_prob(self) -> float:
        return 1.0 / self.p["regime_minutes"] if "regime_minutes" in self.p else 0.0

    @property
    def change_at(self) -> int | None:
        value = self.p.get("change_at")
        return None if value is None else int(value)

    def phases(self) -> list[Phase]:
        p = self.p
        drift, vol = p.get("drift", 0.0), p["vol"]
        if self.name in ("random_walk", "trend"):
            return [Phase("all", None, drift, vol)]
        change = int(p["change_at"])
        after_drift = 0.0 if self.name == "regime_change" else drift
        half_life = p.get("half_life", 0.0)
        after = Phase("after", change, after_drift, vol * p["vol_mult"], half_life)
        return [Phase("before", None, drift, vol), after]

    def phase_at(self, minute: int) -> Phase:
        phases = self.phases()
        current = phases[0]
        for phase in phases[1:]:
            if phase.start is not None and minute >= phase.start:
                current = phase
        return current

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "params": {k: _json_num(v) for k, v in self.params}, "spec": self.text}


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(value)


def _json_num(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def parse_scenario(text: str) -> ScenarioSpec:
    """``trend:drift=0.0003,vol=0.001`` → a ScenarioSpec with every parameter (defaults filled in).

    Unknown name, unknown parameter, a value that is not a number or out of range → ``ConfigError``."""
    name, _, rest = text.strip().partition(":")
    name = name.strip()
    kind = SCENARIOS.get(name)
    if kind is None:
        raise ConfigError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    declared = kind.params
    given: dict[str, float] = {}
    for part in rest.split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, raw = part.partition("=")
        key = key.strip()
        if not sep:
            raise ConfigError(f"scenario parameter {part!r} is not k=v")
        spec = declared.get(key)
        if spec is None:
            takes = ", ".join(declared) or "no parameters"
            raise ConfigError(f"scenario {name} has no parameter {key!r} (takes {takes})")
        if key in given:
            raise ConfigError(f"scenario parameter {key} given twice")
        try:
            value = float(raw)
        except ValueError as exc:
            raise ConfigError(f"scenario parameter {key}={raw.strip()!r} is not a number") from exc
        if not math.isfinite(value) or not spec.low <= value <= spec.high:
            raise ConfigError(
                f"scenario parameter {key}={raw.strip()} must be in [{_fmt(spec.low)}, {_fmt(spec.high)}]"
            )
        if spec.integer and not value.is_integer():
            raise ConfigError(f"scenario parameter {key}={raw.strip()} must be a whole number")
        given[key] = value
    params = tuple((k, given.get(k, s.default)) for k, s in declared.items())
    return ScenarioSpec(name, params)


def scenario_help() -> str:
    lines = []
    for name, kind in SCENARIOS.items():
        args = ", ".join(f"{k}={_fmt(s.default)}" for k, s in kind.params.items())
        lines.append(f"  {name}{f' ({args})' if args else ''}: {kind.summary}")
    return "\n".join(lines)


# -- deterministic draws ----------------------------------------------------------------------------------
def _rng(seed: int, symbol: str, label: str) -> np.random.Generator:
    digest = hashlib.sha256(f"kraken-sim-scenario|{seed}|{symbol}|{label}".encode()).digest()
    words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 32, 4)]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(words)))


class ScenarioPath:
    """The per-minute path of one symbol: returns, hidden states and log closes by minute index (origin 0).

    Minute ``i`` covers ``[origin + i min, origin + (i+1) min)``; ``log_close(-1)`` = log(``start_price``) is the
    open of minute 0. Blocks of ``BLOCK`` minutes are computed lazily and cached."""

    def __init__(self, spec: ScenarioSpec, seed: int, symbol: str, start_price: float) -> None:
        if not spec.is_process:
            raise ValueError("the regimes scenario has no return process")
        self.spec = spec
        self.seed = seed
        self.symbol = symbol
        self.anchor = math.log(start_price)
        self.s0 = 1 if _rng(seed, symbol, "state-at-origin").random() < 0.5 else -1
        # per block: (returns, states, log closes)
        self._blocks: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        phases = spec.phases()
        self._change = phases[1].start if len(phases) > 1 else None
        self._before = phases[0]
        self._after = phases[-1]

    def _draws(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        rng = _rng(self.seed, self.symbol, f"block-{block}")
        eps = rng.standard_normal(BLOCK)
        uniform = rng.random(BLOCK)
        return eps, uniform

    def _params(self, block: int) -> tuple[np.ndarray, np.ndarray]:
        idx = np.arange(block * BLOCK, (block + 1) * BLOCK)
        if self._change is None:
            return np.full(BLOCK, self._before.drift), np.full(BLOCK, self._before.vol)
        after = idx >= self._change
        drift = np.where(after, self._after.drift, self._before.drift)
        vol = np.where(after, self._after.vol, self._before.vol)
        return drift, vol

    def _block(self, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cached = self._blocks.get(block)
        if cached is not None:
            return cached
        p = self.spec.switch_prob
        eps, uniform = self._draws(block)
        flips = (uniform < p).astype(np.int64)  # flips[j]: the chain switches between minute i-1 and i
        if block >= 0:
            if block == 0:
                flips[0] = 0  # s_0 is the origin's draw
                s_prev, l_prev = self.s0, self.anchor
            else:
                _, s_before, l_before = self._block(block - 1)
                s_prev, l_prev = int(s_before[-1]), float(l_before[-1])
            states = s_prev * np.where(np.cumsum(flips) % 2 == 0, 1, -1)
            drift, vol = self._params(block)
            returns = drift * states + vol * eps
            if self._after.half_life > 0 and self._change is not None:
                self._revert(block, returns, eps, l_prev)
            closes = l_prev + np.cumsum(returns)
        else:
            r_next, s_next, l_next = self._block(block + 1)
            _, uniform_next = self._draws(block + 1)
            first_flip = int(uniform_next[0] < p)  # the switch between this block's last minute and the next's first
            s_last = int(s_next[0]) * (-1 if first_flip else 1)
            # s_i = s_last * (-1)^(flips[i+1] + ... + flips[last])
            after_sum = np.concatenate((np.cumsum(flips[::-1])[::-1][1:], [0]))
            states = s_last * np.where(after_sum % 2 == 0, 1, -1)
            drift, vol = self._params(block)
            returns = drift * states + vol * eps
            l_last = float(l_next[0]) - float(r_next[0])
            # close_i = close_last - (r_{i+1} + ... + r_last)
            tail = np.concatenate((np.cumsum(returns[::-1])[::-1][1:], [0.0]))
            closes = l_last - tail
        out = (returns, states.astype(np.int8), closes)
        self._blocks[block] = out
        return out

    def _revert(self, block: int, returns: np.ndarray, eps: np.ndarray, l_prev: float) -> None:
        """Replace the returns of the block's minutes from the change on by the reversion's (in place):
        x_t = phi x_{t-1} + sigma' eps_t, r_t = x_t - x_{t-1}; x before the block is the last close minus the
        level at the change (the close of minute change - 1), 0 in the change's own block."""
        assert self._change is not None
        first = max(self._change - block * BLOCK, 0)
        if first >= BLOCK:
            return
        phi = self._after.phi
        x_prev = 0.0 if first > 0 or block * BLOCK == self._change else l_prev - self.log_close(self._change - 1)
        x = lfilter([1.0], [1.0, -phi], self._after.vol * eps[first:], zi=[phi * x_prev])[0]
        returns[first:] = np.diff(np.concatenate(([x_prev], x)))

    def _range(self, first: int, last: int, column: int) -> np.ndarray:
        """Column over minutes ``first..last`` inclusive."""
        parts = []
        for block in range(first // BLOCK, last // BLOCK + 1):
            data = self._block(block)[column]
            lo = max(first, block * BLOCK) - block * BLOCK
            hi = min(last, (block + 1) * BLOCK - 1) - block * BLOCK
            parts.append(data[lo : hi + 1])
        return np.concatenate(parts)

    def log_closes(self, first: int, last: int) -> np.ndarray:
        return self._range(first, last, 2)

    def returns(self, first: int, last: int) -> np.ndarray:
        return self._range(first, last, 0)

    def states(self, first: int, last: int) -> np.ndarray:
        return self._range(first, last, 1)

    def log_close(self, minute: int) -> float:
        block = minute // BLOCK
        return float(self._block(block)[2][minute - block * BLOCK])

    def state(self, minute: int) -> int:
        block = minute // BLOCK
        return int(self._block(block)[1][minute - block * BLOCK])

    def vol(self, minute: int) -> float:
        # the phases cached in __init__ (this runs at every live generator step)
        return self._after.vol if self._change is not None and minute >= self._change else self._before.vol

    def close_price(self, minute: int, tick: Decimal) -> Decimal:
        """The close of ``minute`` on the tick, as the market prints it."""
        return Decimal(int(close_ticks(np.array([self.log_close(minute)]), float(tick))[0])) * tick


def close_ticks(log_closes: np.ndarray, tick: float) -> np.ndarray:
    """Log closes → closes in whole ticks (what the market prints)."""
    return np.rint(np.exp(log_closes) / tick).astype(np.int64)


# -- history: minutes turned into public trades -----------------------------------------------------------
@dataclass(slots=True)
class HistoryTrades:
    """Back-dated trades of one symbol, sorted by time, as parallel arrays (integer ticks and lots)."""

    ts_ns: np.ndarray  # int64, strictly increasing
    price_ticks: np.ndarray  # int64
    qty_lots: np.ndarray  # int64
    buy: np.ndarray  # bool: taker side
    market: np.ndarray  # bool: taker order type market (else limit)
    minute_count: np.ndarray  # trades per minute (int64)


def generate_history(
    path: ScenarioPath,
    *,
    minutes: int,
    origin_ns: int,
    tick: float,
    typical_qty: float,
    lot_decimals: int,
    min_lots: int,
    seed: int,
) -> HistoryTrades:
    """``minutes`` back-dated minutes ending at the origin, 3-12 trades each at points of a Brownian bridge
    between the minute's open and close (log space, the minute's sigma), the last one exactly at the close."""
    rng = _rng(seed, path.symbol, f"history-trades-{minutes}")
    first = -minutes
    logs = path.log_closes(first - 1, -1)  # open of the first minute, then each close
    lo, lc = logs[:-1], logs[1:]
    change = path.spec.change_at
    vols = np.array([path.vol(first)] * minutes) if change is None or change > -1 else None
    if vols is None:  # a change inside the history (never with change_at >= 0)
        vols = np.array([path.vol(i) for i in range(first, 0)])
    counts = rng.integers(3, 13, minutes)
    total = int(counts.sum())
    minute_of = np.repeat(np.arange(minutes), counts)
    u = rng.random(total)
    order = np.lexsort((u, minute_of))
    u = u[order]
    starts = np.cumsum(counts) - counts
    ends = starts + counts - 1
    prev_u = np.empty(total)
    prev_u[1:] = u[:-1]
    prev_u[starts] = 0.0
    dw = np.sqrt(u - prev_u) * rng.standard_normal(total)
    cs = np.cumsum(dw)
    base = np.where(starts > 0, cs[starts - 1], 0.0)
    w = cs - base[minute_of]
    u_end = u[ends][minute_of]
    frac = u / u_end
    bridge = w - frac * w[ends][minute_of]
    logp = lo[minute_of] + (lc - lo)[minute_of] * frac + vols[minute_of] * bridge
    ticks = np.rint(np.exp(logp) / tick).astype(np.int64)
    ticks[ends] = close_ticks(lc, tick)
    ticks = np.maximum(ticks, 1)
    minute_start = origin_ns + (first + np.arange(minutes, dtype=np.int64)) * MINUTE_NS
    ts = minute_start[minute_of] + (u * (MINUTE_NS - 1)).astype(np.int64)
    ramp = np.arange(total, dtype=np.int64)
    ts = np.maximum.accumulate(ts - ramp) + ramp  # strictly increasing (a ns collision moves by 1 ns)
    scale = 10**lot_decimals
    lots = np.floor(typical_qty * scale * np.exp(rng.normal(0.0, 0.9, total))).astype(np.int64)
    lots = np.maximum(lots, min_lots)
    buy = rng.random(total) < 0.5
    market = rng.random(total) < 0.7
    return HistoryTrades(ts, ticks, lots, buy, market, counts)


# -- ground truth -----------------------------------------------------------------------------------------
MC_MINUTES = 200_000
MC_BURN_IN = 2_000
MC_BATCHES = 50
MC_SEED = 20240613


def hamilton_filter(returns: np.ndarray, drift: float, vol: float, switch_prob: float) -> np.ndarray:
    """Posterior pi_t = P(s_t = +1 | r_1..r_t) of the symmetric two-state chain (Hamilton 1989).

    Prediction: pi_{t|t-1} = pi_{t-1} (1 - p) + (1 - pi_{t-1}) p.
    Update: pi_t = pi_{t|t-1} f_+(r_t) / (pi_{t|t-1} f_+(r_t) + (1 - pi_{t|t-1}) f_-(r_t)), f_+- = N(+-d, sigma^2)
    densities, i.e. in log odds: logit pi_t = logit pi_{t|t-1} + 2 d r_t / sigma^2. Starts from pi_0 = 1/2."""
    out = np.empty(len(returns))
    lr = (2.0 * drift / (vol * vol)) * np.asarray(returns, dtype=float)
    p = switch_prob
    q = 1.0 - p
    pi = 0.5
    exp = math.exp
    for i, x in enumerate(lr.tolist()):
        prior = pi * q + (1.0 - pi) * p
        logit = math.log(prior / (1.0 - prior)) + x
        if logit > 700.0:
            pi = 1.0
        elif logit < -700.0:
            pi = 0.0
        else:
            pi = 1.0 / (1.0 + exp(-logit))
        pi = min(max(pi, 1e-15), 1.0 - 1e-15)
        out[i] = pi
    return out


def forecast_factor(switch_prob: float, horizon: int) -> float:
    """sum_{k=1..h} (1 - 2p)^k: E[R_h | F_t] = d (2 pi_t - 1) * this."""
    a = 1.0 - 2.0 * switch_prob
    return float(sum(a**k for k in range(1, horizon + 1)))


def forward_sums(returns: np.ndarray, horizon: int) -> np.ndarray:
    """R_h at each t: r_{t+1} + ... + r_{t+h} (length n - h; index t = decision at the close of bar t)."""
    cs = np.concatenate(([0.0], np.cumsum(returns)))
    return cs[horizon + 1 :] - cs[1 : len(cs) - horizon]


def _batch_se(values: np.ndarray, batches: int = MC_BATCHES) -> float:
    """Standard error of a mean by non-overlapping batch means (the series is autocorrelated)."""
    n = len(values) // batches * batches
    means = values[:n].reshape(batches, -1).mean(axis=1)
    return float(means.std(ddof=1) / math.sqrt(batches))


def reversal_truth(vol: float, phi: float, horizon: int) -> dict[str, Any]:
    """Truth of the reversal phase (stationary Gaussian AR(1) deviation x, innovation sigma, coefficient phi) at
    ``horizon`` h, in closed form. x_t is observed (the log price minus its level at the change), and
    R_h = x_{t+h} - x_t = -(1 - phi^h) x_t + sum_{k<h} phi^k sigma eps_{t+h-k}: the optimal forecast is
    S = -(1 - phi^h) x_t, with var S = (1 - phi^h)^2 sigma^2 / (1 - phi^2) and noise variance
    sigma^2 (1 - phi^{2h}) / (1 - phi^2). (S, R_h) is bivariate normal with correlation rho = sd S / sd R_h, so
    P(sign S = sign R_h) = 1/2 + arcsin(rho) / pi (the orthant probability, e.g. Johnson & Kotz, "Distributions
    in Statistics: Continuous Multivariate Distributions", ch. 36), and E[R_h 1{S > 0}] = E[S 1{S > 0}] =
    sd S / sqrt(2 pi). The oracle knows no more than the filter (the state is observed)."""
    var_x = vol * vol / (1.0 - phi * phi)
    a = 1.0 - phi**horizon
    var_s = a * a * var_x
    var_r = var_s + vol * vol * (1.0 - phi ** (2 * horizon)) / (1.0 - phi * phi)
    rho = math.sqrt(var_s / var_r)
    hit = 0.5 + math.asin(rho) / math.pi
    long_ret = math.sqrt(var_s) / math.sqrt(2.0 * math.pi)
    return {
        "drift": 0.0,
        "vol": vol,
        "half_life": math.log(0.5) / math.log(phi),
        "hit_rate_optimal": hit,
        "hit_rate_optimal_se": 0.0,
        "hit_rate_oracle": hit,
        "hit_rate_oracle_se": 0.0,
        "expected_return_optimal_long": long_ret,
        "expected_return_optimal_long_se": 0.0,
        "expected_return_optimal_long_per_trade": 2.0 * long_ret,
        "long_fraction": 0.5,
        "corr_optimal": rho,
        "method": "closed form (stationary Gaussian AR(1) deviation from the level at the change; the first "
        "half-lives after the change are not yet stationary)",
        "decisions": None,
    }


def _phase_truth(drift: float, vol: float, switch_prob: float, horizon: int, minutes: int) -> dict[str, Any]:
    if drift == 0.0:
        return {
            "drift": drift,
            "vol": vol,
            "hit_rate_optimal": 0.5,
            "hit_rate_optimal_se": 0.0,
            "hit_rate_oracle": 0.5,
            "hit_rate_oracle_se": 0.0,
            "expected_return_optimal_long": 0.0,
            "expected_return_optimal_long_se": 0.0,
            "expected_return_optimal_long_per_trade": 0.0,
            "long_fraction": 0.0,
            "corr_optimal": 0.0,
            "method": "closed form (d = 0: R_h is symmetric and independent of the past)",
            "decisions": None,
        }
    return _mc_truth(drift, vol, switch_prob, horizon, minutes)


@functools.lru_cache(maxsize=64)
def _mc_truth(drift: float, vol: float, switch_prob: float, horizon: int, minutes: int) -> dict[str, Any]:
    rng = np.random.Generator(np.random.PCG64(MC_SEED))
    n = minutes + MC_BURN_IN + horizon
    flips = rng.random(n) < switch_prob
    flips[0] = False
    s0 = 1 if rng.random() < 0.5 else -1
    states = s0 * np.where(np.cumsum(flips) % 2 == 0, 1, -1)
    returns = drift * states + vol * rng.standard_normal(n)
    pi = hamilton_filter(returns, drift, vol, switch_prob)
    forward = forward_sums(returns, horizon)  # index t: decision at the close of bar t
    t = slice(MC_BURN_IN, MC_BURN_IN + minutes)
    fwd = forward[t]
    signal = (2.0 * pi[t] - 1.0) * drift * forecast_factor(switch_prob, horizon)
    hits = (np.sign(signal) == np.sign(fwd)).astype(float)
    oracle = (states[t] == np.sign(fwd)).astype(float)
    long_ret = np.where(signal > 0, fwd, 0.0)
    long_fraction = float((signal > 0).mean())
    return {
        "drift": drift,
        "vol": vol,
        "hit_rate_optimal": float(hits.mean()),
        "hit_rate_optimal_se": _batch_se(hits),
        "hit_rate_oracle": float(oracle.mean()),
        "hit_rate_oracle_se": _batch_se(oracle),
        "expected_return_optimal_long": float(long_ret.mean()),
        "expected_return_optimal_long_se": _batch_se(long_ret),
        "expected_return_optimal_long_per_trade": float(long_ret.sum() / max((signal > 0).sum(), 1)),
        "long_fraction": long_fraction,
        "corr_optimal": float(np.corrcoef(signal, fwd)[0, 1]),
        "method": f"Monte Carlo, {minutes} simulated minutes (seed {MC_SEED}), SE by {MC_BATCHES} batch means",
        "decisions": minutes,
    }


def ground_truth(spec: ScenarioSpec, horizon: int = 15, *, minutes: int = MC_MINUTES) -> dict[str, Any]:
    """What the best possible predictor achieves at ``horizon`` bars, per phase of the scenario.

    A decision at the close of bar t concerns R_h = r_{t+1} + ... + r_{t+h} (log return). The optimal predictor
    is built on the Hamilton (1989) filter of the hidden chain ("A New Approach to the Economic Analysis of
    Nonstationary Time Series and the Business Cycle", Econometrica 57(2); the discrete-time Wonham filter),
    pi_t = P(s_t = +1 | r_1..r_t):  E[R_h | F_t] = d (2 pi_t - 1) sum_{k=1..h} (1 - 2p)^k, since
    E[s_{t+k} | s_t] = (1 - 2p)^k s_t. It is also the best sign call: by the symmetry s -> -s,
    P(R_h > 0 | F_t) = pi_t q + (1 - pi_t)(1 - q) with q = P(R_h > 0 | s_t = +1) > 1/2 (p < 1/2), which exceeds
    1/2 exactly when E[R_h | F_t] > 0.

    - ``hit_rate_optimal``: P(sign E[R_h|F_t] = sign R_h);
    - ``hit_rate_oracle``: the same with s_t known (sign s_t); with p -> 0 it tends to Phi(d sqrt(h) / sigma);
    - ``expected_return_optimal_long``: mean over decisions of R_h 1{E[R_h|F_t] > 0} (gross, log return), and
      ``_per_trade`` the mean over the decisions that are long;
    - ``corr_optimal``: corr(E[R_h|F_t], R_h).

    None is closed form for d > 0: they are estimated by a deterministic Monte Carlo (fixed seed ``MC_SEED``,
    ``minutes`` stationary minutes after a burn-in) with standard errors from batch means (windows overlap, so
    the decisions are autocorrelated). With d = 0 (random walk) they are exactly 1/2, 1/2, 0 and 0.
    """
    if not spec.is_process:
        raise ValueError("the regimes scenario has no known ground truth")
    if not 1 <= horizon <= 10_000:
        raise ValueError("horizon must be in 1..10000 bars")
    phases = []
    for phase in spec.phases():
        if phase.half_life > 0:
            truth = reversal_truth(phase.vol, phase.phi, horizon)
        else:
            truth = _phase_truth(phase.drift, phase.vol, spec.switch_prob, horizon, minutes)
        phases.append({"phase": phase.name, "from_minute": phase.start, **truth})
    return {
        "scenario": spec.text,
        "horizon": horizon,
        "switch_prob": spec.switch_prob,
        "forecast_factor": forecast_factor(spec.switch_prob, horizon),
        "phases": phases,
    }
