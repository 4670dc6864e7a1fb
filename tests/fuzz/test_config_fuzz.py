"""Hostile configuration: a valid restic-runner.toml using every table of the schema, changed by
hypothesis (keys set to values of any TOML type, deleted, renamed, unknown keys added, tables
replaced, secrets put into the wrong type) and by raw byte edits of its text, then loaded the
way every command loads it (runner/configuration/load.py `load_config`: tomllib, then
`parse_config`); and
restic-backup-helper's environment variables with any values (runner/configuration/environment.py).

Properties: the result is a `Config` or a `ConfigError` naming a key (or the file, for text that
is no TOML); never another exception, never a hang; and no error message contains a secret
that was in the document (an inline `password`, the password in a repository or webhook URL),
nor a piece of one."""

from __future__ import annotations

import copy
import datetime as dt
import math
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from runner.configuration.config import Config
from runner.configuration.environment import load_from_environment
from runner.configuration.load import load_config
from runner.errors import ConfigError
from tests.support.fuzzing import fuzz, hard_deadline
from tests.support.secrets import CANARY

PASSWORD = "pw-" + CANARY
URL_PASSWORD = "url-" + CANARY
HOOK_PASSWORD = "hook-" + CANARY
SECRETS = (PASSWORD, URL_PASSWORD, HOOK_PASSWORD)
TOP_LEVEL = ("state_dir", "hostname", "restic", "rclone", "jobs", "server", "clients", "notify",
             "signing")


def _forms(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), repr(secret)[1:-1],
            secret.encode("unicode_escape").decode()}


FRAGMENTS = sorted({form[i:i + 10] for secret in SECRETS for form in _forms(secret)
                    for i in range(len(form) - 9)})


def leaked(text: str) -> list[str]:
    """Pieces (10 characters or more) of a secret, in any form, found in `text`."""
    return [fragment for fragment in FRAGMENTS if fragment in text]


# --------------------------------------------------------------------------- the document


FILES = ("password", "repo-url", "env-secret", "rclone.conf", "cacert.pem", "airflow.whsec",
         "cron.token", "push-password", "hook.whsec", "hc-url", "smtp-password", "signing.whsk")
# content the load-time checks accept where they look at it (whsec_, whsk_, tokens)
CONTENT = {"airflow.whsec": "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
           "hook.whsec": "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
           "signing.whsk": "whsk_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
           "cron.token": "rrt_content-of-cron.token"}


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("config-fuzz")
    for name in FILES:
        (root / name).write_text(CONTENT.get(name, f"content of {name}") + "\n")
        (root / name).chmod(0o600)
    return root


def base_document(d: Path) -> dict[str, Any]:
    """A valid configuration using every table and most keys."""
    url_password = quote(URL_PASSWORD, safe="")
    return {
        "state_dir": str(d / "state"),
        "hostname": "fuzz-host",
        "restic": {
            "binary": "restic", "password": PASSWORD,
            "repository": f"rest:https://backup:{url_password}@127.0.0.1:1/repo",
            "env": {"AWS_REGION": "eu-west-1"},
            "env_files": {"AWS_SECRET_ACCESS_KEY": str(d / "env-secret")},
            "cache_dir": str(d / "cache"), "cacert": str(d / "cacert.pem"), "retry_lock": "5m",
            "progress_fps": 2, "auto_unlock": False, "init_if_missing": False},
        "rclone": {"binary": "rclone", "config": str(d / "rclone.conf"), "env": {"A": "b"}},
        "jobs": {
            "nightly": {"kind": "backup", "paths": ["/data"], "args": ["--exclude-caches"],
                        "tags": ["automated"], "forget_args": ["--keep-daily", "7"],
                        "timeout": "6h", "pre_hook": ["/bin/true"], "params": ["tags", "dry_run"],
                        "allowed_tags": ["weekly"], "schedule": "0 3 * * *",
                        "hook_env": ["AWS_SECRET_ACCESS_KEY"],
                        "keep_logs": 30, "max_age": "2d", "description": "the main one"},
            "check": {"kind": "check", "args": ["--read-data-subset", "5%"],
                      "schedule": "every 6h", "post_hook": ["/bin/true"]},
            "trim": {"kind": "forget", "args": ["--keep-last", "3"], "stop_grace": "10s"},
            "offsite": {"kind": "replicate", "args": ["sync", "/srv", "remote:bucket"],
                        "schedule": "daily at 04:30"},
            "rehearsal": {"kind": "restore-test", "min_files": 1, "include": ["/data"],
                          "canaries": {"/data/x": "a" * 64}, "keep": False},
            "own-repo": {"kind": "prune", "repository_file": str(d / "repo-url"),
                         "password_file": str(d / "password"), "hook_timeout": 60},
        },
        "server": {"bind": "127.0.0.1:8080", "workers": 2, "threads": 4,
                   "max_body_bytes": 65536, "max_wait": "25s", "graceful_timeout": "30s",
                   "max_requests": 1000, "log_format": "json"},
        "clients": [
            {"name": "airflow", "secret_file": str(d / "airflow.whsec"), "jobs": ["nightly"]},
            {"name": "cron", "token_file": str(d / "cron.token"), "jobs": ["*"]}],
        "notify": {
            "pushgateway": {"url": "http://127.0.0.1:9091", "username": "push",
                            "password_file": str(d / "push-password"), "jobs": ["nightly"]},
            "webhooks": {"ops": {"url": f"https://hook:{quote(HOOK_PASSWORD, safe='')}"
                                        "@example.invalid/x",
                                 "secret_file": str(d / "hook.whsec"), "on": ["failure"]}},
            "healthchecks": {"hc": {"url_file": str(d / "hc-url"), "create": True}},
            "mail": {"host": "127.0.0.1", "from": "runner@example.invalid",
                     "to": ["ops@example.invalid"], "starttls": True, "username": "u",
                     "password_file": str(d / "smtp-password"), "body_limit": 1000},
            "metrics_dir": str(d / "metrics"), "retry_initial": "5s", "cli_wait": 0},
        "signing": {"key_file": str(d / "signing.whsk")},
    }


RESTIC_KEYS = ("binary", "repository", "repository_file", "password", "password_file", "env",
               "env_files", "cache_dir", "cacert", "auto_unlock", "init_if_missing",
               "retry_lock", "progress_fps")
RCLONE_KEYS = ("binary", "config", "env", "env_files")
JOB_KEYS = ("kind", "description", "args", "timeout", "stop_grace", "schedule", "params",
            "allowed_tags", "pre_hook", "post_hook", "hook_env", "hook_timeout",
            "pre_hook_on_error", "keep_logs", "max_age", "paths", "tags", "forget_args",
            "snapshot", "include", "target_dir", "min_files", "canaries", "keep")
JOBS = ("nightly", "check", "trim", "offsite", "rehearsal", "own-repo")
Path_ = tuple[str | int, ...]
KEY_PATHS: list[Path_] = [
    ("hostname",), ("restic",), ("rclone",), ("jobs",), ("server",), ("clients",), ("notify",),
    ("signing",), ("unknown",),
    *[("restic", k) for k in RESTIC_KEYS], *[("rclone", k) for k in RCLONE_KEYS],
    *[("jobs", j) for j in JOBS],
    *[("jobs", j, k) for j in JOBS for k in (*JOB_KEYS, *RESTIC_KEYS, "config")],
    ("restic", "env", "AWS_REGION"), ("restic", "env_files", "AWS_SECRET_ACCESS_KEY"),
    ("jobs", "rehearsal", "canaries", "/data/x"),
    *[("server", k) for k in ("bind", "workers", "threads", "max_body_bytes", "max_wait",
                              "graceful_timeout", "max_requests", "log_format", "extra")],
    ("clients", 0), ("clients", 2),
    *[("clients", i, k) for i in (0, 1) for k in ("name", "jobs", "secret_file", "token_file")],
    *[("notify", k) for k in ("pushgateway", "webhooks", "healthchecks", "mail", "metrics_dir",
                              "retry_initial", "retry_max_interval", "retry_give_up_after",
                              "cli_wait", "other")],
    *[("notify", "pushgateway", k) for k in ("url", "username", "password_file", "timeout",
                                             "jobs")],
    ("notify", "webhooks", "ops"), ("notify", "webhooks", "new"),
    *[("notify", "webhooks", "ops", k) for k in ("url", "url_file", "secret_file",
                                                 "auth_header_file", "on", "jobs", "timeout")],
    *[("notify", "healthchecks", "hc", k) for k in ("url", "url_file", "create", "jobs",
                                                    "timeout")],
    *[("notify", "mail", k) for k in ("host", "from", "to", "port", "starttls", "tls",
                                      "username", "password_file", "cafile", "on", "jobs",
                                      "timeout", "body_limit")],
    ("signing", "key_file"),
]
SECRET_PATHS: list[Path_] = [("restic", "password"), ("restic", "repository"),
                             ("jobs", "own-repo", "password"), ("jobs", "nightly", "repository"),
                             ("notify", "webhooks", "ops", "url"),
                             ("notify", "healthchecks", "hc", "url"),
                             ("notify", "pushgateway", "url")]


# --------------------------------------------------------------------------- a tiny TOML writer


def _string(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def inline(value: Any) -> str:
    """One TOML value on one line (inline tables and arrays for nested values)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(inline(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_string(k)} = {inline(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


def dumps_inline(doc: dict[str, Any]) -> str:
    return "".join(f"{_string(k)} = {inline(v)}\n" for k, v in doc.items())


def dumps_tables(doc: dict[str, Any], prefix: str = "") -> str:
    """Tables as [headers] and [[arrays]] (as people write it), scalars inline."""
    lines = [f"{_string(k)} = {inline(v)}" for k, v in doc.items()
             if not isinstance(v, dict) and not _table_array(v)]
    out = "\n".join(lines) + "\n"
    for k, v in doc.items():
        name = f"{prefix}.{_string(k)}" if prefix else _string(k)
        if isinstance(v, dict):
            out += f"\n[{name}]\n" + dumps_tables(v, name)
        elif _table_array(v):
            for item in v:
                out += f"\n[[{name}]]\n" + dumps_tables(item, name)
    return out


def _table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


# --------------------------------------------------------------------------- loading


def load(text: str | bytes, path: Path) -> Config | ConfigError:
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    with hard_deadline():
        try:
            return load_config(str(path))
        except ConfigError as error:
            return error


def check(outcome: Config | ConfigError, doc: dict[str, Any] | None) -> None:
    """A Config, or a ConfigError naming a key that is there (or the file), and no secret."""
    if isinstance(outcome, Config):
        if doc is not None:
            assert set(outcome.jobs) == set(doc.get("jobs") or {})
        return
    message = str(outcome)
    assert not leaked(message), f"secret in the error: {message!r} ({leaked(message)})"
    if outcome.problem.startswith(("not valid TOML", "not UTF-8")):
        assert doc is None and not outcome.key, message
        return
    assert doc is not None, f"valid TOML refused as text: {message}"
    assert any(outcome.key == top or outcome.key.startswith((f"{top}.", f"{top}["))
               for top in (*TOP_LEVEL, *doc)), message


# --------------------------------------------------------------------------- strategies

PLAUSIBLE = st.sampled_from([
    "6h", "0", "0s", "-1", "1.5h", "90m", "1h30m", "soon", "every 0.5s", "every 6h", "every -1s",
    "daily at 24:00", "daily at 03:00", "0 3 * * *", "61 * * * *", "* * * * * *", "@reboot",
    "@daily", "*/0 * * * *", "0 0 31 2 *", "1-0 * * * *", "backup", "forget", "replicate",
    "restore-test", "prune", "127.0.0.1:0", ":8080", "[::1]:80", "host:99999", "*", "tags",
    "dry_run", "json", "text", "fail", "continue", "/nonexistent/file", "~", "~nobody-here/x",
    "~\x00x", "/" + "a" * 300, "a/" * 2100, "/dev/null", "/", ".", "http://", "ftp://x",
    "https://example.invalid/x", "http://[::1", "RESTIC_PASSWORD", "1bad-env", "--keep-last",
    "--files-from", "", " ", "a" * 70, "@file:password", "@file:cron.token"])
SCALARS = (st.text(max_size=30) | PLAUSIBLE | st.integers(min_value=-(2**63), max_value=2**63 - 1)
           | st.sampled_from([0, 1, -1, 65535, 65536, 2**31])
           | st.floats(allow_nan=True, allow_infinity=True) | st.booleans()
           | st.datetimes(timezones=st.none() | st.just(dt.UTC)) | st.dates() | st.times())
NAMES = st.text(max_size=12) | st.sampled_from([*RESTIC_KEYS, *JOB_KEYS, "kind", "name"])
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(NAMES, inner, max_size=4), max_leaves=10)
SECRET_VALUES = st.sampled_from(SECRETS).flatmap(lambda s: st.sampled_from([
    [s], {"v": s}, [[s]], [f"rest:https://u:{quote(s, safe='')}@h/r"],
    {"url": f"https://u:{quote(s, safe='')}@h/x"}, f"ftp://u:{quote(s, safe='')}@h/",
    f"https://u:{quote(s, safe='')}@", s + "\x00", 5, s]))

MUTATION = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(KEY_PATHS), VALUES),
    st.tuples(st.just("delete"), st.sampled_from(KEY_PATHS), st.none()),
    st.tuples(st.just("secret"), st.sampled_from(SECRET_PATHS), SECRET_VALUES),
    st.tuples(st.just("rename"), st.sampled_from(KEY_PATHS), st.text(max_size=70)),
)


def _resolve(value: Any, files: Path) -> Any:
    if isinstance(value, str) and value.startswith("@file:"):
        return str(files / value.removeprefix("@file:"))
    if isinstance(value, list):
        return [_resolve(v, files) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, files) for k, v in value.items()}
    return value


def mutate(doc: dict[str, Any], mutation: tuple[str, Path_, Any], files: Path) -> None:
    action, path, value = mutation
    parent: Any = doc
    for step in path[:-1]:
        try:
            parent = parent[step]
        except (KeyError, IndexError, TypeError):
            return  # an earlier mutation removed or replaced the way there
    last = path[-1]
    if isinstance(parent, list):
        if not isinstance(last, int):
            return
        if action in ("set", "secret") and last < len(parent):
            parent[last] = _resolve(value, files)
        elif action in ("set", "secret") and last == len(parent):
            parent.append(_resolve(value, files))
        elif action == "delete" and last < len(parent):
            del parent[last]
        return
    if not isinstance(parent, dict) or not isinstance(last, str):
        return
    if action in ("set", "secret"):
        parent[last] = _resolve(value, files)
    elif action == "delete":
        parent.pop(last, None)
    elif action == "rename" and last in parent and value not in parent:
        parent[value] = parent.pop(last)


# --------------------------------------------------------------------------- properties


def test_the_base_document_is_valid_in_both_spellings(files: Path) -> None:
    doc = base_document(files)
    for text in (dumps_inline(doc), dumps_tables(doc)):
        assert tomllib.loads(text) == doc  # the writer above writes what it is given
        config = load(text, files / "base.toml")
        assert isinstance(config, Config), config
        assert set(config.jobs) == set(JOBS) and len(config.clients) == 2
        assert config.notify.mail and config.notify.pushgateway and config.signing.key_file


@fuzz(400)
@given(mutations=st.lists(MUTATION, min_size=1, max_size=4), spelling=st.booleans())
def test_mutated_documents_load_or_name_a_key(files: Path, mutations: list[Any],
                                              spelling: bool) -> None:
    doc = copy.deepcopy(base_document(files))
    for mutation in mutations:
        mutate(doc, mutation, files)
    text = dumps_tables(doc) if spelling else dumps_inline(doc)
    check(load(text, files / "mutated.toml"), doc)


@fuzz(300)
@given(doc=st.dictionaries(st.sampled_from(TOP_LEVEL[1:]) | NAMES, VALUES, max_size=6))
def test_arbitrary_documents_load_or_name_a_key(files: Path, doc: dict[str, Any]) -> None:
    doc["state_dir"] = str(files / "state")  # never the system's default state directory
    check(load(dumps_inline(doc), files / "arbitrary.toml"), doc)


@fuzz(300)
@given(edits=st.lists(st.tuples(st.sampled_from(["flip", "insert", "delete", "dup"]),
                                st.integers(min_value=0, max_value=10**6),
                                st.binary(min_size=1, max_size=4)), min_size=1, max_size=5))
def test_text_edits_load_or_name_a_key(files: Path, edits: list[tuple[str, int, bytes]]) -> None:
    data = bytearray(dumps_tables(base_document(files)).encode())
    for action, position, extra in edits:
        at = position % len(data)
        if action == "flip":
            data[at] ^= 1 << (position % 8)
        elif action == "insert":
            data[at:at] = extra
        elif action == "delete":
            del data[at:at + len(extra)]
        else:
            line_start = data.rfind(b"\n", 0, at) + 1
            line_end = data.find(b"\n", at) + 1 or len(data)
            data[line_end:line_end] = data[line_start:line_end]
    try:
        doc: dict[str, Any] | None = tomllib.loads(bytes(data).decode())
    except (UnicodeDecodeError, tomllib.TOMLDecodeError):
        doc = None
    check(load(bytes(data), files / "edited.toml"), doc)


# --------------------------------------------------------------------------- found by fuzzing
# Minimal examples of what the properties above found; each names the product line at fault.


@pytest.mark.parametrize(("path", "value"), [
    (("restic", "password"), ["pw-" + CANARY]),
    (("restic", "repository"), [f"rest:https://u:{quote(URL_PASSWORD, safe='')}@h/r"]),
    (("jobs", "nightly", "password"), {"v": PASSWORD}),
    (("notify", "webhooks", "ops", "url"), [f"https://u:{quote(HOOK_PASSWORD, safe='')}@h/"]),
])
def test_a_secret_of_the_wrong_type_is_not_echoed(files: Path, path: Path_, value: Any) -> None:
    """`as_string` reports the value it refused (runner/configuration/tables.py:21 `describe`), so a
    password written as a list ends up in the error, on the terminal and in CI logs."""
    doc = base_document(files)
    mutate(doc, ("secret", path, value), files)
    check(load(dumps_tables(doc), files / "secret.toml"), doc)


@pytest.mark.parametrize(("path", "value"), [
    (("restic", "cacert"), "/" + "a" * 300),
    (("clients", 0, "secret_file"), "a/" * 2100),
    (("jobs", "own-repo", "repository_file"), "~\x00x"),
    (("restic", "cache_dir"), "~\x00x"),
])
def test_impossible_paths_are_config_errors(files: Path, path: Path_, value: str) -> None:
    """A name too long for the file system makes Path.is_file() raise OSError (ENAMETOOLONG;
    runner/configuration/tables.py:163 `_check_readable`), and `~` followed by a NUL makes
    os.path.expanduser raise ValueError (configread.py:159 `_resolve`): both escape as
    tracebacks instead of naming the key."""
    doc = base_document(files)
    mutate(doc, ("set", path, value), files)
    check(load(dumps_tables(doc), files / "paths.toml"), doc)


# --------------------------------------------------------------------------- environment mode

ENV_VARIABLES = (
    "RESTIC_REPOSITORY", "RESTIC_REPOSITORY_FILE", "RESTIC_PASSWORD", "RESTIC_PASSWORD_FILE",
    "RESTIC_CACERT", "RESTIC_CACHE_DIR", "RESTIC_AUTO_UNLOCK", "RESTIC_CHECK_REPOSITORY_STATUS",
    "RESTIC_TAG", "RESTIC_JOB_ARGS", "RESTIC_FORGET_ARGS", "RESTIC_CHECK_ARGS",
    "RESTIC_PRUNE_ARGS", "BACKUP_ROOT_DIR", "BACKUP_CRON", "CHECK_CRON", "FORGET_CRON",
    "PRUNE_CRON", "HOSTNAME", "RCLONE_CONFIG", "HOOK_TIMEOUT", "RESTIC_RUNNER_HOOKS_DIR",
    "METRICS_DIR", "WEBHOOK_URL", "WEBHOOK_TIMEOUT", "WEBHOOK_HEADER_AUTH", "WEBHOOK_ON_ERROR",
    "MAILX_RCPT", "MAILX_ON_ERROR", "SMTP_HOST", "SMTP_PORT", "SMTP_FROM", "SMTP_USER",
    "SMTP_PASSWORD", "SMTP_PASSWORD_FILE", "SMTP_STARTTLS", "SMTP_TLS",
    "RESTIC_RUNNER_PUSHGATEWAY_URL", "RESTIC_RUNNER_PUSHGATEWAY_USER",
    "RESTIC_RUNNER_PUSHGATEWAY_PASSWORD_FILE", "RESTIC_RUNNER_HEALTHCHECKS_URL_FILE",
    "RESTIC_RUNNER_BIND", "RESTIC_RUNNER_CLIENT_SECRET_FILE", "RESTIC_RUNNER_CLIENT_TOKEN_FILE",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "B2_ACCOUNT_KEY",
    "RCLONE_PASS", "LOG_VERBOSE")
ENV_NAMES = st.sampled_from(ENV_VARIABLES) | st.builds(
    lambda prefix, word, rest: prefix + word + rest,
    st.sampled_from(["AWS_", "B2_", "AZURE_", "GOOGLE_", "OS_", "ST_", "RCLONE_"]),
    st.sampled_from(["", "KEY", "SECRET_", "TOKEN_X", "PASS"]),
    st.text(alphabet="ABCZ_019.-", max_size=8))
# what an environment can hold: no NUL; bytes that are not UTF-8 arrive as surrogate escapes
ENV_VALUES = (st.text(max_size=40) | PLAUSIBLE | st.sampled_from(["²", "٣", "0", "ON", "x" * 300])
              | st.binary(max_size=30).map(lambda b: b.decode("utf-8", "surrogateescape"))
              ).map(lambda v: v.replace("\x00", ""))
ENV_SECRETS = ("RESTIC_PASSWORD", "SMTP_PASSWORD", "WEBHOOK_HEADER_AUTH")


def load_environment(environ: dict[str, str]) -> Config | ConfigError:
    with hard_deadline():
        try:
            return load_from_environment(environ)  # type: ignore[no-any-return]
        except ConfigError as error:
            return error


@fuzz(300)
@given(variables=st.dictionaries(ENV_NAMES, ENV_VALUES, max_size=10))
def test_environment_variables_load_or_name_a_variable(files: Path,
                                                        variables: dict[str, str]) -> None:
    environ = {"RESTIC_REPOSITORY": "/srv/restic-repo", **variables,
               "RESTIC_RUNNER_STATE_DIR": str(files / "env-state")}
    outcome = load_environment(environ)
    if isinstance(outcome, Config):
        return
    assert outcome.key, str(outcome)
    for name in ENV_SECRETS:
        value = environ.get(name, "").strip()
        if len(value) >= 10 and value in str(outcome):
            # the message's own wording may equal a generated value ("--files-from"): then it
            # stays when the variable holds something else; a leaked value goes with it
            other = load_environment({**environ, name: "an0ther-v4lue-for-this-check"})
            assert value in str(other), (name, str(outcome))


@pytest.mark.parametrize("variables", [
    {"MAILX_RCPT": "ops@example.invalid", "SMTP_HOST": "127.0.0.1", "SMTP_PORT": "²"},
    {"WEBHOOK_URL": "https://example.invalid/x", "WEBHOOK_TIMEOUT": "²"},
    {"RESTIC_PASSWORD": "pass\udcffword"},
    {"RESTIC_RUNNER_HOOKS_DIR": "/" + "h" * 300},
], ids=["smtp-port-superscript", "webhook-timeout-superscript", "password-not-utf8",
        "hooks-dir-too-long"])
def test_environment_values_that_are_no_config_errors(files: Path,
                                                       variables: dict[str, str]) -> None:
    """`str.isdigit()` is true for "²", which int() refuses
    (runner/configuration/environment.py:292 SMTP_PORT,
    :249 WEBHOOK_TIMEOUT); a password holding a byte that is not UTF-8 cannot be encoded to its
    file (envconfig.py:76 `value.encode()`); a hooks directory name too long for the file system
    makes Path.is_file() raise (envconfig.py:226). Each escapes as a traceback."""
    environ = {"RESTIC_REPOSITORY": "/srv/restic-repo", **variables,
               "RESTIC_RUNNER_STATE_DIR": str(files / "env-state")}
    outcome = load_environment(environ)
    assert isinstance(outcome, Config) or outcome.key
