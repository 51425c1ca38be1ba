"""deploy/prometheus/prometheus.yml with Debian's promtool (`promtool check config`, which also loads the rule file
and the scrape's token file): valid as shipped, scraping the web's /metrics with a bearer token, its rules the
watchdog's alerts.yml, its alerts to Alertmanager."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.servers import RULES, program

CONFIG = RULES.parent / "prometheus.yml"


def check_config(directory: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [program("promtool"), "check", "config", str(directory / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def deployed(tmp_path: Path, *, token: bool = True) -> Path:
    """The config beside its rule file and, as the comment in it says, the token file: as installed."""
    shutil.copy(CONFIG, tmp_path / "prometheus.yml")
    shutil.copy(RULES, tmp_path / "alerts.yml")
    if token:
        (tmp_path / "galfriday_metrics_token").write_text("a-long-random-token\n")
    return tmp_path


def test_promtool_accepts_the_scrape_config_with_its_rules(tmp_path: Path) -> None:
    result = check_config(deployed(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "rule files found" in result.stdout + result.stderr


def test_promtool_refuses_it_without_the_metrics_token_file(tmp_path: Path) -> None:
    result = check_config(deployed(tmp_path, token=False))
    assert result.returncode != 0
    assert "galfriday_metrics_token" in result.stdout + result.stderr


def test_the_config_scrapes_metrics_loads_alerts_and_sends_to_alertmanager() -> None:
    config: dict[str, Any] = yaml.safe_load(CONFIG.read_text())
    assert config["rule_files"] == ["alerts.yml"]
    [galfriday] = [job for job in config["scrape_configs"] if job["job_name"] == "galfriday"]
    assert galfriday["metrics_path"] == "/metrics"
    assert galfriday["authorization"]["type"] == "Bearer"
    assert config["global"]["scrape_timeout"] == "10s"
    targets = [t for am in config["alerting"]["alertmanagers"] for sc in am["static_configs"] for t in sc["targets"]]
    assert targets == ["alertmanager:9093"]
