"""`[notify.*]` and `[signing]`: validated like the rest, errors naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.configuration.config import Config
from tests.support.config import config_error, parse_minimal

JOB = {"jobs": {"nightly": {"kind": "check"}}}


@pytest.mark.parametrize(("notify", "key", "expected"), [
    ({"pushgateway": {}}, "notify.pushgateway.url", "missing"),
    ({"pushgateway": {"url": "ftp://x"}}, "notify.pushgateway.url", "http:// or https://"),
    ({"pushgateway": {"url": "http://pg:9091", "username": "u"}},
     "notify.pushgateway.password_file", "both username and password_file"),
    ({"pushgateway": {"url": "http://pg:9091", "instance": "x"}},
     "notify.pushgateway.instance", "unknown key"),
    ({"webhooks": {"ops": {}}}, "notify.webhooks.ops.url", "missing"),
    ({"webhooks": {"ops": {"url": "https://x/y", "on": ["failed"]}}},
     "notify.webhooks.ops.on", "start | success | warning | failure | skipped"),
    ({"webhooks": {"ops": {"url": "https://x/y", "jobs": ["nope"]}}},
     "notify.webhooks.ops.jobs", "no job named 'nope'"),
    ({"webhooks": {"ops": {"url": "https://x/y", "secret_file": "/missing/whsec"}}},
     "notify.webhooks.ops.secret_file", "does not exist"),
    ({"webhooks": {"ops": {"url": "https://x/y", "url_file": "/missing"}}},
     "notify.webhooks.ops.url_file", "not both"),
    ({"webhooks": {"ops": {"url": "https://x/y", "timeout": "soon"}}},
     "notify.webhooks.ops.timeout", "a duration"),
    ({"healthchecks": {"n": {"url": "https://hc-ping.com/u", "create": "yes"}}},
     "notify.healthchecks.n.create", "true or false"),
    ({"mail": {"host": "smtp", "from": "a@b", "to": ["c@d"], "tls": True, "starttls": True}},
     "notify.mail.starttls", "not both"),
    ({"mail": {"host": "smtp", "from": "a@b"}}, "notify.mail.to", "missing"),
    ({"mail": {"host": "smtp", "from": "a@b", "to": ["c@d"], "port": 70000}},
     "notify.mail.port", "a TCP port"),
    ({"retry_initial": "-1s"}, "notify.retry_initial", "a duration"),
    ({"slack": {}}, "notify.slack", "unknown key"),
])
def test_notify_errors_name_the_key(tmp_path: Path, notify: dict, key: str,
                                    expected: str) -> None:
    error = config_error(tmp_path, {**JOB, "notify": notify})
    assert error.key == key, error
    assert expected in str(error)


def test_a_url_with_a_password_is_not_repeated_in_errors(tmp_path: Path) -> None:
    error = config_error(tmp_path, {**JOB, "notify": {"webhooks": {"ops": {
        "url": "ftp://user:s3cr3t-pw@host/x"}}}})
    assert "s3cr3t-pw" not in str(error)


def test_signing_key_file_must_exist(tmp_path: Path) -> None:
    error = config_error(tmp_path, {**JOB, "signing": {"key_file": "missing.whsk"}})
    assert error.key == "signing.key_file"


def test_a_full_notify_section(tmp_path: Path) -> None:
    secret = tmp_path / "s"
    secret.write_text("x")
    config = parse_minimal(tmp_path, {**JOB, "notify": {
        "metrics_dir": "metrics", "retry_give_up_after": "2h", "cli_wait": 0,
        "pushgateway": {"url": "http://127.0.0.1:9091"},
        "webhooks": {"a": {"url": "https://a.example/x", "on": ["failure"]},
                     "b": {"url_file": str(secret), "jobs": ["nightly"]}},
        "healthchecks": {"n": {"url": "https://hc-ping.com/abc", "jobs": ["nightly"]}},
        "mail": {"host": "smtp", "from": "a@b", "to": ["c@d"], "tls": True},
    }})
    assert isinstance(config, Config)
    n = config.notify
    assert [t.target for t in n.targets()] == ["pushgateway", "textfile", "webhook:a", "webhook:b",
                               "healthchecks:n", "mail"]
    assert n.metrics_dir == tmp_path / "metrics"
    assert n.retry.give_up_after == 7200 and n.retry.initial == 5 and n.cli_wait == 0
    assert n.mail is not None and n.mail.effective_port == 465
    assert n.webhooks[0].filters.wants("failure", "nightly")
    assert not n.webhooks[0].filters.wants("success", "nightly")
    assert config.jobs["nightly"].max_age == 8 * 86400
