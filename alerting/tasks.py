"""Alerting tasks: the rules on the beat schedule."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from alerting.rules import GROUPS, rules_evaluate
from core.audit import audit_actor

TASK_NAME = "alerting.tasks.alert_rules_evaluate"


@shared_task(name=TASK_NAME, acks_late=True, expires=30, ignore_result=True)
def alert_rules_evaluate(group: str = "all") -> dict[str, Any]:
    """The rules of `group` once (alerting.rules.GROUPS: "database" every 2 s and "broker" every 30 s from beat):
    idempotent, a few indexed reads per rule."""
    with audit_actor(f"celery:{TASK_NAME}"):
        return rules_evaluate(names=list(GROUPS[group]))
