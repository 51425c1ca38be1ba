"""The outside watchdog end to end, with real programs on loopback: the simulator as the exchange, the ingest worker
(`manage.py ingest`), the web process (uvicorn on galfriday_site.asgi) serving /metrics, Debian's Prometheus
scraping it with the rules of deploy/prometheus/alerts.yml, and Debian's Alertmanager with deploy/alertmanager.yml
rendered for a local HTTP server that stands in for the operator's webhook and the dead man's switch service (no
internet here). The ingest worker is killed: IngestHeartbeatStale reaches the webhook within the rule's staleness
threshold plus its `for` plus the group wait (and scrape and evaluation intervals).

The rules are the real file's, copied with IngestHeartbeatStale's threshold and `for` shortened (its expression is
otherwise the deployed one, checked by the replacement below); scrape every 2 s, evaluate every 1 s, group wait 1 s.
"""

from __future__ import annotations

import os
import signal
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from django.utils import timezone

from galfriday_site.alertmanager_config import render
from ingest.models import IngestStatus
from tests.conftest import kraken_sim_process
from tests.deploy.servers import (
    ALERTMANAGER_TEMPLATE,
    RULES,
    Receiver,
    alertmanager_args,
    http_receiver,
    loopback_port,
    notify_settings,
    program,
    running,
    shorten_routes,
    stop,
)
from tests.ingest.test_ingest_process import ingest_env, start_ingest
from tests.waiting import wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.services("postgres", "redis")]

STALE_AFTER_S = 12  # the worker writes its heartbeat every 5 s: 12 s is two missed beats and some
FOR_S = 2  # the rule's `for` as deployed is 1m: a test keeps the clause, not the minute
SCRAPE_S = 2
EVALUATION_S = 1
GROUP_WAIT_S = 1


def shortened_rules(path: Path) -> None:
    """alerts.yml with IngestHeartbeatStale's `> 60` and `for: 1m` shortened; every other rule as deployed."""
    rules = yaml.safe_load(RULES.read_text())
    [rule] = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "IngestHeartbeatStale"]
    assert rule["expr"].count("> 60") == 1, rule["expr"]
    rule["expr"] = rule["expr"].replace("> 60", f"> {STALE_AFTER_S}")
    rule["for"] = f"{FOR_S}s"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))


def alertmanager_config(path: Path, receiver: Receiver) -> None:
    values = notify_settings(
        NOTIFY_WEBHOOK_URL=f"{receiver.url}/hook",
        NOTIFY_EMAIL_TO=[],
        NOTIFY_TELEGRAM_BOT_TOKEN="",
        GALFRIDAY_WATCHDOG_URL=f"{receiver.url}/deadman",
    )
    config = shorten_routes(render(ALERTMANAGER_TEMPLATE.read_text(), values).config, f"{GROUP_WAIT_S}s")
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def prometheus_config(path: Path, rules: Path, web_port: int, alertmanager_port: int) -> None:
    config = {
        "global": {
            "scrape_interval": f"{SCRAPE_S}s",
            "scrape_timeout": f"{SCRAPE_S}s",
            "evaluation_interval": f"{EVALUATION_S}s",
        },
        "rule_files": [str(rules)],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]},
        "scrape_configs": [
            {
                "job_name": "galfriday",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [f"127.0.0.1:{web_port}"]}],
            }
        ],
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))


def web_env(sim: dict[str, Any], var_dir: Path) -> dict[str, str]:
    env = ingest_env(sim, var_dir)  # the same database, exchange and var/ as the ingest worker
    for name in ("DJANGO_SETTINGS_MODULE", "GALFRIDAY_PROCESS", "GALFRIDAY_METRICS_TOKEN", "PROMETHEUS_MULTIPROC_DIR"):
        env.pop(name, None)
    env["REDIS_URL"] = os.environ["REDIS_URL"]  # broker, cache and channel layer: real, so health is up
    return env


def ready(url: str) -> bool:
    return httpx.get(url, timeout=2).status_code == 200


def query(prometheus: str, expr: str) -> list[dict[str, Any]]:
    body = httpx.get(f"{prometheus}/api/v1/query", params={"query": expr}, timeout=5).json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def firing(receiver: Receiver, alertname: str, **labels: str) -> list[dict[str, Any]]:
    return [
        a
        for a in receiver.alerts("/hook")
        if a["status"] == "firing"
        and a["labels"].get("alertname") == alertname
        and all(a["labels"].get(k) == v for k, v in labels.items())
    ]


def test_ingest_worker_killed_reaches_the_webhook_through_prometheus_and_alertmanager(tmp_path: Path) -> None:
    rules = tmp_path / "alerts.yml"
    shortened_rules(rules)
    web_port, prometheus_port, alertmanager_port = loopback_port(), loopback_port(), loopback_port()
    while len({web_port, prometheus_port, alertmanager_port}) < 3:
        prometheus_port, alertmanager_port = loopback_port(), loopback_port()
    prometheus = f"http://127.0.0.1:{prometheus_port}"
    alertmanager = f"http://127.0.0.1:{alertmanager_port}"
    with (
        http_receiver() as receiver,
        kraken_sim_process("--rate", "10", "--warmup", "0", "--no-rate-limits") as sim,
    ):
        env = ingest_env(sim, tmp_path / "var")
        ingest = start_ingest(env, tmp_path / "ingest.log")
        try:
            uvicorn = [sys.executable, "-m", "uvicorn", "galfriday_site.asgi:application"]
            web_args = [*uvicorn, "--host", "127.0.0.1", "--port", str(web_port), "--log-level", "warning"]
            alertmanager_config(tmp_path / "alertmanager.yml", receiver)
            prometheus_config(tmp_path / "prometheus.yml", rules, web_port, alertmanager_port)
            prometheus_args = [
                program("prometheus"),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
                "--rules.alert.resend-delay=1s",
            ]
            with (
                running(web_args, tmp_path / "web.log", web_env(sim, tmp_path / "var")),
                running(
                    alertmanager_args(tmp_path / "alertmanager.yml", alertmanager_port, tmp_path / "am"),
                    tmp_path / "alertmanager.log",
                ),
                running(prometheus_args, tmp_path / "prometheus.log"),
            ):
                retry = (httpx.TransportError,)
                wait_for(lambda: ready(f"http://127.0.0.1:{web_port}/metrics"), 150, "the web process", retry_on=retry)
                wait_for(lambda: ready(f"{alertmanager}/-/ready"), 30, "Alertmanager", retry_on=retry)
                wait_for(lambda: ready(f"{prometheus}/-/ready"), 30, "Prometheus", retry_on=retry)
                status = wait_for(
                    lambda: IngestStatus.objects.filter(updated_at__gte=timezone.now() - timedelta(seconds=10)).first(),
                    120,
                    "the ingest worker's heartbeat",
                )
                assert status is not None
                worker = status.name
                # Prometheus sees the live worker, fresh: the rule's cause is absent and it does not fire.
                wait_for(
                    lambda: query(prometheus, f'galfriday_ingest_heartbeat_age_seconds{{worker="{worker}"}} < 10'),
                    30,
                    "a fresh heartbeat scraped",
                )
                # The watchdog collector in the real /metrics: the market is open, as the worker reports it.
                assert query(prometheus, f'galfriday_ingest_exchange_status{{worker="{worker}",status="online"}} == 1')
                wait_for(lambda: receiver.alerts("/deadman"), 30, "the Watchdog at the dead man's switch")
                wait_for(lambda: query(prometheus, 'ALERTS{alertname="Watchdog"}'), 10, "the Watchdog rule")
                assert query(prometheus, 'ALERTS{alertname="IngestHeartbeatStale"}') == []
                assert firing(receiver, "IngestHeartbeatStale") == []

                ingest.send_signal(signal.SIGKILL)  # a crash: nothing is written on the way out
                ingest.wait(timeout=10)
                budget = STALE_AFTER_S + FOR_S + GROUP_WAIT_S + 2 * SCRAPE_S + 2 * EVALUATION_S + 15
                [alert] = wait_for(
                    lambda: firing(receiver, "IngestHeartbeatStale", worker=worker)[:1],
                    budget,
                    "IngestHeartbeatStale at the webhook",
                )
                assert alert["labels"]["severity"] == "critical"
                assert alert["labels"]["job"] == "galfriday"
                assert worker in alert["annotations"]["summary"]
                assert alert["annotations"]["runbook_url"].endswith("#ingestheartbeatstale")
        finally:
            stop(ingest)
