"""Online change detectors on a model's realised error stream (concept drift): river's ADWIN, Page-Hinkley and
DDM (river pinned in requirements.txt), run over a 0/1 error stream (1 = the prediction's direction was wrong).

No Django here: :func:`run_detectors` takes the stream and returns, per detector, every change point (index in
the stream) with the direction of the change and the detector's final state. The drift check recomputes the
stream from the version's matured outcomes on every check (deterministic: the same outcomes give the same change
points, and a revised outcome is taken into account), so no detector state has to be stored to resume; the
report records the summary.

Detectors and their sources
    ``adwin``  ADaptive WINdowing (Bifet & Gavalda, "Learning from time-changing data with adaptive windowing",
               SDM 2007): keeps the longest recent window whose sub-windows' means do not differ by more than the
               Hoeffding-type bound for confidence ``delta``; a cut is a change point. The change is "worse" when
               the mean error after the cut is above the mean before it.
    ``page_hinkley``
               Page's cumulative sum test (Page, "Continuous inspection schemes", Biometrika 1954; Hinkley 1971)
               in the up mode: m_t = sum (x_i - mean_i - delta), alarm when m_t - min m > threshold, so only an
               INCREASE of the error is a change point.
    ``ddm``    Drift Detection Method (Gama et al., "Learning with drift detection", SBIA 2004): alarm when the
               error rate p_t + s_t exceeds p_min + drift_threshold x s_min (binomial standard deviation s); an
               increase of the error by construction.
    After an alarm river resets Page-Hinkley and DDM; ADWIN drops the old part of its window.

Defaults (``DEFAULT_PARAMETERS``) are river's except Page-Hinkley's threshold, set for a 0/1 stream (river's 50
is for unscaled values); bench/bench_drift_detectors.py measures delay and false alarms of each (BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from river import drift as river_drift

DETECTORS: tuple[str, ...] = ("adwin", "page_hinkley", "ddm")
DEFAULT_PARAMETERS: dict[str, dict[str, float]] = {
    "adwin": {"delta": 0.002},
    "page_hinkley": {"min_instances": 30, "delta": 0.005, "threshold": 25.0, "alpha": 1.0},
    "ddm": {"warm_start": 30, "warning_threshold": 2.0, "drift_threshold": 3.0},
}


@dataclass(frozen=True)
class ChangePoint:
    index: int  # position in the stream of the observation that raised the alarm
    worse: bool  # the error rate went up
    before: float | None  # mean error before the change (ADWIN: the dropped part; others: since the last reset)
    after: float | None  # ADWIN: the mean of the window kept; others: None
    kept: int | None = None  # ADWIN: the width of the window kept (the change starts at index - kept + 1)

    @property
    def start(self) -> int:
        """Where the change is estimated to start: ADWIN's first kept observation, else the alarm itself."""
        return self.index - self.kept + 1 if self.kept else self.index

    def as_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "start": self.start,
            "worse": self.worse,
            "before": self.before,
            "after": self.after,
        }


@dataclass
class DetectorRun:
    name: str
    parameters: dict[str, float]
    n: int = 0
    change_points: list[ChangePoint] = field(default_factory=list)
    warning: bool = False
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def worse_change_points(self) -> list[ChangePoint]:
        return [c for c in self.change_points if c.worse]

    def as_dict(self) -> dict[str, Any]:
        return {
            "detector": self.name,
            "parameters": dict(self.parameters),
            "n": self.n,
            "change_points": [c.as_dict() for c in self.change_points],
            "warning": self.warning,
            "state": dict(self.state),
        }


def make_detector(name: str, parameters: Mapping[str, float] | None = None) -> Any:
    """A fresh river detector `name` with DEFAULT_PARAMETERS overridden by `parameters`."""
    if name not in DETECTORS:
        raise ValueError(f"unknown detector {name!r}; use one of {DETECTORS}")
    params = {**DEFAULT_PARAMETERS[name], **dict(parameters or {})}
    if name == "adwin":
        return river_drift.ADWIN(delta=float(params["delta"]))
    if name == "page_hinkley":
        return river_drift.PageHinkley(
            min_instances=int(params["min_instances"]),
            delta=float(params["delta"]),
            threshold=float(params["threshold"]),
            alpha=float(params["alpha"]),
            mode="up",
        )
    return river_drift.binary.DDM(
        warm_start=int(params["warm_start"]),
        warning_threshold=float(params["warning_threshold"]),
        drift_threshold=float(params["drift_threshold"]),
    )


def run_detector(
    name: str, errors: np.ndarray | list[float], parameters: Mapping[str, float] | None = None
) -> DetectorRun:
    """Feed the 0/1 error stream to a fresh detector; every alarm becomes a change point."""
    params = {**DEFAULT_PARAMETERS[name], **dict(parameters or {})} if name in DEFAULT_PARAMETERS else {}
    detector = make_detector(name, parameters)
    run = DetectorRun(name=name, parameters=params)
    values = np.asarray(errors, dtype=np.float64).tolist()
    total = 0.0  # sum and count since the last alarm (the mean "before" for PH and DDM)
    count = 0
    for i, x in enumerate(values):
        if name == "adwin":
            before_mean = float(detector.estimation) if detector.width else None
            before_width = int(detector.width)
            before_total = (before_mean or 0.0) * before_width
            detector.update(x)
            if detector.drift_detected:
                kept, kept_mean = int(detector.width), float(detector.estimation)
                dropped = before_width + 1 - kept
                dropped_mean = (before_total + x - kept_mean * kept) / dropped if dropped > 0 else before_mean
                run.change_points.append(
                    ChangePoint(i, kept_mean > (dropped_mean or 0.0), dropped_mean, kept_mean, kept)
                )
            continue
        detector.update(bool(x) if name == "ddm" else x)
        total += x
        count += 1
        if detector.drift_detected:
            run.change_points.append(ChangePoint(i, True, total / count, None))
            total, count = 0.0, 0
    run.n = len(values)
    run.warning = bool(getattr(detector, "warning_detected", False))
    if name == "adwin":
        run.state = {"width": int(detector.width), "estimation": float(detector.estimation)}
    else:
        run.state = {"since_reset": count, "mean_since_reset": total / count if count else None}
    return run


def run_detectors(
    errors: np.ndarray | list[float], parameters: Mapping[str, Mapping[str, float]] | None = None
) -> dict[str, DetectorRun]:
    """Each of DETECTORS over the same stream (per-detector parameter overrides in `parameters`)."""
    overrides = parameters or {}
    return {name: run_detector(name, errors, overrides.get(name)) for name in DETECTORS}


# --- simulation (the benchmark and its fast test share this) ------------------------------------------------


@dataclass(frozen=True)
class DetectionStats:
    detector: str
    streams: int
    delays: np.ndarray  # per stream that detected a worse change at or after the change point
    missed: int  # streams with no worse change point at or after the change
    early: int  # streams with a worse alarm before the change (a false alarm)

    def summary(self) -> dict[str, Any]:
        delays = self.delays
        return {
            "detector": self.detector,
            "streams": self.streams,
            "detected": len(delays),
            "missed": self.missed,
            "early_alarms": self.early,
            "delay_median": float(np.median(delays)) if len(delays) else None,
            "delay_p90": float(np.quantile(delays, 0.9)) if len(delays) else None,
        }


def bernoulli_streams(
    *, streams: int, length: int, p_before: float, p_after: float, change_at: int | None, seed: int
) -> np.ndarray:
    """`streams` x `length` 0/1 error streams, error rate p_before, then p_after from index `change_at` on."""
    rng = np.random.default_rng(seed)
    p = np.full(length, p_before)
    if change_at is not None:
        p[change_at:] = p_after
    return (rng.random((streams, length)) < p[None, :]).astype(np.float64)


def detection_delays(
    name: str, streams: np.ndarray, change_at: int, parameters: Mapping[str, float] | None = None
) -> DetectionStats:
    """Per stream: the delay (observations after `change_at`) of the first worse change point at or after it."""
    delays, missed, early = [], 0, 0
    for stream in streams:
        points = [c.index for c in run_detector(name, stream, parameters).worse_change_points]
        if any(i < change_at for i in points):
            early += 1
        after = [i for i in points if i >= change_at]
        if after:
            delays.append(after[0] - change_at)
        else:
            missed += 1
    return DetectionStats(name, len(streams), np.asarray(delays, dtype=np.float64), missed, early)


def false_alarms_per_10k(name: str, streams: np.ndarray, parameters: Mapping[str, float] | None = None) -> float:
    """Worse change points per 10,000 observations over streams without a change."""
    alarms = sum(len(run_detector(name, s, parameters).worse_change_points) for s in streams)
    return alarms / streams.size * 10_000
