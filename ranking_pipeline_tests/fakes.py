"""Local stand-ins for the outside services alerts go to: Slack's Web API and PagerDuty's Events API (HTTP
servers on 127.0.0.1) and an SMTP server (aiosmtpd). The real client code (slack_sdk, urllib, smtplib)
sends real requests to them; they record what arrived, and can be told to fail."""

from __future__ import annotations

import contextlib
import email.policy
import json
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


@dataclass
class HttpRequest:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> dict:
        if self.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            return {k: v[0] for k, v in urllib.parse.parse_qs(self.body.decode()).items()}
        return json.loads(self.body)


@dataclass
class RecordingHttpServer:
    """Answers every POST with ``status`` and ``answer`` (JSON) and records the requests."""

    status: int = 200
    answer: dict = field(default_factory=dict)
    requests: list[HttpRequest] = field(default_factory=list)
    url: str = ""

    def posts_to(self, path: str) -> list[HttpRequest]:
        return [r for r in self.requests if r.method == "POST" and r.path == path]


@contextmanager
def recording_http_server(status: int = 200, answer: dict | None = None) -> Iterator[RecordingHttpServer]:
    state = RecordingHttpServer(status=status, answer=answer or {})

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            state.requests.append(
                HttpRequest(
                    "POST",
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
            )
            payload = json.dumps(state.answer).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def fake_slack(status: int = 200, error: str | None = None) -> Iterator[RecordingHttpServer]:
    """Slack's Web API: ``chat.postMessage`` answers ok (or ``status``, e.g. 500 for "Slack is down"; or
    ``error``, e.g. "invalid_auth", as Slack answers a token it does not accept: HTTP 200, ``ok`` false)."""
    answer = {"ok": True, "channel": "C0BATCHLOGS", "ts": "1700000000.000100"}
    if status >= 400 or error:
        answer = {"ok": False, "error": error or "internal_error"}
    with recording_http_server(status, answer) as server:
        yield server


def slack_messages(server: RecordingHttpServer) -> list[dict]:
    return [r.json() for r in server.posts_to("/api/chat.postMessage")]


@contextmanager
def fake_pagerduty() -> Iterator[RecordingHttpServer]:
    """PagerDuty's Events API v2: 202 Accepted, as the real one answers an enqueued event."""
    answer = {"status": "success", "message": "Event processed", "dedup_key": "from-fake"}
    with recording_http_server(202, answer) as server:
        yield server


@dataclass
class ReceivedMail:
    sender: str
    recipients: list[str]
    message: Message

    @property
    def body(self) -> str:
        return self.message.get_payload(decode=True).decode()


class _MailHandler:
    def __init__(self, refuse: bool) -> None:
        self.refuse = refuse
        self.received: list[ReceivedMail] = []

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if self.refuse:
            return "550 5.7.1 relaying denied"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.received.append(
            ReceivedMail(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                message_from_bytes(envelope.content, policy=email.policy.default),
            )
        )
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    host: str
    port: int
    handler: _MailHandler

    @property
    def received(self) -> list[ReceivedMail]:
        return self.handler.received


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def fake_smtp(refuse: bool = False, login: tuple[str, str] | None = None) -> Iterator[SmtpServer]:
    """A plain SMTP server on 127.0.0.1 (no TLS); ``refuse``: every recipient is rejected; ``login``: (user,
    password) it requires before it takes mail (AUTH without TLS), refusing any other with 535."""
    handler = _MailHandler(refuse)
    port = _free_port()
    options = {}
    if login is not None:
        expected = (login[0].encode(), login[1].encode())

        def authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
            given = (getattr(auth_data, "login", None), getattr(auth_data, "password", None))
            return AuthResult(success=given == expected, handled=False)

        options = {"authenticator": authenticate, "auth_require_tls": False}
    controller = Controller(handler, hostname="127.0.0.1", port=port, **options)
    controller.start()
    try:
        yield SmtpServer("127.0.0.1", port, handler)
    finally:
        controller.stop()


SLACK_TOKEN = "xoxb-test-token-not-a-secret"


def slack_resource(server: RecordingHttpServer, token: str = SLACK_TOKEN):
    from ranking_pipeline.defs.notification_resources import BatchSlackResource

    return BatchSlackResource(token=token, base_url=f"{server.url}/api/")


def mail_resource(server: SmtpServer, recipients: str = "oncall@example.test"):
    from ranking_pipeline.defs.notification_resources import AlertMailer

    return AlertMailer(host=server.host, port=server.port, tls="none", recipients=recipients)


def pagerduty_resource(server: RecordingHttpServer, routing_key: str):
    from ranking_pipeline.defs.notification_resources import PagerDutyEvents

    return PagerDutyEvents(routing_key=routing_key, events_url=f"{server.url}/v2/enqueue")


class TcpProxy:
    """A TCP proxy on 127.0.0.1 in front of a real server (PostgreSQL, Redis): ``cut()`` drops every open
    connection and refuses new ones, ``restore()`` lets them through again: an outage, on loopback."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._up = threading.Event()
        self._up.set()
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._up.is_set():
                client.close()  # refused while the outage lasts
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)
                end.close()
            with self._lock:
                self._open.discard(source)
                self._open.discard(sink)

    def cut(self) -> None:
        self._up.clear()
        with self._lock:
            for connection in list(self._open):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)

    def restore(self) -> None:
        self._up.set()

    def close(self) -> None:
        self._closing = True
        self.cut()
        self._listener.close()


@contextmanager
def tcp_proxy(target_host: str, target_port: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy(target_host, target_port)
    try:
        yield proxy
    finally:
        proxy.close()
