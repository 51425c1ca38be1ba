"""Real programs and small servers for the watchdog's tests, all on loopback ports of 18500-18599 (this suite's
range): Prometheus, Alertmanager and promtool/amtool (Debian's packages, installed by .ci/packages.sh), and a
local HTTP server standing in for the outside services (a webhook receiver, Telegram's Bot API, a healthchecks-
style URL): there is no internet here."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REQUIRE_SERVICES, ROOT
from tests.loopback import loopback_port as shared_loopback_port

PORTS = range(18500, 18600)
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULES_TEST = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
ALERTMANAGER_TEMPLATE = ROOT / "deploy" / "alertmanager.yml"


def loopback_port() -> int:
    """A free port of this suite's range."""
    return shared_loopback_port(PORTS)


def program(*names: str) -> str:
    """The path of the first of `names` installed; skipped (failed under GALFRIDAY_REQUIRE_SERVICES=1) if none."""
    for name in names:
        path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
        if path:
            return path
    packages = "Debian packages prometheus / prometheus-alertmanager: .ci/packages.sh"
    message = f"{' or '.join(names)} not installed ({packages})"
    if REQUIRE_SERVICES:
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Request:
    method: str
    path: str
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Receiver:
    """What the local HTTP server received, in order. `status` is what it answers (a service that is down: 503)."""

    url: str
    requests: list[Request] = field(default_factory=list)
    status: int = 200
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self, path_prefix: str = "") -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.path.startswith(path_prefix)]

    def alerts(self, path_prefix: str) -> list[dict[str, Any]]:
        """Every alert of every Alertmanager webhook payload posted under `path_prefix`."""
        return [alert for r in self.received(path_prefix) for alert in (r.json() or {}).get("alerts", [])]


@contextmanager
def http_receiver(*, delay: threading.Event | None = None) -> Iterator[Receiver]:
    """A local HTTP server recording every request. With `delay`, each request waits until the event is set
    (a service that hangs). It answers `{"ok": true, ...}`, which also satisfies Telegram's Bot API clients."""
    port = loopback_port()
    receiver = Receiver(url=f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            with receiver.lock:
                receiver.requests.append(Request(self.command, self.path, body))
            if delay is not None:
                delay.wait(30)
            reply = json.dumps({"ok": True, "result": {"message_id": 1, "date": 0, "chat": {"id": 1}}}).encode()
            try:
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)
            except OSError:
                pass  # the client gave up (a timeout test)

        do_GET = do_POST = do_HEAD = _handle

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="test-http-receiver", daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        if delay is not None:
            delay.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@contextmanager
def running(args: list[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """A real program (with `env`, default this one's), its output in `log`; terminated (then killed) at the end,
    whatever happens."""
    with log.open("ab") as out:
        process = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def alertmanager_args(config: Path, port: int, data: Path) -> list[str]:
    return [
        program("prometheus-alertmanager", "alertmanager"),
        f"--config.file={config}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--storage.path={data}",
        "--cluster.listen-address=",  # no gossip port: a single instance
        "--log.level=info",
    ]


def shorten_routes(config: dict[str, Any], wait: str = "1s") -> dict[str, Any]:
    """The rendered Alertmanager config with every group_wait/group_interval shortened (a test cannot wait 30 s);
    routes, receivers and inhibitions stay as deployed."""

    def walk(route: dict[str, Any]) -> None:
        for key in ("group_wait", "group_interval"):
            if key in route:
                route[key] = wait
        for child in route.get("routes") or []:
            walk(child)

    walk(config["route"])
    config["route"]["group_wait"] = wait
    config["route"]["group_interval"] = wait
    return config


def notify_settings(**overrides: Any) -> dict[str, Any]:
    """Notification settings as an operator sets them in .env, for rendering deploy/alertmanager.yml: every channel on
    (local stand-in addresses, none listening unless a test starts a server there), every severity routed."""
    severities = ["critical", "warning"]
    base: dict[str, Any] = {
        "NOTIFY_WEBHOOK_URL": "http://127.0.0.1:18599/hook",
        "NOTIFY_WEBHOOK_FORMAT": "json",
        "NOTIFY_EMAIL_TO": ["ops@example.com", "oncall@example.com"],
        "DEFAULT_FROM_EMAIL": "gal-friday@example.com",
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": 18598,
        "EMAIL_HOST_USER": "",
        "EMAIL_HOST_PASSWORD": "",
        "EMAIL_USE_TLS": False,
        "NOTIFY_TELEGRAM_API_URL": "http://127.0.0.1:18597",
        "NOTIFY_TELEGRAM_BOT_TOKEN": "123456:test-token",
        "NOTIFY_TELEGRAM_CHAT_ID": "-1001234",
        "NOTIFY_WEBHOOK_SEVERITIES": severities,
        "NOTIFY_EMAIL_SEVERITIES": severities,
        "NOTIFY_TELEGRAM_SEVERITIES": severities,
        "GALFRIDAY_WATCHDOG_URL": "http://127.0.0.1:18596/ping/abc",
    }
    return base | overrides
