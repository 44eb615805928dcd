"""Real servers the notification tests start on loopback: an SMTP server (aiosmtpd, optionally
STARTTLS and AUTH with a certificate authority of the test's own) and an HTTP receiver that answers
a script of statuses and keeps every request it received."""

from __future__ import annotations

import email
import email.policy
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from conftest import free_port


class Mailbox:
    """An SMTP server on 127.0.0.1; ``messages`` are what it accepted, parsed. ``tls_dir``: offer
    STARTTLS (and require it), with a certificate from a CA written there (``cafile``); ``login``:
    require AUTH with this user and password."""

    def __init__(self, port: int | None = None, tls_dir: Path | None = None, login: tuple[str, str] | None = None):
        self.port = port or free_port()
        self.messages: list[email.message.EmailMessage] = []
        self.logins: list[str] = []
        self.login, self.cafile, kwargs = login, None, {}
        if tls_dir is not None:
            ca = trustme.CA()
            self.cafile = tls_dir / "ca.pem"
            ca.cert_pem.write_to_path(str(self.cafile))
            leaf = ca.issue_cert("127.0.0.1")
            server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            leaf.configure_cert(server_context)
            kwargs |= {"tls_context": server_context, "require_starttls": True}
        if login is not None:
            kwargs |= {"authenticator": self._authenticate, "auth_required": True, "auth_require_tls": True}
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port, **kwargs)

    def url(self) -> str:
        if self.cafile is None:
            return f"smtp://127.0.0.1:{self.port}?timeout=5"
        user = f"{self.login[0]}:{self.login[1]}@" if self.login else ""
        return f"smtp+starttls://{user}127.0.0.1:{self.port}?cafile={self.cafile}&timeout=5"

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and (auth_data.login.decode(), auth_data.password.decode()) == self.login
        )
        if ok:
            self.logins.append(auth_data.login.decode())
        return AuthResult(success=ok)

    async def handle_DATA(self, server, session, envelope) -> str:
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"

    def __enter__(self) -> Mailbox:
        self.controller.start()
        return self

    def __exit__(self, *_) -> None:
        self.controller.stop()

    def wait(self, count: int, seconds: float = 20) -> list:
        deadline = time.monotonic() + seconds
        while len(self.messages) < count:
            assert time.monotonic() < deadline, f"{len(self.messages)} of {count} e-mails after {seconds} s"
            time.sleep(0.05)
        return self.messages


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP server on 127.0.0.1 that answers each POST with the next status of ``script`` (then
    200), or after ``delay`` seconds; ``requests`` are what it received."""

    script: list[int] = field(default_factory=list)
    delay: float = 0.0
    requests: list[Received] = field(default_factory=list)

    def __enter__(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append(Received(self.path, dict(self.headers.items()), body))
                time.sleep(receiver.delay)
                status = receiver.script.pop(0) if receiver.script else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *_) -> None:
        self.server.shutdown()
        self.server.server_close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait(self, count: int, seconds: float = 20) -> list[Received]:
        deadline = time.monotonic() + seconds
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"{len(self.requests)} of {count} requests after {seconds} s"
            time.sleep(0.05)
        return self.requests
