"""The leak suite's deployment: ONE restic-runner with every secret-bearing surface configured at
once, every secret a distinct canary (tests/support/leaks.py), driven through success, failure,
timeout, cancel, bad authentication and the diagnostic commands. Everything it produced is
collected as `Evidence` (bytes, each piece named by where it came from);
tests/leaks/test_leak_suite.py asserts on it.

The scenario runs once per session (`shared_evidence`). Under pytest-xdist the first worker that
needs it runs it and writes the evidence to the session's shared temporary directory; the other
workers wait for that file and read it, so the servers are started once however the tests are
distributed.
"""

from __future__ import annotations

import base64
import email
import email.policy
import fcntl
import functools
import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests

from tests.support.leaks import (
    AUTH_CREDENTIAL,
    AUTH_HEADER,
    CLIENT_KEY,
    CLIENT_TOKEN,
    CLIENT_WHSEC,
    ENV_VALUE,
    HC_TOKEN,
    PG_PASSWORD,
    REPO_PASSWORD,
    ROLE_ALLOWED,
    SMTP_PASSWORD,
    STATIC_CANARIES,
    URL_PASSWORD,
    WEBHOOK_WHSEC,
    WRONG_PASSWORD,
    Canary,
    Evidence,
    Item,
)
from tests.support.paths import ONE_RESTIC, RESTIC_BINARIES, RUNNER
from tests.support.processes import argv_of, descendants, free_port, stop_process
from tests.support.pushgateway import PG_USER, Pushgateway, start_pushgateway
from tests.support.receivers import EchoReceiver
from tests.support.rest_server import start_rest_server
from tests.support.secrets import secret_file
from tests.support.service import sign, start_serve
from tests.support.smtp import SmtpLog, start_recording_smtp
from tests.support.workspace import make_data

RESTIC = RESTIC_BINARIES[ONE_RESTIC]  # one version: masking does not depend on it

# --- processes: who is who -------------------------------------------------------------------

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
            if predicate(argv_of(pid)):
                return pid
        time.sleep(0.05)
    raise AssertionError(f"no descendant of {root} matched within {timeout}s")


# --- the hooks ---------------------------------------------------------------------------------

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
        # the REST server is the test's, not a descendant of the service: its argv may hold
        # the password (it is the control that /proc/<pid>/cmdline is read and matched)
        rest = start_rest_server(rest_root, user="backup", password=URL_PASSWORD.value)
        self.cleanups.append(lambda: stop_process(rest.process, timeout=45))
        self.ev.control_cmdline = Path(f"/proc/{rest.process.pid}/cmdline").read_bytes()
        userinfo = f"backup:{quote(URL_PASSWORD.value, safe='')}"
        self.files = {
            "repository_file": secret_file(
                root / "repository", f"rest:http://{userinfo}@127.0.0.1:{rest.port}/"),
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
        controller = start_recording_smtp(root, self.smtp_port, self.smtp_log, "mailer",
                                          SMTP_PASSWORD.value)
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
        # no ?wait=: a final record answered to this client would spend the key, and the
        # repeat below would start a second run (docs/api.md, "Idempotency")
        first = self.api("signed trigger of nightly", "POST", "/trigger/nightly",
                         body=body, auth="sign", headers=key)
        run_id = first.json()["run_id"]
        self.api("the same Idempotency-Key again", "POST", "/trigger/nightly?wait=20",
                 body=body, auth="sign", headers=key)
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
            argv = argv_of(pid)
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
                 self.gateway.get("/api/v1/metrics"))
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


# --- once per session -------------------------------------------------------------------------

def shared_evidence(tmp_path_factory: pytest.TempPathFactory) -> Evidence:
    """The scenario's evidence, run once per session: by this process without xdist, else by
    the first worker that asks (the others wait for it and read what it wrote)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return run_scenario(tmp_path_factory.mktemp("leaks"))
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
    return pickle.loads(result.read_bytes())
