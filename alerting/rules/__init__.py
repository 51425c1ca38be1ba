"""The alert rules. Each looks at the system and says which conditions of its kinds hold now; the alerts of the
conditions that hold fire (or repeat), those of conditions that cleared resolve (alerting.rules.base).

They run on the beat schedule (`alerting.tasks.alert_rules_evaluate`: the database rules every 2 s, the broker's
every 30 s) and where the event happens
(alerting.signals: the trading state, equity snapshots, rejected orders, the ingest heartbeat). Conditions the
domain apps see themselves raise and resolve their alerts where they happen, through trading.alerts: the kill
switch, reconciliation runs (failed, halted), drift checks, model degradation, experiment guardrails and SRM,
model rollbacks, the ingest worker's disconnection.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.utils import timezone

from alerting.rules import infrastructure, ingest, trading
from alerting.rules.base import Finding, Rule, Verdict, findings_apply

logger = logging.getLogger(__name__)

K = trading.K
RULES: dict[str, Rule] = {
    rule.name: rule
    for rule in (
        Rule("drawdown", (K.DRAWDOWN_WARNING, K.DRAWDOWN_BREACH), trading.drawdown_rule),
        Rule("daily_loss", (K.DAILY_LOSS_BREACH,), trading.daily_loss_rule),
        Rule("kill_switch", (K.TRADING_HALTED, K.RECONCILIATION_HALTED), trading.kill_switch_rule),
        Rule("order_rejections", (K.ORDER_REJECTIONS,), trading.rejections_rule),
        Rule("latency", (K.LATENCY_HIGH,), trading.latency_rule),
        Rule("balance_low", (K.BALANCE_LOW,), trading.balance_rule),
        Rule("risk_monitor_blind", (K.RISK_MONITOR_BLIND,), trading.risk_monitor_rule),
        Rule("exchange_disconnected", (K.EXCHANGE_DISCONNECTED,), ingest.disconnected_rule),
        Rule("exchange_maintenance", (K.EXCHANGE_MAINTENANCE,), ingest.maintenance_rule),
        Rule("ingest_lag", (K.INGEST_LAG,), ingest.ingest_lag_rule),
        Rule("market_data_stale", (K.MARKET_DATA_STALE,), ingest.stale_market_data_rule),
        Rule("queue_backlog", (K.QUEUE_BACKLOG,), infrastructure.queue_backlog_rule),
        Rule("queue_no_worker", (K.QUEUE_NO_WORKER,), infrastructure.no_worker_rule),
        Rule("db_connections", (K.DB_CONNECTIONS_HIGH, K.DB_POOL_EXHAUSTED), infrastructure.db_connections_rule),
        Rule("reconciliation", (K.RECONCILIATION_FAILED,), infrastructure.reconciliation_rule),
    )
}


#: Rules that ask the broker (a passive declare per queue; a broadcast that waits INSPECT_TIMEOUT_S for the
#: workers' answers): every 30 s. The others read a few indexed rows: every 2 s, so a condition only the schedule
#: sees is an alert within about 2 s (and a notification within the group wait more: BENCHMARKS.md).
BROKER_RULES = ("queue_backlog", "queue_no_worker")
GROUPS: dict[str, tuple[str, ...]] = {
    "all": tuple(RULES),
    "broker": BROKER_RULES,
    "database": tuple(name for name in RULES if name not in BROKER_RULES),
}


def rule_evaluate(name: str, *, now: datetime | None = None) -> dict[str, int]:
    """Run one rule and apply its verdict (fire what holds, resolve what cleared)."""
    rule = RULES[name]
    verdict = rule.check(now or timezone.now())
    return findings_apply(verdict)


def rules_evaluate(*, now: datetime | None = None, names: list[str] | None = None) -> dict[str, Any]:
    """Run every rule (or `names`); a rule that fails is logged and reported, and the others still run."""
    now = now or timezone.now()
    results: dict[str, Any] = {}
    for name in names or list(RULES):
        try:
            results[name] = rule_evaluate(name, now=now)
        except Exception as exc:  # one broken input must not blind every other rule
            logger.exception("alert rule failed", extra={"rule": name})
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return results


__all__ = ["BROKER_RULES", "GROUPS", "RULES", "Finding", "Rule", "Verdict", "rule_evaluate", "rules_evaluate"]
