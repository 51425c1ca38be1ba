"""Writes of drift settings: a registered model's thresholds (`DriftPolicy`, audited). Checks themselves are
`drift.checks.drift_check` (one report per check)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.db import transaction

from core.audit import audit_actor
from models_registry.drift.thresholds import thresholds_validate
from models_registry.models import DriftPolicy, RegisteredModel


@transaction.atomic
def drift_policy_set(*, model: RegisteredModel, thresholds: Mapping[str, Any], actor: str) -> DriftPolicy:
    """Replace the model's threshold overrides (validated; an empty mapping means the defaults)."""
    checked = thresholds_validate(thresholds)
    with audit_actor(actor, reason="drift thresholds"):
        policy, created = DriftPolicy.objects.select_for_update().get_or_create(
            model=model, defaults={"thresholds": checked}
        )
        if not created and policy.thresholds != checked:
            policy.thresholds = checked
            policy.save()
    return policy
