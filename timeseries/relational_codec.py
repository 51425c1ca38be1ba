"""Typed JSON encoding of field values (`["d", "29430.2"]` for a Decimal), so they come back exactly."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from timeseries.base import FieldValue


def encode_fields(fields: Mapping[str, FieldValue]) -> dict[str, list[Any]]:
    encoded: dict[str, list[Any]] = {}
    for name, value in fields.items():
        if isinstance(value, bool):
            encoded[name] = ["b", value]
        elif isinstance(value, int):
            encoded[name] = ["i", value]
        elif isinstance(value, Decimal):
            encoded[name] = ["d", str(value)]
        else:
            encoded[name] = ["s", value]
    return encoded


def decode_fields(encoded: Mapping[str, list[Any]]) -> dict[str, FieldValue]:
    decoders = {"b": bool, "i": int, "d": Decimal, "s": str}
    return {name: decoders[kind](value) for name, (kind, value) in encoded.items()}
