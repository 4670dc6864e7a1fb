"""Real receivers on free loopback ports, started and stopped by the tests: Debian's
`prometheus-pushgateway` (with basic auth from a web config), an aiosmtpd SMTP server (STARTTLS
and AUTH, self-signed certificate), and scripted HTTP receivers for webhooks and healthchecks."""

from __future__ import annotations

import contextlib
import datetime
import email.policy
import http.server
import json
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import free_port, start_serve, stop_process
from tests.conftest import wait_until as conftest_wait_until
from tests.e2e.conftest import api_repo_template, ws  # noqa: F401 - fixtures used here

PUSHGATEWAY = "/usr/bin/prometheus-pushgateway"
PG_USER, PG_PASSWORD = "pusher", "pg-pässw/rd@:%-canary"


def wait_until(predicate: Any, timeout: float = 15.0, interval: float = 0.02) -> Any:
    return conftest_wait_until(predicate, timeout, interval)


# --- Pushgateway ---------------------------------------------------------------------------------

@dataclass
class Pushgateway:
    url: str
    process: subprocess.Popen[bytes]
    auth: tuple[str, str] | None = None

    def _get(self, path: str) -> bytes:
        request = urllib.request.Request(self.url + path)
        if self.auth:
            import base64

            token = base64.b64encode(f"{self.auth[0]}:{self.auth[1]}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        with urllib.request.urlopen(request, timeout=5) as response:
            return bytes(response.read())

    def exposition(self) -> str:
        return self._get("/metrics").decode()

    def groups(self) -> list[dict[str, Any]]:
        return list(json.loads(self._get("/api/v1/metrics"))["data"])

    def value(self, metric: str, **labels: str) -> float | None:
        """A metric's value in the group with these grouping labels (None: not there)."""
        for group in self.groups():
            if all(group["labels"].get(k) == v for k, v in labels.items()):
                family = group.get(metric)
                if family:
                    return float(family["metrics"][0]["value"])
        return None


def start_pushgateway(base: Path, *, password: str | None = None) -> Pushgateway:
    port = free_port()
    args = [PUSHGATEWAY, f"--web.listen-address=127.0.0.1:{port}",
            f"--persistence.file={base / 'pg.db'}", "--persistence.interval=1s"]
    auth = None
    if password is not None:
        import bcrypt

        hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
        web = base / "web.yml"
        web.write_text(f"basic_auth_users:\n  {PG_USER}: '{hashed}'\n")
        args.append(f"--web.config.file={web}")
        auth = (PG_USER, password)
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    gateway = Pushgateway(f"http://127.0.0.1:{port}", process, auth)

    def ready() -> bool:
        try:
            gateway._get("/-/ready")
            return True
        except OSError:
            return False

    wait_until(ready)
    return gateway


@pytest.fixture
def pushgateway(tmp_path: Path) -> Iterator[Pushgateway]:
    gateway = start_pushgateway(tmp_path, password=PG_PASSWORD)
    yield gateway
    gateway.process.terminate()
    gateway.process.wait(10)


# --- HTTP receivers ------------------------------------------------------------------------------

@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        return json.loads(self.body)


Answer = tuple[int, dict[str, str]] | tuple[int, dict[str, str], float]


@dataclass
class Receiver:
    """Records every request; answers from `script` in order, then `default`: (status, headers)
    or (status, headers, delay in seconds), so it can also answer too late (a client timeout).
    It owns its port from the start, so a receiver not started yet is one that is down."""

    port: int
    requests: list[Received] = field(default_factory=list)
    script: list[Answer] = field(default_factory=list)
    default: Answer = (200, {})
    server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                receiver.requests.append(Received(self.command, self.path,
                                                  dict(self.headers.items()), body,
                                                  time.time()))
                status, headers, *delay = (receiver.script.pop(0) if receiver.script
                                           else receiver.default)
                time.sleep(delay[0] if delay else 0.0)
                with contextlib.suppress(OSError):  # the client may have given up
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"OK")

            do_GET = do_POST
            do_PUT = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True  # an answer held back never holds up the test's end
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Received]:
        wait_until(lambda: len(self.requests) >= count, timeout)
        return self.requests


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(free_port()).start()
    yield r
    r.stop()


@pytest.fixture
def hc_receiver() -> Iterator[Receiver]:
    """A healthchecks.io stand-in that advertises a small Ping-Body-Limit."""
    r = Receiver(free_port(), default=(200, {"Ping-Body-Limit": "1500"})).start()
    yield r
    r.stop()


# --- SMTP ----------------------------------------------------------------------------------------

SMTP_USER, SMTP_PASSWORD = "mailer", "smtp-pä/ss@:%w0rd"


@dataclass
class SmtpServer:
    port: int
    cafile: Path
    messages: list[Message] = field(default_factory=list)
    envelopes: list[Any] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    accounts: dict[str, str] = field(default_factory=lambda: {SMTP_USER: SMTP_PASSWORD})

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Message]:
        wait_until(lambda: len(self.messages) >= count, timeout)
        return self.messages


def _self_signed(base: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    import ipaddress

    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = base / "smtp.crt", base / "smtp.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[SmtpServer]:
    """aiosmtpd with STARTTLS required before AUTH, and one user (quirks: environment.md §6)."""
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    cert, key = _self_signed(tmp_path)
    server = SmtpServer(free_port(), cert)

    class Handler:
        async def handle_DATA(self, srv: Any, session: Any, envelope: Any) -> str:
            server.envelopes.append(envelope)
            server.messages.append(message_from_bytes(envelope.original_content,
                                                      policy=email.policy.default))
            return "250 OK queued"

    def authenticator(srv: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            server.logins.append((user, password))
            if server.accounts.get(user) == password:
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    controller = Controller(Handler(), hostname="127.0.0.1", port=server.port,
                            tls_context=context, require_starttls=True,
                            authenticator=authenticator, auth_require_tls=True)
    controller.start()
    yield server
    controller.stop()


# --- the service ---------------------------------------------------------------------------------

@dataclass
class Service:
    url: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        stop_process(self.process)


def start_service(workspace: Any, port: int) -> Service:
    """`restic-runner serve` on the workspace's config (which must bind to `port`)."""
    url = f"http://127.0.0.1:{port}"
    log = workspace.root / f"serve-{port}.log"
    return Service(url, start_serve(workspace.env(), workspace.root, url, log), log)
