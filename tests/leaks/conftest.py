"""The leak suite's deployment: ONE restic-runner with every secret-bearing surface configured at
once, every secret a distinct canary, driven through success, failure, timeout, cancel, bad
authentication and the diagnostic commands. Everything it produced is collected as `Evidence`
(bytes, each piece named by where it came from); test_leak_suite.py asserts on it.

The scenario runs once per session. Under pytest-xdist the first worker that needs it runs it
and writes the evidence to the session's shared temporary directory; the other workers wait for
that file and read it, so the servers are started once however the tests are distributed.
"""

from __future__ import annotations

import base64
import email
import email.policy
import fcntl
import functools
import hashlib
import hmac
import json
import os
import pickle
import quopri
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
import requests

from tests.conftest import (
    CANARY,
    RCLONE_BINARIES,
    RESTIC_BINARIES,
    RUNNER,
    make_data,
    start_serve,
    stop_process,
)
from tests.notifiers.conftest import (
    PG_USER,
    Pushgateway,
    Received,
    Receiver,
    _self_signed,
    free_port,
    start_pushgateway,
)

RESTIC = RESTIC_BINARIES["0.18"]  # one version: masking does not depend on it (see the docstring)

# --- the canaries ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Canary:
    name: str
    value: str


def _whsec(key: str) -> str:
    return "whsec_" + base64.b64encode(key.encode()).decode()


URL_PASSWORD = Canary("repository-url-password", "url-" + CANARY)
REPO_PASSWORD = Canary("repository-password", "pw-" + CANARY)
WRONG_PASSWORD = Canary("wrong-repository-password", "wrong-" + CANARY)
ENV_VALUE = Canary("env_files-value", "env-" + CANARY)
CLIENT_KEY = Canary("client-whsec-key", "client-" + CANARY)  # the bytes the whsec_ encodes
CLIENT_WHSEC = Canary("client-whsec", _whsec(CLIENT_KEY.value))
# HTTP header values are ASCII, a bearer token has no spaces either: these keep / @ : % and
# carry the non-ASCII part percent-encoded or in base64.
CLIENT_TOKEN = Canary("client-token", "rrt_tok-pa/ss@w:rd%20-%C3%BCn%C3%AF-%F0%9F%94%91")
WEBHOOK_KEY = Canary("webhook-secret-key", "hook-" + CANARY)
WEBHOOK_WHSEC = Canary("webhook-secret", _whsec(WEBHOOK_KEY.value))
AUTH_CREDENTIAL = Canary("webhook-auth-credential",
                         "hdr-pa/ss@w:rd%20-" + base64.b64encode(CANARY.encode()).decode())
AUTH_HEADER = Canary("webhook-auth-header", "Bearer " + AUTH_CREDENTIAL.value)
SMTP_PASSWORD = Canary("smtp-password", "smtp-" + CANARY)
PG_PASSWORD = Canary("pushgateway-password", "pg-" + CANARY)
HC_TOKEN = Canary("healthchecks-url-token", "hc-" + CANARY)  # the ping URL's secret segment

STATIC_CANARIES = (URL_PASSWORD, REPO_PASSWORD, WRONG_PASSWORD, ENV_VALUE, CLIENT_KEY,
                   CLIENT_WHSEC, CLIENT_TOKEN, WEBHOOK_KEY, WEBHOOK_WHSEC, AUTH_CREDENTIAL,
                   AUTH_HEADER, SMTP_PASSWORD, PG_PASSWORD, HC_TOKEN)

# Which secrets a process may hold in its environment (see test_leak_suite.py's docstring).
ROLE_ALLOWED: dict[str, frozenset[str]] = {
    "service": frozenset(),  # serve, gunicorn workers, launcher, supervisors, companions
    "cli-run": frozenset(),  # `restic-runner run`
    "restic": frozenset({URL_PASSWORD.name, ENV_VALUE.name}),
    "cli-trigger": frozenset(),  # `restic-runner trigger --wait`
    "hook:gate-env": frozenset({ENV_VALUE.name}),  # hook_env = ["AWS_SECRET_ACCESS_KEY"]
    "hook:gate-none": frozenset(),  # no hook_env
    "hook:leaky": frozenset({URL_PASSWORD.name, REPO_PASSWORD.name, ENV_VALUE.name}),
}


# --- the detector ----------------------------------------------------------------------------

def _b64_inner(raw: bytes) -> list[tuple[str, bytes]]:
    """Base64 (standard and URL-safe) of `raw` at each of the three byte offsets it can have
    inside a larger blob, keeping only the characters made of `raw`'s bits alone."""
    out = []
    for alphabet, encode in (("standard", base64.b64encode),
                             ("url-safe", base64.urlsafe_b64encode)):
        for k in range(3):
            text = encode(b"\0" * k + raw).rstrip(b"=")
            start, end = -(-8 * k // 6), 8 * (k + len(raw)) // 6
            out.append((f"base64 {alphabet}, offset {k}", text[start:end]))
    return out


@functools.lru_cache(maxsize=64)
def encoded_forms(value: str) -> list[tuple[str, bytes]]:
    """(label, bytes) of every encoding the suite looks for; the first label of a duplicate
    form wins."""
    raw = value.encode()
    forms: list[tuple[str, bytes]] = [("raw UTF-8", raw)]
    for label, text in (("URL-encoded quote", quote(value, safe="")),
                        ("URL-encoded quote safe='/'", quote(value, safe="/")),
                        ("URL-encoded quote_plus", quote_plus(value)),
                        ("URL-encoded quote_plus safe='/'", quote_plus(value, safe="/"))):
        forms.append((label, text.encode()))
        forms.append((label + " lower-case hex", _lower_hex(text).encode()))
    ascii_json = json.dumps(value)[1:-1]
    forms += [("JSON ensure_ascii=True", ascii_json.encode()),
              ("JSON ensure_ascii=False", json.dumps(value, ensure_ascii=False)[1:-1].encode()),
              ("JSON with \\/", ascii_json.replace("/", "\\/").encode())]
    forms += _b64_inner(raw)
    forms += [("quoted-printable", quopri.encodestring(raw).rstrip(b"\n")),
              ("quoted-printable header", quopri.encodestring(raw, header=True).rstrip(b"\n"))]
    for sep in (":", "@"):  # what a parser keeps of a credential it splits (Basic, userinfo)
        forms.append((f"raw UTF-8, cut at the first {sep!r}", raw.split(sep.encode())[0]))
    seen: set[bytes] = set()
    unique = []
    for label, form in forms:
        if form not in seen and len(form) >= 8:
            seen.add(form)
            unique.append((label, form))
    return unique


def _lower_hex(text: str) -> str:
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), text)


def leaks_in(data: bytes, canaries: list[Canary], allowed: frozenset[str] = frozenset()
             ) -> dict[str, list[str]]:
    """{canary name: [labels of the forms found]} for every canary not allowed here."""
    found: dict[str, list[str]] = {}
    for canary in canaries:
        if canary.name in allowed:
            continue
        labels = [label for label, form in encoded_forms(canary.value) if form in data]
        if labels:
            found[canary.name] = labels
    return found


# --- evidence ----------------------------------------------------------------------------------

@dataclass
class Item:
    """One piece of output: its surface (for the parametrised test), where it came from, its
    bytes, and the canaries that legitimately appear in it."""

    surface: str
    where: str
    data: bytes
    allowed: frozenset[str] = frozenset()
    role: str = ""


@dataclass
class Evidence:
    canaries: list[Canary]
    items: list[Item] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)  # GET /runs, once settled
    exits: dict[str, int] = field(default_factory=dict)  # command label -> exit status
    auth: list[tuple[str, int]] = field(default_factory=list)  # probe -> HTTP status
    webhooks: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    pings: list[tuple[str, dict[str, str], bytes]] = field(default_factory=list)
    mails: list[bytes] = field(default_factory=list)
    smtp_logins: list[tuple[str, str]] = field(default_factory=list)
    pushgateway_groups: list[dict[str, Any]] = field(default_factory=list)
    snapshots: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)
    control_cmdline: bytes = b""  # the REST server's argv: it does hold the URL password
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


# --- processes -------------------------------------------------------------------------------

def _proc_parents() -> dict[int, int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    return parents


def descendants(root: int) -> list[tuple[int, int]]:
    """(pid, parent pid) of every live descendant of `root`, parents before children."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _proc_parents().items():
        children.setdefault(ppid, []).append(pid)
    order, queue = [], [(pid, root) for pid in children.get(root, [])]
    while queue:
        pid, ppid = queue.pop(0)
        order.append((pid, ppid))
        queue += [(child, pid) for child in children.get(pid, [])]
    return order


def _argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def role_of(argv: list[str], parent_role: str) -> str:
    if argv and Path(argv[0]).name == "setpriv" and "--" in argv:
        argv = argv[argv.index("--") + 1:]  # about to exec the tool, with the tool's env
    names = [Path(a).name for a in argv[:2]]
    if names and names[0] == "restic":
        return "restic"
    for name in ("gate-env.sh", "gate-none.sh"):
        if name in names:
            return "hook:" + name.removesuffix(".sh")
    if "leaky-hook.py" in names:
        return "hook:leaky"
    return parent_role  # a hook's `sleep` is the hook's; a service fork is the service


def find_process(root: int, predicate: Callable[[list[str]], bool],
                 timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid, _ in descendants(root):
            if predicate(_argv(pid)):
                return pid
        time.sleep(0.05)
    raise AssertionError(f"no descendant of {root} matched within {timeout}s")


# --- helpers ---------------------------------------------------------------------------------

def secret_file(path: Path, value: str) -> Path:
    path.write_text(value + "\n", encoding="utf-8")
    path.chmod(0o600)
    return path


def sign(key: bytes, body: bytes, *, msg_id: str | None = None,
         stamp: int | None = None) -> dict[str, str]:
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    stamp = int(time.time()) if stamp is None else stamp
    mac = hmac.new(key, f"{msg_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {"webhook-id": msg_id, "webhook-timestamp": str(stamp),
            "webhook-signature": "v1," + base64.b64encode(mac).decode(),
            "Content-Type": "application/json"}


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


LEAKY_HOOK = '''\
#!{python}
"""Prints every secret it can see (its environment and the files named in argv), in every
form the redactor promises to mask."""
import base64, json, os, sys
from urllib.parse import quote, quote_plus

SECRET_ENV = ("RESTIC_PASSWORD", "AWS_SECRET_ACCESS_KEY", "RESTIC_REPOSITORY")


def show(label, value, out):
    raw = value.encode()
    for form, text in (("raw", value), ("quote", quote(value, safe="")),
                       ("quote/", quote(value, safe="/")), ("quote_plus", quote_plus(value)),
                       ("json", json.dumps(value)),
                       ("json-utf8", json.dumps(value, ensure_ascii=False)),
                       ("b64", base64.b64encode(raw).decode()),
                       ("b64url", base64.urlsafe_b64encode(raw).decode()),
                       ("basic1", "Basic " + base64.b64encode(b"u:" + raw).decode()),
                       ("basic2", "Basic " + base64.b64encode(b"usr:" + raw).decode())):
        print(f"leaky {{label}} {{form}}: {{text}}", file=out)


for name, value in sorted(os.environ.items()):
    print(f"env {{name}}={{value}}")
    if name in SECRET_ENV:
        show(name, value, sys.stderr)
for path in sys.argv[1:]:
    show(os.path.basename(path), open(path, encoding="utf-8").read().strip(), sys.stdout)
'''

GATE_HOOK = """\
#!/bin/sh
# Prints what it was given, then holds the run (at most 60 s) until the test has read /proc.
env
i=0
while [ ! -e "$1" ] && [ "$i" -lt 1200 ]; do sleep 0.05; i=$((i + 1)); done
"""


# --- the deployment and the scenario ------------------------------------------------------------

class EchoReceiver(Receiver):
    """A receiver that refuses the first attempt of every run-end notification with an error
    page echoing part of the request (as many servers and proxies do), and accepts the retry
    and everything else. `end_key` says which end event a request belongs to (None: not one)."""

    def __init__(self, port: int, status: int, echo: Callable[[Received], str],
                 end_key: Callable[[Received], str | None]) -> None:
        super().__init__(port)
        self.status, self.echo, self.end_key = status, echo, end_key
        self.refused: set[str] = set()

    def start(self) -> EchoReceiver:
        import http.server

        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                request = Received(self.command, self.path, dict(self.headers.items()), body,
                                   time.time())
                receiver.requests.append(request)
                key = receiver.end_key(request)
                refuse = key is not None and key not in receiver.refused
                if key is not None:
                    receiver.refused.add(key)
                answer = receiver.echo(request).encode() if refuse else b"OK"
                self.send_response(receiver.status if refuse else 200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_PUT = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self


@dataclass
class SmtpLog:
    raw: list[bytes] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)


def start_smtp(base: Path, port: int, log: SmtpLog) -> Any:
    """aiosmtpd with STARTTLS required before AUTH (as tests/notifiers/conftest.py's server),
    accepting user "mailer" with the SMTP canary."""
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult, LoginPassword

    cert, key = _self_signed(base)

    class Handler:
        async def handle_DATA(self, srv: Any, session: Any, envelope: Any) -> str:
            log.raw.append(bytes(envelope.original_content))
            return "250 OK queued"

    def authenticator(srv: Any, session: Any, envelope: Any, mechanism: str,
                      auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            user, password = auth_data.login.decode(), auth_data.password.decode()
            log.logins.append((user, password))
            return AuthResult(success=(user, password) == ("mailer", SMTP_PASSWORD.value))
        return AuthResult(success=False, handled=False)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=context,
                            require_starttls=True, authenticator=authenticator,
                            auth_require_tls=True)
    controller.start()
    return controller


CONFIG = """\
state_dir = "{state}"
hostname = "leak-host"

[server]
bind = "127.0.0.1:{port}"
workers = 2
max_body_bytes = 4096
max_wait = "20s"

[restic]
binary = "{restic}"
repository_file = "{repository_file}"
password_file = "{password_file}"
cache_dir = "{cache}"
env_files = {{ AWS_SECRET_ACCESS_KEY = "{env_file}" }}

[jobs.nightly]
kind = "backup"
paths = ["{data}"]
params = ["tags", "dry_run"]
allowed_tags = ["weekly", "manual", "automated", "airflow", "cli", "leak", "leak-suite", "x"]
pre_hook = {nightly_pre}
post_hook = {job_hook}
hook_env = ["RESTIC_PASSWORD", "AWS_SECRET_ACCESS_KEY", "RESTIC_REPOSITORY"]
forget_args = ["--keep-last", "3"]
retry_lock = "60s"

[jobs.cli]
kind = "backup"
paths = ["{data}"]
params = ["tags"]
allowed_tags = ["weekly", "manual", "automated", "airflow", "cli", "leak", "leak-suite", "x"]
pre_hook = {job_hook}
hook_env = ["RESTIC_PASSWORD", "AWS_SECRET_ACCESS_KEY", "RESTIC_REPOSITORY"]

[jobs.wrong]
kind = "check"
password_file = "{wrong_password_file}"

[jobs.badurl]
kind = "check"
repository_file = "{bad_repository_file}"

[jobs.slow]
kind = "backup"
paths = ["{big}/slow"]
args = ["--limit-upload", "100"]
pre_hook = ["{root}/gate-env.sh", "{root}/release-slow"]
hook_env = ["AWS_SECRET_ACCESS_KEY"]

[jobs.timeout]
kind = "backup"
paths = ["{big}/timeout"]
args = ["--limit-upload", "100"]
timeout = "3s"

[jobs.slow-cli]
kind = "backup"
paths = ["{big}/slow-cli"]
args = ["--limit-upload", "100"]
pre_hook = ["{root}/gate-none.sh", "{root}/release-slow-cli"]

[[clients]]
name = "airflow"
secret_file = "{client_whsec}"
jobs = ["*"]

[[clients]]
name = "cron"
token_file = "{client_token}"
jobs = ["*"]

[notify]
metrics_dir = "{metrics_dir}"
retry_initial = "1s"

[notify.pushgateway]
url = "{pg_url}"
username = "{pg_user}"
password_file = "{pg_password}"

[notify.webhooks.ops]
url = "{webhook_url}/hook"
secret_file = "{webhook_secret}"
auth_header_file = "{auth_header}"
on = ["start", "success", "warning", "failure", "skipped"]

[notify.healthchecks.all]
url_file = "{hc_url}"

[notify.mail]
host = "127.0.0.1"
port = {smtp_port}
starttls = true
cafile = "{cafile}"
username = "mailer"
password_file = "{smtp_password}"
from = "backup@example.org"
to = ["ops@example.org"]

[signing]
key_file = "{signing_key}"
"""


class Scenario:
    """Builds the deployment, drives it, collects everything into `self.ev`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state = root / "state"
        self.metrics_dir = root / "textfiles"
        self.ev = Evidence(canaries=list(STATIC_CANARIES))
        self.lock = threading.Lock()
        self.cleanups: list[Callable[[], None]] = []
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(("RESTIC_", "RCLONE_"))}
        self.env["RESTIC_RUNNER_CONFIG"] = str(root / "restic-runner.toml")
        self.api_count = 0

    # --- bookkeeping -----------------------------------------------------------------------------

    def add(self, surface: str, where: str, data: bytes,
            allowed: frozenset[str] = frozenset(), role: str = "") -> None:
        with self.lock:
            self.ev.items.append(Item(surface, where, data, allowed, role))

    def attempt(self, what: str, func: Callable[[], Any]) -> Any:
        """Run one part of the scenario; a failure is recorded (the scenario test reports it)
        and the rest goes on, so the leak checks still see everything else."""
        try:
            return func()
        except Exception:
            with self.lock:
                self.ev.errors.append(f"{what}: {traceback.format_exc()}")
            return None

    # --- set-up ----------------------------------------------------------------------------------

    def setup(self) -> None:
        root = self.root
        rest_root = root / "rest-root"
        password = secret_file(root / "restic-password", REPO_PASSWORD.value)
        subprocess.run([RESTIC, "init", "--repo", str(rest_root), "--password-file",
                        str(password)], check=True, capture_output=True,
                       env={"PATH": "/usr/bin:/bin", "HOME": str(root)})
        rest_port = free_port()
        # the REST server is the test's, not a descendant of the service: its argv may hold
        # the password (it is the control that /proc/<pid>/cmdline is read and matched)
        rest = subprocess.Popen([RCLONE_BINARIES["1.60"], "serve", "restic", "--addr",
                                 f"127.0.0.1:{rest_port}", "--user", "backup", "--pass",
                                 URL_PASSWORD.value, str(rest_root)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.cleanups.append(lambda: stop_process(rest, timeout=45))
        wait_port(rest_port)
        self.ev.control_cmdline = Path(f"/proc/{rest.pid}/cmdline").read_bytes()
        userinfo = f"backup:{quote(URL_PASSWORD.value, safe='')}"
        self.files = {
            "repository_file": secret_file(
                root / "repository", f"rest:http://{userinfo}@127.0.0.1:{rest_port}/"),
            # restic prints this one back in its error ("invalid port"), password and all
            "bad_repository_file": secret_file(
                root / "bad-repository", f"rest:http://{userinfo}@127.0.0.1:notaport/"),
            "password_file": password,
            "wrong_password_file": secret_file(root / "wrong-password", WRONG_PASSWORD.value),
            "env_file": secret_file(root / "aws-secret", ENV_VALUE.value),
            "client_whsec": secret_file(root / "airflow.whsec", CLIENT_WHSEC.value),
            "client_token": secret_file(root / "cron.token", CLIENT_TOKEN.value),
            "wrong_token": secret_file(root / "wrong.token", CLIENT_TOKEN.value + "-wrong"),
            "webhook_secret": secret_file(root / "ops.whsec", WEBHOOK_WHSEC.value),
            "auth_header": secret_file(root / "ops.auth", AUTH_HEADER.value),
            "smtp_password": secret_file(root / "smtp.pw", SMTP_PASSWORD.value),
            "pg_password": secret_file(root / "pg.pw", PG_PASSWORD.value),
        }
        # the first attempt of every end event is refused with an error page echoing what was
        # sent: the Authorization header; the ping URL's path (the check's credential)
        self.webhook = EchoReceiver(
            free_port(), 401, lambda r: f"refused Authorization: {r.headers['Authorization']}",
            lambda r: None if json.loads(r.body)["type"] in ("run.started", "run.test")
            else r.headers["webhook-id"]).start()
        self.cleanups.append(self.webhook.stop)
        self.hc = EchoReceiver(
            free_port(), 500, lambda r: f"no check at {r.path}",
            lambda r: r.path if r.path.split("?")[0].rsplit("/", 1)[1] not in ("start", "log")
            else None).start()
        self.cleanups.append(self.hc.stop)
        self.files["hc_url"] = secret_file(
            root / "hc.url", f"{self.hc.url}/ping/{quote(HC_TOKEN.value, safe='')}")
        (root / "pg").mkdir()
        self.gateway: Pushgateway = start_pushgateway(root / "pg", password=PG_PASSWORD.value)
        self.cleanups.append(lambda: stop_process(self.gateway.process, timeout=45))
        self.smtp_port, self.smtp_log = free_port(), SmtpLog()
        controller = start_smtp(root, self.smtp_port, self.smtp_log)
        self.cleanups.append(controller.stop)
        self.cli("keys generate ed25519", "keys", "generate", "ed25519", "--out",
                 str(root / "signing.whsk"))
        self.files["signing_key"] = root / "signing.whsk"
        signing = (root / "signing.whsk").read_text().strip()
        self.ev.canaries.append(Canary("signing-key", signing))
        self.data = make_data(root / "data")
        # one directory of random data per slow job: the same bytes would be deduplicated, and
        # a job finding its data already in the repository ends before it can be cancelled
        self.big = root / "big"
        for job in ("slow", "timeout", "slow-cli"):
            (self.big / job).mkdir(parents=True)
            (self.big / job / "random.bin").write_bytes(os.urandom(2 * 1024 * 1024))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.write_config()
        self.start_service()

    def write_config(self) -> None:
        f, root = self.files, self.root
        leaky = root / "leaky-hook.py"
        leaky.write_text(LEAKY_HOOK.format(python=sys.executable))
        leaky.chmod(0o755)
        for name in ("gate-env.sh", "gate-none.sh"):
            (root / name).write_text(GATE_HOOK)
            (root / name).chmod(0o755)
        job_files = [f["repository_file"], f["password_file"], f["env_file"]]
        notify_files = [f[k] for k in ("webhook_secret", "auth_header", "smtp_password",
                                       "pg_password", "hc_url", "signing_key")]
        client_files = [f["client_whsec"], f["client_token"]]

        def argv(*paths: Path) -> str:
            return json.dumps([str(leaky), *map(str, paths)])

        (root / "restic-runner.toml").write_text(CONFIG.format(
            state=self.state, port=self.port, restic=RESTIC, cache=root / "cache",
            data=self.data, big=self.big, root=root,
            metrics_dir=self.metrics_dir, pg_url=self.gateway.url, pg_user=PG_USER,
            webhook_url=self.webhook.url, smtp_port=self.smtp_port, cafile=root / "smtp.crt",
            nightly_pre=argv(*job_files, *notify_files, *client_files),
            job_hook=argv(*job_files, *notify_files), **f))

    def start_service(self) -> None:
        self.service_log = self.root / "serve.log"
        self.service = start_serve(self.env, self.root, self.url, self.service_log, timeout=60)
        self.cleanups.append(lambda: stop_process(self.service, timeout=45))

    # --- driving: the CLI ------------------------------------------------------------------------

    def cli(self, label: str, *args: str, timeout: float = 120) -> int:
        try:
            done = subprocess.run([RUNNER, *args], env=self.env, capture_output=True,
                                  timeout=timeout, cwd=self.root)
            code, out, err = done.returncode, done.stdout, done.stderr
        except subprocess.TimeoutExpired as exc:
            code, out, err = -1, exc.stdout or b"", exc.stderr or b""
            with self.lock:
                self.ev.errors.append(f"`{label}` did not end within {timeout}s")
        self.record_command(label, args, code, out, err)
        return code

    def record_command(self, label: str, args: tuple[str, ...] | list[str], code: int,
                       out: bytes, err: bytes) -> None:
        with self.lock:
            self.ev.exits[label] = code
        command = "restic-runner " + " ".join(args)
        self.add("cli-output", f"stdout of `{command}` ({label}, exit {code})", out)
        self.add("cli-output", f"stderr of `{command}` ({label}, exit {code})", err)

    def trigger_cli(self, label: str, job: str, credential: str, *extra: str) -> int:
        option = "--secret-file" if credential.endswith(".whsec") else "--token-file"
        return self.cli(label, "trigger", self.url, job, option, credential, *extra)

    def run_and_interrupt(self, label: str, job: str) -> None:
        """`restic-runner run JOB`, its process tree read while the pre hook holds and again
        while restic uploads, then SIGINT."""
        args = ["run", job, "--json"]
        proc = subprocess.Popen([RUNNER, *args], env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=self.root)
        try:
            find_process(proc.pid, lambda a: "gate-none.sh" in " ".join(a[:2]))
            self.snapshot(proc.pid, f"CLI run of {job}, pre hook holding", "cli-run")
            (self.root / f"release-{job}").touch()
            find_process(proc.pid, lambda a: "backup" in a and str(self.big / job) in a)
            self.snapshot(proc.pid, f"CLI run of {job}, restic uploading", "cli-run")
        finally:
            (self.root / f"release-{job}").touch()
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=90)
        self.record_command(label, args, proc.returncode, out, err)

    # --- driving: the API ------------------------------------------------------------------------

    def api(self, label: str, method: str, path: str, *, body: bytes = b"",
            headers: dict[str, str] | None = None, auth: str | None = "token",
            record: bool = True) -> requests.Response:
        """One request; `auth` "token" (client cron), "sign" (client airflow) or None (use
        `headers` as given)."""
        if auth == "token":
            headers = {"Authorization": f"Bearer {CLIENT_TOKEN.value}", **(headers or {})}
        elif auth == "sign":
            headers = {**sign(CLIENT_KEY.value.encode(), body), **(headers or {})}
        response = requests.request(method, self.url + path, data=body, headers=headers,
                                    timeout=60)
        if record:
            self.record_answer(label, method, path, response)
        return response

    def record_answer(self, label: str, method: str, path: str,
                      response: requests.Response) -> None:
        with self.lock:
            self.api_count += 1
            n = self.api_count
        where = f"API answer #{n} to {label} ({method} {path}: {response.status_code})"
        for name, value in response.headers.items():
            self.add("api", f"{where} header {name}", value.encode("latin-1", "replace"))
        self.add("api", f"{where} body", response.content)

    def wait_result(self, label: str, run_id: str, timeout: float = 120) -> None:
        """Poll `/runs/<id>/result` (the first 404 and the final 200 are kept as evidence)."""
        path = f"/runs/{run_id}/result"
        deadline, first = time.monotonic() + timeout, True
        while time.monotonic() < deadline:
            response = self.api(f"result of {label}", "GET", path, record=first)
            first = False
            if response.status_code == 200:
                self.record_answer(f"result of {label}", "GET", path, response)
                return
            time.sleep(0.25)
        raise AssertionError(f"{label}: run {run_id} did not end within {timeout}s")

    def bad_auth(self) -> None:
        """Refused credentials, several of them carrying a real secret: neither the answers nor
        the service log may repeat them."""
        body = b'{"params": {"tags": ["x"]}}'
        key = CLIENT_KEY.value.encode()
        now = int(time.time())
        other = sign(key, b"{}")
        probes: list[tuple[str, str, str, dict[str, str]]] = [
            ("no credentials", "GET", "/runs", {}),
            ("signature with a wrong key", "POST", "/trigger/nightly", sign(os.urandom(32), body)),
            ("the client's key, base64, as the signature", "POST", "/trigger/nightly",
             {**other, "webhook-signature": "v1," + base64.b64encode(key).decode()}),
            ("signature over another body", "POST", "/trigger/nightly", other),
            ("expired timestamp", "POST", "/trigger/nightly", sign(key, body, stamp=now - 3600)),
            ("future timestamp", "POST", "/trigger/nightly", sign(key, body, stamp=now + 3600)),
            ("webhook-id only", "POST", "/trigger/nightly", {"webhook-id": "msg_only"}),
            ("a wrong token that contains the real one", "GET", "/jobs",
             {"Authorization": f"Bearer {CLIENT_TOKEN.value}-wrong"}),
            ("the whsec_ secret as a bearer token", "GET", "/jobs",
             {"Authorization": f"Bearer {CLIENT_WHSEC.value}"}),
            ("basic auth with the token as password", "GET", "/jobs",
             {"Authorization": "Basic " + base64.b64encode(
                 f"cron:{CLIENT_TOKEN.value}".encode()).decode()}),
        ]
        replayed = sign(key, b"", msg_id=f"msg_replay{uuid.uuid4().hex}")
        for label in ("signed request (first)", "the same signed request again (replay)"):
            status = self.api(label, "GET", "/jobs", headers=replayed, auth=None)
            self.ev.auth.append((label, status.status_code))
        for label, method, path, headers in probes:
            data = body if method == "POST" else b""
            status = self.api(label, method, path, body=data, headers=headers, auth=None)
            self.ev.auth.append((label, status.status_code))
        for _ in range(6):  # past the failure limit: 429
            status = self.api("another wrong token", "GET", "/jobs", auth=None,
                              headers={"Authorization": f"Bearer {CLIENT_TOKEN.value}x"})
            self.ev.auth.append(("another wrong token", status.status_code))
            if status.status_code == 429:
                break
        ok = self.api("valid token while the address is blocked", "GET", "/jobs")
        self.ev.auth.append(("valid token while the address is blocked", ok.status_code))
        # accepted requests that carry a secret where the access log looks: the query string
        # and a Basic user name (gunicorn logs `%(u)s`)
        self.api("a secret in the query string", "GET",
                 f"/runs?job={quote(CLIENT_TOKEN.value, safe='')}")
        basic = base64.b64encode(f"{CLIENT_TOKEN.value}:x".encode()).decode()
        self.api("signed, with the token as a Basic user name", "GET", "/jobs", auth="sign",
                 headers={"Authorization": f"Basic {basic}"})

    def nightly_over_api(self) -> None:
        body = b'{"params": {"tags": ["leak-suite"]}}'
        key = {"Idempotency-Key": "leak-suite-1"}
        first = self.api("signed trigger of nightly", "POST", "/trigger/nightly?wait=20",
                         body=body, auth="sign", headers=key)
        run_id = first.json()["run_id"]
        self.api("the same Idempotency-Key again", "POST", "/trigger/nightly", body=body,
                 auth="sign", headers=key)
        self.api("the same Idempotency-Key, another body", "POST", "/trigger/nightly",
                 body=b"{}", auth="sign", headers=key)
        self.wait_result("nightly (API, signed)", run_id)

    def slow_over_api(self) -> None:
        """The slow job: its process tree read twice (pre hook holding, restic uploading), a
        second trigger (409), then cancelled over the API."""
        started = self.api("trigger of slow", "POST", "/trigger/slow")
        run_id = started.json()["run_id"]
        try:
            find_process(self.service.pid, lambda a: "gate-env.sh" in " ".join(a[:2]))
            self.snapshot(self.service.pid, "slow's pre hook holding", "service")
            self.api("trigger of slow while it runs", "POST", "/trigger/slow")
        finally:
            (self.root / "release-slow").touch()
        find_process(self.service.pid, lambda a: "backup" in a and str(self.big / "slow") in a)
        self.snapshot(self.service.pid, "slow's restic uploading", "service")
        self.api("live record of slow", "GET", f"/runs/{run_id}")
        self.api("live log of slow", "GET", f"/runs/{run_id}/log")
        self.api("cancel of slow", "POST", f"/runs/{run_id}/cancel")
        self.wait_result("slow (API, cancelled)", run_id)
        self.api("cancel of slow once ended", "POST", f"/runs/{run_id}/cancel")

    def snapshot_trigger(self) -> None:
        """`restic-runner trigger --secret-file F --wait`, read while it waits."""
        pid = find_process(os.getpid(), lambda a: a[2:3] == ["trigger"] and "timeout" in a)
        self.snapshot(pid, "CLI trigger waiting", "cli-trigger")

    def snapshot(self, root: int, label: str, root_role: str) -> None:
        """cmdline and environ of every live descendant of `root`, with its role."""
        roles: dict[int, str] = {}
        seen = []
        for pid, ppid in [(root, 0), *descendants(root)]:
            argv = _argv(pid)
            roles[pid] = root_role if pid == root else role_of(argv, roles[ppid])
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                environ = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue  # ended meanwhile
            if not cmdline:
                continue
            shown = " ".join(argv)[:120]
            where = f"pid {pid}, {roles[pid]} `{shown}` ({label})"
            self.add("proc-cmdline", f"/proc/{pid}/cmdline of {where}", cmdline,
                     role=roles[pid])
            self.add("proc-environ", f"/proc/{pid}/environ of {where}", environ,
                     ROLE_ALLOWED[roles[pid]], roles[pid])
            seen.append((pid, roles[pid], shown))
        with self.lock:
            self.ev.snapshots[label] = seen

    # --- the phases ------------------------------------------------------------------------------

    def drive(self) -> None:
        p = functools.partial
        token, whsec = str(self.files["client_token"]), str(self.files["client_whsec"])
        # success and failure, from the CLI and over the API; refused credentials
        self.concurrently(
            [("run cli", p(self.cli, "run cli", "run", "cli", "--json")),
             ("run badurl", p(self.cli, "run badurl", "run", "badurl", "--json")),
             ("trigger wrong", p(self.trigger_cli, "trigger wrong (token)", "wrong", token,
                                 "--wait", "90"))],
            [("bad authentication", self.bad_auth),
             ("nightly over the API", self.nightly_over_api)])
        # timeout, cancel over the API, SIGINT to `run`; /proc read meanwhile
        self.concurrently(
            [("trigger timeout", p(self.trigger_cli, "trigger timeout (whsec)", "timeout",
                                   whsec, "--wait", "90")),
             ("trigger cli", p(self.trigger_cli, "trigger cli (token)", "cli", token,
                               "--tag", "leak", "--wait", "90")),
             ("run slow-cli", p(self.run_and_interrupt, "run slow-cli (SIGINT)", "slow-cli"))],
            [("trigger's process", self.snapshot_trigger),
             ("slow over the API", self.slow_over_api)])
        for what, step in (("deliveries settle", self.wait_settled),
                           ("reads over the API", self.reads),
                           ("diagnostic commands", self.commands),
                           ("deliveries settle again", self.wait_settled)):
            self.attempt(what, step)

    def concurrently(self, background: list[tuple[str, Callable[[], Any]]],
                     foreground: list[tuple[str, Callable[[], Any]]]) -> None:
        """`background` in threads while `foreground` runs here, in order; then wait for all."""
        with ThreadPoolExecutor(len(background)) as pool:
            futures = [pool.submit(self.attempt, what, step) for what, step in background]
            for what, step in foreground:
                self.attempt(what, step)
            for future in futures:
                future.result()

    def wait_settled(self, timeout: float = 90) -> None:
        """No run running, no delivery pending: every receiver has what it will get."""
        db = self.state / "history.db"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as con:
                    busy = con.execute("SELECT (SELECT count(*) FROM runs WHERE status = "
                                       "'running') + (SELECT count(*) FROM deliveries WHERE "
                                       "state = 'pending')").fetchone()[0]
            except sqlite3.Error:
                busy = -1
            if busy == 0:
                return
            time.sleep(0.2)
        raise AssertionError(f"runs or deliveries still pending after {timeout}s")

    def reads(self) -> None:
        """Every endpoint there is, for every run; and the error answers."""
        runs = self.api("all runs", "GET", "/runs?limit=200").json()["runs"]
        self.ev.records = runs
        for run in runs:
            for suffix in ("", "/result", "/log"):
                self.api(f"run of {run['job']}", "GET", f"/runs/{run['run_id']}{suffix}")
        for path in ("/runs?limit=2", "/runs?status=failed", "/runs?job=nightly", "/jobs",
                     "/healthz", "/readyz", "/metrics", "/openapi.json", "/keys",
                     "/runs/no-such-run", "/nope", "/runs?limit=x", "/trigger/nightly"):
            self.api(f"GET {path}", "GET", path)
        self.api("unknown job", "POST", "/trigger/no-such-job", auth="sign")
        self.api("bad JSON", "POST", "/trigger/nightly", body=b"{not json", auth="sign")
        self.api("bad params", "POST", "/trigger/nightly", auth="sign",
                 body=b'{"params": {"tags": ["not a tag!"]}}')
        self.api("body too large", "POST", "/trigger/nightly", body=b"x" * 5000, auth="sign")

    def commands(self) -> None:
        token = str(self.files["client_token"])
        commands = [
            ("status", ["status"]), ("status --json", ["status", "--json"]),
            ("config check", ["config", "check"]),
            ("config check --json", ["config", "check", "--json"]),
            ("doctor", ["doctor"]), ("doctor --json", ["doctor", "--json"]),
            ("notify-test", ["notify-test"]), ("notify-test --json", ["notify-test", "--json"]),
            ("notify-test --dry-run --json", ["notify-test", "--dry-run", "--json"]),
            ("snapshots", ["snapshots"]), ("snapshots --json", ["snapshots", "--json"]),
            ("snapshots badurl", ["snapshots", "badurl"]),
            ("metrics prune --dry-run --json", ["metrics", "prune", "--dry-run", "--json"]),
            ("trigger with a wrong token", ["trigger", self.url, "nightly", "--token-file",
                                            str(self.files["wrong_token"])]),
            ("trigger with the whsec_ file as a token file", ["trigger", self.url, "nightly",
                                                              "--token-file",
                                                              str(self.files["client_whsec"])]),
            ("trigger of a missing job", ["trigger", self.url, "no-such-job", "--token-file",
                                          token]),
        ]
        with ThreadPoolExecutor(3) as pool:
            futures = [pool.submit(self.attempt, label, functools.partial(self.cli, label, *args))
                       for label, args in commands]
            for future in futures:
                future.result()

    # --- collecting ----------------------------------------------------------------------------

    def collect(self) -> None:
        t = self.attempt
        t("pushgateway", self.collect_pushgateway)
        t("stop the service", lambda: stop_process(self.service, timeout=45))
        self.add("service-log", "the service's stdout/stderr", self.service_log.read_bytes())
        t("state_dir", self.collect_state)
        for path in sorted(self.metrics_dir.glob("*")):
            self.add("textfile", f"textfile {path.name}", path.read_bytes())
        t("webhooks", self.collect_webhooks)
        t("mail", self.collect_mail)

    def collect_pushgateway(self) -> None:
        self.add("pushgateway", "the Pushgateway's /metrics", self.gateway.exposition().encode())
        self.add("pushgateway", "the Pushgateway's /api/v1/metrics",
                 self.gateway._get("/api/v1/metrics"))
        self.ev.pushgateway_groups = self.gateway.groups()

    def collect_state(self) -> None:
        for path in sorted(self.state.rglob("*")):
            if path.is_file():
                self.add("state-files", f"state_dir/{path.relative_to(self.state)}",
                         path.read_bytes())
        for name in ("history.db", "auth.db"):
            with closing(sqlite3.connect(self.state / name)) as con:
                for table, in con.execute("SELECT name FROM sqlite_master WHERE type='table'"):
                    rows = con.execute(f'SELECT * FROM "{table}"').fetchall()
                    text = "\n".join(repr(row) for row in rows)
                    self.add("history-db", f"{name} table {table} ({len(rows)} rows)",
                             text.encode("utf-8", "surrogateescape"))
                    for row in rows:  # the JSON documents, as text, not as Python reprs
                        for value in row:
                            if isinstance(value, str) and len(value) > 64:
                                self.add("history-db", f"{name} table {table}, row {row[0]!r}",
                                         value.encode("utf-8", "surrogateescape"))

    def collect_webhooks(self) -> None:
        auth = frozenset({AUTH_HEADER.name, AUTH_CREDENTIAL.name})
        for i, r in enumerate(self.webhook.requests, 1):
            self.ev.webhooks.append((dict(r.headers), r.body))
            where = f"webhook request #{i} ({r.method} {r.path})"
            self.add("webhook", f"{where} path", r.path.encode())
            for name, value in r.headers.items():
                allowed = auth if name.lower() == "authorization" else frozenset()
                self.add("webhook", f"{where} header {name}", value.encode("latin-1", "replace"),
                         allowed)
            self.add("webhook", f"{where} body", r.body)
        for i, r in enumerate(self.hc.requests, 1):
            self.ev.pings.append((r.path, dict(r.headers), r.body))
            where = f"healthchecks ping #{i}"
            # the ping URL is the check's credential: it belongs in the request line, only
            self.add("healthchecks", f"{where} path", r.path.encode(),
                     frozenset({HC_TOKEN.name}))
            for name, value in r.headers.items():
                self.add("healthchecks", f"{where} header {name}",
                         value.encode("latin-1", "replace"))
            self.add("healthchecks", f"{where} body", r.body)

    def collect_mail(self) -> None:
        self.ev.smtp_logins = list(self.smtp_log.logins)
        for i, raw in enumerate(self.smtp_log.raw, 1):
            self.ev.mails.append(raw)
            self.add("mail", f"mail #{i}, raw message", raw)
            msg = email.message_from_bytes(raw, policy=email.policy.default)
            for name, value in msg.items():
                self.add("mail", f"mail #{i}, decoded header {name}", str(value).encode())
            for n, part in enumerate(msg.walk()):
                payload = part.get_payload(decode=True)
                if isinstance(payload, bytes):
                    self.add("mail", f"mail #{i}, decoded part {n}", payload)

    def teardown(self) -> None:
        for cleanup in reversed(self.cleanups):
            with suppress(Exception):
                cleanup()


def run_scenario(root: Path) -> Evidence:
    started = time.monotonic()
    scenario = Scenario(root)
    try:
        scenario.setup()
        scenario.drive()
        scenario.collect()
    finally:
        scenario.teardown()
    scenario.ev.seconds = round(time.monotonic() - started, 1)
    return scenario.ev


# --- the fixture -------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def evidence(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Evidence]:
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        yield run_scenario(tmp_path_factory.mktemp("leaks"))
        return
    shared = tmp_path_factory.getbasetemp().parent  # one per session, seen by every worker
    result, failure = shared / "leak-evidence.pickle", shared / "leak-evidence.failed"
    with open(shared / "leak-evidence.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the first worker runs it; the others wait here
        if failure.exists():
            pytest.fail(f"the leak scenario failed in another worker:\n{failure.read_text()}")
        if not result.exists():
            try:
                ev = run_scenario(tmp_path_factory.mktemp("leaks"))
            except BaseException:
                failure.write_text(traceback.format_exc())
                raise
            result.write_bytes(pickle.dumps(ev))
    yield pickle.loads(result.read_bytes())
