"""Risk limits: the global row and per-instrument overrides, changed by staff with a reason (audited). The limits
in force are read by `selectors.risk_limits_effective`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.db import transaction

from core.audit import audit_actor
from core.errors import ApplicationError
from trading import lock_objects, selectors
from trading.attribution import audit_reason
from trading.models import ACCOUNT_LIMIT_FIELDS, RISK_LIMIT_FIELDS, Instrument, RiskLimit

logger = logging.getLogger(__name__)


@transaction.atomic
def risk_limit_set(*, instrument: Instrument | None, values: Mapping[str, Any], reason: str, actor: str) -> RiskLimit:
    """Create or change the global limits (`instrument` None) or an instrument's overrides. `values` maps limit
    names to a value, or to None (an override inherits the global value again). Audited with actor and reason."""
    unknown = set(values) - set(RISK_LIMIT_FIELDS) - {"note"}
    if unknown:
        raise ApplicationError("Unknown risk limits.", code="validation_error", details={"unknown": sorted(unknown)})
    if not reason.strip():
        raise ApplicationError(
            "A risk limit change needs a reason.", code="validation_error", details={"reason": "required"}
        )
    if instrument is not None:
        account_wide = sorted(k for k in ACCOUNT_LIMIT_FIELDS if values.get(k) is not None)
        if account_wide:
            raise ApplicationError(
                "Account-wide limits belong to the global row.",
                code="validation_error",
                details={name: "global only" for name in account_wide},
            )
    with audit_actor(actor, reason=audit_reason(reason)):
        row = lock_objects.risk_limit_lock(instrument)
        if row is None:
            base: dict[str, Any] = {}
            if instrument is None:
                effective = selectors.risk_limits_effective()
                base = {name: getattr(effective, name) for name in RISK_LIMIT_FIELDS}
            row = RiskLimit(instrument=instrument, **{k: v for k, v in base.items()})
        for name, value in values.items():
            setattr(row, name, value if value is not None or name != "note" else "")
        row.full_clean()
        row.save()
    scope = instrument.symbol if instrument else "global"
    logger.warning("risk limits changed", extra={"scope": scope, "actor": actor, "reason": reason})
    return row
