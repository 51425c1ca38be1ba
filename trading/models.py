"""Trading data: instruments, balances, orders with their event history, fills, positions, equity and the
trading state. Invariants are database constraints; writes go through the trading services (`trading.orders`,
`trading.execution_reports`, `trading.accounts`, `trading.kill_switch`, ...)."""

from __future__ import annotations

from decimal import Decimal

from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce

from core.audit import audited_history
from trading.executions import EventSource
from trading.order_states import OrderState
from trading.pnl import MONEY_PLACES, PRICE_PLACES, QTY_PLACES


def qty_field(**kwargs: object) -> models.DecimalField:
    return models.DecimalField(max_digits=30, decimal_places=QTY_PLACES, **kwargs)  # type: ignore[arg-type]


def price_field(**kwargs: object) -> models.DecimalField:
    return models.DecimalField(max_digits=30, decimal_places=PRICE_PLACES, **kwargs)  # type: ignore[arg-type]


def money_field(**kwargs: object) -> models.DecimalField:
    return models.DecimalField(max_digits=32, decimal_places=MONEY_PLACES, **kwargs)  # type: ignore[arg-type]


class Side(models.TextChoices):
    BUY = "buy"
    SELL = "sell"


class OrderType(models.TextChoices):
    MARKET = "market"
    LIMIT = "limit"


class TimeInForce(models.TextChoices):
    GTC = "gtc", "good till canceled"
    IOC = "ioc", "immediate or cancel"
    GTD = "gtd", "good till date"


class Instrument(models.Model):
    """A Kraken spot pair in every spelling: v2 `BTC/USD` (the key), REST `XXBTZUSD`, altname `XBTUSD`, v1
    `XBT/USD`."""

    class Status(models.TextChoices):
        ONLINE = "online"
        CANCEL_ONLY = "cancel_only"
        POST_ONLY = "post_only"
        LIMIT_ONLY = "limit_only"
        REDUCE_ONLY = "reduce_only"
        MAINTENANCE = "maintenance"
        DELISTED = "delisted"
        WORK_IN_PROGRESS = "work_in_progress"

    symbol = models.CharField(max_length=32, unique=True, help_text="WebSocket v2 symbol, e.g. BTC/USD")
    rest_symbol = models.CharField(max_length=32, blank=True, default="", help_text="REST key, e.g. XXBTZUSD")
    altname = models.CharField(max_length=32, blank=True, default="", help_text="e.g. XBTUSD")
    v1_symbol = models.CharField(max_length=32, blank=True, default="", help_text="WebSocket v1 wsname, e.g. XBT/USD")
    base = models.CharField(max_length=16, help_text="v2 asset name, e.g. BTC")
    quote = models.CharField(max_length=16, help_text="v2 asset name, e.g. USD")
    price_precision = models.PositiveSmallIntegerField()
    qty_precision = models.PositiveSmallIntegerField()
    tick_size = price_field()
    qty_increment = qty_field(null=True, blank=True)
    ordermin = qty_field()
    costmin = money_field(null=True, blank=True)
    taker_fee = models.DecimalField(
        max_digits=8,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="fraction of notional at the account's base tier (AssetPairs `fees`); null: not known yet",
    )
    maker_fee = models.DecimalField(
        max_digits=8,
        decimal_places=6,
        null=True,
        blank=True,
        help_text="fraction of notional at the account's base tier (AssetPairs `fees_maker`)",
    )
    status = models.CharField(max_length=20, choices=Status.choices, default=Status.ONLINE)
    updated_at = models.DateTimeField(auto_now=True)
    history = audited_history()

    class Meta:
        ordering = ["symbol"]
        constraints = [
            models.UniqueConstraint(fields=["rest_symbol"], condition=~Q(rest_symbol=""), name="instrument_rest_uniq"),
            models.UniqueConstraint(fields=["altname"], condition=~Q(altname=""), name="instrument_altname_uniq"),
            models.CheckConstraint(condition=Q(tick_size__gt=0), name="instrument_tick_positive"),
            models.CheckConstraint(condition=Q(ordermin__gte=0), name="instrument_ordermin_nonneg"),
            models.CheckConstraint(condition=Q(costmin__isnull=True) | Q(costmin__gte=0), name="instrument_costmin"),
            models.CheckConstraint(condition=~Q(base=F("quote")), name="instrument_base_ne_quote"),
        ]

    def __str__(self) -> str:
        return self.symbol


class Balance(models.Model):
    """Our view of one asset's balance on the exchange: moved by fills, reset by balance snapshots."""

    asset = models.CharField(max_length=16, unique=True)
    total = money_field(default=Decimal(0))
    exchange_as_of = models.DateTimeField(
        null=True,
        blank=True,
        help_text="exchange time of the last balance statement (snapshot or ledger entry) set on `total`: a fill "
        "executed at or before it is already in `total` and does not move it again",
    )
    updated_at = models.DateTimeField(auto_now=True)
    history = audited_history()

    class Meta:
        ordering = ["asset"]
        constraints = [models.CheckConstraint(condition=~Q(asset=""), name="balance_asset_nonempty")]

    def __str__(self) -> str:
        return f"{self.asset} {self.total}"


class Order(models.Model):
    client_order_id = models.CharField(max_length=64, unique=True)
    exchange_order_id = models.CharField(max_length=64, blank=True, default="")
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="orders")
    side = models.CharField(max_length=4, choices=Side.choices)
    order_type = models.CharField(max_length=10, choices=OrderType.choices)
    post_only = models.BooleanField(default=False)
    time_in_force = models.CharField(max_length=3, choices=TimeInForce.choices, default=TimeInForce.GTC)
    quantity = qty_field()
    limit_price = price_field(null=True, blank=True)
    state = models.CharField(max_length=20, choices=OrderState.choices(), default=OrderState.CREATED)
    filled_qty = qty_field(default=Decimal(0))
    filled_cost = money_field(default=Decimal(0))
    avg_price = price_field(null=True, blank=True)
    fees = money_field(default=Decimal(0), help_text="in quote currency")
    reason = models.TextField(blank=True, default="", help_text="why it was placed, rejected or canceled")
    external = models.BooleanField(default=False, help_text="first learned from the exchange, not placed by us")
    send_attempts = models.PositiveIntegerField(
        default=0,
        help_text="AddOrder attempts started, committed BEFORE each request leaves: 0 means the exchange cannot "
        "have it, so the first send needs no query by client order id",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    # The sequence of the order's latest OrderEvent, kept on the row so that recording an event under the order's
    # row lock needs no `MAX(sequence)` query (a fresh read after the lock; a value read with the lock could be
    # stale). A counter, not a fact about the order: left out of the audit history.
    last_event_sequence = models.PositiveIntegerField(default=0, editable=False)
    history = audited_history(excluded_fields=["last_event_sequence"])

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # the API's order list, newest first: a page without sorting the table
            models.Index(fields=["-created_at", "-id"], name="order_created_idx"),
            models.Index(fields=["state"]),
            models.Index(fields=["instrument", "-created_at"]),
            # The risk check's order-rate window (orders submitted in the last minute).
            models.Index(fields=["submitted_at"], name="order_submitted_at_idx"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["exchange_order_id"], condition=~Q(exchange_order_id=""), name="order_exchange_id_uniq"
            ),
            models.CheckConstraint(condition=~Q(client_order_id=""), name="order_client_id_nonempty"),
            models.CheckConstraint(condition=Q(side__in=Side.values), name="order_side_valid"),
            models.CheckConstraint(condition=Q(order_type__in=OrderType.values), name="order_type_valid"),
            models.CheckConstraint(condition=Q(time_in_force__in=TimeInForce.values), name="order_tif_valid"),
            models.CheckConstraint(condition=Q(state__in=[s.value for s in OrderState]), name="order_state_valid"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="order_quantity_positive"),
            models.CheckConstraint(condition=Q(filled_qty__gte=0), name="order_filled_nonneg"),
            models.CheckConstraint(condition=Q(filled_qty__lte=F("quantity")), name="order_not_overfilled"),
            models.CheckConstraint(condition=Q(filled_cost__gte=0), name="order_filled_cost_nonneg"),
            models.CheckConstraint(
                condition=(Q(order_type="limit") & Q(limit_price__gt=0)) | Q(order_type="market", limit_price=None),
                name="order_limit_price_iff_limit",
            ),
            models.CheckConstraint(condition=Q(post_only=False) | Q(order_type="limit"), name="order_post_only_limit"),
        ]

    def __str__(self) -> str:
        return f"{self.client_order_id} {self.side} {self.quantity} {self.instrument_id} [{self.state}]"

    @property
    def remaining_qty(self) -> Decimal:
        return self.quantity - self.filled_qty


class OrderEvent(models.Model):
    """One applied transition or fact of an order, with its source: the order's history explains its state."""

    class Kind(models.TextChoices):
        CREATED = "created"
        SUBMITTED = "submitted"
        ACCEPTED = "accepted"
        REJECTED = "rejected"
        FILL = "fill"
        FILLED = "filled"
        CANCEL_REQUESTED = "cancel_requested"
        CANCEL_REJECTED = "cancel_rejected"
        CANCELED = "canceled"
        EXPIRED = "expired"
        AMENDED = "amended"
        UNKNOWN = "unknown"

    order = models.ForeignKey(Order, on_delete=models.CASCADE, related_name="events")
    sequence = models.PositiveIntegerField()
    kind = models.CharField(max_length=20, choices=Kind.choices)
    source = models.CharField(max_length=20, choices=EventSource.choices())
    from_state = models.CharField(max_length=20, choices=OrderState.choices())
    to_state = models.CharField(max_length=20, choices=OrderState.choices())
    exec_id = models.CharField(max_length=64, blank=True, default="")
    exchange_timestamp = models.DateTimeField(null=True, blank=True)
    actor = models.CharField(max_length=200, blank=True, default="")
    reason = models.TextField(blank=True, default="")
    payload = models.JSONField(default=dict, blank=True)
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["order", "sequence"]
        constraints = [
            models.UniqueConstraint(fields=["order", "sequence"], name="order_event_seq_uniq"),
            models.UniqueConstraint(
                fields=["order", "exec_id"], condition=~Q(exec_id=""), name="order_event_exec_uniq"
            ),
            models.CheckConstraint(condition=Q(source__in=[s.value for s in EventSource]), name="order_event_source"),
        ]

    def __str__(self) -> str:
        return f"{self.order_id}#{self.sequence} {self.kind} {self.from_state}->{self.to_state}"


class Fill(models.Model):
    """One execution, keyed by the exchange's execution id: applying it twice is impossible."""

    class Liquidity(models.TextChoices):
        MAKER = "m", "maker"
        TAKER = "t", "taker"
        UNKNOWN = "", "unknown"

    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="fills")
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="fills")
    exec_id = models.CharField(max_length=64, unique=True)
    trade_id = models.BigIntegerField(null=True, blank=True)
    side = models.CharField(max_length=4, choices=Side.choices)
    quantity = qty_field()
    price = price_field()
    cost = money_field()
    fee = money_field(default=Decimal(0), help_text="in quote currency")
    fee_details = models.JSONField(default=list, blank=True, help_text="fees as reported: [{asset, qty}]")
    liquidity = models.CharField(max_length=1, choices=Liquidity.choices, blank=True, default="")
    realised_pnl = money_field(default=Decimal(0), help_text="realised on the position by this fill, gross")
    source = models.CharField(max_length=20, choices=EventSource.choices())
    executed_at = models.DateTimeField()
    recorded_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-executed_at", "-id"]
        # Today's realised PnL (the risk check and the monitor sum the fills since midnight UTC).
        indexes = [models.Index(fields=["executed_at"], name="fill_executed_at_idx")]
        constraints = [
            models.CheckConstraint(condition=~Q(exec_id=""), name="fill_exec_id_nonempty"),
            models.CheckConstraint(condition=Q(quantity__gt=0), name="fill_quantity_positive"),
            models.CheckConstraint(condition=Q(price__gt=0), name="fill_price_positive"),
            models.CheckConstraint(condition=Q(cost__gte=0), name="fill_cost_nonneg"),
            models.CheckConstraint(condition=Q(side__in=Side.values), name="fill_side_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.exec_id} {self.side} {self.quantity}@{self.price}"


class ParkedExecution(models.Model):
    """An execution for an order we do not know yet (a trade that overtook its `new`), replayed when the order
    becomes known. Kept, never dropped: reconciliation sees what is still parked."""

    exchange_order_id = models.CharField(max_length=64, db_index=True)
    exec_type = models.CharField(max_length=20)
    exec_id = models.CharField(max_length=64, blank=True, default="")
    payload = models.JSONField()
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["exec_id"], condition=~Q(exec_id=""), name="parked_exec_id_uniq"),
        ]

    def __str__(self) -> str:
        return f"parked {self.exec_type} for {self.exchange_order_id}"


class Position(models.Model):
    """Average-cost position per instrument (see `trading.pnl`); quantity is signed (short < 0)."""

    instrument = models.OneToOneField(Instrument, on_delete=models.PROTECT, related_name="position")
    quantity = qty_field(default=Decimal(0))
    avg_price = price_field(default=Decimal(0))
    realised_pnl = money_field(default=Decimal(0), help_text="gross of fees, quote currency")
    fees = money_field(default=Decimal(0), help_text="quote currency")
    opened_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    history = audited_history()

    class Meta:
        ordering = ["instrument__symbol"]
        constraints = [
            models.CheckConstraint(condition=Q(avg_price__gte=0), name="position_avg_nonneg"),
            models.CheckConstraint(
                condition=(Q(quantity=0) & Q(avg_price=0)) | (~Q(quantity=0) & Q(avg_price__gt=0)),
                name="position_avg_iff_open",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.quantity}@{self.avg_price}"

    @property
    def net_realised_pnl(self) -> Decimal:
        return self.realised_pnl - self.fees


class EquitySnapshot(models.Model):
    taken_at = models.DateTimeField(db_index=True)
    currency = models.CharField(max_length=16)
    equity = money_field()
    realised_pnl = money_field()
    unrealised_pnl = money_field()
    fees = money_field()
    high_water_mark = money_field()
    drawdown = models.DecimalField(max_digits=12, decimal_places=8, help_text="fraction of the high-water mark")

    class Meta:
        ordering = ["-taken_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(high_water_mark__gte=F("equity")), name="equity_hwm_ge_equity"),
            models.CheckConstraint(condition=Q(drawdown__gte=0), name="equity_drawdown_nonneg"),
        ]

    def __str__(self) -> str:
        return f"{self.taken_at:%Y-%m-%d %H:%M} {self.equity} {self.currency}"


class TradingState(models.Model):
    """The one row saying whether the system may trade: ACTIVE, REDUCING (only orders that shrink positions) or
    HALTED; with who, why and when. Its audit history is the log of every switch."""

    class State(models.TextChoices):
        ACTIVE = "active"
        REDUCING = "reducing"
        HALTED = "halted"

    SINGLETON_ID = 1

    id = models.PositiveSmallIntegerField(primary_key=True, default=SINGLETON_ID)
    state = models.CharField(max_length=10, choices=State.choices, default=State.ACTIVE)
    reason = models.TextField(blank=True, default="")
    changed_by = models.CharField(max_length=200, blank=True, default="")
    changed_at = models.DateTimeField(null=True, blank=True)
    history = audited_history()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(id=1), name="trading_state_singleton"),
            models.CheckConstraint(condition=Q(state__in=["active", "reducing", "halted"]), name="trading_state_valid"),
        ]

    def __str__(self) -> str:
        return self.state


class MarketQuote(models.Model):
    """The last top of book per instrument, written (throttled) by the ingest worker through
    `trading.instruments.market_quote_set`: the risk manager's mid price and its age, the monitor's marks.
    Not audited (market data, not books)."""

    instrument = models.OneToOneField(Instrument, on_delete=models.CASCADE, related_name="quote_top")
    bid = price_field()
    ask = price_field()
    mid = price_field()
    quoted_at = models.DateTimeField(help_text="exchange time of the quote")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["instrument__symbol"]
        constraints = [
            models.CheckConstraint(condition=Q(bid__gt=0) & Q(ask__gte=F("bid")), name="quote_bid_ask_sane"),
            models.CheckConstraint(condition=Q(mid__gt=0), name="quote_mid_positive"),
        ]

    def __str__(self) -> str:
        return f"{self.instrument_id} {self.bid}/{self.ask}"


def _positive_or_null(name: str) -> models.CheckConstraint:
    return models.CheckConstraint(
        condition=Q(**{f"{name}__isnull": True}) | Q(**{f"{name}__gt": 0}),
        name=f"risklimit_{name}_positive",
        violation_error_message=f"{name} must be positive.",
    )


def _fraction_or_null(name: str) -> models.CheckConstraint:
    return models.CheckConstraint(
        condition=Q(**{f"{name}__isnull": True}) | (Q(**{f"{name}__gt": 0}) & Q(**{f"{name}__lt": 1})),
        name=f"risklimit_{name}_fraction",
        violation_error_message=f"{name} must be a fraction strictly between 0 and 1.",
    )


RISK_LIMIT_FIELDS = (
    "max_order_notional",
    "max_position_notional",
    "max_gross_exposure",
    "price_band",
    "max_orders_per_minute",
    "max_data_age_seconds",
    "daily_loss_limit",
    "max_drawdown",
)
# Account-wide limits: only the global row carries them.
ACCOUNT_LIMIT_FIELDS = ("max_gross_exposure", "daily_loss_limit", "max_drawdown")


class RiskLimit(models.Model):
    """Risk limits: one global row (instrument empty) with every value, and per-instrument overrides whose empty
    values inherit the global one. Account-wide limits (gross exposure, daily loss, drawdown) live on the global
    row only. Notional limits are in the quote currency (one account currency is assumed). Audited."""

    instrument = models.OneToOneField(
        Instrument, on_delete=models.CASCADE, null=True, blank=True, related_name="risk_limit"
    )
    max_order_notional = money_field(null=True, blank=True, help_text="largest single order, quote currency")
    max_position_notional = money_field(null=True, blank=True, help_text="largest position, quote currency")
    max_gross_exposure = money_field(null=True, blank=True, help_text="sum of |positions| at marks (global only)")
    price_band = models.DecimalField(
        max_digits=8, decimal_places=6, null=True, blank=True, help_text="largest limit-price distance from the mid"
    )
    max_orders_per_minute = models.PositiveIntegerField(null=True, blank=True)
    max_data_age_seconds = models.PositiveIntegerField(null=True, blank=True, help_text="oldest usable mid price")
    daily_loss_limit = money_field(null=True, blank=True, help_text="loss today that halts trading (global only)")
    max_drawdown = models.DecimalField(
        max_digits=8, decimal_places=6, null=True, blank=True, help_text="fraction of the high-water mark (global)"
    )
    note = models.TextField(blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)
    history = audited_history()

    class Meta:
        ordering = ["instrument__symbol"]
        constraints = [
            models.UniqueConstraint(
                Coalesce("instrument", Value(0)),
                name="risklimit_one_per_scope",
                violation_error_message="There is already a limit row for this scope.",
            ),
            models.CheckConstraint(
                condition=Q(instrument__isnull=False) | Q(**{f"{f}__isnull": False for f in RISK_LIMIT_FIELDS}),
                name="risklimit_global_complete",
                violation_error_message="The global limits need every value.",
            ),
            models.CheckConstraint(
                condition=Q(instrument__isnull=True) | Q(**{f"{f}__isnull": True for f in ACCOUNT_LIMIT_FIELDS}),
                name="risklimit_account_limits_global",
                violation_error_message="Gross exposure, daily loss and drawdown are account-wide (global only).",
            ),
            _positive_or_null("max_order_notional"),
            _positive_or_null("max_position_notional"),
            _positive_or_null("max_gross_exposure"),
            _positive_or_null("max_orders_per_minute"),
            _positive_or_null("max_data_age_seconds"),
            _positive_or_null("daily_loss_limit"),
            _fraction_or_null("price_band"),
            _fraction_or_null("max_drawdown"),
        ]

    def __str__(self) -> str:
        return f"risk limits {self.instrument_id or 'global'}"


class Alert(models.Model):
    """Something an operator must see (a halt, a breached limit, a blind monitor, a lagging worker). Raised through
    `trading.alerts.alert_raise` by every app; the same condition (its fingerprint) updates one open alert (count,
    last seen) until it is resolved. States: firing -> acknowledged -> resolved (by an operator, or automatically
    when the condition clears). Rules that raise them live in `alerting.rules`; delivery in `notifications`."""

    class Kind(models.TextChoices):
        TRADING_HALTED = "trading_halted"  # the kill switch engaged (by an operator or a safety)
        DRAWDOWN_WARNING = "drawdown_warning"  # drawdown at GALFRIDAY_ALERT_DRAWDOWN_WARNING_FRACTION of the limit
        DRAWDOWN_BREACH = "drawdown_breach"
        DAILY_LOSS_BREACH = "daily_loss_breach"
        RISK_MONITOR_BLIND = "risk_monitor_blind"
        EXCHANGE_DISCONNECTED = "exchange_disconnected"
        EXCHANGE_MAINTENANCE = "exchange_maintenance"  # Kraken's status is maintenance or cancel_only
        MARKET_DATA_STALE = "market_data_stale"
        INGEST_LAG = "ingest_lag"
        ORDER_REJECTIONS = "order_rejections"  # a spike of rejected orders
        LATENCY_HIGH = "latency_high"  # bar -> exchange ack latency of recent orders
        BALANCE_LOW = "balance_low"
        RECONCILIATION_FAILED = "reconciliation_failed"
        RECONCILIATION_HALTED = "reconciliation_halted"  # discrepancies beyond tolerance halted trading
        MODEL_DEGRADED = "model_degraded"  # live performance worse than validation (models_registry outcomes)
        MODEL_ROLLBACK = "model_rollback"  # a production version was rolled back
        DRIFT = "drift"  # confirmed drift of a model version (models_registry.drift)
        EXPERIMENT_GUARDRAIL = "experiment_guardrail"  # an experiment stopped by a breached guardrail
        EXPERIMENT_SRM = "experiment_srm"  # a split experiment's arms do not match their allocation
        QUEUE_BACKLOG = "queue_backlog"  # a Celery queue longer than its threshold
        QUEUE_NO_WORKER = "queue_no_worker"  # a Celery queue no worker consumes
        DB_CONNECTIONS_HIGH = "db_connections_high"  # connections near PostgreSQL's max_connections
        DB_POOL_EXHAUSTED = "db_pool_exhausted"  # no connection left (or refused: too many clients)

    class Severity(models.TextChoices):
        INFO = "info"
        WARNING = "warning"
        CRITICAL = "critical"

    class State(models.TextChoices):
        FIRING = "firing"
        ACKNOWLEDGED = "acknowledged"
        RESOLVED = "resolved"

    kind = models.CharField(max_length=40, choices=Kind.choices, db_index=True)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    fingerprint = models.CharField(max_length=200, help_text="the condition; one open alert per fingerprint")
    state = models.CharField(max_length=15, choices=State.choices, default=State.FIRING)
    message = models.TextField()
    context = models.JSONField(default=dict, blank=True)
    count = models.PositiveIntegerField(default=1, help_text="times the condition was raised while open")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.CharField(max_length=200, blank=True, default="")
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(
        max_length=200, blank=True, default="", help_text='"auto" when the condition cleared'
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    silence = models.ForeignKey(
        "AlertSilence", null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts",
        help_text="the silence that covered it when last raised (notifications skip it)",
    )  # fmt: skip
    history = audited_history(excluded_fields=["count", "last_seen_at"])

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["state", "-created_at"], name="alert_state_created")]
        constraints = [
            models.CheckConstraint(condition=Q(severity__in=["info", "warning", "critical"]), name="alert_severity"),
            models.CheckConstraint(condition=Q(state__in=["firing", "acknowledged", "resolved"]), name="alert_state"),
            models.CheckConstraint(
                condition=(Q(acknowledged_by="") & Q(acknowledged_at__isnull=True))
                | (~Q(acknowledged_by="") & Q(acknowledged_at__isnull=False)),
                name="alert_ack_by_iff_at",
            ),
            models.CheckConstraint(
                condition=(Q(state="resolved") & Q(resolved_at__isnull=False) & ~Q(resolved_by=""))
                | (~Q(state="resolved") & Q(resolved_at__isnull=True) & Q(resolved_by="")),
                name="alert_resolved_iff_at",
            ),
            models.CheckConstraint(
                condition=~Q(state="acknowledged") | Q(acknowledged_at__isnull=False), name="alert_acknowledged_at"
            ),
            models.CheckConstraint(condition=Q(count__gte=1), name="alert_count_positive"),
            models.CheckConstraint(condition=~Q(fingerprint=""), name="alert_fingerprint_nonempty"),
            models.UniqueConstraint(
                fields=["fingerprint"],
                condition=~Q(state="resolved"),
                name="alert_one_open_per_fingerprint",
                violation_error_message="This condition already has an open alert.",
            ),
        ]

    def __str__(self) -> str:
        return f"[{self.severity}] {self.kind}: {self.message[:60]}"

    @property
    def is_open(self) -> bool:
        return self.state != self.State.RESOLVED


class AlertSilence(models.Model):
    """Mutes the notifications of alerts that match (kind and/or fingerprint) until it ends; the alerts are still
    recorded and shown. Expiring a silence sets its end to now."""

    kind = models.CharField(max_length=40, blank=True, default="", help_text="empty: any kind")
    fingerprint = models.CharField(max_length=200, blank=True, default="", help_text="empty: any fingerprint")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    reason = models.TextField()
    created_by = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    history = audited_history()

    class Meta:
        ordering = ["-ends_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=~Q(kind="") | ~Q(fingerprint=""), name="alertsilence_has_matcher"),
            models.CheckConstraint(condition=Q(ends_at__gt=F("starts_at")), name="alertsilence_ends_after_start"),
            models.CheckConstraint(condition=~Q(reason=""), name="alertsilence_reason"),
            models.CheckConstraint(condition=~Q(created_by=""), name="alertsilence_created_by"),
        ]

    def __str__(self) -> str:
        until = f"{self.ends_at:%Y-%m-%d %H:%M}" if self.ends_at else "?"
        return f"silence {self.kind or '*'}/{self.fingerprint or '*'} until {until}"


class Decision(models.Model):
    """One run of the decision pipeline for a closed bar: prediction → signal → sizing → risk → order. Keyed by
    the decision id (symbol + bar time + model version), so a replayed or duplicated bar never trades twice."""

    class Status(models.TextChoices):
        ORDERED = "ordered"  # an order was created and risk-checked (see the order for the outcome)
        NO_TRADE = "no_trade"  # flat signal, or already at the target, or below the exchange minimums
        EXPIRED = "expired"  # the bar was too old when the decision ran
        SKIPPED = "skipped"  # missing inputs (no quote, no equity yet, trading not active)

    decision_id = models.CharField(max_length=200, unique=True)
    instrument = models.ForeignKey(Instrument, on_delete=models.PROTECT, related_name="decisions")
    bar_time = models.DateTimeField(help_text="start of the closed bar that triggered it")
    model_version = models.CharField(max_length=100, help_text='what decided, e.g. "btc-usd-1m-direction v3"')
    model_name = models.CharField(max_length=100, blank=True, default="", help_text="registered model, if one served")
    model_version_number = models.PositiveIntegerField(null=True, blank=True)
    signal = models.SmallIntegerField()
    confidence = models.DecimalField(max_digits=7, decimal_places=6)
    probabilities = models.JSONField(default=dict, blank=True, help_text="class (-1, 0, 1) -> probability")
    expected_edge = models.DecimalField(
        max_digits=12,
        decimal_places=8,
        null=True,
        blank=True,
        help_text="expected return over the model's horizon from its probabilities (fraction)",
    )
    cost = models.DecimalField(
        max_digits=12,
        decimal_places=8,
        null=True,
        blank=True,
        help_text="round-trip cost: fees, half-spread and slippage, both ways (fraction)",
    )
    capped_by = models.CharField(max_length=40, blank=True, default="", help_text="the limit that set the size")
    price = price_field(null=True, blank=True)
    equity = money_field(null=True, blank=True)
    current_qty = qty_field(default=Decimal(0))
    target_qty = qty_field(default=Decimal(0))
    order_qty = qty_field(default=Decimal(0), help_text="signed: positive buys, negative sells")
    order = models.OneToOneField(Order, null=True, blank=True, on_delete=models.PROTECT, related_name="decision")
    status = models.CharField(max_length=12, choices=Status.choices)
    reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    history = audited_history()

    class Meta:
        ordering = ["-bar_time", "-id"]
        indexes = [
            # the API's decision list, newest bar first: a page without sorting the table
            models.Index(fields=["-bar_time", "-id"], name="decision_bar_time_idx"),
            # a symbol's latest decisions (the dashboard's market page and its chart markers)
            models.Index(fields=["instrument", "-bar_time"], name="decision_instrument_bar_time"),
            # a model's decisions over an experiment's window (experiments.selectors.arm_trading)
            models.Index(fields=["model_name", "created_at"], name="decision_model_created"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(signal__in=[-1, 0, 1]), name="decision_signal_range"),
            models.CheckConstraint(
                condition=Q(confidence__gte=0) & Q(confidence__lte=1), name="decision_confidence_0_1"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.decision_id}: {self.status}"


class SafetyOverride(models.Model):
    """An operator resumed trading after a reconciliation, start-up or risk halt while critical reconciliation
    discrepancies were still open: who, when, the written reason, the halt it lifted and what was open."""

    created_at = models.DateTimeField(auto_now_add=True)
    actor = models.CharField(max_length=200)
    reason = models.TextField()
    halted_by = models.CharField(max_length=200)
    halt_reason = models.TextField(blank=True, default="")
    open_critical = models.JSONField(default=list, help_text="Ids of the critical discrepancies left open.")

    class Meta:
        db_table = "galfriday_site_safetyoverride"  # the table it had in galfriday_site, kept with its rows
        permissions = [
            ("resume_safety_halt", "Can resume trading after a reconciliation, start-up or risk halt"),
        ]

    def __str__(self) -> str:
        return f"override by {self.actor} at {self.created_at:%Y-%m-%d %H:%M}"
