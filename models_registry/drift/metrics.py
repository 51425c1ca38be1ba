"""Drift in `/metrics` (Prometheus; collected by `galfriday_site.metrics`), per version with a report, from its
latest report (`drift.selectors.drift_latest_reports`, one grouped query):

- `galfriday_drift_share`: share of features that drifted; `galfriday_drift_prediction_psi`: PSI of the score
  P(up) - P(down) against validation;
- `galfriday_drift_detected{kind}`: 1 per kind detected (feature, prediction, label, concept);
  `galfriday_drift_confirmed`: 1 when the latest check confirmed drift;
- `galfriday_drift_detector_state{detector}`: 1 when the detector raised a worse change point in the window,
  `galfriday_drift_detector_change_points{detector}`: change points over the stream checked;
- `galfriday_drift_check_age_seconds`: seconds since the latest check; `galfriday_drift_check_failed`: 1 when
  it failed.
"""

from __future__ import annotations

from collections.abc import Iterator

from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from models_registry.drift.detectors import DETECTORS
from models_registry.drift.selectors import drift_latest_reports
from models_registry.models import DriftReport

PREFIX = "galfriday"
KINDS = ("feature", "prediction", "label", "concept")


class DriftCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        labels = ["model", "version", "stage"]
        share = GaugeMetricFamily(
            f"{PREFIX}_drift_share", "Share of features that drifted (latest check)", labels=labels
        )
        psi = GaugeMetricFamily(
            f"{PREFIX}_drift_prediction_psi", "PSI of P(up) - P(down) vs validation (latest check)", labels=labels
        )
        detected = GaugeMetricFamily(
            f"{PREFIX}_drift_detected", "1 per drift kind the latest check detected", labels=[*labels, "kind"]
        )
        confirmed = GaugeMetricFamily(
            f"{PREFIX}_drift_confirmed", "1 when the latest check confirmed drift", labels=labels
        )
        state = GaugeMetricFamily(
            f"{PREFIX}_drift_detector_state",
            "1 when the detector raised a worse change point in the latest check's window",
            labels=[*labels, "detector"],
        )
        points = GaugeMetricFamily(
            f"{PREFIX}_drift_detector_change_points",
            "Change points the detector raised over the error stream (latest check)",
            labels=[*labels, "detector"],
        )
        age = GaugeMetricFamily(
            f"{PREFIX}_drift_check_age_seconds", "Seconds since the latest drift check", labels=labels
        )
        failed = GaugeMetricFamily(
            f"{PREFIX}_drift_check_failed", "1 when the latest drift check failed", labels=labels
        )
        now = timezone.now()
        for report in drift_latest_reports():
            key = [report.model.name, str(report.version.version), report.version.stage]
            if report.drift_share is not None:
                share.add_metric(key, report.drift_share)
            if report.prediction_psi is not None:
                psi.add_metric(key, report.prediction_psi)
            for kind in KINDS:
                detected.add_metric([*key, kind], 1.0 if kind in report.kinds else 0.0)
            confirmed.add_metric(key, 1.0 if report.confirmed else 0.0)
            detectors = (report.concept or {}).get("detectors") or {}
            for name in DETECTORS:
                info = detectors.get(name)
                if isinstance(info, dict):
                    state.add_metric([*key, name], 1.0 if info.get("drift") else 0.0)
                    points.add_metric([*key, name], float(info.get("n_change_points") or 0))
            age.add_metric(key, (now - report.created_at).total_seconds())
            failed.add_metric(key, 1.0 if report.status == DriftReport.Status.FAILED else 0.0)
        yield from (share, psi, detected, confirmed, state, points, age, failed)
