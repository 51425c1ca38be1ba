from django.apps import AppConfig


class TradingConfig(AppConfig):
    """Instruments, orders and their state machine, fills, positions, balances, PnL, risk and execution."""

    name = "trading"
    verbose_name = "Trading"
