"""Online drift detectors (models_registry.drift.detectors: river's ADWIN, Page-Hinkley, DDM) on synthetic 0/1
error streams with a known change point: detection delay (median, p90, in observations after the change) and
the share of streams that missed it, per shift of the error rate; false alarms per 10,000 observations on
streams without a change; cost per observation.

Streams are Bernoulli(p_before) then Bernoulli(p_after) from `change_at` on (independent observations: the drift
check feeds the detectors one outcome per horizon, so forward windows do not overlap). A worse change point
before the change counts as an early (false) alarm; the delay is that of the first worse change point at or
after the change.

    .venv/bin/python bench/bench_drift_detectors.py                 # 1,000 streams per setting
    .venv/bin/python bench/bench_drift_detectors.py --streams 50    # quick look
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from models_registry.drift.detectors import (
    DEFAULT_PARAMETERS,
    DETECTORS,
    bernoulli_streams,
    detection_delays,
    false_alarms_per_10k,
    run_detector,
)

P_BEFORE = 0.45
SHIFTS = (0.05, 0.10, 0.20)
CHANGE_AT = 1000
AFTER = 4000
NO_CHANGE_LENGTH = 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=20261207)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args()

    results: list[dict[str, object]] = []
    started = time.perf_counter()
    for k, shift in enumerate(SHIFTS):
        streams = bernoulli_streams(
            streams=args.streams,
            length=CHANGE_AT + AFTER,
            p_before=P_BEFORE,
            p_after=P_BEFORE + shift,
            change_at=CHANGE_AT,
            seed=args.seed + k,
        )
        for name in DETECTORS:
            summary = detection_delays(name, streams, CHANGE_AT).summary()
            results.append({"setting": f"{P_BEFORE:.2f} -> {P_BEFORE + shift:.2f}", **summary})
    quiet = bernoulli_streams(
        streams=args.streams,
        length=NO_CHANGE_LENGTH,
        p_before=P_BEFORE,
        p_after=P_BEFORE,
        change_at=None,
        seed=args.seed - 1,
    )
    false_alarms = {}
    cost_us = {}
    for name in DETECTORS:
        t0 = time.perf_counter()
        false_alarms[name] = false_alarms_per_10k(name, quiet)
        cost_us[name] = (time.perf_counter() - t0) / quiet.size * 1e6
        run_detector(name, quiet[0])  # warm
    doc = {
        "streams_per_setting": args.streams,
        "p_before": P_BEFORE,
        "change_at": CHANGE_AT,
        "observations_after_change": AFTER,
        "no_change_length": NO_CHANGE_LENGTH,
        "parameters": DEFAULT_PARAMETERS,
        "delays": results,
        "false_alarms_per_10k": false_alarms,
        "cost_us_per_observation": cost_us,
        "seconds": time.perf_counter() - started,
        "python": platform.python_version(),
    }
    print(
        "| setting (error rate) | detector | streams | median delay | p90 delay | missed (of streams) | early alarms |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['setting']} | {r['detector']} | {r['streams']} | {r['delay_median']} | {r['delay_p90']} | "
            f"{r['missed']} | {r['early_alarms']} |"
        )
    print()
    print("| detector | false alarms per 10,000 observations (no change) | µs per observation |")
    print("|---|---|---|")
    for name in DETECTORS:
        print(f"| {name} | {false_alarms[name]:.2f} | {cost_us[name]:.2f} |")
    print(f"\n{doc['seconds']:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
