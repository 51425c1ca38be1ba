"""The notification settings read into typed values: which channels are on, their routing, quiet hours and the
grouping parameters (read on every use, so a test or an operator changing settings takes effect at once)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from notifications.models import Channel

SEVERITIES = ("critical", "warning", "info")
WEBHOOK_FORMATS = ("json", "slack")


@dataclass(frozen=True)
class Route:
    channel: str
    configured: bool
    severities: frozenset[str]
    kinds: frozenset[str]  # empty: every kind

    def accepts(self, *, severity: str, kind: str) -> bool:
        return self.configured and severity in self.severities and (not self.kinds or kind in self.kinds)


def _names(values: list[str] | tuple[str, ...]) -> frozenset[str]:
    return frozenset(v.strip().lower() for v in values if v.strip())


def channel_configured(channel: str) -> bool:
    if channel == Channel.WEBHOOK:
        return bool(settings.NOTIFY_WEBHOOK_URL)
    if channel == Channel.EMAIL:
        return bool(settings.NOTIFY_EMAIL_TO)
    if channel == Channel.TELEGRAM:
        return bool(settings.NOTIFY_TELEGRAM_BOT_TOKEN and settings.NOTIFY_TELEGRAM_CHAT_ID)
    raise ValueError(f"unknown channel {channel!r}")


def route_of(channel: str) -> Route:
    prefix = f"NOTIFY_{channel.upper()}"
    return Route(
        channel=channel,
        configured=channel_configured(channel),
        severities=_names(getattr(settings, f"{prefix}_SEVERITIES")),
        kinds=_names(getattr(settings, f"{prefix}_KINDS")),
    )


def routes() -> list[Route]:
    return [route_of(c) for c in Channel.values]


def configured_channels() -> list[str]:
    return [c for c in Channel.values if channel_configured(c)]


def webhook_format() -> str:
    fmt = str(settings.NOTIFY_WEBHOOK_FORMAT).strip().lower()
    if fmt not in WEBHOOK_FORMATS:
        raise ImproperlyConfigured(f"NOTIFY_WEBHOOK_FORMAT must be one of {WEBHOOK_FORMATS}, not {fmt!r}")
    return fmt


# --- quiet hours --------------------------------------------------------------------------------------------------

_QUIET = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


@dataclass(frozen=True)
class QuietHours:
    """A daily window in a time zone, e.g. 22:00-07:00 (crossing midnight) or 12:00-13:00."""

    start: time
    end: time
    zone: ZoneInfo

    def end_if_quiet(self, at: datetime) -> datetime | None:
        """When the quiet window containing `at` ends (aware), or None when `at` is outside quiet hours."""
        local = at.astimezone(self.zone)
        now = local.time()
        if self.start == self.end:
            return None
        if self.start < self.end:
            inside = self.start <= now < self.end
            end_day = local.date()
        else:  # crosses midnight
            inside = now >= self.start or now < self.end
            end_day = local.date() + timedelta(days=1) if now >= self.start else local.date()
        if not inside:
            return None
        return datetime.combine(end_day, self.end, tzinfo=self.zone)


def parse_quiet_hours(text: str, zone_name: str) -> QuietHours | None:
    """`"22:00-07:00"` in `zone_name`; an empty text means none. Bad input raises ImproperlyConfigured."""
    if not text.strip():
        return None
    match = _QUIET.match(text)
    if not match:
        raise ImproperlyConfigured(f'NOTIFY_QUIET_HOURS must look like "22:00-07:00", not {text!r}')
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or h2 > 23 or m1 > 59 or m2 > 59:
        raise ImproperlyConfigured(f"NOTIFY_QUIET_HOURS has an impossible time: {text!r}")
    try:
        zone = ZoneInfo(zone_name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ImproperlyConfigured(f"NOTIFY_QUIET_HOURS_TIMEZONE {zone_name!r} is not a time zone") from exc
    return QuietHours(start=time(h1, m1), end=time(h2, m2), zone=zone)


def quiet_hours() -> QuietHours | None:
    return parse_quiet_hours(settings.NOTIFY_QUIET_HOURS, settings.NOTIFY_QUIET_HOURS_TIMEZONE)


def group_wait() -> timedelta:
    return timedelta(seconds=max(0.0, float(settings.NOTIFY_GROUP_WAIT_S)))


def repeat_interval() -> timedelta:
    return timedelta(seconds=max(1, int(settings.NOTIFY_REPEAT_INTERVAL_S)))


def flood_window() -> timedelta:
    return timedelta(seconds=max(1, int(settings.NOTIFY_FLOOD_WINDOW_S)))


def flood_limit() -> int:
    return max(1, int(settings.NOTIFY_FLOOD_LIMIT))


def retry_delay(attempts: int) -> float:
    """Seconds before the next attempt after `attempts` failed ones: exponential from NOTIFY_RETRY_BACKOFF_S, capped
    at NOTIFY_RETRY_BACKOFF_MAX_S (jitter is added by the caller)."""
    base = max(0.1, float(settings.NOTIFY_RETRY_BACKOFF_S))
    cap = max(base, float(settings.NOTIFY_RETRY_BACKOFF_MAX_S))
    return float(min(cap, base * 2 ** max(0, attempts - 1)))
