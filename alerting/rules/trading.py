"""Rules on the books and the trading pipeline: drawdown (80 % of the limit, the limit), daily loss, the kill switch,
order rejections, bar -> ack latency, low balances, and the risk monitor's blindness clearing."""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db.models import F

from alerting.rules.base import Finding, Verdict, by_kind
from core.errors import ApplicationError
from trading import selectors
from trading.models import Alert, Balance, Decision, EquitySnapshot, OrderEvent, TradingState
from trading.order_states import OrderState

logger = logging.getLogger(__name__)
K = Alert.Kind
#: A decision's bar closes this long after its bar_time (the decision pipeline runs on 1-minute bars).
DECISION_BAR_SECONDS = 60
#: An equity snapshot older than this says nothing about the drawdown now (the risk monitor takes one every 10 s).
SNAPSHOT_FRESH = timedelta(minutes=5)


def drawdown_rule(now: datetime) -> Verdict:
    """Drawdown of the latest equity snapshot against the max_drawdown limit: at the limit critical (the risk
    monitor halts trading then, raising the same alert), at GALFRIDAY_ALERT_DRAWDOWN_WARNING_FRACTION of it a
    warning. No fresh snapshot: cannot tell (nothing changes)."""
    snapshot = (
        EquitySnapshot.objects.filter(currency=selectors.account_currency(), taken_at__gte=now - SNAPSHOT_FRESH)
        .order_by("-taken_at", "-id")
        .first()
    )
    if snapshot is None:
        return {K.DRAWDOWN_WARNING: None, K.DRAWDOWN_BREACH: None}
    limit = selectors.risk_limits_effective().max_drawdown
    warn_at = limit * Decimal(str(settings.GALFRIDAY_ALERT_DRAWDOWN_WARNING_FRACTION))
    context = {"drawdown": str(snapshot.drawdown), "limit": str(limit), "equity": str(snapshot.equity),
               "high_water_mark": str(snapshot.high_water_mark), "snapshot_id": snapshot.pk}  # fmt: skip
    findings = []
    if snapshot.drawdown >= limit:
        message = f"drawdown {snapshot.drawdown:.2%} reaches the limit {limit:.2%}"
        findings.append(Finding(K.DRAWDOWN_BREACH, "critical", message, context=context))
    elif snapshot.drawdown >= warn_at:
        findings.append(Finding(K.DRAWDOWN_WARNING, "warning",
                                f"drawdown {snapshot.drawdown:.2%} is past {warn_at:.2%} "
                                f"({settings.GALFRIDAY_ALERT_DRAWDOWN_WARNING_FRACTION:.0%} of the limit {limit:.2%})",
                                context=context))  # fmt: skip
    return by_kind((K.DRAWDOWN_WARNING, K.DRAWDOWN_BREACH), findings)


def daily_loss_rule(now: datetime) -> Verdict:
    """Today's PnL (at the last quotes) against the daily loss limit; clears with a new UTC day or a recovery."""
    marks = {symbol: q.mid for symbol, q in selectors.market_quotes().items()}
    try:
        pnl = selectors.daily_pnl(now=now, marks=marks)
    except (ApplicationError, KeyError):  # a position without a mark: cannot tell
        return {K.DAILY_LOSS_BREACH: None}
    limit = selectors.risk_limits_effective().daily_loss_limit
    findings = []
    if pnl <= -limit:
        findings.append(Finding(K.DAILY_LOSS_BREACH, "critical",
                                f"today's PnL {pnl} breaches the daily loss limit {limit}",
                                context={"pnl": str(pnl), "limit": str(limit)}))  # fmt: skip
    return by_kind((K.DAILY_LOSS_BREACH,), findings)


#: The alerts a halt raises (trading.kill_switch.trading_halt's alert_kind): one of them open says "halted".
HALT_KINDS = (K.TRADING_HALTED, K.RECONCILIATION_HALTED, K.DRAWDOWN_BREACH, K.DAILY_LOSS_BREACH)


def kill_switch_rule(now: datetime) -> Verdict:
    """The kill switch raises its alert when it engages (trading.kill_switch); this resolves the halt alerts once
    trading runs again, and keeps "trading halted" firing while it is halted and no alert of the halt is open (say
    the drawdown that halted it recovered: trading stays halted until a person resumes it)."""
    state = selectors.trading_state_get()
    if state.state != TradingState.State.HALTED:
        return {K.TRADING_HALTED: [], K.RECONCILIATION_HALTED: []}
    if Alert.objects.filter(kind__in=HALT_KINDS).exclude(state=Alert.State.RESOLVED).exists():
        return {K.TRADING_HALTED: None, K.RECONCILIATION_HALTED: None}
    finding = Finding(K.TRADING_HALTED, "critical", f"Trading is halted (by {state.changed_by}): {state.reason}",
                      context={"actor": state.changed_by, "reason": state.reason})  # fmt: skip
    return {K.TRADING_HALTED: [finding], K.RECONCILIATION_HALTED: None}


def rejections_rule(now: datetime) -> Verdict:
    """At least GALFRIDAY_ALERT_REJECTIONS_MIN orders rejected (by the exchange or the risk check) within
    GALFRIDAY_ALERT_REJECTIONS_WINDOW_S."""
    window = int(settings.GALFRIDAY_ALERT_REJECTIONS_WINDOW_S)
    events = OrderEvent.objects.filter(to_state=OrderState.REJECTED, recorded_at__gte=now - timedelta(seconds=window))
    count = events.count()
    findings = []
    if count >= int(settings.GALFRIDAY_ALERT_REJECTIONS_MIN):
        reasons = list(events.order_by("-recorded_at").values_list("reason", flat=True)[:3])
        findings.append(Finding(K.ORDER_REJECTIONS, "warning",
                                f"{count} orders rejected in the last {window} s (latest: {'; '.join(reasons)})",
                                context={"count": count, "window_s": window, "latest_reasons": reasons}))  # fmt: skip
    return by_kind((K.ORDER_REJECTIONS,), findings)


def latency_rule(now: datetime) -> Verdict:
    """The 95th percentile of bar close -> exchange acknowledgement (the decision's bar_time plus its minute, to the
    order's accepted_at) of orders accepted within GALFRIDAY_ALERT_LATENCY_WINDOW_S, above GALFRIDAY_ALERT_LATENCY_MS.
    Fewer than GALFRIDAY_ALERT_LATENCY_MIN_SAMPLES orders: cannot tell."""
    window = int(settings.GALFRIDAY_ALERT_LATENCY_WINDOW_S)
    rows = list(
        Decision.objects.filter(order__accepted_at__gte=now - timedelta(seconds=window))
        .annotate(accepted_at=F("order__accepted_at"))
        .order_by("-order__accepted_at")
        .values_list("bar_time", "accepted_at")[:1000]
    )
    if len(rows) < int(settings.GALFRIDAY_ALERT_LATENCY_MIN_SAMPLES):
        return {K.LATENCY_HIGH: None}
    latencies = sorted(
        (accepted - (bar_time + timedelta(seconds=DECISION_BAR_SECONDS))).total_seconds() * 1000
        for bar_time, accepted in rows
    )
    p95 = latencies[min(len(latencies) - 1, math.ceil(0.95 * len(latencies)) - 1)]
    threshold = float(settings.GALFRIDAY_ALERT_LATENCY_MS)
    findings = []
    if p95 > threshold:
        findings.append(Finding(K.LATENCY_HIGH, "warning",
                                f"bar close -> exchange ack p95 {p95:.0f} ms over {len(latencies)} orders in the last "
                                f"{window} s exceeds {threshold:.0f} ms",
                                context={"p95_ms": round(p95, 1), "max_ms": round(latencies[-1], 1),
                                         "samples": len(latencies), "window_s": window}))  # fmt: skip
    return by_kind((K.LATENCY_HIGH,), findings)


def balance_rule(now: datetime) -> Verdict:
    """Every asset of GALFRIDAY_ALERT_BALANCE_MIN whose balance is below its minimum (a missing balance is zero)."""
    minimums: dict[str, Decimal] = {}
    for asset, value in dict(settings.GALFRIDAY_ALERT_BALANCE_MIN).items():
        try:
            minimums[str(asset)] = Decimal(str(value))
        except InvalidOperation:
            logger.warning("GALFRIDAY_ALERT_BALANCE_MIN: %r is not a number for %s; ignored", value, asset)
            continue
    totals = dict(Balance.objects.filter(asset__in=minimums).values_list("asset", "total"))
    findings = [
        Finding(K.BALANCE_LOW, "warning", f"{asset} balance {totals.get(asset, Decimal(0))} is below {minimum}",
                fingerprint=f"{K.BALANCE_LOW}:{asset}",
                context={"asset": asset, "balance": str(totals.get(asset, Decimal(0))), "minimum": str(minimum)})
        for asset, minimum in sorted(minimums.items())
        if totals.get(asset, Decimal(0)) < minimum
    ]  # fmt: skip
    return by_kind((K.BALANCE_LOW,), findings)


def risk_monitor_rule(now: datetime) -> Verdict:
    """The risk monitor raises `risk_monitor_blind` when it cannot value the account; it can again once it took an
    equity snapshot after the alert was last raised."""
    alert = Alert.objects.filter(kind=K.RISK_MONITOR_BLIND).exclude(state=Alert.State.RESOLVED).first()
    if alert is None:
        return {K.RISK_MONITOR_BLIND: []}
    seen = alert.last_seen_at or alert.created_at
    if EquitySnapshot.objects.filter(taken_at__gt=seen).exists():
        return {K.RISK_MONITOR_BLIND: []}
    return {K.RISK_MONITOR_BLIND: None}
