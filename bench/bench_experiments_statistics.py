"""Benchmark: the experiment statistics' error rates by simulation (issue 14, "Proof by simulation").

    .venv/bin/python bench/bench_experiments_statistics.py [--runs 10000] [--outcomes 2000] [--tau2 0.04] [--seed 1]

1. A/A with continuous peeking: `runs` experiments of `outcomes` paired differences with mean 0 and standard
   deviation 1, a look after every outcome; a run is a false positive if the p-value fell below alpha at any look.
   For `experiments.statistics.always_valid_p` with sigma2 known, with sigma2 estimated on a 100-outcome burn-in
   (then passed for the outcomes after it), and with the issue's plug-in (sigma2=None, the running sample variance
   from n = 2); against the fixed-sample t-test read at every look. Target: always-valid <= alpha.
2. Power: paired mean differences of 0.1, 0.2 and 0.3 standard deviations, the share of runs whose always-valid
   p (sigma2 known, and with the burn-in) is below alpha by n = 250, 500, 1,000, 2,000, and the median n at
   detection; beside it the power of a single fixed-sample t-test at that n (what peeking costs).
3. SRM: false-alarm rate at p < 0.001 (flag) and p < 0.01 (warn) of `srm` on a correct router, 50/50 and 50/25/25
   over 10,000 decisions, `runs` times; and how often a broken router (50.75/49.25 and 51.5/48.5 sent for 50/50)
   is flagged.

Every rate comes with its 95 % Wilson interval and its run count. Pure numpy/scipy: no database, no Django.
Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import special

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from experiments.statistics import always_valid_p, srm  # noqa: E402
from models_registry.evaluation.intervals import wilson_interval  # noqa: E402

ALPHA = 0.05
BURN_IN = 100
CHUNK = 500  # runs per block of random numbers (memory: CHUNK x outcomes floats)
LOOKS = (250, 500, 1000, 2000)


def rate(hits: int, runs: int) -> dict[str, Any]:
    low, high = wilson_interval(hits, runs)
    return {"runs": runs, "hits": hits, "rate": round(hits / runs, 5), "wilson95": [round(low, 5), round(high, 5)]}


def peeked_t_rejects(x: np.ndarray) -> np.ndarray:
    """Per run: did the one-sample t-test's p fall below alpha at any look n = 2..N (a look after every outcome)?"""
    n = np.arange(2, x.shape[1] + 1, dtype=np.float64)
    s = np.cumsum(x, axis=1)[:, 1:]
    ss = np.cumsum(x * x, axis=1)[:, 1:]
    var = np.maximum(ss - s * s / n, 0.0) / (n - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (s / n) / np.sqrt(var / n)
    p = 2.0 * special.stdtr(n - 1, -np.abs(t))
    return (p < ALPHA).any(axis=1)


def fixed_t_p(x: np.ndarray, n: int) -> np.ndarray:
    """The two-sided one-sample t-test's p on the first n outcomes of each run (one look)."""
    head = x[:, :n]
    t = head.mean(axis=1) / (head.std(axis=1, ddof=1) / np.sqrt(n))
    return 2.0 * special.stdtr(n - 1, -np.abs(t))


def burn_in_p(row: np.ndarray, tau2: float) -> np.ndarray:
    """p after each outcome with sigma2 from the first BURN_IN outcomes; 1 during the burn-in."""
    p = np.ones(len(row))
    p[BURN_IN:] = always_valid_p(row[BURN_IN:], tau2, sigma2=float(np.var(row[:BURN_IN], ddof=1)))
    return p


def aa_peeking(rng: np.random.Generator, runs: int, outcomes: int, tau2: float) -> dict[str, Any]:
    hits = {"always_valid_sigma2_known": 0, "always_valid_burn_in": 0, "always_valid_plug_in": 0, "t_test_peeked": 0}
    started = time.perf_counter()
    for start in range(0, runs, CHUNK):
        x = rng.normal(0.0, 1.0, (min(CHUNK, runs - start), outcomes))
        for row in x:
            hits["always_valid_sigma2_known"] += bool(always_valid_p(row, tau2, sigma2=1.0)[-1] < ALPHA)
            hits["always_valid_burn_in"] += bool(burn_in_p(row, tau2)[-1] < ALPHA)
            hits["always_valid_plug_in"] += bool(always_valid_p(row, tau2)[-1] < ALPHA)
        hits["t_test_peeked"] += int(np.count_nonzero(peeked_t_rejects(x)))
    return {
        "alpha": ALPHA,
        "outcomes_per_run": outcomes,
        "looks_per_run": outcomes,
        "tau2": tau2,
        "burn_in": BURN_IN,
        "type_one_error": {name: rate(h, runs) for name, h in hits.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }


def power(rng: np.random.Generator, runs: int, outcomes: int, tau2: float, effect: float) -> dict[str, Any]:
    looks = [n for n in LOOKS if n <= outcomes]
    first_known: list[int] = []
    first_burn: list[int] = []
    fixed_hits = dict.fromkeys(looks, 0)
    for start in range(0, runs, CHUNK):
        x = rng.normal(effect, 1.0, (min(CHUNK, runs - start), outcomes))
        for row in x:
            for p, out in ((always_valid_p(row, tau2, sigma2=1.0), first_known), (burn_in_p(row, tau2), first_burn)):
                below = p < ALPHA
                out.append(int(np.argmax(below)) + 1 if below[-1] else outcomes + 1)
        for n in looks:
            fixed_hits[n] += int(np.count_nonzero(fixed_t_p(x, n) < ALPHA))

    def by_look(first: list[int]) -> dict[str, Any]:
        arr = np.asarray(first)
        detected = arr[arr <= outcomes]
        return {
            **{f"n<={n}": rate(int(np.count_nonzero(arr <= n)), runs) for n in looks},
            "median_n_at_detection": int(np.median(detected)) if len(detected) else None,
        }

    return {
        "effect_sd": effect,
        "always_valid_sigma2_known": by_look(first_known),
        "always_valid_burn_in": by_look(first_burn),
        "fixed_t_test_one_look": {f"n={n}": rate(h, runs) for n, h in fixed_hits.items()},
    }


def srm_rates(rng: np.random.Generator, runs: int, decisions: int) -> dict[str, Any]:
    out: dict[str, Any] = {"decisions_per_run": decisions}
    cases = {
        "correct_50_50": ([0.5, 0.5], [50, 50]),
        "correct_50_25_25": ([0.5, 0.25, 0.25], [50, 25, 25]),
        "broken_50.75_49.25": ([0.5075, 0.4925], [50, 50]),
        "broken_51.5_48.5": ([0.515, 0.485], [50, 50]),
    }
    for name, (actual, allocation) in cases.items():
        counts = rng.multinomial(decisions, actual, size=runs)
        p = np.array([srm(row, allocation).p_value for row in counts])
        out[name] = {
            "flag_p<0.001": rate(int(np.count_nonzero(p < 0.001)), runs),
            "warn_p<0.01": rate(int(np.count_nonzero(p < 0.01)), runs),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--outcomes", type=int, default=2_000)
    parser.add_argument("--tau2", type=float, default=0.04, help="mixing variance, in (standard deviation)^2")
    parser.add_argument("--srm-decisions", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.outcomes <= BURN_IN:
        parser.error(f"--outcomes must exceed the {BURN_IN}-outcome burn-in")
    rng = np.random.default_rng(args.seed)
    started = time.perf_counter()
    report: dict[str, Any] = {
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "command": " ".join([".venv/bin/python", "bench/bench_experiments_statistics.py", *sys.argv[1:]]),
        "seed": args.seed,
    }
    report["aa_continuous_peeking"] = aa_peeking(rng, args.runs, args.outcomes, args.tau2)
    print(json.dumps({"aa_continuous_peeking": report["aa_continuous_peeking"]}), file=sys.stderr, flush=True)
    report["power"] = [power(rng, args.runs, args.outcomes, args.tau2, effect) for effect in (0.1, 0.2, 0.3)]
    report["srm"] = srm_rates(rng, args.runs, args.srm_decisions)
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
