from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from galfriday_site.periodic import sync_periodic_tasks


class Command(BaseCommand):
    help = (
        "Create or update the system's periodic tasks in django-celery-beat's schedule. Idempotent: running it "
        "again changes nothing; managed tasks no longer defined are disabled, operators' own tasks are untouched."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        created, updated, disabled = sync_periodic_tasks()
        self.stdout.write(f"periodic tasks: {created} created, {updated} updated, {disabled} disabled")
