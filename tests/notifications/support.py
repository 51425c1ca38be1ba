"""Local stand-ins for the notification channels' servers, on loopback ports of this suite's range (18800-18899).

There is no internet here: a real HTTP server (`HttpReceiver`, Python's http.server in a thread) stands in for a
webhook endpoint, Slack and Telegram's Bot API, and a real SMTP server (aiosmtpd) receives the e-mail. The HTTP
receiver can be stopped and started again on the same port: a channel that is down refuses connections."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiosmtpd.controller import Controller

PORT_RANGE = range(18800, 18900)


def port_in_range() -> int:
    """A free loopback port of the range (bind-tested)."""
    for port in PORT_RANGE:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 18800-18899")


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def verify_hmac(secret: str, header: str, body: bytes, *, tolerance_s: float = 300.0) -> bool:
    """The receiver's own check (independent of notifications.channels.webhook): t=<unix>,v1=<hex> with
    v1 = HMAC-SHA256(secret, "<t>." + body), and t within the tolerance of the receiver's clock."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    if "t" not in fields or "v1" not in fields:
        return False
    if abs(time.time() - int(fields["t"])) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), fields["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, fields["v1"])


Responder = Callable[[Received], tuple[int, dict[str, Any]]]


def ok_json(_: Received) -> tuple[int, dict[str, Any]]:
    return 200, {"ok": True}


@dataclass
class HttpReceiver:
    """A local HTTP server recording every POST; `responder` chooses the answer (status, JSON body)."""

    port: int = field(default_factory=port_in_range)
    responder: Responder = ok_json
    received: list[Received] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                got = Received(path=self.path, headers=dict(self.headers.items()), body=self.rfile.read(length))
                status, answer = receiver.responder(got)
                if 200 <= status < 300:
                    receiver.received.append(got)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


@contextmanager
def http_receiver(responder: Responder = ok_json) -> Iterator[HttpReceiver]:
    receiver = HttpReceiver(responder=responder)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(
            {"from": envelope.mail_from, "to": list(envelope.rcpt_tos), "data": envelope.content.decode()}
        )
        return "250 Message accepted for delivery"


@contextmanager
def smtp_server() -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """A real SMTP server (aiosmtpd) on loopback: yields its port and the list the messages arrive in."""
    inbox = _Inbox()
    port = port_in_range()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, inbox.messages
    finally:
        controller.stop()
