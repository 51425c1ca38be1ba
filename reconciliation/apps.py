from django.apps import AppConfig


class ReconciliationConfig(AppConfig):
    """Reconciliation runs and discrepancies between local books and the exchange."""

    name = "reconciliation"
    verbose_name = "Reconciliation"
