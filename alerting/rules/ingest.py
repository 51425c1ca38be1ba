"""Rules on the ingest worker's heartbeat (ingest.models.IngestStatus) and the market data it writes: WebSocket
disconnected too long, exchange maintenance / cancel-only, ingest lag, stale market data.

Worker rows are named by host and process, so a restarted worker leaves its old row behind: "live" workers are
those whose heartbeat is younger than GALFRIDAY_ALERT_INGEST_LAG_S; when none is, the freshest row stands for the
ingest (a stale heartbeat: the worker hangs or is gone)."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings

from alerting.rules.base import Finding, Verdict, by_kind
from ingest.models import IngestStatus
from trading.models import Alert, MarketQuote

K = Alert.Kind
MAINTENANCE_STATES = ("maintenance", "cancel_only")


def _live_workers(now: datetime) -> tuple[list[IngestStatus], IngestStatus | None]:
    """(workers with a fresh heartbeat, the freshest row when none is fresh)."""
    lag = timedelta(seconds=int(settings.GALFRIDAY_ALERT_INGEST_LAG_S))
    live = list(IngestStatus.objects.filter(updated_at__gte=now - lag).order_by("name"))
    stale = None if live else IngestStatus.objects.order_by("-updated_at").first()
    return live, stale


def disconnected_rule(now: datetime) -> Verdict:
    """A live worker disconnected from the exchange for INGEST_DISCONNECT_ALERT_SECONDS or more (critical; the
    worker raises the same alert itself). Resolves when it reconnects."""
    limit = float(settings.INGEST_DISCONNECT_ALERT_SECONDS)
    live, _ = _live_workers(now)
    findings = []
    for worker in live:
        since = worker.disconnected_since
        if since is None or (now - since).total_seconds() < limit:
            continue
        findings.append(Finding(K.EXCHANGE_DISCONNECTED, "critical",
                                f"ingest worker {worker.name} has been disconnected from the exchange since "
                                f"{since.isoformat()}",
                                fingerprint=f"{K.EXCHANGE_DISCONNECTED}:{worker.name}",
                                context={"worker": worker.name, "since": since.isoformat(),
                                         "seconds": int((now - since).total_seconds())}))  # fmt: skip
    return by_kind((K.EXCHANGE_DISCONNECTED,), findings)


def maintenance_rule(now: datetime) -> Verdict:
    """The exchange's status (as a live worker last saw it) is maintenance or cancel-only: no order can be placed."""
    live, _ = _live_workers(now)
    statuses = sorted({w.exchange_status for w in live if w.exchange_status in MAINTENANCE_STATES})
    findings = [
        Finding(K.EXCHANGE_MAINTENANCE, "warning", f"Kraken reports {status}: no new orders can be placed",
                fingerprint=K.EXCHANGE_MAINTENANCE, context={"status": status})
        for status in statuses[:1]
    ]  # fmt: skip
    return by_kind((K.EXCHANGE_MAINTENANCE,), findings)


def ingest_lag_rule(now: datetime) -> Verdict:
    """The ingest falls behind: no live heartbeat (the freshest is older than GALFRIDAY_ALERT_INGEST_LAG_S), or a
    connected live worker whose last message, or whose median exchange -> receive lag of trades, is older than it."""
    lag_s = int(settings.GALFRIDAY_ALERT_INGEST_LAG_S)
    live, stale = _live_workers(now)
    findings = []
    if stale is not None:
        age = int((now - stale.updated_at).total_seconds())
        findings.append(Finding(K.INGEST_LAG, "warning",
                                f"no ingest heartbeat for {age} s (worker {stale.name}); market data is not arriving",
                                fingerprint=f"{K.INGEST_LAG}:heartbeat",
                                context={"worker": stale.name, "heartbeat_age_s": age}))  # fmt: skip
    for worker in live:
        if worker.connection_state != "connected":
            continue  # the disconnection rule speaks for it
        reasons = []
        if worker.last_message_at is not None and (now - worker.last_message_at).total_seconds() > lag_s:
            reasons.append(f"last message {int((now - worker.last_message_at).total_seconds())} s ago")
        trade_lag = ((worker.stats or {}).get("health") or {}).get("lag_ms", {}).get("trade") or {}
        p50 = trade_lag.get("p50")
        if isinstance(p50, int | float) and p50 > lag_s * 1000:
            reasons.append(f"trade lag p50 {p50:.0f} ms")
        if reasons:
            findings.append(Finding(K.INGEST_LAG, "warning",
                                    f"ingest worker {worker.name} lags: {', '.join(reasons)} (limit {lag_s} s)",
                                    fingerprint=f"{K.INGEST_LAG}:{worker.name}",
                                    context={"worker": worker.name, "reasons": reasons}))  # fmt: skip
    return by_kind((K.INGEST_LAG,), findings)


def stale_market_data_rule(now: datetime) -> Verdict:
    """A symbol a live worker subscribes to whose last quote is older than GALFRIDAY_ALERT_MARKET_DATA_STALE_S
    (exchange time). No live worker: the ingest-lag rule speaks, this one cannot tell."""
    live, _ = _live_workers(now)
    if not live:
        return {K.MARKET_DATA_STALE: None}
    symbols = sorted({str(s) for w in live for s in (w.symbols or [])})
    limit = int(settings.GALFRIDAY_ALERT_MARKET_DATA_STALE_S)
    quoted = dict(
        MarketQuote.objects.filter(instrument__symbol__in=symbols).values_list("instrument__symbol", "quoted_at")
    )
    running_since = min(w.started_at for w in live)
    findings = []
    for symbol in symbols:
        at = quoted.get(symbol)
        if at is not None and (now - at).total_seconds() <= limit:
            continue
        if at is None and (now - running_since).total_seconds() <= limit:
            continue  # just subscribed
        age = "never quoted" if at is None else f"last quote {int((now - at).total_seconds())} s old"
        findings.append(Finding(K.MARKET_DATA_STALE, "warning", f"{symbol} market data stale: {age} (limit {limit} s)",
                                fingerprint=f"{K.MARKET_DATA_STALE}:{symbol}",
                                context={"symbol": symbol, "quoted_at": at.isoformat() if at else None}))  # fmt: skip
    return by_kind((K.MARKET_DATA_STALE,), findings)
