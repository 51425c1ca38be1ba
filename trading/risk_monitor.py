"""The continuous risk check (every 10 s from beat): an equity snapshot at the last quotes, and a halt when the
maximum drawdown or the daily loss limit is breached."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.utils import timezone

from core.errors import ApplicationError
from core.metrics import ProcessCounters
from trading import selectors
from trading.accounts import equity_snapshot_take
from trading.alerts import alert_raise
from trading.executions import EventSource
from trading.kill_switch import trading_halt
from trading.models import Alert, TradingState

logger = logging.getLogger(__name__)

# Counts (all processes in /metrics: galfriday_events_total; each is logged too).
counters = ProcessCounters("trading.risk_monitor")

MONITOR_ACTOR = "risk:monitor"


@dataclass
class MonitorResult:
    status: str  # "ok", "breach", "missing_marks"
    equity: Decimal | None = None
    high_water_mark: Decimal | None = None
    drawdown: Decimal | None = None
    daily_pnl: Decimal | None = None
    breaches: list[str] = field(default_factory=list)
    halted: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "equity": None if self.equity is None else str(self.equity),
            "high_water_mark": None if self.high_water_mark is None else str(self.high_water_mark),
            "drawdown": None if self.drawdown is None else str(self.drawdown),
            "daily_pnl": None if self.daily_pnl is None else str(self.daily_pnl),
            "breaches": self.breaches,
            "halted": self.halted,
        }


def risk_monitor_check(*, now: datetime | None = None) -> MonitorResult:
    """Take an equity snapshot at the last quotes and halt ACTIVE trading when the maximum drawdown or the daily
    loss limit is breached. REDUCING (an operator unwinding) is left as it is: the pre-trade check already refuses
    every order that would add risk while a limit is breached. Safe to run twice (a second run adds a snapshot;
    halting an already halted system changes nothing)."""
    now = now or timezone.now()
    marks = {symbol: q.mid for symbol, q in selectors.market_quotes().items()}
    try:
        snapshot = equity_snapshot_take(marks=marks, currency=selectors.account_currency(), at=now)
    except ApplicationError as exc:
        if exc.code != "missing_marks":
            raise
        counters["risk_monitor_missing_marks"] += 1
        alert_raise(
            kind=Alert.Kind.RISK_MONITOR_BLIND,
            severity=Alert.Severity.WARNING,
            message=f"Risk monitor cannot value the account: {exc.message}",
            context=exc.details,
            dedupe=True,
        )
        return MonitorResult(status="missing_marks")
    limits = selectors.risk_limits_effective()
    pnl = selectors.daily_pnl(now=now, marks=marks)
    result = MonitorResult(
        status="ok",
        equity=snapshot.equity,
        high_water_mark=snapshot.high_water_mark,
        drawdown=snapshot.drawdown,
        daily_pnl=pnl,
    )
    kind = None
    if snapshot.drawdown >= limits.max_drawdown:
        result.breaches.append(
            f"drawdown {snapshot.drawdown:.2%} of the high-water mark {snapshot.high_water_mark} "
            f"reaches the limit {limits.max_drawdown:.2%}"
        )
        kind = Alert.Kind.DRAWDOWN_BREACH
    if pnl <= -limits.daily_loss_limit:
        result.breaches.append(f"today's PnL {pnl} breaches the daily loss limit {limits.daily_loss_limit}")
        kind = kind or Alert.Kind.DAILY_LOSS_BREACH
    if not result.breaches:
        return result
    result.status = "breach"
    if selectors.trading_state_get().state == TradingState.State.ACTIVE and kind is not None:
        halt = trading_halt(
            reason="; ".join(result.breaches),
            actor=MONITOR_ACTOR,
            source=EventSource.SYSTEM,
            alert_kind=kind,
            context={"monitor": result.to_json(), "limits": limits.to_json()},
        )
        result.halted = halt.changed
    return result
