"""Alerts: conditions worth a person's attention, raised by trading, reconciliation, ingest and the model
lifecycle through `alert_raise` and cleared through `alert_resolve`; the rules that watch the rest of the system
live in `alerting.rules` (which domain apps never import).

- A fingerprint names the condition (default: the kind; per object where the condition is, e.g.
  `drift:version:12`). While an alert of that fingerprint is open (firing or acknowledged), raising it again updates
  that alert (count, last seen, message, severity; the context merged) instead of adding one.
- States: firing -> acknowledged (an operator) -> resolved (an operator, or `alert_resolve(fingerprint=...)` when
  the condition clears: actor "auto"). A resolved condition that comes back fires a new alert.
- Silences (`AlertSilence`, matchers kind and/or fingerprint, start, end, reason, who) mute notifications of the
  alerts they cover; the alert is still recorded, and `alert.silence` names the silence that covered it.
- Every change is sent after commit as the `alert_changed` signal (`alert_id`, `change` in CHANGES, `silenced`),
  which the notifications app connects to, and published on the Channels `system` group as an event with
  topic "alert" (galfriday_site.consumers) for the dashboard. State changes are audited (core.audit).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.dispatch import Signal
from django.utils import timezone

from core.audit import audit_actor, current_actor
from core.errors import ApplicationError, ConflictError, NotFoundError
from trading import lock_objects
from trading.models import Alert, AlertSilence

logger = logging.getLogger(__name__)

FIRED, REPEATED, ACKNOWLEDGED, RESOLVED = "fired", "repeated", "acknowledged", "resolved"
CHANGES = (FIRED, REPEATED, ACKNOWLEDGED, RESOLVED)
AUTO_ACTOR = "auto"  # who resolves an alert whose condition cleared
SYSTEM_GROUP = "system"  # galfriday_site.consumers.SYSTEM_GROUP (trading does not import the site package)

#: Sent after commit for every change of an alert: `alert_id` (int), `change` (one of CHANGES), `silenced` (bool:
#: a silence covers the alert now; notifications skip it). Receivers run with `send_robust`: one that fails is logged
#: and does not disturb the others or the caller.
alert_changed = Signal()

#: Publishing failures and signal receiver errors, for /metrics and tests.
counters: Counter[str] = Counter()

#: What an operator reads first, per kind: the runbook section (alerting/RUNBOOK.md) and a title.
KIND_TITLES: dict[str, str] = {
    Alert.Kind.TRADING_HALTED: "Trading halted (kill switch engaged)",
    Alert.Kind.DRAWDOWN_WARNING: "Drawdown approaching its limit",
    Alert.Kind.DRAWDOWN_BREACH: "Drawdown limit breached",
    Alert.Kind.DAILY_LOSS_BREACH: "Daily loss limit breached",
    Alert.Kind.RISK_MONITOR_BLIND: "Risk monitor cannot value the account",
    Alert.Kind.EXCHANGE_DISCONNECTED: "WebSocket disconnected from the exchange",
    Alert.Kind.EXCHANGE_MAINTENANCE: "Exchange in maintenance or cancel-only",
    Alert.Kind.MARKET_DATA_STALE: "Market data stale",
    Alert.Kind.INGEST_LAG: "Ingest lagging",
    Alert.Kind.ORDER_REJECTIONS: "Order rejections spike",
    Alert.Kind.LATENCY_HIGH: "Bar to exchange acknowledgement latency high",
    Alert.Kind.BALANCE_LOW: "Balance low",
    Alert.Kind.RECONCILIATION_FAILED: "Reconciliation failed",
    Alert.Kind.RECONCILIATION_HALTED: "Reconciliation halted trading",
    Alert.Kind.MODEL_DEGRADED: "Model performance degraded",
    Alert.Kind.MODEL_ROLLBACK: "Model version rolled back",
    Alert.Kind.DRIFT: "Drift detected",
    Alert.Kind.EXPERIMENT_GUARDRAIL: "Experiment stopped by a guardrail",
    Alert.Kind.EXPERIMENT_SRM: "Experiment sample-ratio mismatch",
    Alert.Kind.QUEUE_BACKLOG: "Celery queue backlog",
    Alert.Kind.QUEUE_NO_WORKER: "No worker consumes a Celery queue",
    Alert.Kind.DB_CONNECTIONS_HIGH: "Database connections near max_connections",
    Alert.Kind.DB_POOL_EXHAUSTED: "Database connection pool exhausted",
}


def runbook_url(kind: str) -> str:
    """The runbook section of a kind: GALFRIDAY_ALERT_RUNBOOK_BASE_URL followed by `#<kind>`."""
    return f"{settings.GALFRIDAY_ALERT_RUNBOOK_BASE_URL}#{kind.replace('_', '-')}"


# --- raising and resolving --------------------------------------------------------------------------------------


def alert_raise(
    *,
    kind: str,
    severity: str,
    message: str,
    context: Mapping[str, Any] | None = None,
    fingerprint: str | None = None,
    dedupe: bool = True,
    ongoing: bool = False,
) -> Alert:
    """Fire the condition `fingerprint` (default: the kind), or repeat it when an alert of it is open.

    `ongoing`: the caller re-checks a lasting condition on a schedule (the alerting rules); while its alert is open,
    that only refreshes last seen, message, context and silence: no count, no announcement, unless the severity
    changed. `dedupe` is accepted for the callers written before fingerprints: every raise deduplicates now (the
    open alert is updated and returned)."""
    del dedupe
    if severity not in Alert.Severity.values:
        raise ValueError(f"unknown alert severity {severity!r}")
    fp = fingerprint or kind
    now = timezone.now()
    ctx = dict(context or {})
    with transaction.atomic():
        silence = silence_matching(kind=kind, fingerprint=fp, at=now)
        alert = _open_locked(fp)
        if alert is None:
            try:
                with transaction.atomic():
                    alert = Alert.objects.create(
                        kind=kind, severity=severity, fingerprint=fp, message=message, context=ctx,
                        last_seen_at=now, silence=silence,
                    )  # fmt: skip
                change = FIRED
            except IntegrityError:  # another process fired it meanwhile: repeat theirs
                alert = _open_locked(fp)
                if alert is None:
                    raise
                change = REPEATED
        else:
            change = REPEATED
            if ongoing and alert.severity == severity:
                change = ""  # still holds: refreshed quietly
        if change != FIRED:
            # A repeat is not a state change: no audit row (count and last_seen_at are excluded from the history).
            # Its context is merged into the alert's (what the first raiser said stays unless said anew).
            merged = {**(alert.context if isinstance(alert.context, dict) else {}), **ctx}
            Alert.objects.filter(pk=alert.pk).update(
                count=F("count") + (1 if change == REPEATED else 0), last_seen_at=now, message=message,
                context=merged, severity=severity, silence=silence, kind=kind,
            )  # fmt: skip
            alert.refresh_from_db()
    if change == FIRED:
        log = logger.critical if severity == Alert.Severity.CRITICAL else logger.warning
        log("alert raised: %s", message, extra={"alert_id": alert.pk, "kind": kind, "severity": severity,
                                                 "fingerprint": fp})  # fmt: skip
    if change:
        _announce(alert, change)
    return alert


def alert_resolve(
    *, fingerprint: str | None = None, alert_id: int | None = None, actor: str = AUTO_ACTOR, note: str = ""
) -> Alert | None:
    """Resolve the open alert of `fingerprint` (the condition cleared; None when none is open), or the alert
    `alert_id` (an operator: NotFoundError when missing, unchanged when already resolved)."""
    if (fingerprint is None) == (alert_id is None):
        raise ValueError("alert_resolve needs exactly one of fingerprint and alert_id")
    with transaction.atomic():
        if alert_id is not None:
            alert = lock_objects.alert_lock(alert_id)
            if alert is None:
                raise NotFoundError(f"alert {alert_id} does not exist")
            if not alert.is_open:
                return alert
        else:
            alert = _open_locked(str(fingerprint))
            if alert is None:
                return None
        alert.state = Alert.State.RESOLVED
        alert.resolved_by = actor
        alert.resolved_at = timezone.now()
        with audit_actor(_audit_name(actor), reason=_reason(note or "resolved")):
            alert.save()
    logger.info("alert resolved", extra={"alert_id": alert.pk, "kind": alert.kind, "resolved_by": actor})
    _announce(alert, RESOLVED)
    return alert


def alert_open_count(fingerprint: str) -> int | None:
    """The count of the condition's open alert, None when none is open."""
    return (
        Alert.objects.filter(fingerprint=fingerprint)
        .exclude(state=Alert.State.RESOLVED)
        .values_list("count", flat=True)
        .first()
    )


def alert_resolve_all(*, kind: str, keep: set[str] | frozenset[str] = frozenset()) -> list[Alert]:
    """Resolve every open alert of `kind` whose fingerprint is not in `keep` (the conditions a rule still sees)."""
    stale = Alert.objects.filter(kind=kind).exclude(state=Alert.State.RESOLVED).exclude(fingerprint__in=keep)
    resolved = []
    for fp in stale.values_list("fingerprint", flat=True):
        alert = alert_resolve(fingerprint=fp)
        if alert is not None:
            resolved.append(alert)
    return resolved


def alert_acknowledge(*, alert_id: int, actor: str, note: str = "") -> Alert:
    """firing -> acknowledged (idempotent). A resolved alert cannot be acknowledged (ConflictError)."""
    with transaction.atomic():
        alert = lock_objects.alert_lock(alert_id)
        if alert is None:
            raise NotFoundError(f"alert {alert_id} does not exist")
        if alert.state == Alert.State.RESOLVED:
            raise ConflictError(
                f"alert {alert_id} is resolved; there is nothing to acknowledge",
                details={"state": alert.state},
            )
        if alert.state == Alert.State.ACKNOWLEDGED:
            return alert
        alert.state = Alert.State.ACKNOWLEDGED
        alert.acknowledged_by = actor
        alert.acknowledged_at = timezone.now()
        with audit_actor(_audit_name(actor), reason=_reason(note or "acknowledged")):
            alert.save()
    _announce(alert, ACKNOWLEDGED)
    return alert


# --- silences ---------------------------------------------------------------------------------------------------


def silence_matching(*, kind: str, fingerprint: str, at: datetime | None = None) -> AlertSilence | None:
    """The active silence (longest-running first) that covers an alert of `kind` and `fingerprint` at `at`."""
    at = at or timezone.now()
    return (
        AlertSilence.objects.filter(starts_at__lte=at, ends_at__gt=at)
        .filter(Q(kind="") | Q(kind=kind))
        .filter(Q(fingerprint="") | Q(fingerprint=fingerprint))
        .order_by("-ends_at", "pk")
        .first()
    )


def alert_is_silenced(alert: Alert, *, at: datetime | None = None) -> bool:
    """Whether a silence covers the alert now (notifications ask before each delivery, repeats included)."""
    return silence_matching(kind=alert.kind, fingerprint=alert.fingerprint, at=at) is not None


def alert_silence_create(
    *,
    reason: str,
    actor: str,
    kind: str = "",
    fingerprint: str = "",
    ends_at: datetime | None = None,
    duration: timedelta | None = None,
    starts_at: datetime | None = None,
) -> AlertSilence:
    """A silence for alerts of `kind` and/or `fingerprint` (at least one), from `starts_at` (default now) until
    `ends_at` or for `duration` (exactly one). Open alerts it covers are marked silenced at once."""
    now = timezone.now()
    starts_at = starts_at or now
    errors: dict[str, str] = {}
    if not kind and not fingerprint:
        errors["kind"] = "a silence needs a kind or a fingerprint to match"
    if kind and kind not in Alert.Kind.values:
        errors["kind"] = f"unknown kind {kind!r}"
    if not reason or not reason.strip():
        errors["reason"] = "required"
    if (ends_at is None) == (duration is None):
        errors["ends_at"] = "give exactly one of ends_at and duration"
    elif duration is not None and duration <= timedelta(0):
        errors["duration"] = "must be positive"
    if not errors:
        ends_at = ends_at if ends_at is not None else starts_at + (duration or timedelta(0))
        if ends_at <= max(starts_at, now):
            errors["ends_at"] = "must be in the future and after starts_at"
    if errors:
        raise ApplicationError("The silence is not valid.", code="validation_error", details=errors)
    assert ends_at is not None
    with transaction.atomic(), audit_actor(_audit_name(actor), reason=_reason(reason)):
        silence = AlertSilence.objects.create(
            kind=kind, fingerprint=fingerprint, starts_at=starts_at, ends_at=ends_at, reason=reason.strip(),
            created_by=actor,
        )  # fmt: skip
        if starts_at <= now:
            covered = Alert.objects.exclude(state=Alert.State.RESOLVED)
            covered = covered.filter(kind=kind) if kind else covered
            covered = covered.filter(fingerprint=fingerprint) if fingerprint else covered
            covered.update(silence=silence)
    logger.info("alert silence created", extra={"silence_id": silence.pk, "kind": kind, "fingerprint": fingerprint})
    return silence


def alert_silence_expire(*, silence_id: int, actor: str, note: str = "") -> AlertSilence:
    """End the silence now (idempotent: an ended silence is left as it is)."""
    now = timezone.now()
    with transaction.atomic():
        silence = AlertSilence.objects.select_for_update().filter(pk=silence_id).first()
        if silence is None:
            raise NotFoundError(f"silence {silence_id} does not exist")
        if silence.ends_at <= now:
            return silence
        if silence.starts_at >= now:  # never started: it ends where it would have begun
            silence.starts_at = now - timedelta(microseconds=1)
        silence.ends_at = now
        with audit_actor(_audit_name(actor), reason=_reason(note or "silence expired")):
            silence.save()
        Alert.objects.filter(silence=silence).update(silence=None)
    return silence


# --- internals --------------------------------------------------------------------------------------------------


def _open_locked(fingerprint: str) -> Alert | None:
    return (
        Alert.objects.select_for_update()
        .filter(fingerprint=fingerprint)
        .exclude(state=Alert.State.RESOLVED)
        .order_by("pk")
        .first()
    )


def _audit_name(actor: str) -> str:
    if actor == AUTO_ACTOR:
        return current_actor() or "alerting:auto"
    return actor


def _reason(text: str) -> str:
    return text.strip()[:100] or "alert"


def _announce(alert: Alert, change: str) -> None:
    """After commit: the `alert_changed` signal, then the `system` group event (lossy; the REST API is the truth)."""
    alert_id = alert.pk
    silenced = alert.silence_id is not None and change in (FIRED, REPEATED)
    event = alert_event(alert, change=change, silenced=silenced)

    def send() -> None:
        for receiver, result in alert_changed.send_robust(sender=Alert, alert_id=alert_id, change=change,
                                                          silenced=silenced):  # fmt: skip
            if isinstance(result, Exception):
                counters["receiver_errors"] += 1
                logger.error(
                    "alert_changed receiver failed", exc_info=result,
                    extra={"alert_id": alert_id, "change": change, "receiver": repr(receiver)},
                )  # fmt: skip
        system_event_publish(event)

    transaction.on_commit(send)


def alert_event(alert: Alert, *, change: str, silenced: bool = False) -> dict[str, Any]:
    """The `system` group event of an alert change (topic "alert"); JSON-ready."""
    return {
        "topic": "alert",
        "change": change,
        "alert_id": alert.pk,
        "kind": alert.kind,
        "severity": alert.severity,
        "state": alert.state,
        "fingerprint": alert.fingerprint,
        "message": alert.message,
        "count": alert.count,
        "silenced": silenced,
        "runbook_url": runbook_url(alert.kind),
        "at": timezone.now().isoformat(),
    }


def system_event_publish(event: Mapping[str, Any]) -> bool:
    """`group_send` one event to the site-wide `system` group from synchronous code; a failure is counted and
    logged, never raised (the channel layer is lossy by design)."""
    layer = get_channel_layer()
    if layer is None:
        return False
    try:
        async_to_sync(layer.group_send)(SYSTEM_GROUP, {"type": "system.event", "event": dict(event)})
    except Exception:  # any failure of the layer: the alert is stored, clients resync over REST
        counters["publish_failed"] += 1
        logger.warning("system event not published", exc_info=True, extra={"topic": event.get("topic")})
        return False
    counters["published"] += 1
    return True
