"""System checks that refuse an unsafe production start (DEBUG off)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register
from django.core.exceptions import ImproperlyConfigured

SQLITE_ENGINE = "django.db.backends.sqlite3"
IN_MEMORY_LAYER = "channels.layers.InMemoryChannelLayer"


@register("galfriday")
def production_configuration(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    try:
        secret_key = settings.SECRET_KEY
    except ImproperlyConfigured:  # Django refuses to hand out an empty key
        secret_key = ""
    return production_problems(
        debug=settings.DEBUG,
        databases=settings.DATABASES,
        channel_layers=settings.CHANNEL_LAYERS,
        secret_key=secret_key,
    )


def production_problems(
    *, debug: bool, databases: dict[str, Any], channel_layers: dict[str, Any], secret_key: str
) -> list[Error]:
    """What makes this configuration unfit for a production start; nothing when DEBUG is on."""
    if debug:
        return []
    errors: list[Error] = []
    for alias, db in databases.items():
        if db.get("ENGINE") == SQLITE_ENGINE:
            errors.append(
                Error(
                    f"Database '{alias}' is SQLite, which is for the standalone run only.",
                    hint="Set DATABASE_URL to PostgreSQL, e.g. postgres://user:pass@db:5432/galfriday.",
                    id="galfriday.E001",
                )
            )
    for alias, layer in channel_layers.items():
        if layer.get("BACKEND") == IN_MEMORY_LAYER:
            errors.append(
                Error(
                    f"Channel layer '{alias}' is in-memory: events would not cross processes.",
                    hint="Set REDIS_URL (or CHANNEL_LAYER_URL) to use channels-redis, e.g. redis://redis:6379/0.",
                    id="galfriday.E002",
                )
            )
    if not secret_key:
        errors.append(
            Error(
                "SECRET_KEY is not set.",
                hint="Set SECRET_KEY in the environment to a long random value "
                "(python -c 'import secrets; print(secrets.token_urlsafe(50))').",
                id="galfriday.E003",
            )
        )
    return errors
