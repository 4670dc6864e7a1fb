"""The leak suite: one deployment with every secret-bearing surface configured at once, each
secret a distinct canary with `/ @ : %`, a space and non-ASCII (where HTTP allows: bearer tokens
and header values are ASCII, so those keep `/ @ : %` and carry the rest percent-encoded or in
base64), driven through every path; no canary may appear anywhere it does not belong, in any
encoding.

The deployment (tests/support/leak_scenario.py): a real REST repository (`rclone serve restic` with
basic auth, the password in the URL of `repository_file`), `password_file`, an `env_files` value,
`[[clients]]` with a `whsec_` secret and with a bearer token, a webhook target with `secret_file`
and `auth_header_file`, a healthchecks target (`url_file`), mail through aiosmtpd (STARTTLS +
AUTH), a Pushgateway with basic auth, `metrics_dir` textfiles, an Ed25519 `[signing] key_file`;
`restic-runner serve` running. restic 0.18 only: masking happens in restic-runner, and the
engine's own tests cover both restic versions.

Paths driven: a successful backup (API, signed, with idempotency; CLI `run`; CLI `trigger`), a
failing run over the API (wrong repository password) and from the CLI (a repository URL restic
prints back, password included, in its error), a timed-out run (`trigger --wait` → 124), a run
cancelled over the API and one interrupted with SIGINT, refused credentials (wrong signature,
the key itself as a signature, wrong token, the whsec as a token, Basic, expired, future,
malformed, replay, past the failure limit), every read endpoint and error answer, `doctor`,
`config check`, `notify-test` (also `--dry-run --json`), `status`, `snapshots`, `metrics prune`,
`trigger` with good and bad credential files. A pre hook prints every secret it can see, in
every encoding the redactor promises to mask; restic prints the repository URL, password
included, in an error. The webhook and healthchecks receivers refuse the first attempt of every
run-end notification with an error page that echoes what they got (the Authorization header;
the request line, whose path is the check's credential), as many servers and proxies do; the
retry is accepted, and the delivery errors are recorded.

Encodings looked for (`encoded_forms`): raw UTF-8; URL-encoded (quote and quote_plus, with
and without safe '/', upper- and lower-case hex); JSON-escaped (ensure_ascii both ways, and
with escaped slashes); base64 standard and URL-safe at all three byte offsets inside a larger
blob; quoted-printable (mail bodies are also decoded); and the part before the first ':' or '@',
which is what a parser keeps of a credential it splits (HTTP Basic, URL userinfo).

Who may hold which secret, asserted on /proc/<pid>/cmdline and environ of `serve` and every
descendant (while the slow job's pre hook holds, and again while its restic uploads), of a CLI
`run` and its descendants (the same two moments) and of a waiting `trigger --wait`:

- restic: the repository URL password (inside `RESTIC_REPOSITORY`) and the `env_files` value
  (runner/engine/childenv.py: restic needs them; its password travels as `RESTIC_PASSWORD_FILE`, a
  path);
- the pre hook of `slow`: the `env_files` value only (its `hook_env = ["AWS_SECRET_ACCESS_KEY"]`);
  the pre hook of `slow-cli` (no `hook_env`): nothing. A hook holds what its `hook_env` names,
  nothing by default (docs/runs.md, Hooks);
- `serve`, the gunicorn workers, the launcher, the run supervisors, the deliveries worker, the
  scheduler, a CLI `run` and a CLI `trigger`: nothing (they read secrets into memory, never into
  an environment).

No process may hold any canary in its argv.

Not asserted, on purpose (docs/security.md, "What is not masked"): a hook of a CLI `run` is not
shown the `[[clients]]` files (a `run` process never reads them, so it cannot mask them); forms
beyond those listed in `encoded_forms` (hex, double encoding).
"""

from __future__ import annotations

import base64
import json
import quopri
import re
from urllib.parse import quote, quote_plus

import pytest
from standardwebhooks import Webhook

from tests.support.leaks import (
    AUTH_CREDENTIAL,
    AUTH_HEADER,
    CLIENT_KEY,
    CLIENT_TOKEN,
    CLIENT_WHSEC,
    ENV_VALUE,
    HC_TOKEN,
    ROLE_ALLOWED,
    SMTP_PASSWORD,
    STATIC_CANARIES,
    URL_PASSWORD,
    WEBHOOK_KEY,
    WEBHOOK_WHSEC,
    Canary,
    Evidence,
    Item,
    encoded_forms,
    leaks_in,
)
from tests.support.secrets import CANARY

SURFACES = ("api", "service-log", "state-files", "history-db", "cli-output", "webhook",
            "healthchecks", "mail", "pushgateway", "textfile", "proc-cmdline", "proc-environ")


def items(ev: Evidence, surface: str, where: str = "") -> list[Item]:
    return [i for i in ev.items if i.surface == surface and where in i.where]


def report(ev: Evidence, found: list[Item]) -> list[str]:
    lines = []
    for item in found:
        for name, forms in leaks_in(item.data, ev.canaries, item.allowed).items():
            lines.append(f"canary {name!r} ({', '.join(forms)}) in {item.where}")
    return lines


# --- the detector itself: it must find what it looks for -----------------------------------------

@pytest.mark.parametrize("canary", STATIC_CANARIES, ids=lambda c: c.name)
def test_detector_finds_every_form_in_context(canary: Canary) -> None:
    raw = canary.value.encode()
    samples = {
        "raw": b"x " + raw + b" y",
        "quote": quote(canary.value, safe="").encode(),
        "quote_plus": b"a=" + quote_plus(canary.value).encode() + b"&b",
        "json": json.dumps({"k": canary.value}).encode(),
        "json utf-8": json.dumps({"k": canary.value}, ensure_ascii=False).encode(),
        "quoted-printable": quopri.encodestring(b"log: " + raw),
    }
    for prefix in (b"", b"u", b"us"):  # all three alignments inside a larger blob
        samples[f"basic {prefix!r}"] = b"Basic " + base64.b64encode(prefix + raw + b"!")
        samples[f"urlsafe {prefix!r}"] = base64.urlsafe_b64encode(prefix + raw + b"!")
    for label, sample in samples.items():
        assert canary.name in leaks_in(sample, [canary]), f"{label}: {sample!r}"
    masked = canary.value[:2] + "***"
    assert not leaks_in(masked.encode(), [canary])
    assert not leaks_in(b"x", [canary], frozenset({canary.name}))
    forms = encoded_forms(canary.value)
    assert forms[0] == ("raw UTF-8", raw) and len(forms) >= 5, forms


# --- the scenario happened as intended ---------------------------------------------------------

def test_scenario_ran_to_its_end(evidence: Evidence) -> None:
    print(f"scenario: {evidence.seconds}s, {len(evidence.items)} pieces of output")
    assert not evidence.errors, "\n".join(evidence.errors)
    history = sorted((r["job"], r["status"], r["exit_code"], r["trigger"]["source"])
                     for r in evidence.records)
    assert history == sorted([
        ("badurl", "failed", 1, "cli"), ("cli", "succeeded", 0, "api"),
        ("cli", "succeeded", 0, "cli"), ("nightly", "succeeded", 0, "api"),
        ("slow", "cancelled", 130, "api"), ("slow-cli", "cancelled", 130, "cli"),
        ("timeout", "timed_out", 124, "api"), ("wrong", "failed", 12, "api")]), history
    expected_exits = {
        "run cli": 0, "run badurl": 1, "trigger wrong (token)": 12,
        "trigger timeout (whsec)": 124, "trigger cli (token)": 0, "run slow-cli (SIGINT)": 130,
        "config check": 0, "config check --json": 0, "status": 0, "status --json": 0,
        "doctor": 1, "doctor --json": 1, "notify-test": 0, "notify-test --json": 0,
        "notify-test --dry-run --json": 0, "snapshots": 0, "snapshots --json": 0,
        "snapshots badurl": 1, "metrics prune --dry-run --json": 0,
        "trigger with a wrong token": 2, "trigger with the whsec_ file as a token file": 2,
        "trigger of a missing job": 2, "keys generate ed25519": 0}
    assert {k: evidence.exits.get(k) for k in expected_exits} == expected_exits


def test_bad_credentials_were_refused(evidence: Evidence) -> None:
    statuses = dict(evidence.auth)
    assert evidence.auth[:2] == [("signed request (first)", 200),
                                 ("the same signed request again (replay)", 401)]
    refused = evidence.auth[2:12]  # below the failure limit: each one a plain 401
    assert len(refused) == 10 and all(status == 401 for _, status in refused), refused
    assert 429 in [s for label, s in evidence.auth if label == "another wrong token"]
    assert statuses["valid token while the address is blocked"] == 200


def test_secrets_reached_where_they_belong(evidence: Evidence) -> None:
    """Positive controls: each secret was really in play, so its absence elsewhere means
    something."""
    assert len(evidence.webhooks) >= 25  # start + end (+ its retry) of 8 runs, notify-test
    verifier = Webhook(WEBHOOK_WHSEC.value)
    for headers, body in evidence.webhooks:
        assert headers["Authorization"] == AUTH_HEADER.value
        verifier.verify(body, {k.lower(): v for k, v in headers.items()})
        assert "v1a," in headers["webhook-signature"]
    hc_segment = "/ping/" + quote(HC_TOKEN.value, safe="")
    assert len(evidence.pings) >= 25
    assert all(path.startswith(hc_segment + "/") for path, _, _ in evidence.pings)
    assert ("mailer", SMTP_PASSWORD.value) in evidence.smtp_logins
    assert len(evidence.mails) >= 9  # every end of 8 runs, and notify-test
    jobs = {g["labels"].get("job_name") for g in evidence.pushgateway_groups}
    assert {"nightly", "cli", "wrong", "slow", "timeout"} <= jobs
    assert URL_PASSWORD.name in leaks_in(evidence.control_cmdline, [URL_PASSWORD])


def test_restic_and_hooks_hold_exactly_their_secrets(evidence: Evidence) -> None:
    assert set(evidence.snapshots) == {
        "slow's pre hook holding", "slow's restic uploading", "CLI trigger waiting",
        "CLI run of slow-cli, pre hook holding", "CLI run of slow-cli, restic uploading"}
    environ = items(evidence, "proc-environ")
    roles = {i.role for i in environ}
    # the leaky hook of a concurrent run may be caught too: it holds what its hook_env names
    assert {"service", "cli-run", "cli-trigger", "restic", "hook:gate-env",
            "hook:gate-none"} <= roles <= set(ROLE_ALLOWED), roles
    assert len([i for i in environ if i.role == "service"]) >= 5  # master, 2 workers, ...
    for item in environ:
        held = set(leaks_in(item.data, evidence.canaries))
        if item.role == "restic":
            assert held == {URL_PASSWORD.name, ENV_VALUE.name}, item.where
        elif item.role == "hook:gate-env":
            assert held == {ENV_VALUE.name}, item.where
        else:
            assert held <= ROLE_ALLOWED[item.role], item.where


def test_what_hooks_and_restic_printed_is_masked_in_the_logs(evidence: Evidence) -> None:
    """The pre hook printed every secret in every form; restic printed the repository URL with
    its password: the run logs show the masks, so the redactor was at work, not absent."""
    logs = {i.where.split("/")[2]: i.data.decode() for i in items(evidence, "state-files")
            if i.where.startswith("state_dir/logs/") and i.where.endswith(".log")
            and i.where.count("/") == 3}
    nightly = logs["nightly"]
    for label in ("repository", "restic-password", "aws-secret", "ops.whsec", "ops.auth",
                  "smtp.pw", "pg.pw", "hc.url", "signing.whsk", "airflow.whsec",
                  "cron.token", "RESTIC_PASSWORD", "AWS_SECRET_ACCESS_KEY"):
        shown = re.findall(rf"^leaky {re.escape(label)} \S+: (.*)$", nightly, re.M)
        # ten forms each; printed by the pre hook, and the post hook (no client files)
        times = 1 if label in ("airflow.whsec", "cron.token") else 2
        assert len(shown) == 10 * times, (label, shown)
        assert all("***" in line for line in shown), (label, shown)
    assert re.search(r"^env RESTIC_PASSWORD=\*\*\*$", nightly, re.M)
    assert "env AWS_SECRET_ACCESS_KEY=***" in nightly
    assert "backup:***@127.0.0.1:notaport" in logs["badurl"]
    assert "AWS_SECRET_ACCESS_KEY=***" in logs["slow"]


def test_receivers_error_pages_were_recorded_masked(evidence: Evidence) -> None:
    """The receivers refused each end event once with an error page echoing what they got; the
    delivery errors were recorded without the page (every API client of the job reads them,
    and a masked echo tells a guesser which guess was a secret; the page goes to the log of the
    process that tried, for the operator), and the deliveries were retried."""
    [history] = [i.data for i in items(evidence, "history-db", "table delivery_attempts (")]
    assert history.count(b"answered HTTP 401") == 8 and b"refused Authorization" not in history
    assert history.count(b"answered HTTP 500") == 8 and b"no check at" not in history
    for item in items(evidence, "api"):
        assert b"refused Authorization" not in item.data and b"no check at" not in item.data
    assert len(evidence.records) == 8
    for record in evidence.records:
        ends = {n["target"]: n for n in record["notifications"] if n["event"] != "run.started"}
        for target in ("webhook:ops", "healthchecks:all"):
            assert ends[target]["status"] == "delivered", (record["job"], ends[target])
            assert ends[target]["attempts"] == 2, (record["job"], ends[target])


# --- the leak checks, one surface each ------------------------------------------------------------

@pytest.mark.parametrize("surface", SURFACES)
def test_no_canary_in(evidence: Evidence, surface: str) -> None:
    found = items(evidence, surface)
    assert found, f"nothing was collected for {surface}"
    leaks = report(evidence, found)
    assert not leaks, f"{len(leaks)} leak(s) in {surface}:\n" + "\n".join(leaks)


def test_every_canary_is_distinct_and_well_formed(evidence: Evidence) -> None:
    names = [c.name for c in evidence.canaries]
    assert len(set(names)) == len(names)
    contained = {(AUTH_CREDENTIAL.name, AUTH_HEADER.name),  # the header is "Bearer " + it
                 (CLIENT_KEY.name, CLIENT_WHSEC.name),  # a whsec_ is the base64 of its key
                 (WEBHOOK_KEY.name, WEBHOOK_WHSEC.name)}
    for canary in evidence.canaries:
        for other in evidence.canaries:
            if other is not canary and (canary.name, other.name) not in contained:
                assert not leaks_in(other.value.encode(), [canary]), (canary.name, other.name)
    for canary in STATIC_CANARIES:
        if canary in (CLIENT_TOKEN, AUTH_CREDENTIAL, AUTH_HEADER):  # HTTP header values
            assert all(ch in canary.value for ch in "/@:%") and canary.value.isascii()
        elif canary.value.startswith("whsec_"):  # base64 of bytes that hold the canary
            assert CANARY.encode() in base64.b64decode(canary.value.removeprefix("whsec_"))
        else:
            assert canary.value.endswith(CANARY), canary
