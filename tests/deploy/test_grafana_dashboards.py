"""deploy/grafana: the provisioned datasource has the fixed uid `prometheus` and every dashboard panel names it (no
`${DS_PROMETHEUS}` import inputs); the committed JSON is what deploy/grafana/build_dashboards.py writes; and every
metric a panel queries is one that `/metrics` serves (a renamed metric breaks this test, not a dashboard silently)."""

from __future__ import annotations

import importlib.util
import json
import re
from types import ModuleType
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import ROOT

GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
SUFFIXES = ("", "_total", "_bucket", "_count", "_sum", "_created")


def builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_dashboards", GRAFANA / "build_dashboards.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def targets(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [t for p in dashboard["panels"] for t in p["targets"]]


def test_there_is_a_dashboard_for_trading_latency_ingest_and_models() -> None:
    assert [p.stem for p in DASHBOARDS] == ["ingest", "latency", "models", "trading"]


def test_the_committed_dashboards_are_what_the_builder_writes() -> None:
    build = builder()
    for path in DASHBOARDS:
        assert path.read_text() == build.render(path.stem), f"{path.name}: run deploy/grafana/build_dashboards.py"


def test_every_panel_queries_the_provisioned_datasource_by_its_fixed_uid() -> None:
    [source] = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())["datasources"]
    assert (source["uid"], source["type"]) == ("prometheus", "prometheus")
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "galfriday.yml").read_text())["providers"][0]
    assert provider["type"] == "file"
    uids = set()
    for path in DASHBOARDS:
        text = path.read_text()
        assert "${DS_" not in text
        assert "__inputs" not in text
        dashboard = json.loads(text)
        uids.add(dashboard["uid"])
        assert dashboard["panels"], path.name
        for panel in dashboard["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": source["uid"]}, (path.name, panel["title"])
            assert panel["targets"], (path.name, panel["title"])
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == source["uid"]
                assert target["expr"].strip()
    assert len(uids) == len(DASHBOARDS)


@pytest.mark.django_db
def test_every_metric_a_panel_queries_is_served_by_metrics(client) -> None:  # type: ignore[no-untyped-def]
    served = {
        family.name + suffix
        for family in text_string_to_metric_families(client.get("/metrics").content.decode())
        for suffix in SUFFIXES
    }
    queried = {
        name
        for path in DASHBOARDS
        for target in targets(json.loads(path.read_text()))
        for name in re.findall(r"\bgalfriday_[a-z0-9_]+", target["expr"])
    }
    assert {"galfriday_bar_to_ack_seconds_bucket", "galfriday_events_total", "galfriday_celery_queue_depth"} <= queried
    assert queried - served == set()


def test_the_latency_dashboard_shows_each_latency_target() -> None:
    latency = json.loads((GRAFANA / "dashboards" / "latency.json").read_text())
    exprs = " ".join(t["expr"] for t in targets(latency))
    for histogram in ("bar_to_ack_seconds", "execution_report_commit_seconds", "prediction_seconds"):
        assert f"histogram_quantile(0.99, sum by (le) (rate(galfriday_{histogram}_bucket[5m])))" in exprs
