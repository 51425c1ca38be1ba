"""A DRF output serializer's representation of rows read with `QuerySet.values()`, for long lists.

Serializing a page of model instances costs more CPU than reading it: each row builds the model and its related
models (select_related), then DRF walks every field's source through them (`get_attribute`). For a page of 50
orders that is ~10 ms, most of a list request (issue 18, load). `ValuesSerializer(OrderOutputSerializer)` reads
the serializer's declaration once: each field's source becomes a `values()` lookup (`instrument.symbol` ->
`instrument__symbol`, `decision.pk` -> `decision__pk`) and its output conversion is the field's own
`to_representation` (or an equivalent, tested against it, for the frequent plain types). The serializer stays
the one declaration of the output and of the OpenAPI schema; this only reads the rows another way.

    plan = ValuesSerializer.of(OrderOutputSerializer)
    data = plan.represent_all(queryset.values(*plan.lookups)[:50])

Fields whose source is not a column (a method, `*`, a nested serializer, a `SerializerMethodField`) are refused
when the plan is made (`TypeError`): such a serializer keeps DRF's own path. A null anywhere along a source's
relations gives null, as DRF gives for a missing related object.
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Iterable, Mapping
from contextvars import ContextVar
from datetime import datetime, tzinfo
from functools import cache
from typing import Any

from django.conf import settings
from django.utils import timezone
from rest_framework import ISO_8601, serializers
from rest_framework.settings import api_settings

Converter = Callable[[Any], Any]

_NOT_COLUMNS = (
    serializers.BaseSerializer,
    serializers.SerializerMethodField,
    serializers.RelatedField,
    serializers.ManyRelatedField,
    serializers.HiddenField,
)


def _decimal(field: serializers.DecimalField) -> Converter:
    """DRF's DecimalField.to_representation (quantized to its places with its max_digits, '{:f}'), its context
    made once instead of per value. Options that change the output keep the field's own method."""
    coerce = getattr(field, "coerce_to_string", api_settings.COERCE_DECIMAL_TO_STRING)
    if not coerce or field.localize or field.normalize_output or field.decimal_places is None:
        return field.to_representation
    context = decimal.getcontext().copy()
    if field.max_digits is not None:
        context.prec = field.max_digits
    quantum = decimal.Decimal(".1") ** field.decimal_places
    rounding = field.rounding

    def represent(value: Any) -> str:
        if not isinstance(value, decimal.Decimal):
            value = decimal.Decimal(str(value).strip())
        return f"{value.quantize(quantum, rounding=rounding, context=context):f}"

    return represent


# The current time zone, looked up once per page by `represent_all` (Django's lookup goes through an asgiref Local:
# a quarter of a page's conversion time when done per value). It cannot change within a page.
_PAGE_TIMEZONE: ContextVar[tzinfo | None] = ContextVar("core_rows_page_timezone", default=None)


def _datetime(field: serializers.DateTimeField) -> Converter:
    """DRF's DateTimeField.to_representation for an aware value in ISO 8601: converted to the current time zone,
    `isoformat()`, '+00:00' written 'Z'. Anything else (a naive value, a field time zone, another output format,
    USE_TZ off) goes to the field's own method."""
    output_format = getattr(field, "format", api_settings.DATETIME_FORMAT)
    if output_format is None or str(output_format).lower() != ISO_8601 or hasattr(field, "timezone"):
        return field.to_representation
    if not settings.USE_TZ:
        return field.to_representation

    def represent(value: Any) -> Any:
        if not isinstance(value, datetime) or value.utcoffset() is None:
            return field.to_representation(value)
        text = value.astimezone(_PAGE_TIMEZONE.get() or timezone.get_current_timezone()).isoformat()
        return text[:-6] + "Z" if text.endswith("+00:00") else text

    return represent


def converter(field: serializers.Field) -> Converter:  # type: ignore[type-arg]
    """The output conversion of `field` for a non-null value: its own `to_representation`, or an equivalent for
    the plain types (exactly these classes; a subclass may represent differently)."""
    kind = type(field)
    if kind is serializers.IntegerField:
        return int
    if kind is serializers.CharField:
        return str
    if kind is serializers.DecimalField:
        return _decimal(field)  # type: ignore[arg-type]
    if kind is serializers.DateTimeField:
        return _datetime(field)  # type: ignore[arg-type]
    return field.to_representation


class ValuesSerializer:
    """The plan of one output serializer: the `values()` lookups to read and how each becomes its output."""

    def __init__(self, serializer_class: type[serializers.Serializer]) -> None:  # type: ignore[type-arg]
        self.serializer_class = serializer_class
        self.lookups: list[str] = []
        self._steps: list[tuple[str, str, Converter]] = []
        for name, field in serializer_class().fields.items():
            if field.write_only:
                continue
            if isinstance(field, _NOT_COLUMNS) or field.source == "*":
                raise TypeError(f"{serializer_class.__qualname__}.{name} is not a column: serialize instances")
            lookup = "__".join(field.source_attrs)
            if lookup not in self.lookups:
                self.lookups.append(lookup)
            self._steps.append((name, lookup, converter(field)))

    @classmethod
    @cache
    def of(cls, serializer_class: type[serializers.Serializer]) -> ValuesSerializer:  # type: ignore[type-arg]
        """The plan of `serializer_class`, made once per process."""
        return cls(serializer_class)

    def represent(self, row: Mapping[str, Any]) -> dict[str, Any]:
        return {
            name: None if (value := row[lookup]) is None else convert(value) for name, lookup, convert in self._steps
        }

    def represent_all(self, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        token = _PAGE_TIMEZONE.set(timezone.get_current_timezone())
        try:
            return [self.represent(row) for row in rows]
        finally:
            _PAGE_TIMEZONE.reset(token)
