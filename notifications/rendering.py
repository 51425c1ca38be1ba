"""The text and JSON of a message, from the events it carries (pure: no database, no settings).

Several events of one alert in a message (fired, then repeated) are shown once, as its latest state, with how
many events it had. Critical alerts come first, resolutions last. A summary (flood control) lists at most
MAX_LINES alerts in the text and MAX_PAYLOAD_ALERTS in the JSON, and counts the rest."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

PRODUCT = "Gal-Friday"
MAX_LINES = 30
MAX_PAYLOAD_ALERTS = 100
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}


@dataclass(frozen=True)
class EventView:
    """What rendering needs of an `AlertEvent`."""

    alert_id: int
    change: str
    kind: str
    severity: str
    fingerprint: str
    message: str
    count: int
    occurred_at: datetime


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    payload: dict[str, Any]


def _latest_per_alert(events: Iterable[EventView]) -> list[tuple[EventView, int]]:
    latest: dict[int, EventView] = {}
    seen: Counter[int] = Counter()
    for event in sorted(events, key=lambda e: e.occurred_at):
        latest[event.alert_id] = event
        seen[event.alert_id] += 1
    rows = [(event, seen[alert_id]) for alert_id, event in latest.items()]
    rows.sort(key=lambda r: (r[0].change == "resolved", SEVERITY_ORDER.get(r[0].severity, 3), r[0].occurred_at))
    return rows


def _label(event: EventView) -> str:
    if event.change == "resolved":
        return "RESOLVED"
    return event.severity.upper()


def _line(event: EventView, events_seen: int, title: Callable[[str], str], runbook: Callable[[str], str]) -> str:
    extra = []
    if event.count > 1:
        extra.append(f"raised {event.count}x")
    if event.change == "reminder":
        extra.append("still open")
    if events_seen > 1:
        extra.append(f"{events_seen} events")
    suffix = f" ({', '.join(extra)})" if extra else ""
    return f"[{_label(event)}] {title(event.kind)}: {event.message}{suffix}\n    runbook: {runbook(event.kind)}"


def _alert_json(
    event: EventView, events_seen: int, title: Callable[[str], str], runbook: Callable[[str], str]
) -> dict[str, Any]:
    return {
        "alert_id": event.alert_id,
        "change": event.change,
        "kind": event.kind,
        "title": title(event.kind),
        "severity": event.severity,
        "fingerprint": event.fingerprint,
        "message": event.message,
        "count": event.count,
        "events": events_seen,
        "runbook_url": runbook(event.kind),
        "occurred_at": event.occurred_at.isoformat(),
    }


def render_alerts(
    events: Sequence[EventView],
    *,
    summary: bool,
    title: Callable[[str], str],
    runbook: Callable[[str], str],
    since: datetime | None = None,
) -> Rendered:
    rows = _latest_per_alert(events)
    severities = Counter(e.severity for e, _ in rows if e.change != "resolved")
    resolved = sum(1 for e, _ in rows if e.change == "resolved")
    counts = ", ".join(f"{severities[s]} {s}" for s in SEVERITY_ORDER if severities[s])
    if resolved:
        counts = f"{counts}, {resolved} resolved" if counts else f"{resolved} resolved"
    if summary:
        subject = f"[{PRODUCT}] Flood control: {len(events)} alert events on {len(rows)} alerts ({counts})"
        head = (
            f"Too many notifications on this channel: {len(events)} alert events"
            + (f" since {since:%Y-%m-%d %H:%M:%S} UTC" if since else "")
            + " were folded into this summary. Every event is in the delivery log."
        )
    elif len(rows) == 1:
        event = rows[0][0]
        subject = f"[{PRODUCT}] {_label(event)}: {title(event.kind)}"
        head = ""
    else:
        subject = f"[{PRODUCT}] {len(rows)} alerts: {counts}"
        head = ""
    lines = [_line(e, n, title, runbook) for e, n in rows[:MAX_LINES]]
    if len(rows) > MAX_LINES:
        lines.append(f"... and {len(rows) - MAX_LINES} more alerts (see the alert list)")
    text = "\n".join([head, *lines] if head else lines)
    payload = {
        "version": 1,
        "source": PRODUCT,
        "kind": "summary" if summary else "alerts",
        "subject": subject,
        "text": text,
        "event_count": len(events),
        "alert_count": len(rows),
        "counts": {**{s: severities[s] for s in SEVERITY_ORDER}, "resolved": resolved},
        "alerts": [_alert_json(e, n, title, runbook) for e, n in rows[:MAX_PAYLOAD_ALERTS]],
        "alerts_omitted": max(0, len(rows) - MAX_PAYLOAD_ALERTS),
    }
    return Rendered(subject=subject, text=text, payload=payload)


def render_test(*, channel: str, requested_by: str, at: datetime) -> Rendered:
    subject = f"[{PRODUCT}] Test notification"
    text = (
        f"A test notification to the {channel} channel, asked for by {requested_by or 'the system'} at "
        f"{at:%Y-%m-%d %H:%M:%S} UTC. If you read this, alerts reach you here."
    )
    payload = {"version": 1, "source": PRODUCT, "kind": "test", "subject": subject, "text": text, "alerts": []}
    return Rendered(subject=subject, text=text, payload=payload)
