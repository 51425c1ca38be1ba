"""Serializer fields shared by the API's input serializers."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from rest_framework import serializers

# Plain ASCII: an optional sign, digits with at most one decimal point, an optional exponent. Python's Decimal()
# also takes '1_000', any Unicode digits (Arabic-Indic, for one) and surrounding whitespace: an amount takes none.
PLAIN_DECIMAL = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?", re.ASCII)


class DecimalField(serializers.DecimalField):
    """DRF's DecimalField accepting only plain ASCII numbers (strings or JSON numbers, never booleans)."""

    default_error_messages = {"plain": "A plain decimal number is required (ASCII digits, '.', an optional sign)."}

    def to_internal_value(self, data: Any) -> Decimal:
        if isinstance(data, bool) or not isinstance(data, (str, int, float, Decimal)):
            self.fail("invalid")
        text = data if isinstance(data, str) else str(data)
        if isinstance(data, str) and not PLAIN_DECIMAL.fullmatch(text):
            self.fail("plain")
        value: Decimal = super().to_internal_value(text)
        return value
