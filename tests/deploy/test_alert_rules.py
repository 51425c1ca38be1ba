"""deploy/prometheus/alerts.yml with Debian's promtool: the file is valid, each alert fires on its cause (at the time
its `for` says) and stays quiet without it (alerts_test.yml), and the conventions operators rely on hold (severity
labels, `$value` only in annotations, summary/description/runbook on every alert, a runbook section behind every
link)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.servers import RULES, RULES_TEST, program

RUNBOOK = RULES.parent / "RUNBOOK.md"


def promtool(*args: str, cwd: Path = RULES.parent) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [program("promtool"), *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_rules_file_is_valid() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_each_alert_fires_on_its_cause_and_not_without() -> None:
    result = promtool("test", "rules", RULES_TEST.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(RULES_TEST.read_text())["tests"]:
        for check in case.get("alert_rule_test") or []:
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts never shown firing"
    assert names - quiet - {"Watchdog"} == set(), "alerts never shown quiet without their cause"


def test_a_weakened_rule_fails_the_unit_tests(tmp_path: Path) -> None:
    """The unit tests can fail: the heartbeat threshold raised tenfold makes them fail."""
    text = RULES.read_text()
    assert text.count("galfriday_ingest_heartbeat_age_seconds > 60") == 1
    (tmp_path / RULES.name).write_text(
        text.replace("galfriday_ingest_heartbeat_age_seconds > 60", "galfriday_ingest_heartbeat_age_seconds > 600")
    )
    (tmp_path / RULES_TEST.name).write_text(RULES_TEST.read_text())
    result = promtool("test", "rules", RULES_TEST.name, cwd=tmp_path)
    assert result.returncode != 0
    assert "alertname: IngestHeartbeatStale" in result.stdout + result.stderr


def test_labels_carry_severity_and_annotations_the_rest() -> None:
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line[3:].strip().lower()).replace(" ", "-")
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("## ")
    }
    for rule in alert_rules():
        name = rule["alert"]
        labels = rule.get("labels") or {}
        expected = {"none"} if name == "Watchdog" else {"critical", "warning"}
        assert labels.get("severity") in expected, name
        for value in labels.values():
            assert "{{" not in str(value), f"{name}: a templated label"
            assert "$value" not in str(value), f"{name}: the value in a label"
        annotations = rule.get("annotations") or {}
        assert {"summary", "description", "runbook_url"} <= set(annotations), name
        anchor = annotations["runbook_url"].partition("#")[2]
        assert anchor in anchors, f"{name}: RUNBOOK.md has no section #{anchor}"
