"""SMTP servers (aiosmtpd) on loopback ports: one with STARTTLS required before AUTH and a
self-signed certificate, one that refuses DATA on cue, and one that records raw messages and
logins for the leak suite."""

from __future__ import annotations

import datetime
import email.policy
import ipaddress
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from pathlib import Path
from typing import Any

from tests.support.processes import free_port, wait_until

SMTP_USER, SMTP_PASSWORD = "mailer", "smtp-pä/ss@:%w0rd"


def self_signed(base: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (its own CA) and its key, as files under `base`."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
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


def _starttls_controller(handler: Any, port: int, cert: Path, key: Path,
                         check: Callable[[str, str], bool]) -> Any:
    """aiosmtpd on 127.0.0.1:`port`, STARTTLS required before AUTH; `check(user, password)`
    decides a login."""
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    def authenticator(srv: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword) and check(auth_data.login.decode(),
                                                          auth_data.password.decode()):
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)  # aiosmtpd answers 535

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return Controller(handler, hostname="127.0.0.1", port=port, tls_context=context,
                      require_starttls=True, authenticator=authenticator, auth_require_tls=True)


# --- the notifier tests' server ------------------------------------------------------------------

@dataclass
class SmtpServer:
    """STARTTLS before AUTH, one user (quirks: environment.md §6); what it received."""

    port: int
    cafile: Path
    messages: list[Message] = field(default_factory=list)
    envelopes: list[Any] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)
    accounts: dict[str, str] = field(default_factory=lambda: {SMTP_USER: SMTP_PASSWORD})
    controller: Any = None

    def wait_for(self, count: int, timeout: float = 15.0) -> list[Message]:
        wait_until(lambda: len(self.messages) >= count, timeout, interval=0.02)
        return self.messages

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


def start_smtp_server(base: Path) -> SmtpServer:
    """An `SmtpServer` on a free port, its certificate under `base`."""
    cert, key = self_signed(base)
    server = SmtpServer(free_port(), cert)

    class Handler:
        async def handle_DATA(self, srv: Any, session: Any, envelope: Any) -> str:
            server.envelopes.append(envelope)
            server.messages.append(message_from_bytes(envelope.original_content,
                                                      policy=email.policy.default))
            return "250 OK queued"

    def check(user: str, password: str) -> bool:
        server.logins.append((user, password))
        return server.accounts.get(user) == password

    server.controller = _starttls_controller(Handler(), server.port, cert, key, check)
    server.controller.start()
    return server


# --- the leak suite's server ---------------------------------------------------------------------

@dataclass
class SmtpLog:
    raw: list[bytes] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)


def start_recording_smtp(base: Path, port: int, log: SmtpLog, user: str, password: str) -> Any:
    """STARTTLS before AUTH (as `start_smtp_server`), accepting `user` with `password`; every
    raw message and every login tried go to `log`. Returns the controller (to stop)."""
    cert, key = self_signed(base)

    class Handler:
        async def handle_DATA(self, srv: Any, session: Any, envelope: Any) -> str:
            log.raw.append(bytes(envelope.original_content))
            return "250 OK queued"

    def check(login: str, secret: str) -> bool:
        log.logins.append((login, secret))
        return (login, secret) == (user, password)

    controller = _starttls_controller(Handler(), port, cert, key, check)
    controller.start()
    return controller


# --- the fault tests' server ---------------------------------------------------------------------

@dataclass
class ScriptedSmtp:
    """A plain SMTP server (aiosmtpd) on a loopback port, refusing DATA with `replies` (one per
    attempt, e.g. "451 4.3.0 try again later") before it accepts; down until started."""

    port: int = field(default_factory=free_port)
    replies: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    controller: Any = None

    def start(self) -> ScriptedSmtp:
        from aiosmtpd.controller import Controller

        smtp = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                if smtp.replies:
                    reply = smtp.replies.pop(0)
                    smtp.refused.append(reply)
                    return reply
                smtp.messages.append(message_from_bytes(envelope.original_content,
                                                        policy=email.policy.default))
                return "250 OK queued"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
