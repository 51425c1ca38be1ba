from django.apps import AppConfig


class ModelsRegistryConfig(AppConfig):
    """Registered models, versions, stages and aliases, artifacts, features, training and prediction."""

    name = "models_registry"
    verbose_name = "Model registry"
