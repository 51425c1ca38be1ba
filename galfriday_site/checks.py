"""System checks that refuse an unsafe production start (DEBUG off)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, register
from django.core.exceptions import ImproperlyConfigured

from ingest.kraken.ratelimit import Tier
from reconciliation.corrections import UNKNOWN_ORDERS_ADOPT, UNKNOWN_ORDERS_CANCEL

SQLITE_ENGINE = "django.db.backends.sqlite3"
IN_MEMORY_LAYER = "channels.layers.InMemoryChannelLayer"


@register("galfriday")
def production_configuration(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    try:
        secret_key = settings.SECRET_KEY
    except ImproperlyConfigured:  # Django refuses to hand out an empty key
        secret_key = ""
    problems = exchange_problems(
        exchange=settings.GALFRIDAY_EXCHANGE,
        trading_mode=settings.TRADING_MODE,
        api_key=settings.KRAKEN_API_KEY,
        api_secret=settings.KRAKEN_API_SECRET,
    ) + production_problems(
        debug=settings.DEBUG,
        databases=settings.DATABASES,
        channel_layers=settings.CHANNEL_LAYERS,
        secret_key=secret_key,
        artifact_keys=settings.MODELS_REGISTRY_ARTIFACT_KEYS,
    )
    return (
        problems
        + artifact_storage_problems(
            storage=settings.MODELS_REGISTRY_ARTIFACT_STORAGE, bucket=settings.MODELS_REGISTRY_S3_BUCKET
        )
        + web_connection_problems(process=settings.GALFRIDAY_PROCESS, databases=settings.DATABASES)
        + policy_problems(
            kraken_tier=settings.GALFRIDAY_KRAKEN_TIER,
            reconciliation_tier=settings.GALFRIDAY_RECONCILIATION_TIER,
            unknown_orders=settings.GALFRIDAY_RECONCILIATION_UNKNOWN_ORDERS,
            nonce_source=settings.KRAKEN_NONCE_SOURCE,
            redis_url=settings.REDIS_URL,
        )
    )


def policy_problems(
    *, kraken_tier: str, reconciliation_tier: str, unknown_orders: str, nonce_source: str = "file", redis_url: str = ""
) -> list[Error]:
    """Choices among named values, in any mode: a misspelt tier would fail the first private call, a misspelt
    unknown-orders policy would silently adopt, a nonce source that cannot work would fail every private call."""
    tiers = sorted(t.name.lower() for t in Tier)
    errors = [
        Error(
            f"{name} is {value!r}.",
            hint=f"Use one of {', '.join(tiers)} (Kraken's verification tier, which sets the API rate limits).",
            id="galfriday.E010",
        )
        for name, value in (
            ("GALFRIDAY_KRAKEN_TIER", kraken_tier),
            ("GALFRIDAY_RECONCILIATION_TIER", reconciliation_tier),
        )
        if str(value).lower() not in tiers
    ]
    if unknown_orders not in (UNKNOWN_ORDERS_ADOPT, UNKNOWN_ORDERS_CANCEL):
        errors.append(
            Error(
                f"GALFRIDAY_RECONCILIATION_UNKNOWN_ORDERS is {unknown_orders!r}.",
                hint=f"Use '{UNKNOWN_ORDERS_ADOPT}' (record orders the exchange has and we do not) or "
                f"'{UNKNOWN_ORDERS_CANCEL}' (record them, then cancel those still open).",
                id="galfriday.E011",
            )
        )
    if nonce_source not in ("redis", "file") or (nonce_source == "redis" and not redis_url):
        errors.append(
            Error(
                f"KRAKEN_NONCE_SOURCE is {nonce_source!r}"
                + (" without REDIS_URL." if nonce_source == "redis" else "."),
                hint="Use 'redis' (with REDIS_URL: workers on several machines share one API key) or 'file' "
                "(KRAKEN_NONCE_FILE: one machine only).",
                id="galfriday.E012",
            )
        )
    return errors


def web_connection_problems(*, process: str, databases: dict[str, Any]) -> list[Error]:
    """The web process (ASGI) with persistent database connections: refused, in any mode.

    Under ASGI each request's sync code runs on a thread of its own and Django's connections are per thread, so a
    connection kept for reuse (CONN_MAX_AGE > 0, or None: forever) is left open in a thread that is not reused;
    under load the web process holds as many idle connections as PostgreSQL allows and requests fail with "too
    many clients". Django's psycopg pool (OPTIONS["pool"], bounded by its max_size) is the other safe choice."""
    if process != "web":
        return []
    errors: list[Error] = []
    for alias, db in databases.items():
        max_age = db.get("CONN_MAX_AGE", 0)
        if max_age == 0:  # a psycopg pool (OPTIONS["pool"]) also needs 0 and is bounded (max_size)
            continue
        errors.append(
            Error(
                f"Database '{alias}' keeps persistent connections (CONN_MAX_AGE={max_age!r}) in the ASGI web "
                "process: connections would be left behind per thread until PostgreSQL refuses new clients.",
                hint="Use DATABASE_WEB_CONN_MAX_AGE=0 (the default) for the web process, or a psycopg pool with a "
                "bounded max_size.",
                id="galfriday.E009",
            )
        )
    return errors


def exchange_problems(*, exchange: str, trading_mode: str, api_key: str, api_secret: str) -> list[Error]:
    """Exchange and trading-mode settings that cannot work, in any mode."""
    errors: list[Error] = []
    if exchange not in {"sim", "kraken"}:
        errors.append(
            Error(
                f"GALFRIDAY_EXCHANGE is {exchange!r}.",
                hint="Use 'sim' (the local simulator) or 'kraken'.",
                id="galfriday.E004",
            )
        )
    if trading_mode not in {"paper", "live"}:
        errors.append(Error(f"TRADING_MODE is {trading_mode!r}.", hint="Use 'paper' or 'live'.", id="galfriday.E005"))
    if trading_mode == "live" and not (api_key and api_secret):
        errors.append(
            Error(
                "TRADING_MODE is 'live' but no Kraken API key is configured.",
                hint="Set KRAKEN_API_KEY and KRAKEN_API_SECRET, or use TRADING_MODE=paper.",
                id="galfriday.E006",
            )
        )
    return errors


def artifact_storage_problems(*, storage: str, bucket: str) -> list[Error]:
    """An artifact storage choice that cannot work, in any mode (registering or loading a model would fail)."""
    if (storage or "").strip() == "s3" and not (bucket or "").strip():
        return [
            Error(
                "MODELS_REGISTRY_ARTIFACT_STORAGE is 's3' but MODELS_REGISTRY_S3_BUCKET is not set.",
                hint="Set MODELS_REGISTRY_S3_BUCKET (and MODELS_REGISTRY_S3_ENDPOINT_URL for MinIO, Ceph or R2), "
                "or use MODELS_REGISTRY_ARTIFACT_STORAGE=local.",
                id="galfriday.E008",
            )
        ]
    return []


def production_problems(
    *,
    debug: bool,
    databases: dict[str, Any],
    channel_layers: dict[str, Any],
    secret_key: str,
    artifact_keys: list[str] | None = None,
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
    if artifact_keys is not None and not artifact_keys:
        errors.append(
            Error(
                "MODELS_REGISTRY_ARTIFACT_KEYS is not set: model artifacts would be encrypted with a key kept beside "
                "them on disk.",
                hint="Set MODELS_REGISTRY_ARTIFACT_KEYS to 'kid:<base64url of 32 random bytes>' (newest first), e.g. "
                "python -c \"import base64,os; print('k1:'+base64.urlsafe_b64encode(os.urandom(32)).decode())\"",
                id="galfriday.E007",
            )
        )
    return errors
