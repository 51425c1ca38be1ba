from django.apps import AppConfig


class GalFridaySiteConfig(AppConfig):
    """Site-wide pieces: system checks, the audit trail base, health, errors, the standalone command."""

    name = "galfriday_site"
    label = "galfriday_site"
    verbose_name = "Gal-Friday"

    def ready(self) -> None:
        # In ready(), not at module level: both reach models (simple_history's, reconciliation's), which cannot load
        # while the app registry is populating (when apps.py itself is imported).
        from core import audit  # noqa: F401  (registers the audit signal handlers)
        from galfriday_site import checks  # noqa: F401  (registers the system checks)
