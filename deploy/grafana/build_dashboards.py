"""Writes the Grafana dashboards in deploy/grafana/dashboards/ (JSON for file provisioning) from the panels below.

    .venv/bin/python deploy/grafana/build_dashboards.py

Every panel queries the provisioned datasource by its fixed uid (`prometheus`, deploy/grafana/provisioning/
datasources/prometheus.yml): no `${DS_PROMETHEUS}` import inputs, so the files load as they are. The JSON files are
committed; edit this script and run it again rather than the JSON (tests/deploy/test_grafana.py checks that they
agree, and that every metric a panel names is one `/metrics` serves).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
WIDTH = 24


def target(expr: str, legend: str = "", ref: str = "A") -> dict[str, Any]:
    return {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend, "refId": ref}


def panel(
    title: str,
    targets: list[dict[str, Any]],
    *,
    kind: str = "timeseries",
    unit: str = "short",
    description: str = "",
    width: int = 12,
    height: int = 8,
    thresholds: list[tuple[float | None, str]] | None = None,
    decimals: int | None = None,
) -> dict[str, Any]:
    steps = [{"color": color, "value": value} for value, color in (thresholds or [(None, "green")])]
    defaults: dict[str, Any] = {"unit": unit, "thresholds": {"mode": "absolute", "steps": steps}}
    if decimals is not None:
        defaults["decimals"] = decimals
    if kind == "timeseries" and thresholds:
        defaults["custom"] = {"thresholdsStyle": {"mode": "line"}}
    for i, t in enumerate(targets):
        t["refId"] = chr(ord("A") + i)
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}} if kind == "timeseries" else {},
        "gridPos": {"w": width, "h": height},
    }


def quantiles(metric: str, by: str = "", window: str = "5m") -> list[dict[str, Any]]:
    group = f"le{', ' + by if by else ''}"
    suffix = f" {{{{{by}}}}}" if by else ""
    return [
        target(f"histogram_quantile({q}, sum by ({group}) (rate({metric}_bucket[{window}])))", f"p{label}{suffix}")
        for q, label in (("0.5", "50"), ("0.95", "95"), ("0.99", "99"))
    ]


def dashboard(uid: str, title: str, description: str, panels: list[dict[str, Any]]) -> dict[str, Any]:
    x = y = row_height = 0
    for i, p in enumerate(panels, start=1):
        p["id"] = i
        w, h = p["gridPos"]["w"], p["gridPos"]["h"]
        if x + w > WIDTH:
            x, y, row_height = 0, y + row_height, 0
        p["gridPos"].update({"x": x, "y": y})
        x += w
        row_height = max(row_height, h)
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": ["galfriday"],
        "timezone": "utc",
        "editable": False,
        "graphTooltip": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "schemaVersion": 39,
        "version": 1,
        "templating": {"list": []},
        "annotations": {"list": []},
        "links": [{"type": "dashboards", "tags": ["galfriday"], "asDropdown": True, "title": "Gal-Friday"}],
        "panels": panels,
    }


# From the bar's end: the ingest worker closes a bar 2 s after it (grace for late trades), and the target is 1 s from
# the close, so the line is at 3 s.
BAR_TO_ACK_LINE = [(None, "green"), (3.0, "red")]


def trading() -> dict[str, Any]:
    return dashboard(
        "galfriday-trading",
        "Gal-Friday: trading",
        "Trading state, orders and fills, what execution met, Celery, reconciliation and health.",
        [
            panel(
                "Trading state",
                [target("max by (state) (galfriday_trading_state) == 1", "{{state}}")],
                kind="stat",
                width=6,
                height=4,
                description="active, reducing or halted (halt / reduce / resume from the dashboard at /)",
            ),
            panel(
                "Workers online",
                [target("galfriday_celery_workers_online", "workers")],
                kind="stat",
                width=6,
                height=4,
                thresholds=[(None, "red"), (1, "green")],
            ),
            panel(
                "Unacknowledged alerts",
                [target("sum by (severity) (galfriday_alerts_unacknowledged)", "{{severity}}")],
                kind="stat",
                width=6,
                height=4,
                thresholds=[(None, "green"), (1, "orange")],
            ),
            panel(
                "Last agreement with the exchange",
                [target("galfriday_reconciliation_last_agreement_age_seconds", "age")],
                kind="stat",
                unit="s",
                width=6,
                height=4,
                thresholds=[(None, "green"), (900, "orange"), (3600, "red")],
            ),
            panel("Orders per state", [target("sum by (state) (galfriday_trading_orders)", "{{state}}")]),
            panel("Fills per minute", [target("rate(galfriday_trading_fills_total[5m]) * 60", "fills/min")]),
            panel(
                "Execution events per minute",
                [
                    target(
                        'sum by (component, name) (rate(galfriday_events_total{component=~"trading.*"}[5m])) * 60',
                        "{{component}} {{name}}",
                    )
                ],
                description="Every process's counters (sent, rejected, fallbacks, refused transitions, ...)",
            ),
            panel(
                "Celery task outcomes per minute",
                [
                    target(
                        "sum by (task, outcome) (rate(galfriday_celery_tasks_total[5m])) * 60", "{{task}} {{outcome}}"
                    )
                ],
            ),
            panel(
                "Celery task failures and retries (1 h)",
                [
                    target(
                        'sum by (task, outcome) (increase(galfriday_celery_tasks_total{outcome!="success"}[1h]))',
                        "{{task}} {{outcome}}",
                    )
                ],
                kind="bargauge",
                thresholds=[(None, "green"), (1, "orange")],
            ),
            panel("Celery queue depth", [target("galfriday_celery_queue_depth", "{{queue}}")]),
            panel(
                "Open reconciliation discrepancies",
                [
                    target(
                        "sum by (kind, severity) (galfriday_reconciliation_discrepancies_open)", "{{kind}} {{severity}}"
                    )
                ],
            ),
            panel(
                "Health components",
                [target("galfriday_health_component_up", "{{component}}")],
                kind="stat",
                thresholds=[(None, "red"), (1, "green")],
                description="1: the check passed (database, broker, cache, channel layer, time series, exchange, "
                "ingest)",
            ),
        ],
    )


def latency() -> dict[str, Any]:
    return dashboard(
        "galfriday-latency",
        "Gal-Friday: latency",
        "The latency targets (BENCHMARKS.md): closed bar → exchange ack, execution report → committed, prediction.",
        [
            panel(
                "Closed bar → exchange ack",
                quantiles("galfriday_bar_to_ack_seconds"),
                unit="s",
                width=24,
                thresholds=BAR_TO_ACK_LINE,
                description="From the bar's end to the exchange's answer applied, every worker. The ingest worker "
                "closes a bar 2 s after its end; the target is under 1 s from the close (the red line: 3 s).",
            ),
            panel(
                "Closed bar → exchange ack p99 per symbol",
                quantiles("galfriday_bar_to_ack_seconds", by="symbol")[2:],
                unit="s",
                thresholds=BAR_TO_ACK_LINE,
            ),
            panel(
                "Orders acknowledged per minute",
                [target("sum by (symbol) (rate(galfriday_bar_to_ack_seconds_count[5m])) * 60", "{{symbol}}")],
            ),
            panel(
                "Execution report → committed",
                quantiles("galfriday_execution_report_commit_seconds"),
                unit="s",
                thresholds=[(None, "green"), (0.05, "red")],
                description="The ingest worker: a private execution frame to its effect in the database",
            ),
            panel(
                "Prediction",
                quantiles("galfriday_prediction_seconds"),
                unit="s",
                thresholds=[(None, "green"), (0.1, "red")],
                description="One prediction by the prediction service, every process",
            ),
            panel(
                "Ingest lag p99 (exchange → receive)",
                [target('galfriday_ingest_lag_milliseconds{quantile="0.99"}', "{{worker}} {{channel}}")],
                unit="ms",
            ),
            panel(
                "Health check latency",
                [target("galfriday_health_check_latency_milliseconds", "{{component}}")],
                unit="ms",
            ),
        ],
    )


def ingest() -> dict[str, Any]:
    return dashboard(
        "galfriday-ingest",
        "Gal-Friday: ingest",
        "The ingest worker's heartbeat: connection, message rates, lag, reconnects, checksums, queues, drops, repairs.",
        [
            panel(
                "Ingest worker up",
                [target("galfriday_ingest_up", "{{worker}}")],
                kind="stat",
                width=8,
                height=4,
                thresholds=[(None, "red"), (1, "green")],
            ),
            panel(
                "Heartbeat age",
                [target("galfriday_ingest_heartbeat_age_seconds", "{{worker}}")],
                kind="stat",
                unit="s",
                width=8,
                height=4,
                thresholds=[(None, "green"), (30, "red")],
            ),
            panel(
                "Since the last message",
                [target("time() - galfriday_ingest_last_message_timestamp_seconds", "{{worker}}")],
                kind="stat",
                unit="s",
                width=8,
                height=4,
                thresholds=[(None, "green"), (60, "red")],
            ),
            panel("Messages per second", [target("galfriday_ingest_messages_per_second", "{{worker}} {{channel}}")]),
            panel(
                "Lag (exchange → receive)",
                [target("galfriday_ingest_lag_milliseconds", "{{channel}} q{{quantile}}")],
                unit="ms",
            ),
            panel(
                "Reconnects and checksum failures (1 h)",
                [
                    target("increase(galfriday_ingest_reconnects_total[1h])", "reconnects {{worker}}"),
                    target("increase(galfriday_ingest_checksum_failures_total[1h])", "checksum failures {{worker}}"),
                    target("increase(galfriday_ingest_malformed_messages_total[1h])", "malformed {{worker}}"),
                ],
            ),
            panel("Queues", [target("galfriday_ingest_queue_depth", "{{worker}} {{queue}}")]),
            panel(
                "Dropped (1 h)",
                [target("increase(galfriday_ingest_dropped_total[1h])", "{{worker}} {{what}}")],
                thresholds=[(None, "green"), (1, "red")],
            ),
            panel(
                "Worker counters per minute",
                [target("rate(galfriday_ingest_events_total[5m]) * 60", "{{name}}")],
                description="trades, bars closed, repairs, enqueue failures, ...",
            ),
            panel(
                "Gap repairs",
                [target("sum by (reason, status) (galfriday_ingest_backfills_total)", "{{reason}} {{status}}")],
                kind="bargauge",
            ),
        ],
    )


def models() -> dict[str, Any]:
    version = "{{model}} v{{version}} ({{stage}})"
    return dashboard(
        "galfriday-models",
        "Gal-Friday: models",
        "Per model version: live outcomes against the promotion's validation, drift, experiments, predictions.",
        [
            panel("Live hit rate", [target("galfriday_model_hit_rate", version)], unit="percentunit"),
            panel(
                "Net return per prediction (mean, after costs)",
                [target("galfriday_model_net_return_mean", version)],
                unit="percentunit",
                decimals=4,
            ),
            panel("Cumulative net return", [target("galfriday_model_net_return_total", version)], unit="percentunit"),
            panel(
                "Matured and pending outcomes",
                [
                    target("galfriday_model_outcomes", "matured " + version),
                    target("galfriday_model_outcomes_pending", "pending " + version),
                ],
            ),
            panel(
                "Degraded",
                [target("galfriday_model_degraded", version)],
                kind="stat",
                thresholds=[(None, "green"), (1, "red")],
            ),
            panel(
                "Predictions per minute (every process)",
                [target('sum by (name) (rate(galfriday_events_total{component="prediction"}[5m])) * 60', "{{name}}")],
            ),
            panel("Drift share (latest check)", [target("galfriday_drift_share", version)], unit="percentunit"),
            panel("Prediction PSI (latest check)", [target("galfriday_drift_prediction_psi", version)]),
            panel(
                "Drift confirmed",
                [target("galfriday_drift_confirmed", version)],
                kind="stat",
                thresholds=[(None, "green"), (1, "red")],
            ),
            panel("Drift check age", [target("galfriday_drift_check_age_seconds", version)], unit="s"),
            panel(
                "Experiments per status",
                [target("galfriday_experiments", "{{status}}")],
                kind="bargauge",
            ),
            panel(
                "Experiment deltas (treatment − control)",
                [target("galfriday_experiment_delta", "{{experiment}} {{arm}} {{metric}}")],
            ),
            panel(
                "Experiment always-valid p (Holm)",
                [target("galfriday_experiment_p_value_holm", "{{experiment}} {{arm}} {{metric}}")],
                thresholds=[(None, "green"), (0.05, "orange")],
            ),
            panel(
                "Experiment SRM p",
                [target("galfriday_experiment_srm_p_value", "{{experiment}}")],
                thresholds=[(None, "red"), (0.001, "green")],
            ),
        ],
    )


DASHBOARDS = {"trading": trading, "latency": latency, "ingest": ingest, "models": models}


def render(name: str) -> str:
    return json.dumps(DASHBOARDS[name](), indent=2, ensure_ascii=False) + "\n"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name in DASHBOARDS:
        (OUT / f"{name}.json").write_text(render(name))


if __name__ == "__main__":
    main()
