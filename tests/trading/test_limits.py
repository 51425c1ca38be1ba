"""Risk limits: changes audited with actor and reason, overrides inherit the global row, bad limits refused."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from core.audit import audit_trail
from core.errors import ApplicationError
from trading.limits import risk_limit_set
from trading.models import RiskLimit
from trading.selectors import risk_limits_effective

pytestmark = pytest.mark.django_db
D = Decimal


class TestRiskLimits:
    def test_changes_are_audited_with_actor_reason_before_and_after(self, market) -> None:  # type: ignore[no-untyped-def]
        row = risk_limit_set(
            instrument=market, values={"max_order_notional": D("500")}, reason="new pair", actor="user:risk"
        )
        risk_limit_set(instrument=market, values={"max_order_notional": D("800")}, reason="more room", actor="user:cro")
        trail = audit_trail(row)
        assert [(e.actor, e.reason) for e in trail] == [("user:risk", "new pair"), ("user:cro", "more room")]
        assert trail[-1].changes["max_order_notional"] == (D("500"), D("800"))
        effective = risk_limits_effective(instrument=market)
        assert effective.max_order_notional == D("800")
        assert effective.max_drawdown == D("0.15")  # inherited

    def test_database_constraints_refuse_bad_limits(self, market) -> None:  # type: ignore[no-untyped-def]
        for values in ({"max_drawdown": D("1")}, {"max_drawdown": D("0")}, {"max_order_notional": D("-1")}):
            with pytest.raises(ValidationError):
                risk_limit_set(instrument=None, values=values, reason="bad", actor="user:risk")
        with pytest.raises(ApplicationError):
            risk_limit_set(instrument=market, values={"max_drawdown": D("0.2")}, reason="x", actor="user:risk")
        from django.db import IntegrityError, transaction

        with pytest.raises(IntegrityError), transaction.atomic():
            RiskLimit.objects.filter(instrument__isnull=True).update(max_drawdown=D("1.5"))
        with pytest.raises(IntegrityError), transaction.atomic():
            RiskLimit.objects.create(instrument=None)  # a second, incomplete global row
