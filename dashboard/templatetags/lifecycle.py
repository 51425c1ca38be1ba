"""Template filters of the lifecycle pages (`{% load lifecycle %}`): statistics for people. Money and times use
the `dashboard` library (`dashboard.formatting`); these format the floats of model and experiment statistics
(rates, returns per prediction, p-values, significant digits), a dash for nothing."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from django import template
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from dashboard.formatting import DASH, format_time

register = template.Library()


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


@register.filter
def ratio(value: Any, places: int = 1) -> str:
    """A fraction as a percentage: 0.5531 -> "55.3 %"."""
    number = _finite(value)
    return DASH if number is None else f"{number * 100:.{int(places)}f} %"


@register.filter
def bp(value: Any, places: int = 2) -> str:
    """A return as basis points with its sign: 0.000123 -> "+1.23 bp"."""
    number = _finite(value)
    if number is None:
        return DASH
    rounded = round(number * 1e4, int(places))
    return f"{0:.{int(places)}f} bp" if rounded == 0 else f"{rounded:+.{int(places)}f} bp"


@register.filter
def sig(value: Any, digits: int = 4) -> str:
    """A statistic to `digits` significant digits: 1.23456 -> "1.235"."""
    number = _finite(value)
    return DASH if number is None else f"{number:.{int(digits)}g}"


@register.filter
def pvalue(value: Any) -> str:
    """A p-value: "< 0.0001" below that, else four decimals."""
    number = _finite(value)
    if number is None:
        return DASH
    return "< 0.0001" if number < 1e-4 else f"{number:.4f}"


@register.filter
def seconds(value: Any) -> str:
    """A duration in seconds, to the second: 93784 -> "1 d 02:03:04"."""
    number = _finite(value)
    if number is None:
        return DASH
    total = int(round(number))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days} d {clock}" if days else clock


_DRIFT_BADGES = {
    "drift": ("bad", "drift"),
    "ok": ("ok", "ok"),
    "insufficient_data": ("warn", "insufficient data"),
    "failed": ("bad", "check failed"),
}


@register.simple_tag
def drift_badge(status: str | None, confirmed: bool | None = False) -> SafeString:
    """The badge of a drift check's status ("not checked" when there is none)."""
    if status not in _DRIFT_BADGES:
        return format_html('<span class="muted">{}</span>', "not checked")
    tone, label = _DRIFT_BADGES[status]
    if status == "drift" and confirmed:
        label = "drift (confirmed)"
    return format_html('<span class="badge {}">{}</span>', tone, label)


@register.simple_tag
def gate_report(results: Any, passed: bool | None = None, at: datetime | None = None) -> SafeString:
    """A promotion gate report (the registry's GateResult dicts) as a collapsed list: each gate passed or failed
    with its detail; the summary says whether all passed (when `passed` is given) and when it was evaluated."""
    if passed is True:
        summary = format_html('<span class="badge ok">{}</span>', "gates passed")
    elif passed is False:
        summary = format_html('<span class="badge bad">{}</span>', "gates failed")
    else:
        summary = SafeString("gate report")
    if at is not None:
        summary = format_html('{} <span class="muted">{}</span>', summary, format_time(at))
    marks = [("pos", "✓") if g.get("passed") else ("neg", "✗") for g in (results or []) if isinstance(g, dict)]
    gates = [g for g in (results or []) if isinstance(g, dict)]
    rows = format_html_join(
        "",
        '<tr><td><span class="{}">{}</span></td><td>{}</td><td>{}</td></tr>',
        ((tone, mark, g.get("name", ""), g.get("detail", "")) for (tone, mark), g in zip(marks, gates, strict=True)),
    ) or format_html('<tr><td class="muted">{}</td></tr>', "no gate configured")
    return format_html(
        '<details class="gates"><summary>{}</summary><table><tbody>{}</tbody></table></details>', summary, rows
    )
