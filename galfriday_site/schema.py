"""OpenAPI schema generation: views keep their serializers nested (`FooApi.InputSerializer`, STYLE.md), so
component names are prefixed with the view's name (`FooInput`, `FooOutput`) to stay unique."""

from __future__ import annotations

from typing import Any

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema


class AutoSchema(SpectacularAutoSchema):
    def _get_serializer_name(self, serializer: Any, direction: Any, bypass_extensions: bool = False) -> str:
        name = super()._get_serializer_name(serializer, direction, bypass_extensions)
        cls = serializer if isinstance(serializer, type) else type(serializer)
        outer, _, _ = cls.__qualname__.rpartition(".")
        if not outer or getattr(getattr(cls, "Meta", None), "ref_name", None):
            return str(name)
        prefix = outer.split(".")[-1].removesuffix("Api").removesuffix("View")
        return name if str(name).startswith(prefix) else f"{prefix}{name}"
