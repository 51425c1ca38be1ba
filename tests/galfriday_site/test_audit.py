"""The audit trail records who or what changed a row, when, why, and before/after values."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from core.audit import audit_actor, audit_trail, audited_write
from tests.testapp.models import AuditedWidget

pytestmark = pytest.mark.django_db


def test_changes_made_by_a_system_component_are_attributed_to_it() -> None:
    with audit_actor("celery:trading.submit_order", reason="decision d-1"):
        widget = AuditedWidget.objects.create(name="w", amount=Decimal("1.50000000"))
        widget.amount = Decimal("2.25000000")
        widget.save()

    trail = audit_trail(widget)
    assert [e.action for e in trail] == ["created", "changed"]
    assert {e.actor for e in trail} == {"celery:trading.submit_order"}
    assert trail[1].reason == "decision d-1"
    assert trail[1].changes == {"amount": (Decimal("1.50000000"), Decimal("2.25000000"))}


def test_changes_outside_any_actor_are_attributed_to_system() -> None:
    widget = AuditedWidget.objects.create(name="w", amount=Decimal("1"))
    assert audit_trail(widget)[0].actor == "system"


def test_deletion_keeps_the_history() -> None:
    widget = AuditedWidget.objects.create(name="w", amount=Decimal("1"))
    pk = widget.pk
    widget.delete()
    records = AuditedWidget.history.filter(id=pk).order_by("history_date")
    assert [r.history_type for r in records] == ["+", "-"]


def test_changes_made_through_a_request_are_attributed_to_the_user(admin_user) -> None:  # type: ignore[no-untyped-def]
    client = Client()
    client.force_login(admin_user)
    response = client.post(
        "/admin/testapp/auditedwidget/add/", {"name": "from-admin", "amount": "3.00000000"}, follow=False
    )
    assert response.status_code == 302, response.content[:500]
    widget = AuditedWidget.objects.get(name="from-admin")
    entry = audit_trail(widget)[0]
    assert entry.actor == f"user:{admin_user.username}"
    assert widget.history.first().history_user == admin_user


def test_audit_actor_needs_a_name() -> None:
    with pytest.raises(ValueError, match="non-empty"), audit_actor(""):
        pass


def test_a_bulk_sql_write_records_an_audit_row_of_what_it_wrote_for_each_row() -> None:
    a = AuditedWidget.objects.create(name="a", amount=Decimal("1"))
    b = AuditedWidget.objects.create(name="b", amount=Decimal("2"))
    untouched = AuditedWidget.objects.create(name="c", amount=Decimal("3"))
    table = connection.ops.quote_name(AuditedWidget._meta.db_table)
    when = timezone.now()
    with audit_actor("celery:bulk", reason="batch 7"):
        written = audited_write(
            AuditedWidget,
            f"UPDATE {table} SET amount = amount * %s WHERE name IN (%s, %s)",
            [Decimal("10"), "a", "b"],
            history_type="~",
            when=when,
        )
    assert written == 2
    for widget, amount in ((a, Decimal("10")), (b, Decimal("20"))):
        last = audit_trail(widget)[-1]
        assert (last.action, last.actor, last.reason, last.when) == ("changed", "celery:bulk", "batch 7", when)
        assert last.changes == {"amount": (amount / 10, amount)}
    assert [e.action for e in audit_trail(untouched)] == ["created"]
    assert [e.actor for e in audit_trail(a)] == ["system", "celery:bulk"]
