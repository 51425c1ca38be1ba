"""Every alert rule fires on its cause and resolves when the cause clears (real PostgreSQL rows; the Celery rules
against the real Redis broker). Seed rules: WebSocket disconnected > 5 min, reconciliation failures, latency >
500 ms, database connection pool exhaustion (here); model degradation and drift (tests/models_registry:
test_outcomes, test_drift_checks)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from alerting.rules import RULES, rule_evaluate, rules_evaluate
from ingest.models import IngestStatus
from reconciliation.models import ReconciliationRun
from tests.trading.factories import EthInstrumentFactory, InstrumentFactory, equity_snapshot, placed_order, trade
from trading.accounts import balance_set
from trading.execution_reports import execution_report_apply
from trading.instruments import market_quote_set
from trading.kill_switch import trading_halt, trading_resume
from trading.limits import risk_limit_set
from trading.models import Alert, Decision, Instrument, Order
from trading.orders import order_mark_rejected
from trading.selectors import risk_limits_effective

pytestmark = pytest.mark.django_db
D = Decimal


def open_alerts(kind: str) -> dict[str, Alert]:
    return {a.fingerprint: a for a in Alert.objects.filter(kind=kind).exclude(state="resolved")}


def resolved(kind: str) -> list[str]:
    return list(Alert.objects.filter(kind=kind, state="resolved").values_list("fingerprint", flat=True))


def worker(name: str = "host:1", **fields: Any) -> IngestStatus:
    now = timezone.now()
    defaults: dict[str, Any] = {"connection_state": "connected", "exchange_status": "online", "symbols": [],
                                "stats": {}, "last_message_at": now, "disconnected_since": None,
                                "started_at": now - timedelta(hours=1), "updated_at": now}  # fmt: skip
    row, _ = IngestStatus.objects.update_or_create(name=name, defaults={**defaults, **fields})
    return row


# --- seed rules ---------------------------------------------------------------------------------------------


def test_websocket_disconnected_over_five_minutes_is_critical_and_resolves_on_reconnect(settings) -> None:  # type: ignore[no-untyped-def]
    settings.INGEST_DISCONNECT_ALERT_SECONDS = 300
    now = timezone.now()
    worker(connection_state="reconnecting", disconnected_since=now - timedelta(seconds=200))
    rule_evaluate("exchange_disconnected")
    assert open_alerts("exchange_disconnected") == {}  # not five minutes yet
    worker(connection_state="reconnecting", disconnected_since=now - timedelta(seconds=301))
    rule_evaluate("exchange_disconnected")
    alert = open_alerts("exchange_disconnected")["exchange_disconnected:host:1"]
    assert alert.severity == "critical"
    seen = alert.last_seen_at
    rule_evaluate("exchange_disconnected")  # still down: the alert is refreshed, not counted or announced again
    alert.refresh_from_db()
    assert alert.count == 1
    assert alert.last_seen_at > seen
    worker(connection_state="connected", disconnected_since=None)
    rule_evaluate("exchange_disconnected")
    assert resolved("exchange_disconnected") == ["exchange_disconnected:host:1"]


def test_ingest_workers_own_disconnection_alert_is_the_same_condition(settings) -> None:  # type: ignore[no-untyped-def]
    from ingest.services import disconnection_alert

    now = timezone.now()
    worker(connection_state="reconnecting", disconnected_since=now - timedelta(seconds=400))
    disconnection_alert(name="host:1", since=now - timedelta(seconds=400), now=now)
    rule_evaluate("exchange_disconnected")
    assert [a.count for a in open_alerts("exchange_disconnected").values()] == [1]


def _run(status: str, at: Any, error: str = "") -> ReconciliationRun:
    return ReconciliationRun.objects.create(trigger="schedule", status=status, started_at=at, finished_at=at,
                                            error=error)  # fmt: skip


def test_reconciliation_failure_is_critical_and_resolves_after_a_good_run() -> None:
    now = timezone.now()
    _run("clean", now - timedelta(minutes=3))
    _run("failed", now - timedelta(minutes=2), error="EService:Unavailable")
    rule_evaluate("reconciliation")
    alert = open_alerts("reconciliation_failed")["reconciliation_failed"]
    assert alert.severity == "critical"
    assert "Unavailable" in alert.message
    _run("running", now - timedelta(seconds=30))  # a run in progress says nothing yet
    rule_evaluate("reconciliation")
    assert "reconciliation_failed" in open_alerts("reconciliation_failed")
    _run("corrected", now)
    rule_evaluate("reconciliation")
    assert resolved("reconciliation_failed") == ["reconciliation_failed"]


def _decision(n: int, *, latency_ms: float, now: Any) -> Decision:
    order = placed_order()
    bar_time = now - timedelta(minutes=2)
    accepted = bar_time + timedelta(seconds=60, milliseconds=latency_ms)
    Order.objects.filter(pk=order.pk).update(state="accepted", accepted_at=accepted)
    return Decision.objects.create(decision_id=f"lat-{n}", instrument=order.instrument, bar_time=bar_time,
                                   model_version="m v1", signal=1, confidence=D("0.6"), order=order,
                                   status="ordered")  # fmt: skip


def test_latency_over_500_ms_warns_and_resolves_when_orders_are_fast_again(settings) -> None:  # type: ignore[no-untyped-def]
    settings.GALFRIDAY_ALERT_LATENCY_MS = 500
    settings.GALFRIDAY_ALERT_LATENCY_MIN_SAMPLES = 3
    now = timezone.now()
    for n in range(2):
        _decision(n, latency_ms=900, now=now)
    rule_evaluate("latency")
    assert open_alerts("latency_high") == {}  # two orders are too few to tell
    _decision(2, latency_ms=800, now=now)
    rule_evaluate("latency")
    alert = open_alerts("latency_high")["latency_high"]
    assert alert.severity == "warning"
    assert alert.context["samples"] == 3
    assert alert.context["p95_ms"] == pytest.approx(900, abs=1)
    Order.objects.update(accepted_at=now - timedelta(minutes=1, seconds=-0.1))  # 100 ms after the bar closed
    rule_evaluate("latency")
    assert resolved("latency_high") == ["latency_high"]


def test_database_connections_near_max_and_pool_exhaustion_fire_and_resolve(settings) -> None:  # type: ignore[no-untyped-def]
    from alerting.rules.infrastructure import pg_connection_usage

    usage = pg_connection_usage()
    assert usage is not None
    used, usable = usage
    assert 1 <= used <= usable
    share = used / usable
    settings.GALFRIDAY_ALERT_DB_CONNECTIONS_FRACTION = share / 2  # this server's real count is "near max"
    settings.GALFRIDAY_ALERT_DB_POOL_EXHAUSTED_FRACTION = 1.0
    rule_evaluate("db_connections")
    assert open_alerts("db_connections_high")["db_connections_high"].context["usable"] == usable
    settings.GALFRIDAY_ALERT_DB_POOL_EXHAUSTED_FRACTION = share / 2  # ... and now "exhausted"
    rule_evaluate("db_connections")
    assert open_alerts("db_pool_exhausted")["db_pool_exhausted"].severity == "warning"
    assert resolved("db_connections_high") == ["db_connections_high"]  # the graver condition speaks alone
    settings.GALFRIDAY_ALERT_DB_CONNECTIONS_FRACTION = 0.99
    settings.GALFRIDAY_ALERT_DB_POOL_EXHAUSTED_FRACTION = 1.0
    rule_evaluate("db_connections")
    assert resolved("db_pool_exhausted") == ["db_pool_exhausted"]
    assert open_alerts("db_connections_high") == {}


# --- the other rules ----------------------------------------------------------------------------------------


def test_drawdown_warns_at_80_percent_of_the_limit_is_critical_at_it_and_resolves(settings) -> None:  # type: ignore[no-untyped-def]
    settings.GALFRIDAY_ALERT_DRAWDOWN_WARNING_FRACTION = 0.8
    assert risk_limits_effective().max_drawdown == D("0.15")  # the default limit: a warning from 12 %
    equity_snapshot(equity="9000", high_water_mark="10000")  # 10 %
    rule_evaluate("drawdown")
    assert open_alerts("drawdown_warning") == {}
    equity_snapshot(equity="8700", high_water_mark="10000")  # 13 %
    rule_evaluate("drawdown")
    assert open_alerts("drawdown_warning")["drawdown_warning"].severity == "warning"
    equity_snapshot(equity="8400", high_water_mark="10000")  # 16 %: the limit
    rule_evaluate("drawdown")
    assert open_alerts("drawdown_breach")["drawdown_breach"].severity == "critical"
    assert resolved("drawdown_warning") == ["drawdown_warning"]
    equity_snapshot(equity="9900", high_water_mark="10000")
    rule_evaluate("drawdown")
    assert resolved("drawdown_breach") == ["drawdown_breach"]
    assert open_alerts("drawdown_warning") == {}


def test_kill_switch_alert_resolves_when_trading_resumes() -> None:
    trading_halt(reason="exchange acting up", actor="user:ann")
    rule_evaluate("kill_switch")
    assert "trading_halted" in open_alerts("trading_halted")
    trading_resume(reason="fine again", actor="user:ann")
    rule_evaluate("kill_switch")
    assert resolved("trading_halted") == ["trading_halted"]


def test_a_halt_stays_an_alert_after_the_drawdown_that_caused_it_recovers() -> None:
    trading_halt(reason="drawdown 16 % reaches the limit", actor="risk:monitor", alert_kind="drawdown_breach")
    equity_snapshot(equity="9900", high_water_mark="10000")
    rule_evaluate("drawdown")
    assert resolved("drawdown_breach") == ["drawdown_breach"]
    rule_evaluate("kill_switch")
    halted = open_alerts("trading_halted")["trading_halted"]
    assert (halted.severity, halted.context["actor"]) == ("critical", "risk:monitor")
    trading_resume(reason="reviewed", actor="user:ann", may_lift_safety_halt=True)
    rule_evaluate("kill_switch")
    assert resolved("trading_halted") == ["trading_halted"]


def test_daily_loss_at_the_limit_is_critical_and_resolves_on_recovery() -> None:
    market: Instrument = InstrumentFactory()  # type: ignore[assignment]
    market_quote_set(instrument=market, bid=D("99.9"), ask=D("100.1"), at=timezone.now())
    risk_limit_set(instrument=None, values={"daily_loss_limit": D("50")}, reason="tight", actor="user:risk")
    order = placed_order(instrument=market, qty="10")
    execution_report_apply(event=trade("OL-1", "T-l1", "10", "100", cl_ord_id=order.client_order_id))
    rule_evaluate("daily_loss")
    assert open_alerts("daily_loss_breach") == {}
    market_quote_set(instrument=market, bid=D("93.9"), ask=D("94.1"), at=timezone.now())  # 10 BTC lose 60 USD
    rule_evaluate("daily_loss")
    alert = open_alerts("daily_loss_breach")["daily_loss_breach"]
    assert alert.severity == "critical"
    assert D(alert.context["pnl"]) == D("-60")
    assert D(alert.context["limit"]) == D("50")
    market_quote_set(instrument=market, bid=D("99.9"), ask=D("100.1"), at=timezone.now())
    rule_evaluate("daily_loss")
    assert resolved("daily_loss_breach") == ["daily_loss_breach"]


def test_reconciliation_halt_alert_resolves_when_trading_resumes() -> None:
    trading_halt(reason="books disagree with the exchange", actor="reconciliation", alert_kind="reconciliation_halted")
    halted = open_alerts("reconciliation_halted")["reconciliation_halted"]
    assert halted.severity == "critical"
    rule_evaluate("kill_switch")  # halted, and an alert of the halt is open: nothing else fires
    assert open_alerts("trading_halted") == {}
    assert "reconciliation_halted" in open_alerts("reconciliation_halted")
    trading_resume(reason="reconciled by hand", actor="user:ann", may_lift_safety_halt=True)
    rule_evaluate("kill_switch")
    assert resolved("reconciliation_halted") == ["reconciliation_halted"]


def test_order_rejections_spike_fires_and_resolves_when_the_window_passes(settings) -> None:  # type: ignore[no-untyped-def]
    settings.GALFRIDAY_ALERT_REJECTIONS_MIN = 3
    settings.GALFRIDAY_ALERT_REJECTIONS_WINDOW_S = 300
    for _ in range(2):
        order_mark_rejected(order_id=placed_order().pk, reason="EOrder:Insufficient funds")
    rule_evaluate("order_rejections")
    assert open_alerts("order_rejections") == {}
    order_mark_rejected(order_id=placed_order().pk, reason="EOrder:Insufficient funds")
    rule_evaluate("order_rejections")
    alert = open_alerts("order_rejections")["order_rejections"]
    assert alert.context["count"] == 3
    assert "Insufficient funds" in alert.message
    rule_evaluate("order_rejections", now=timezone.now() + timedelta(seconds=301))
    assert resolved("order_rejections") == ["order_rejections"]


def test_stale_market_data_per_subscribed_symbol(settings) -> None:  # type: ignore[no-untyped-def]
    settings.GALFRIDAY_ALERT_MARKET_DATA_STALE_S = 120
    now = timezone.now()
    btc, eth = InstrumentFactory(), EthInstrumentFactory()
    worker(symbols=["BTC/USD", "ETH/USD"])
    market_quote_set(instrument=btc, bid=D("100"), ask=D("101"), at=now - timedelta(seconds=10))
    market_quote_set(instrument=eth, bid=D("10"), ask=D("11"), at=now - timedelta(seconds=500))
    rule_evaluate("market_data_stale")
    assert set(open_alerts("market_data_stale")) == {"market_data_stale:ETH/USD"}
    market_quote_set(instrument=eth, bid=D("10"), ask=D("11"), at=now)
    rule_evaluate("market_data_stale")
    assert resolved("market_data_stale") == ["market_data_stale:ETH/USD"]


def test_exchange_maintenance_and_cancel_only_fire_and_resolve_when_online() -> None:
    worker(exchange_status="cancel_only")
    rule_evaluate("exchange_maintenance")
    assert "cancel_only" in open_alerts("exchange_maintenance")["exchange_maintenance"].message
    worker(exchange_status="online")
    rule_evaluate("exchange_maintenance")
    assert resolved("exchange_maintenance") == ["exchange_maintenance"]


def test_ingest_lag_from_a_stale_heartbeat_or_old_messages(settings) -> None:  # type: ignore[no-untyped-def]
    settings.GALFRIDAY_ALERT_INGEST_LAG_S = 60
    now = timezone.now()
    worker(updated_at=now - timedelta(seconds=90))
    rule_evaluate("ingest_lag")
    assert set(open_alerts("ingest_lag")) == {"ingest_lag:heartbeat"}
    worker(last_message_at=now - timedelta(seconds=120))
    rule_evaluate("ingest_lag")
    assert set(open_alerts("ingest_lag")) == {"ingest_lag:host:1"}
    worker(stats={"health": {"lag_ms": {"trade": {"p50": 75_000, "p99": 80_000, "samples": 100}}}})
    rule_evaluate("ingest_lag")
    assert "trade lag p50" in open_alerts("ingest_lag")["ingest_lag:host:1"].message
    worker(stats={})
    rule_evaluate("ingest_lag")
    assert open_alerts("ingest_lag") == {}


def test_low_balance_per_asset(settings) -> None:  # type: ignore[no-untyped-def]
    settings.GALFRIDAY_ALERT_BALANCE_MIN = {"USD": "100", "BTC": "0.01"}
    balance_set(asset="USD", total=D("50"))
    balance_set(asset="BTC", total=D("1"))
    rule_evaluate("balance_low")
    assert set(open_alerts("balance_low")) == {"balance_low:USD"}
    balance_set(asset="USD", total=D("150"))
    rule_evaluate("balance_low")
    assert resolved("balance_low") == ["balance_low:USD"]


def test_queue_backlog_on_the_real_broker(settings) -> None:  # type: ignore[no-untyped-def]
    from alerting.rules.infrastructure import celery_app

    settings.GALFRIDAY_ALERT_QUEUE_BACKLOG = 2
    app = celery_app()
    queue = "lifecycle"
    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge(queue)
        for _ in range(3):
            app.send_task("alerting.tests.never_consumed", queue=queue, connection=conn)
        try:
            rule_evaluate("queue_backlog")
            assert open_alerts("queue_backlog")["queue_backlog:lifecycle"].context["waiting"] == 3
        finally:
            conn.default_channel.queue_purge(queue)
    rule_evaluate("queue_backlog")
    assert resolved("queue_backlog") == ["queue_backlog:lifecycle"]


def test_risk_monitor_blind_resolves_once_a_snapshot_is_taken() -> None:
    from trading.alerts import alert_raise

    alert_raise(kind="risk_monitor_blind", severity="warning", message="no mark for BTC/USD")
    rule_evaluate("risk_monitor_blind")
    assert "risk_monitor_blind" in open_alerts("risk_monitor_blind")
    equity_snapshot(equity="100", at=timezone.now() + timedelta(seconds=1))
    rule_evaluate("risk_monitor_blind")
    assert resolved("risk_monitor_blind") == ["risk_monitor_blind"]


def test_every_rule_runs_and_one_failing_rule_does_not_stop_the_others(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from alerting.rules.base import Rule

    def broken(now: Any) -> Any:
        raise RuntimeError("input unavailable")

    monkeypatch.setitem(RULES, "latency", Rule("latency", ("latency_high",), broken))
    results = rules_evaluate()
    assert set(results) == set(RULES)
    assert "input unavailable" in results["latency"]["error"]
    assert "error" not in results["drawdown"]
    again = rules_evaluate()
    assert {name for name, r in again.items() if "error" in r} == {"latency"}
