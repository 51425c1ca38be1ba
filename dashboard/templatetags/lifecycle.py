"""Template filters of the lifecycle pages (`{% load lifecycle %}`): statistics for people. Money and times use
the `dashboard` library (`dashboard.formatting`); these format the floats of model and experiment statistics
(rates, returns per prediction, p-values, significant digits), a dash for nothing."""

from __future__ import annotations

import math
from typing import Any

from django import template

from dashboard.formatting import DASH

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
