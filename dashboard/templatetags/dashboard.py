"""Template helpers of the dashboard's pages: `{% load dashboard %}`.

`money`, `price`, `qty`, `when` and `pct` format for people (never raw 18-digit decimals): see
`dashboard.formatting`. `nav_current` marks the navigation link of the page being shown."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django import template
from django.utils.safestring import SafeString

from dashboard import formatting

register = template.Library()


@register.simple_tag(takes_context=True)
def nav_current(context: template.Context, prefix: str) -> SafeString:
    request = context.get("request")
    path = request.path if request is not None else ""
    current = path == prefix if prefix == "/" else path.startswith(prefix)
    return SafeString('aria-current="page" class="current"' if current else "")


@register.filter
def money(value: Decimal | str | None, places: int = 2) -> str:
    return formatting.format_decimal(value, int(places))


@register.filter
def qty(value: Decimal | str | None, places: int = 8) -> str:
    return formatting.format_decimal(value, int(places), group=False)


@register.filter
def pct(value: Decimal | str | None, places: int = 2) -> str:
    return formatting.format_percent(value, int(places))


@register.filter
def when(value: datetime | None) -> str:
    return formatting.format_time(value)


@register.filter
def get_item(mapping: Any, key: Any) -> Any:
    return mapping.get(key) if hasattr(mapping, "get") else None
