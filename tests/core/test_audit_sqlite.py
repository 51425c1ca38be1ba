"""The audit trail's fast paths (core.audit) on SQLite, the embedded database of `make run`: the same statements as
on PostgreSQL (the rest of the suite), checked here in a process of their own on a migrated SQLite file, since
the suite's database is PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json
from decimal import Decimal as D
from django.db import connection, transaction
from django.utils import timezone
from core.audit import audit_actor, audit_trail, audited_row_insert, audited_rows_update, audited_write
from trading.instruments import instrument_upsert
from trading.models import Balance, Order, OrderEvent

assert connection.vendor == "sqlite", connection.vendor
instrument = instrument_upsert(
    symbol="BTC/USD", base="BTC", quote="USD", rest_symbol="XXBTZUSD", altname="XBTUSD", v1_symbol="XBT/USD",
    price_precision=1, qty_precision=8, tick_size=D("0.1"), qty_increment=D("0.00000001"), ordermin=D("0.0001"),
    costmin=D("0.5"),
)
out = {}
with transaction.atomic(), audit_actor("pipeline", reason="decision X"):
    order = Order(client_order_id="gf-1", instrument=instrument, side="buy", order_type="limit",
                  quantity=D("1.5"), limit_price=D("100.1"), state="submitted", last_event_sequence=1)
    event = OrderEvent(order=order, sequence=1, kind="created", source="system", to_state="created")
    audited_row_insert(order, when=timezone.now(), children=[event])
    order.state = "accepted"
    audited_rows_update([order], ["state"], when=timezone.now())
with audit_actor("celery:bulk", reason="batch 7"):
    usd = Balance.objects.create(asset="USD", total=D("10"))
    written = audited_write(Balance, 'UPDATE "trading_balance" SET "total" = "total" * 3 WHERE "asset" = %s',
                            ["USD"], history_type="~", when=timezone.now())
out["order"] = [(e.action, e.actor, e.reason, {k: [str(a), str(b)] for k, (a, b) in e.changes.items()
                 if k in ("state", "quantity")}) for e in audit_trail(Order.objects.get(pk=order.pk))]
out["events"] = list(OrderEvent.objects.filter(order_id=order.pk).values_list("sequence", "kind"))
out["balance"] = [(e.action, e.actor, {k: [str(a), str(b)] for k, (a, b) in e.changes.items() if k == "total"})
                  for e in audit_trail(usd)]
out["written"] = written
print("RESULT " + json.dumps(out))
"""


def test_the_audit_fast_paths_write_the_same_audit_rows_on_sqlite(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "GALFRIDAY_ENV_FILE": "/dev/null",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'audit.sqlite3'}",
        "REDIS_URL": "",
        "INFLUXDB_URL": "",
        "GALFRIDAY_VAR_DIR": str(tmp_path),
        "DJANGO_SETTINGS_MODULE": "galfriday_site.settings",
    }
    manage = [sys.executable, str(ROOT / "manage.py")]
    subprocess.run([*manage, "migrate", "trading", "--noinput"], env=env, cwd=ROOT, check=True, capture_output=True)
    done = subprocess.run(
        [*manage, "shell", "-c", SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    assert result["order"] == [
        ["created", "pipeline", "decision X", {"state": ["None", "submitted"], "quantity": ["None", "1.5000000000"]}],
        ["changed", "pipeline", "decision X", {"state": ["submitted", "accepted"]}],
    ]
    assert result["events"] == [[1, "created"]]
    assert result["written"] == 1
    assert result["balance"] == [
        ["created", "celery:bulk", {"total": ["None", "10.000000000000"]}],
        ["changed", "celery:bulk", {"total": ["10.000000000000", "30.000000000000"]}],
    ]
