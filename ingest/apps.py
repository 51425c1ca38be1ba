from django.apps import AppConfig


class IngestConfig(AppConfig):
    """Kraken connectivity (`ingest.kraken`, Django-free) and the ingest worker: events, bars, time series."""

    name = "ingest"
    verbose_name = "Ingest"
