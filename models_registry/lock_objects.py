"""The one place the registry takes row locks (after Saleor's lock_objects.py).

Every write that allocates a version number or moves a stage or alias of a model first locks that model's
`RegisteredModel` row, so all such writes of one model are serialised on one lock (no lock-order cycles) and
the locked block stays short. SQLite ignores `select_for_update` (its IMMEDIATE transactions serialise
writers instead); the concurrency tests run on PostgreSQL.
"""

from __future__ import annotations

from models_registry.models import ModelAlias, RegisteredModel


def registered_model_lock(*, name: str) -> RegisteredModel:
    """The model row, locked; `RegisteredModel.DoesNotExist` when there is none."""
    return RegisteredModel.objects.select_for_update().order_by("pk").get(name=name)


def model_alias_lock(*, model: RegisteredModel, name: str) -> ModelAlias | None:
    return ModelAlias.objects.select_for_update().filter(model=model, name=name).order_by("pk").first()
