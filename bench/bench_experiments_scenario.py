"""Benchmark: the experiments' decision rule on the learnable scenario's ground truth, and SRM on the real router
(issue 14, "Proof by simulation").

    .venv/bin/python bench/bench_experiments_scenario.py [--runs 10000] [--power-runs 2000] [--days 14]
        [--horizon 60] [--cost 0.009] [--burn-in 100 30 10] [--srm-experiments 1000] [--seed 1]

The market is `kraken_sim.scenarios` (`KRAKEN_SIM_SCENARIO`'s default, `trend:drift=0.0003,regime_minutes=480`:
hidden +/- drift regimes), one path per run (`ScenarioPath`, seed = run), one decision per 1-minute bar over
`--days`, each about the next `--horizon` bars (overlapping windows, as the registry's outcomes). A version is
long (spot) when its expected return over the horizon beats the round-trip `--cost` (the system's cost rule),
else flat; its net return per decision is position x (R_h - cost). The versions:

- ``optimal``: the scenario's Bayes-optimal predictor (`hamilton_filter` with the true parameters, E[R_h | F_t] =
  d (2 pi_t - 1) sum (1 - 2p)^k: what `ground_truth` measures);
- ``noisy(k)``: the same filter reading the returns through independent noise of standard deviation k x vol (a
  worse version; two noisy(k) versions with independent noise are equally good: an A/A pair).

The experiment is a shadow test (paired differences treatment - control on the same decisions) decided by the
product's rule (`experiments.sequential`): only one decision every `--horizon` bars enters the sequential test
(`on_grid`: non-overlapping outcomes), the first `--burn-in` of those fix a variance floor (their variance; kept
burning while it is 0), each later one is a look whose variance is max(floor, sample variance of every decision so
far) (`Stream.look_variance`), tau^2 = 0.04 x that variance, and the always-valid p (running minimum of
`sequential.inverse_lambda`, checked here against `sequential.Stream` fed every decision as the intake does,
`paired_look` after each) is read after every one. The previous rule (the burn-in variance fixed for the rest of
the run: "frozen", `experiments.statistics.always_valid_p` with that sigma^2) is measured on the same runs for
comparison. Reported, with 95 % Wilson intervals:

1. A/A (noisy(1) vs noisy(1)): share of runs whose p ever fell below alpha (type-I error with continuous
   peeking), per rule and burn-in;
2. power: optimal vs noisy(k) for k = 1, 2, 4, the stated effect (mean paired net difference per decision over
   all runs, its standard error, and in long-run standard deviations), per rule and burn-in the share detected by
   day 1, 3, 7 and 14 and the median decisions to detection (counting every decision, on the grid or not);
3. SRM on the real router (`experiments.router.route_bucket`, SHA-256 of experiment, symbol and bar time):
   `--srm-experiments` experiment ids x 10,000 one-minute decisions, false-alarm rate at p < 0.001 (flag) and
   p < 0.01 (warn) for 50/50 and 50/25/25.

Needs Django settings for the router's import (no database). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "galfriday_site.settings")

from experiments.sequential import Stream, inverse_lambda, on_grid, paired_look  # noqa: E402
from experiments.statistics import always_valid_p, srm  # noqa: E402
from kraken_sim.scenarios import ScenarioPath, forecast_factor, ground_truth, parse_scenario  # noqa: E402
from models_registry.evaluation.intervals import long_run_variance, wilson_interval  # noqa: E402

ALPHA = 0.05
MIXING = 0.04  # the experiment's default mixing_variance (tau^2 in burn-in variances)
LEARNABLE = "trend:drift=0.0003,regime_minutes=480"
CHUNK = 200
NOISE_LEVELS = (1.0, 2.0, 4.0)
DAYS_REPORTED = (1, 3, 7, 14, 28)


def rate(hits: int, runs: int) -> dict[str, Any]:
    low, high = wilson_interval(hits, runs)
    return {"runs": runs, "hits": hits, "rate": round(hits / runs, 5), "wilson95": [round(low, 5), round(high, 5)]}


def paths(spec: Any, seeds: range, n: int) -> np.ndarray:
    """Per-minute log returns 0..n-1 of the scenario, one row per seed (the simulator's own generator)."""
    return np.stack([ScenarioPath(spec, seed, "BTC/USD", 50_000.0).returns(0, n - 1) for seed in seeds])


def filtered(returns: np.ndarray, drift: float, vol: float, switch: float) -> np.ndarray:
    """`kraken_sim.scenarios.hamilton_filter` over many runs at once (rows), in log odds."""
    scale = 2.0 * drift / (vol * vol)
    q = 1.0 - switch
    pi = np.full(returns.shape[0], 0.5)
    out = np.empty_like(returns)
    for t in range(returns.shape[1]):
        prior = pi * q + (1.0 - pi) * switch
        logit = np.log(prior / (1.0 - prior)) + scale * returns[:, t]
        pi = np.clip(1.0 / (1.0 + np.exp(-np.clip(logit, -700.0, 700.0))), 1e-15, 1.0 - 1e-15)
        out[:, t] = pi
    return out


def net_returns(pi: np.ndarray, forward: np.ndarray, drift: float, factor: float, cost: float) -> np.ndarray:
    expected = drift * (2.0 * pi - 1.0) * factor
    return np.where(expected > cost, forward - cost, 0.0)


def sequential_p(d: np.ndarray, horizon: int, burn_in: int, lags: int = 0) -> tuple[np.ndarray, int]:
    """The product's paired decision statistic over a run's differences `d` (one per decision): p after each
    decision on the grid (1 during the burn-in) and the grid index where the burn-in variance was fixed.

    As `experiments.sequential.paired_look`: the grid's first `burn_in` values fix sigma^2's floor (their variance;
    kept burning while it is 0), and each later grid value is a look with the variance max(floor, sample variance
    of every decision so far, on the grid or not), tau^2 = mixing x that, 1/Lambda from `inverse_lambda` itself."""
    g = grid(d, horizon)
    p = np.ones(len(g))
    changed = np.flatnonzero(g != g[0])
    if not len(changed):
        return p, len(g)  # no dispersion at all: the variance never fixes, p stays 1
    for n in range(max(burn_in, int(changed[0]) + 1), len(g)):  # a constant prefix has a zero variance
        floor = long_run_variance(g[:n], lags)
        if math.isfinite(floor) and floor > 0.0:
            seen = np.arange(n, len(g)) * horizon + 1  # decisions in the estimates at each look
            y = d - d[0]  # shifted as `sequential.Moments`
            total, total_sq = np.cumsum(y)[seen - 1], np.cumsum(y * y)[seen - 1]
            running = np.maximum(total_sq - total * total / seen, 0.0) / (seen - 1)
            variance = np.maximum(floor, running).tolist()
            means = (np.cumsum(g[n:]) / np.arange(1, len(g) - n + 1)).tolist()
            lowest = 1.0
            for k, (mean, var) in enumerate(zip(means, variance, strict=True)):
                lowest = min(lowest, inverse_lambda(mean, var / (k + 1), MIXING * var))
                p[n + k] = lowest
            return p, n
    return p, len(g)


def grid(d: np.ndarray, horizon: int) -> np.ndarray:
    """The decisions that enter the sequential test: one every `horizon` bars (`experiments.sequential.on_grid`:
    bar index divisible by h; the paths start at minute 0)."""
    return d[::horizon]


def frozen_p(d: np.ndarray, horizon: int, burn_in: int) -> np.ndarray:
    """The previous rule, for comparison: sigma^2 fixed on the burn-in for the rest of the run (no floor)."""
    g = grid(d, horizon)
    p = np.ones(len(g))
    for n in range(burn_in, len(g)):
        sigma2 = long_run_variance(g[:n], 0)
        if math.isfinite(sigma2) and sigma2 > 0.0:
            p[n:] = always_valid_p(g[n:], MIXING * sigma2, sigma2=sigma2)
            break
    return p


def check_against_stream(d: np.ndarray, burn_in: int, horizon: int) -> None:
    """The vectorised statistic equals `experiments.sequential` fed every decision one at a time, on the grid or
    not, as the intake does (`Stream.add(x, sequential=on_grid(...))`, lags 0, `paired_look` after each)."""
    start = datetime(2026, 11, 2, tzinfo=UTC)  # midnight: minute index divisible by any h dividing 1440
    stream = Stream(burn_in=burn_in, lags=0)
    running = 1.0
    expected, _ = sequential_p(d, horizon, burn_in)
    k = -1
    for i, x in enumerate(d.tolist()):
        sequential = on_grid(start + timedelta(minutes=i), horizon)
        assert sequential == (i % horizon == 0)
        stream.add(x, sequential=sequential)
        if not sequential:
            continue
        k += 1
        look = paired_look(stream, MIXING)
        if look is not None:
            running = min(running, look.inverse_lambda)
        assert math.isclose(running, expected[k], rel_tol=1e-6, abs_tol=1e-12), (k, running, expected[k])


def scenario(args: argparse.Namespace) -> dict[str, Any]:
    spec = parse_scenario(LEARNABLE)
    params = spec.p
    drift, vol, switch = params["drift"], params["vol"], spec.switch_prob
    horizon, cost = args.horizon, args.cost
    factor = forecast_factor(switch, horizon)
    decisions = args.days * 1440
    burns = list(args.burn_in)
    truth = ground_truth(spec, horizon=horizon)["phases"][0]
    rules = ("floor", "frozen")  # the product's rule, and the previous one (burn-in variance fixed) to compare
    aa_hits = {(rule, burn): 0 for rule in rules for burn in burns}
    power: dict[float, dict[str, Any]] = {
        k: {"first": {(rule, burn): [] for rule in rules for burn in burns}, "run_means": [], "lrv": []}
        for k in NOISE_LEVELS
    }
    long_fraction = {"optimal": 0.0, **{f"noisy({k:g})": 0.0 for k in NOISE_LEVELS}}
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    checked = False
    total = max(args.runs, args.power_runs)
    for lo in range(0, total, CHUNK):
        seeds = range(args.seed * 1_000_000 + lo, args.seed * 1_000_000 + min(lo + CHUNK, total))
        r = paths(spec, seeds, decisions + horizon)
        cs = np.concatenate([np.zeros((r.shape[0], 1)), np.cumsum(r, axis=1)], axis=1)
        forward = cs[:, horizon + 1 : horizon + 1 + decisions] - cs[:, 1 : 1 + decisions]  # R_h after bar t
        observed = r[:, :decisions]

        def arm(noise_sd: float, observed: np.ndarray = observed, forward: np.ndarray = forward) -> np.ndarray:
            seen = observed if noise_sd == 0 else observed + rng.normal(0.0, noise_sd * vol, observed.shape)
            return net_returns(filtered(seen, drift, vol, switch), forward, drift, factor, cost)

        optimal = arm(0.0)
        long_fraction["optimal"] += float((optimal != 0).mean()) * len(seeds)
        if lo < args.runs:
            a, b = arm(1.0), arm(1.0)
            for row in range(min(len(seeds), args.runs - lo)):
                d = b[row] - a[row]
                if not checked:
                    for burn in burns:
                        check_against_stream(d, burn, horizon)
                    checked = True
                for burn in burns:
                    aa_hits["floor", burn] += bool(sequential_p(d, horizon, burn)[0][-1] < ALPHA)
                    aa_hits["frozen", burn] += bool(frozen_p(d, horizon, burn)[-1] < ALPHA)
        if lo < args.power_runs:
            for k in NOISE_LEVELS:
                control = arm(k)
                long_fraction[f"noisy({k:g})"] += float((control != 0).mean()) * len(seeds)
                stats = power[k]
                for row in range(min(len(seeds), args.power_runs - lo)):
                    d = optimal[row] - control[row]
                    stats["run_means"].append(float(d.mean()))
                    stats["lrv"].append(long_run_variance(d, 2 * horizon))
                    for burn in burns:
                        for rule in rules:
                            p = sequential_p(d, horizon, burn)[0] if rule == "floor" else frozen_p(d, horizon, burn)
                            below = p < ALPHA
                            # in decisions (every bar), though only the grid's enter the test
                            first = (int(np.argmax(below)) * horizon + 1) if below[-1] else decisions + 1
                            stats["first"][rule, burn].append(first)
        print(json.dumps({"runs_done": min(lo + CHUNK, total), "seconds": round(time.perf_counter() - started)}),
              file=sys.stderr, flush=True)  # fmt: skip

    def detected(first: list[int]) -> dict[str, Any]:
        arr = np.asarray(first)
        found = arr[arr <= decisions]
        out = {
            f"by_day_{day}": rate(int(np.count_nonzero(arr <= day * 1440)), len(arr))
            for day in DAYS_REPORTED
            if day <= args.days
        }
        out["median_decisions_to_detection"] = int(np.median(found)) if len(found) else None
        return out

    power_rows = []
    for k, stats in power.items():
        if not stats["run_means"]:
            continue
        means = np.asarray(stats["run_means"])
        sd = math.sqrt(float(np.mean(stats["lrv"])))
        effect = float(means.mean())
        power_rows.append(
            {
                "treatment": "optimal",
                "control": f"noisy({k:g})",
                "effect_per_decision": effect,
                "effect_se": float(means.std(ddof=1) / math.sqrt(len(means))),
                "effect_in_long_run_sd": effect / sd if sd > 0 else None,
                **{f"{rule}_burn_in_{burn}": detected(first) for (rule, burn), first in stats["first"].items()},
            }
        )
    return {
        "scenario": spec.text,
        "horizon": horizon,
        "round_trip_cost": cost,
        "decisions_per_run": decisions,
        "grid": f"one decision every {horizon} bars enters the test ({decisions // horizon} per run)",
        "mixing_variance": MIXING,
        "alpha": ALPHA,
        "ground_truth": {
            k: truth[k]
            for k in ("hit_rate_optimal", "expected_return_optimal_long", "expected_return_optimal_long_per_trade")
        },
        "long_fraction": {
            name: round(v / (max(args.runs, args.power_runs) if name == "optimal" else max(args.power_runs, 1)), 4)
            for name, v in long_fraction.items()
        },
        "rules": {
            "floor": "the product's: variance max(burn-in variance, sample variance of every decision so far)",
            "frozen": "the previous rule, for comparison: the burn-in variance fixed for the rest of the run",
        },
        "aa_noisy1_vs_noisy1": (
            {f"{rule}_burn_in_{b}": rate(h, args.runs) for (rule, b), h in aa_hits.items()} if args.runs else None
        ),
        "power": power_rows,
        "seconds": round(time.perf_counter() - started, 1),
    }


def srm_router(experiments: int, decisions: int) -> dict[str, Any]:
    import django

    django.setup()
    from experiments.router import BUCKETS, route_bucket

    start = datetime(2026, 11, 2, tzinfo=UTC)
    bars = [start + timedelta(minutes=i) for i in range(decisions)]
    cases = {"50/50": [50, 50], "50/25/25": [50, 25, 25]}
    flags = dict.fromkeys(cases, 0)
    warns = dict.fromkeys(cases, 0)
    started = time.perf_counter()
    for experiment_id in range(1, experiments + 1):
        buckets = np.fromiter((route_bucket(experiment_id, "BTC/USD", bar) for bar in bars), dtype=np.int64)
        for name, allocation in cases.items():
            upper = np.cumsum(allocation) * BUCKETS // 100
            counts = np.bincount(np.searchsorted(upper, buckets, side="right"), minlength=len(allocation))
            p = srm(counts, allocation).p_value
            flags[name] += p < 0.001
            warns[name] += p < 0.01
    return {
        "experiments": experiments,
        "decisions_per_experiment": decisions,
        **{
            name: {"flag_p<0.001": rate(flags[name], experiments), "warn_p<0.01": rate(warns[name], experiments)}
            for name in cases
        },
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000, help="A/A runs")
    parser.add_argument("--power-runs", type=int, default=2_000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--horizon", type=int, default=60)
    parser.add_argument("--cost", type=float, default=0.009, help="round trip: 2 x (taker 0.40 %% + slippage 5 bp)")
    parser.add_argument("--burn-in", type=int, nargs="+", default=[100, 30, 10])
    parser.add_argument("--srm-experiments", type=int, default=1000)
    parser.add_argument("--srm-decisions", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    report: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, load {os.getloadavg()[0]:.1f}",
        "command": " ".join([".venv/bin/python", "bench/bench_experiments_scenario.py", *sys.argv[1:]]),
    }
    if args.srm_experiments:
        report["srm_real_router"] = srm_router(args.srm_experiments, args.srm_decisions)
        print(json.dumps(report["srm_real_router"]), file=sys.stderr, flush=True)
    report["learnable_scenario"] = scenario(args)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
