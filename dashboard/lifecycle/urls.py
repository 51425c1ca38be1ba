"""Routes of the model-lifecycle and operations pages (models, experiments, reconciliation, system)."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver

urlpatterns: list[URLPattern | URLResolver] = []
