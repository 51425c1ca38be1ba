"""Run the whole system on one machine: the local Kraken simulator (when GALFRIDAY_EXCHANGE=sim, the default),
the ingest worker, web (ASGI), Celery worker and Celery beat, each a real process.

Embedded defaults come from settings (SQLite, kombu's SQLAlchemy transport, local-memory cache, in-memory
channel layer, relational time series). The command prepares the database (migrate, periodic tasks, the admin
user), starts the processes, restarts one that dies (with backoff; it gives up after repeated crashes), and on
Ctrl-C or SIGTERM stops them all cleanly: SIGTERM, a grace period, then SIGKILL.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand

from galfriday_site.celery import app
from galfriday_site.periodic import sync_periodic_tasks

GRACE_SECONDS = 15
MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 120


_PR_SET_PDEATHSIG = 1


def _terminate_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGTERM when the parent (the supervisor) exits (prctl
    PR_SET_PDEATHSIG). Elsewhere nothing happens: the supervisor's own stop path still stops its children."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)

    def start(self) -> None:
        # A session of its own: Ctrl-C reaches only the supervisor, which then stops children in order. And a
        # SIGTERM from the kernel if the supervisor itself dies (SIGKILL, a crash), so no child is left running
        # without it.
        self.process = subprocess.Popen(
            self.argv, start_new_session=True, env=os.environ.copy(), preexec_fn=_terminate_with_parent
        )

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Command(BaseCommand):
    help = (
        "Start the simulator, web, Celery worker and beat on embedded defaults in one command; Ctrl-C stops them all."
    )
    requires_system_checks = "__all__"

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=os.environ.get("GALFRIDAY_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("GALFRIDAY_PORT", "8000")))
        parser.add_argument("--no-worker", action="store_true", help="do not start a Celery worker")
        parser.add_argument("--no-beat", action="store_true", help="do not start Celery beat")
        parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes")
        parser.add_argument("--no-ingest", action="store_true", help="do not start the ingest worker")
        parser.add_argument(
            "--no-simulator",
            action="store_true",
            help="do not start the local Kraken simulator (it starts when GALFRIDAY_EXCHANGE=sim)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self._stopping = False
        call_command("migrate", interactive=False, verbosity=0)
        created, updated, _ = sync_periodic_tasks()
        self.stdout.write(f"periodic tasks: {created} created, {updated} updated")
        self._ensure_admin()
        if settings.TRADING_MODE == "paper":
            call_command("seed_paper_account")

        children = self._children(options)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._request_stop)
        for child in children:
            child.start()
            self.stdout.write(f"started {child.name} (pid {child.process.pid if child.process else '?'})")
        self.stdout.write(
            self.style.SUCCESS(
                f"Gal-Friday is running: http://{options['host']}:{options['port']}/admin/ "
                f"and /api/health/ (Ctrl-C stops it)"
            )
        )
        self._bootstrap_models(options)
        self.stdout.flush()  # the password and the address must show even when stdout is a file or a pipe
        exit_code = self._supervise(children)
        self._stop(children)
        if exit_code:
            raise SystemExit(exit_code)

    # -- preparation -----------------------------------------------------------------------------------------
    def _ensure_admin(self) -> None:
        user_model = get_user_model()
        username = settings.GALFRIDAY_ADMIN_USERNAME
        if user_model.objects.filter(is_superuser=True).exists():
            return
        password = settings.GALFRIDAY_ADMIN_PASSWORD
        generated = not password
        if generated:
            password = secrets.token_urlsafe(12)
        user_model.objects.create_superuser(username=username, email="", password=password)
        if generated:
            self.stdout.write(
                self.style.WARNING(
                    f"Created the admin user '{username}' with the generated password: {password}\n"
                    "It is shown this once; set GALFRIDAY_ADMIN_PASSWORD to choose it yourself."
                )
            )
        else:
            self.stdout.write(f"Created the admin user '{username}' (password from GALFRIDAY_ADMIN_PASSWORD).")

    def _children(self, options: dict[str, Any]) -> list[Child]:
        python = sys.executable
        children = []
        if settings.GALFRIDAY_EXCHANGE == "sim" and not options["no_simulator"]:
            children.append(
                Child(
                    "simulator",
                    [
                        python, "-m", "kraken_sim", "--host", settings.KRAKEN_SIM_HOST,
                        "--rest-port", str(settings.KRAKEN_SIM_REST_PORT),
                        "--ws-port", str(settings.KRAKEN_SIM_WS_PORT),
                        "--ws-auth-port", str(settings.KRAKEN_SIM_WS_AUTH_PORT),
                        "--api-key", settings.KRAKEN_API_KEY, "--api-secret", settings.KRAKEN_API_SECRET,
                        # The market scenario and days of back-dated history, so a first model can be trained
                        # (and promoted only if it earns it) at once.
                        "--scenario", settings.KRAKEN_SIM_SCENARIO,
                        "--history-days", str(settings.KRAKEN_SIM_HISTORY_DAYS),
                    ],
                )
            )  # fmt: skip
        if not options["no_ingest"]:
            children.append(Child("ingest", [python, str(settings.BASE_DIR / "manage.py"), "ingest"]))
        children.append(
            Child(
                "web",
                [
                    python, "-m", "uvicorn", "galfriday_site.asgi:application",
                    "--host", options["host"], "--port", str(options["port"]),
                    "--no-access-log", "--lifespan", "off",
                ],
            )
        )  # fmt: skip
        if not options["no_worker"]:
            queues = ",".join(settings.GALFRIDAY_CELERY_QUEUES)
            children.append(
                Child(
                    "worker",
                    [
                        python, "-m", "celery", "-A", "galfriday_site", "worker", "-Q", queues,
                        "--concurrency", str(options["concurrency"]), "-n", "standalone@%h", "--loglevel", "INFO",
                    ],
                )
            )  # fmt: skip
        if not options["no_beat"]:
            children.append(
                Child(
                    "beat",
                    [
                        python, "-m", "celery", "-A", "galfriday_site", "beat", "-S", "django",
                        "--loglevel", "INFO", "--pidfile", "",
                    ],
                )
            )  # fmt: skip
        return children

    def _bootstrap_models(self, options: dict[str, Any]) -> None:
        """Ask the worker to bootstrap a first model per symbol (backfill, train, promote through the gates); a
        symbol that already has a production model is left alone. Until a model serves, the baseline decides."""
        if options["no_worker"]:
            return
        for symbol in settings.INGEST_SYMBOLS:
            app.send_task("models_registry.tasks.bootstrap_model_task", args=[symbol], queue="lifecycle")
        self.stdout.write(f"model bootstrap requested for {', '.join(settings.INGEST_SYMBOLS)}")

    # -- supervision -----------------------------------------------------------------------------------------
    def _request_stop(self, signum: int, frame: Any) -> None:
        self._stopping = True

    def _supervise(self, children: list[Child]) -> int:
        while not self._stopping:
            for child in children:
                if child.running() or self._stopping:
                    continue
                code = child.process.returncode if child.process else None
                now = time.monotonic()
                child.restarts = [t for t in child.restarts if now - t < RESTART_WINDOW_SECONDS]
                if len(child.restarts) >= MAX_RESTARTS:
                    self.stderr.write(f"{child.name} keeps exiting (last code {code}); stopping everything")
                    return 1
                self.stderr.write(f"{child.name} exited with code {code}; restarting")
                time.sleep(min(2 ** len(child.restarts), 30))
                child.restarts.append(now)
                child.start()
            time.sleep(0.2)
        return 0

    def _stop(self, children: list[Child]) -> None:
        self.stdout.write("stopping...")
        for child in reversed(children):
            if child.running() and child.process:
                child.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + GRACE_SECONDS
        for child in reversed(children):
            if child.process is None:
                continue
            try:
                child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{child.name} did not stop within {GRACE_SECONDS}s; killing it")
                child.process.kill()
                child.process.wait()
        self.stdout.write("stopped")
