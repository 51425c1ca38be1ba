from django.db import models

from core.audit import audited_history


class AuditedWidget(models.Model):
    """A test-only model with an audit trail, standing in for the audited domain models."""

    name = models.CharField(max_length=50)
    amount = models.DecimalField(max_digits=20, decimal_places=8)
    history = audited_history()

    class Meta:
        app_label = "testapp"

    def __str__(self) -> str:
        return self.name
