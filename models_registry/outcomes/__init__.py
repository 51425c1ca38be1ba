"""Outcome tracking: the truth about every recorded prediction, and live metrics per version beside its
out-of-sample validation metrics.

Maturation (:func:`outcomes_mature`, a service; the Celery task ``outcomes_mature_task`` runs it every minute)
    A prediction with a ``bar_time`` t and a ``horizon`` h matures once the bar starting at t + h has closed
    (t + (h + 1) minutes). Its forward return and label come from the closes of the STORED 1-minute bars
    (``history.load_bar_fields``, nothing filled) through the training's own code, ``labels.make_labels`` with the
    version's recorded ``label_dead_zone`` (and ``taker_fee``); nothing here re-implements a label. Every bar
    from t to t + h must be stored: the ingest worker writes quiet minutes as flat bars, so a missing bar is a
    real gap and the outcome stays ``pending`` (with the reason), never guessed; it is retried while its window
    ended less than ``MODELS_REGISTRY_OUTCOMES_PENDING_RETRY_MINUTES`` (1440) ago.
    Net return of the signal (spot, long-only): position 1 when the signal is +1, else 0;
    ``net = position x forward_return - position x 2 x (taker_fee + slippage_bps / 10^4)``.
    Matured outcomes whose window ended less than ``MODELS_REGISTRY_OUTCOMES_RECHECK_MINUTES`` (120) ago are
    recomputed on every pass; a late or revised bar that changes them is written with ``revisions`` + 1.
    Idempotent: a pass that finds nothing new writes nothing. Batched: one store read per symbol; on
    PostgreSQL the new outcomes are COPYed to a temporary table and one ``INSERT ... RETURNING`` writes them and
    their audit rows, committed without waiting for the WAL flush (``synchronous_commit = off``: a crash may lose
    the last pass whole, which the next pass redoes); elsewhere ``bulk_create`` per chunk and the audit rows.
    Single-flight through a cache lock, so an overlapping beat tick or a redelivered task skips instead of racing.

Live metrics (:func:`version_live_metrics`, a selector)
    Over the matured outcomes of one version, for rolling windows by bar time (1 h, 24 h, 7 d, all) and the last
    N outcomes: direction hit rate (``evaluation.intervals.direction_hits``'s rule) with a Wilson interval on
    the effective sample size (Newey-West, lag ``overlap_max_lag(h)``: forward windows overlap), log loss and
    multiclass Brier score (HAC intervals of their means), top-label calibration buckets and ECE, mean and
    total net return (HAC interval of the mean), per-prediction Sharpe ratio with the HAC interval of Lo
    (2002), the number of outcomes and the data window, beside the validation metrics the version recorded.

Degradation (:func:`version_degradation_check`)
    Over the last ``MODELS_REGISTRY_DEGRADATION_WINDOW`` (1000) outcomes, once there are at least
    ``MODELS_REGISTRY_DEGRADATION_MIN_OUTCOMES`` (200): the version is degraded when the upper bound of the live
    hit-rate interval is below (1 - 10 %) x the validation ``direction_hit_rate``, or the upper bound of the
    live mean net return per prediction is below the validation ``net_return_per_prediction`` minus 10 % of its
    magnitude. Then a ``model_degraded`` alert is raised (``trading.alerts.alert_raise``), at most one
    unacknowledged alert per version. Checked after each maturation pass for the versions it touched.
"""

from __future__ import annotations

from models_registry.outcomes.degradation import (
    ALERT_KIND,
    DEGRADATION_MARGIN,
    degradation_assess,
    open_degradation_alerts,
    version_degradation_check,
)
from models_registry.outcomes.live import (
    LAST_N,
    VALIDATION_KEYS,
    WINDOWS,
    outcome_list,
    pending_count,
    version_calibration,
    version_live_metrics,
    version_outcome_summary,
)
from models_registry.outcomes.maturation import LOCK_KEY, LOCK_TTL_S, MaturationResult, outcomes_mature
from models_registry.outcomes.rules import BAR, OUTCOME_FIELDS, OutcomeRule, net_return

__all__ = [
    "ALERT_KIND",
    "BAR",
    "DEGRADATION_MARGIN",
    "LAST_N",
    "LOCK_KEY",
    "LOCK_TTL_S",
    "MaturationResult",
    "OUTCOME_FIELDS",
    "OutcomeRule",
    "VALIDATION_KEYS",
    "WINDOWS",
    "degradation_assess",
    "net_return",
    "open_degradation_alerts",
    "outcome_list",
    "outcomes_mature",
    "pending_count",
    "version_calibration",
    "version_degradation_check",
    "version_live_metrics",
    "version_outcome_summary",
]
