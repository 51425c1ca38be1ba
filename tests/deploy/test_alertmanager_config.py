"""deploy/alertmanager.yml rendered from the notification settings (galfriday_site.alertmanager_config): the same
channels as the app's notifications, valid for Debian's amtool, routed by severity with the Watchdog to the dead
man's switch; and a real Alertmanager applying the inhibitions (exchange down hides the stale-data and rejection
alerts it causes)."""

from __future__ import annotations

import stat
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from django.core.management import call_command

from galfriday_site.alertmanager_config import AlertmanagerConfigError, render
from tests.deploy.servers import (
    ALERTMANAGER_TEMPLATE,
    alertmanager_args,
    http_receiver,
    loopback_port,
    notify_settings,
    program,
    running,
    shorten_routes,
)
from tests.waiting import wait_for

TEMPLATE = ALERTMANAGER_TEMPLATE.read_text()


def receivers(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in config["receivers"]}


def channels(receiver: dict[str, Any]) -> set[str]:
    return {k for k in receiver if k.endswith("_configs")}


def amtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([program("amtool"), *args], capture_output=True, text=True, timeout=60, check=False)


def test_rendered_config_is_valid_for_amtool(tmp_path: Path) -> None:
    path = tmp_path / "alertmanager.yml"
    path.write_text(render(TEMPLATE, notify_settings()).as_yaml())
    result = amtool("check-config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=Watchdog", "severity=none"], "deadmansswitch"),
        (["alertname=IngestHeartbeatStale", "severity=critical"], "galfriday-critical"),
        (["alertname=MarketDataStale", "severity=warning"], "galfriday-warning"),
        (["alertname=Unknown"], "galfriday-critical"),  # unlabelled: to people rather than nowhere
    ],
)
def test_routes_by_severity_and_watchdog_to_the_dead_mans_switch(
    tmp_path: Path, labels: list[str], receiver: str
) -> None:
    path = tmp_path / "alertmanager.yml"
    path.write_text(render(TEMPLATE, notify_settings()).as_yaml())
    result = amtool("config", "routes", "test", f"--config.file={path}", f"--verify.receivers={receiver}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_configured_channel_is_a_receiver_entry() -> None:
    config = render(TEMPLATE, notify_settings()).config
    critical = receivers(config)["galfriday-critical"]
    assert channels(critical) == {"webhook_configs", "email_configs", "telegram_configs"}
    assert critical["webhook_configs"][0]["url"] == "http://127.0.0.1:18599/hook"
    email = critical["email_configs"][0]
    assert email["to"] == "ops@example.com,oncall@example.com"
    assert email["smarthost"] == "127.0.0.1:18598"
    assert email["require_tls"] is False
    telegram = critical["telegram_configs"][0]
    assert telegram["chat_id"] == -1001234
    assert telegram["api_url"] == "http://127.0.0.1:18597"
    assert receivers(config)["deadmansswitch"]["webhook_configs"][0]["url"] == "http://127.0.0.1:18596/ping/abc"


def test_unset_channels_are_left_out_and_severities_follow_the_apps_routing() -> None:
    rendered = render(
        TEMPLATE,
        notify_settings(NOTIFY_EMAIL_TO=[], NOTIFY_TELEGRAM_SEVERITIES=["critical"], GALFRIDAY_WATCHDOG_URL=""),
    )
    by_name = receivers(rendered.config)
    assert channels(by_name["galfriday-critical"]) == {"webhook_configs", "telegram_configs"}
    assert channels(by_name["galfriday-warning"]) == {"webhook_configs"}
    assert channels(by_name["deadmansswitch"]) == set()
    assert any("GALFRIDAY_WATCHDOG_URL" in w for w in rendered.warnings)


def test_slack_format_uses_slack_configs_and_keeps_the_dead_mans_switch(tmp_path: Path) -> None:
    rendered = render(TEMPLATE, notify_settings(NOTIFY_WEBHOOK_FORMAT="slack"))
    critical = receivers(rendered.config)["galfriday-critical"]
    assert "webhook_configs" not in critical
    assert critical["slack_configs"][0]["api_url"] == "http://127.0.0.1:18599/hook"
    deadman = receivers(rendered.config)["deadmansswitch"]
    assert deadman["webhook_configs"][0]["url"] == "http://127.0.0.1:18596/ping/abc"
    assert rendered.warnings == []
    path = tmp_path / "alertmanager.yml"
    path.write_text(rendered.as_yaml())
    result = amtool("check-config", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def test_refuses_a_config_where_critical_alerts_reach_nobody() -> None:
    with pytest.raises(AlertmanagerConfigError, match="reach nobody"):
        render(TEMPLATE, notify_settings(NOTIFY_WEBHOOK_URL="", NOTIFY_EMAIL_TO=[], NOTIFY_TELEGRAM_BOT_TOKEN=""))
    with pytest.raises(AlertmanagerConfigError, match="CHAT_ID must be a number"):
        render(TEMPLATE, notify_settings(NOTIFY_TELEGRAM_CHAT_ID="@channel"))


def test_command_writes_the_settings_config_readable_by_its_owner_only(tmp_path: Path, settings) -> None:  # type: ignore[no-untyped-def]
    settings.NOTIFY_WEBHOOK_URL = "http://127.0.0.1:18599/from-settings"
    settings.NOTIFY_EMAIL_TO = []
    settings.NOTIFY_TELEGRAM_BOT_TOKEN = ""
    settings.GALFRIDAY_WATCHDOG_URL = "http://127.0.0.1:18596/ping/xyz"
    out = tmp_path / "alertmanager.yml"
    out.write_text("old")
    out.chmod(0o644)
    call_command("alertmanager_config", "--output", str(out))
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    config = yaml.safe_load(out.read_text())
    assert receivers(config)["galfriday-critical"]["webhook_configs"][0]["url"].endswith("/from-settings")
    assert receivers(config)["deadmansswitch"]["webhook_configs"][0]["url"].endswith("/ping/xyz")


def post_alert(base: str, name: str, severity: str, **labels: str) -> None:
    now = datetime.now(UTC)
    alert = {
        "labels": {"alertname": name, "severity": severity, "job": "galfriday", **labels},
        "annotations": {"summary": name},
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(minutes=10)).isoformat(),
    }
    httpx.post(f"{base}/api/v2/alerts", json=[alert], timeout=10).raise_for_status()


def test_exchange_down_inhibits_stale_data_and_rejections_in_a_real_alertmanager(tmp_path: Path) -> None:
    with http_receiver() as receiver:
        config = render(
            TEMPLATE,
            notify_settings(
                NOTIFY_WEBHOOK_URL=f"{receiver.url}/hook",
                NOTIFY_EMAIL_TO=[],
                NOTIFY_TELEGRAM_BOT_TOKEN="",
                GALFRIDAY_WATCHDOG_URL=f"{receiver.url}/deadman",
            ),
        ).config
        path = tmp_path / "alertmanager.yml"
        path.write_text(yaml.safe_dump(shorten_routes(config)))
        port = loopback_port()
        base = f"http://127.0.0.1:{port}"
        with running(alertmanager_args(path, port, tmp_path / "data"), tmp_path / "alertmanager.log"):
            wait_for(
                lambda: httpx.get(f"{base}/-/ready", timeout=2).status_code == 200,
                what="Alertmanager ready",
                retry_on=(httpx.TransportError,),
            )
            post_alert(base, "ExchangeDown", "critical")
            wait_for(lambda: receiver.alerts("/hook"), what="ExchangeDown delivered")
            post_alert(base, "MarketDataStale", "warning", worker="w1")
            post_alert(base, "OrderRejectionsSpike", "warning", state="rejected")
            post_alert(base, "TargetDown", "critical", instance="worker:9808")  # not a consequence: delivered

            def states() -> dict[str, dict[str, Any]]:
                alerts = httpx.get(f"{base}/api/v2/alerts", timeout=5).json()
                return {a["labels"]["alertname"]: a["status"] for a in alerts}

            wait_for(lambda: len(states()) == 4, what="the four alerts in Alertmanager")
            wait_for(lambda: "TargetDown" in {a["labels"]["alertname"] for a in receiver.alerts("/hook")})
            status = states()
            for name in ("MarketDataStale", "OrderRejectionsSpike"):
                assert status[name]["state"] == "suppressed", status[name]
                assert status[name]["inhibitedBy"], status[name]
            assert status["TargetDown"]["state"] == "active"
            delivered = {a["labels"]["alertname"] for a in receiver.alerts("/hook")}
            assert delivered == {"ExchangeDown", "TargetDown"}
