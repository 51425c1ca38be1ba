from django.apps import AppConfig


class GalFridaySiteConfig(AppConfig):
    """Site-wide pieces: system checks, the audit trail base, health, errors, the standalone command."""

    name = "galfriday_site"
    label = "galfriday_site"
    verbose_name = "Gal-Friday"

    def ready(self) -> None:
        from galfriday_site import audit, checks  # noqa: F401  (registers checks and audit signal handlers)
