from django.apps import AppConfig


class ExperimentsConfig(AppConfig):
    """A/B and shadow experiments between model versions, outcomes, statistics and promotion."""

    name = "experiments"
    verbose_name = "Experiments"
