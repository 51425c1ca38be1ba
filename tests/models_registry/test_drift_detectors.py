"""The online drift detectors (river's ADWIN, Page-Hinkley, DDM through models_registry.drift.detectors): change
points where the error rate rises, none where it does not, and a fast subset of bench/bench_drift_detectors.py
whose bounds come from the benchmark's figures (BENCHMARKS.md, 1,000 streams per setting) with room for the
smaller sample (no database)."""

from __future__ import annotations

import numpy as np
import pytest

from models_registry.drift.detectors import (
    DETECTORS,
    bernoulli_streams,
    detection_delays,
    false_alarms_per_10k,
    make_detector,
    run_detector,
    run_detectors,
)

CHANGE_AT = 1000
# bench, 0.45 -> 0.65 at observation 1,000 (1,000 streams): median delay adwin 215, page_hinkley 97, ddm 227;
# p90 343 / 157 / 1136; no change: 0.00 / 2.53 / 0.15 false alarms per 10,000 observations
MEDIAN_DELAY_BOUND = {"adwin": 320, "page_hinkley": 150, "ddm": 400}
MISSED_BOUND = {"adwin": 1, "page_hinkley": 1, "ddm": 3}
FALSE_ALARM_BOUND = {"adwin": 0.5, "page_hinkley": 5.0, "ddm": 1.5}


@pytest.mark.parametrize("name", DETECTORS)
def test_detection_delay_on_a_known_change_point_is_within_the_benchmarks_bound(name: str) -> None:
    streams = bernoulli_streams(streams=50, length=5000, p_before=0.45, p_after=0.65, change_at=CHANGE_AT, seed=11)
    stats = detection_delays(name, streams, CHANGE_AT)
    summary = stats.summary()
    assert summary["missed"] <= MISSED_BOUND[name]
    assert summary["delay_median"] is not None
    assert summary["delay_median"] <= MEDIAN_DELAY_BOUND[name]


@pytest.mark.parametrize("name", DETECTORS)
def test_false_alarms_without_change_are_within_the_benchmarks_bound(name: str) -> None:
    quiet = bernoulli_streams(streams=20, length=10_000, p_before=0.45, p_after=0.45, change_at=None, seed=12)
    assert false_alarms_per_10k(name, quiet) <= FALSE_ALARM_BOUND[name]


def test_a_rise_of_the_error_rate_is_a_worse_change_point_of_every_detector() -> None:
    rng = np.random.default_rng(3)
    errors = np.concatenate([rng.random(2000) < 0.3, rng.random(2000) < 0.8]).astype(float)
    runs = run_detectors(errors)
    for name in DETECTORS:
        after = [c for c in runs[name].worse_change_points if c.index >= 2000]  # earlier ones are false alarms
        assert after, name
        assert after[0].index < 2400, (name, after[0])
    adwin = runs["adwin"].worse_change_points[0]
    assert adwin.before is not None
    assert adwin.after is not None
    assert adwin.after > adwin.before
    assert 1000 <= adwin.start <= adwin.index  # ADWIN's kept window starts between the old data and the alarm


def test_a_fall_of_the_error_rate_is_not_a_worse_change_point() -> None:
    rng = np.random.default_rng(4)
    errors = np.concatenate([rng.random(2000) < 0.7, rng.random(2000) < 0.2]).astype(float)
    runs = run_detectors(errors)
    for name in ("page_hinkley", "ddm"):  # an improvement is no alarm (up mode; DDM by construction)
        assert not [c for c in runs[name].worse_change_points if c.index >= 2000], name
    assert runs["adwin"].change_points  # ADWIN sees the change ...
    assert not [c for c in runs["adwin"].worse_change_points if c.index >= 2000]  # ... as an improvement


def test_recomputing_from_the_same_stream_gives_the_same_change_points() -> None:
    errors = bernoulli_streams(streams=1, length=4000, p_before=0.4, p_after=0.7, change_at=2000, seed=5)[0]
    for name in DETECTORS:
        first = run_detector(name, errors).as_dict()
        assert run_detector(name, errors).as_dict() == first


def test_parameters_override_the_defaults_and_unknown_detectors_are_refused() -> None:
    assert make_detector("page_hinkley", {"threshold": 7.0}).threshold == 7.0
    assert make_detector("adwin").delta == 0.002
    with pytest.raises(ValueError, match="unknown detector"):
        make_detector("cusum")
