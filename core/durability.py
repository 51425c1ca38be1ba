"""Commits that need not wait for the disk: for transactions whose writes the system rebuilds if a database crash
loses them (PostgreSQL's ``synchronous_commit = off``: such a crash within about three WAL-writer delays of the
commit may lose the transaction whole, never part of it, and never reorders it with later synchronous commits).

Two kinds of writes qualify, and only these:

* state read back from the exchange, the source of truth, when it is lost: an order's acknowledgement is applied
  again by the post-acknowledgement read-back (`sync_order`) and reconciliation, because the send attempt before it
  was committed durably and makes every later delivery ask the exchange first;
* derived data that the next pass recomputes (prediction outcomes).

Everything else (an order's creation, a send attempt, fills from the executions stream, balances, audit trails of
operators' actions) commits durably.
"""

from __future__ import annotations

from django.db import connection


def commit_without_flush_wait() -> None:
    """Inside a transaction (`transaction.atomic`): its commit returns without waiting for the WAL flush. On
    PostgreSQL only (other databases commit as they do)."""
    if connection.vendor != "postgresql":
        return
    if not connection.in_atomic_block:
        raise RuntimeError("commit_without_flush_wait() needs a transaction (transaction.atomic)")
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off")
