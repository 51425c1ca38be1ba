"""The `traders` group (may place and cancel orders and switch the trading state) and the global risk limits
with their defaults (the same values as `trading.risk.DEFAULT_LIMITS`, copied: migrations do not import code)."""

from decimal import Decimal

from django.db import migrations

GLOBAL_DEFAULTS = {
    "max_order_notional": Decimal("10000"),
    "max_position_notional": Decimal("50000"),
    "max_gross_exposure": Decimal("100000"),
    "price_band": Decimal("0.05"),
    "max_orders_per_minute": 30,
    "max_data_age_seconds": 10,
    "daily_loss_limit": Decimal("2000"),
    "max_drawdown": Decimal("0.15"),
}


def forwards(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    RiskLimit = apps.get_model("trading", "RiskLimit")
    Group.objects.get_or_create(name="traders")
    if not RiskLimit.objects.filter(instrument__isnull=True).exists():
        RiskLimit.objects.create(instrument=None, note="defaults", **GLOBAL_DEFAULTS)


def backwards(apps, schema_editor):
    apps.get_model("trading", "RiskLimit").objects.filter(instrument__isnull=True, note="defaults").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("trading", "0002_risk_limits_alerts_quotes"),
    ]

    operations = [migrations.RunPython(forwards, backwards)]
