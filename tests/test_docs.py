"""The documentation against the code: every relative link resolves (headings included), and
every configuration key, environment variable, metric family and alert the code knows is
documented. The sets come from the code itself (the real loader, the real exposition), so a
new key, variable or metric without documentation fails here."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from notifiers.metrics import STAT_METRICS, exposition
from runner.configuration import tables
from runner.configuration.config import DRY_RUN_KINDS, JOB_KINDS, parse_config
from runner.configuration.environment import build, load_from_environment, wants_environment
from runner.engine.history import History
from runner.engine.record import new_record, utc_now

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
MARKDOWN = sorted([ROOT / "README.md", *DOCS.glob("*.md")])

# --- reading Markdown --------------------------------------------------------------------------

_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")
_LINK = re.compile(r"\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def numbered_prose(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of the lines outside fenced code blocks."""
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        match = _FENCE.match(line)
        if match:
            if fence is None:
                fence = match.group(1)
            elif match.group(1) == fence:
                fence = None
            continue
        if fence is None:
            yield number, line


def prose_lines(text: str) -> Iterator[str]:
    return (line for _, line in numbered_prose(text))


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: rendered text, lower case, punctuation dropped,
    spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    counts: dict[str, int] = {}
    for line in prose_lines(path.read_text(encoding="utf-8")):
        match = _HEADING.match(line)
        if match:
            slug = github_slug(match.group(2))
            n = counts.get(slug, 0)
            counts[slug] = n + 1
            found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def links(path: Path) -> Iterator[tuple[int, str]]:
    """(line number, target) of every inline link outside code."""
    for number, line in numbered_prose(path.read_text(encoding="utf-8")):
        for link in _LINK.finditer(_CODE_SPAN.sub("code", line)):
            yield number, link.group(1)


def code_spans(text: str) -> list[str]:
    spans: list[str] = []
    for line in prose_lines(text):
        spans += [m.group(2).strip() for m in _CODE_SPAN.finditer(line)]
    return spans


def section(path: Path, heading_start: str) -> str:
    """The text under the first heading line that starts with `heading_start`, up to the next
    heading of any level."""
    out: list[str] = []
    inside = False
    for line in prose_lines(path.read_text(encoding="utf-8")):
        if _HEADING.match(line):
            if inside:
                break
            inside = line.startswith(heading_start)
            continue
        if inside:
            out.append(line)
    assert inside or out, f"{path.name}: no heading starting with {heading_start!r}"
    return "\n".join(out)


def documents_key(text: str, key: str) -> bool:
    """`key` appears as a code span: `key`, `[key]`, `[[key]]` or `key = …`."""
    for span in (m.group(2).strip() for m in _CODE_SPAN.finditer(text)):
        if span in (key, f"[{key}]", f"[[{key}]]") or re.match(rf"{re.escape(key)}\s*=", span):
            return True
    return False


# --- links -------------------------------------------------------------------------------------

def test_every_relative_link_resolves() -> None:
    broken = []
    for page in MARKDOWN:
        for number, target in links(page):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, …
                continue
            raw_path, _, fragment = target.partition("#")
            resolved = (page.parent / raw_path).resolve() if raw_path else page
            if not resolved.is_relative_to(ROOT):
                broken.append(f"{page.relative_to(ROOT)}:{number}: {target}: outside the "
                              "repository (breaks in a clone)")
                continue
            where = f"{page.relative_to(ROOT)}:{number}: {target}"
            if not resolved.exists():
                broken.append(f"{where}: no such file")
                continue
            if fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
                broken.append(f"{where}: no heading with that anchor in {resolved.name}")
    assert not broken, "\n".join(broken)


def test_the_slugs_follow_github() -> None:
    assert github_slug("`[restic]` — defaults for every restic job") == \
        "restic--defaults-for-every-restic-job"
    assert github_slug("Metric families (the same on `/metrics`, the Pushgateway and "
                       "textfiles)") == \
        "metric-families-the-same-on-metrics-the-pushgateway-and-textfiles"
    assert github_slug("`[jobs.<name>]`") == "jobsname"


def test_the_index_links_every_page() -> None:
    linked = {target.partition("#")[0] for _, target in links(DOCS / "index.md")}
    pages = {p.name for p in DOCS.glob("*.md")} - {"index.md"}
    assert pages <= linked, sorted(pages - linked)


# --- configuration keys ------------------------------------------------------------------------

CONFIGURATION = DOCS / "configuration.md"
# table (as the loader names it, normalised) -> the heading of configuration.md documenting it
SECTIONS = {
    "": "## Top level",
    "server": "## `[server]`",
    "clients": "## `[[clients]]`",
    "restic": "## `[restic]`",
    "rclone": "## `[rclone]`",
    "notify": "## `[notify]`",
    "notify.pushgateway": "### `[notify.pushgateway]`",
    "notify.webhooks": "### `[notify.webhooks.<name>]`",
    "notify.healthchecks": "### `[notify.healthchecks.<name>]`",
    "notify.mail": "### `[notify.mail]`",
    "signing": "## `[signing]`",
    "history": "## `[history]`",
}
COMMON_JOB_KEYS_HEADING = "### Keys of every kind"


def every_table(tmp_path: Path) -> dict[str, Any]:
    """A configuration with every table and every job kind: what the loader reads for each."""
    secret = tmp_path / "secret"
    secret.write_text("s3cret-value-0123\n")
    secret.chmod(0o600)
    url = "http://127.0.0.1:9/x"
    jobs: dict[str, Any] = {f"job-{kind}": {"kind": kind, "args": ["--keep-last", "1"]}
                            for kind in JOB_KINDS}
    jobs["job-backup"]["paths"] = ["/data"]
    return {
        "state_dir": str(tmp_path / "state"),
        "restic": {"repository": "/repo", "password_file": str(secret)},
        "rclone": {},
        "jobs": jobs,
        "server": {},
        "clients": [{"name": "c", "jobs": ["*"], "token_file": str(secret)}],
        "notify": {
            "pushgateway": {"url": url},
            "webhooks": {"ops": {"url": url}},
            "healthchecks": {"hc": {"url": url}},
            "mail": {"host": "smtp.example.org", "from": "a@example.org",
                     "to": ["b@example.org"]},
        },
        "signing": {},
    }


@pytest.fixture
def accepted_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """Table name (normalised; jobs as `jobs.<kind>`) -> every key the real loader asked for,
    which is exactly what it accepts (`Table.finish` refuses the rest)."""
    recorded: list[tuple[str, frozenset[str]]] = []
    finish = tables.Table.finish

    def recording_finish(self: tables.Table, allowed_hint: str = "") -> None:
        recorded.append((self.name, frozenset(self.seen)))
        finish(self, allowed_hint)

    monkeypatch.setattr(tables.Table, "finish", recording_finish)
    data = every_table(tmp_path)
    kind_of = {name: job["kind"] for name, job in data["jobs"].items()}
    parse_config(data, tmp_path / "restic-runner.toml")
    keys: dict[str, set[str]] = {}
    for name, seen in recorded:
        if name.startswith("jobs."):
            bucket = f"jobs.{kind_of[name.removeprefix('jobs.')]}"
        elif re.fullmatch(r"clients\[\d+\]", name):
            bucket = "clients"
        elif name.startswith(("notify.webhooks.", "notify.healthchecks.")):
            bucket = name.rsplit(".", 1)[0]
        else:
            bucket = name
        keys.setdefault(bucket, set()).update(seen)
    assert {f"jobs.{kind}" for kind in JOB_KINDS} <= set(keys), sorted(keys)
    return keys


def test_every_table_key_is_in_configuration_md(accepted_keys: dict[str, set[str]]) -> None:
    missing = []
    for bucket, keys in sorted(accepted_keys.items()):
        if bucket.startswith("jobs."):
            continue
        assert bucket in SECTIONS, (f"the loader reads a table {bucket!r} that configuration.md "
                                    "has no section for (add one, and map it in SECTIONS)")
        text = section(CONFIGURATION, SECTIONS[bucket])
        missing += [f"{bucket or '<top level>'}: {key}" for key in sorted(keys)
                    if not documents_key(text, key)]
    assert not missing, "undocumented keys:\n" + "\n".join(missing)


def test_every_job_key_is_in_configuration_md(accepted_keys: dict[str, set[str]]) -> None:
    tool_keys = accepted_keys["restic"] | accepted_keys["rclone"]
    per_kind = {kind: accepted_keys[f"jobs.{kind}"] - tool_keys for kind in JOB_KINDS}
    common = set.intersection(*per_kind.values())
    assert {"kind", "args", "timeout", "schedule"} <= common
    missing = [f"every kind: {key}" for key in sorted(common)
               if not documents_key(section(CONFIGURATION, COMMON_JOB_KEYS_HEADING), key)]
    text = CONFIGURATION.read_text(encoding="utf-8")
    for kind in JOB_KINDS:
        heading = next((line for line in prose_lines(text) if _HEADING.match(line)
                        and f'`kind = "{kind}"`' in line), None)
        if heading is None:
            missing.append(f'{kind}: no heading naming `kind = "{kind}"`')
            continue
        kind_text = section(CONFIGURATION, heading)
        missing += [f"{kind}: {key}" for key in sorted(per_kind[kind] - common)
                    if not documents_key(kind_text, key)]
    # a restic kind takes every [restic] key, replicate every [rclone] key: documented there
    for kind in JOB_KINDS:
        assert accepted_keys[f"jobs.{kind}"] & tool_keys in (accepted_keys["restic"],
                                                            accepted_keys["rclone"]), kind
    assert not missing, "undocumented job keys:\n" + "\n".join(missing)


# --- environment variables ---------------------------------------------------------------------

class RecordingEnviron(Mapping[str, str]):
    """An environment that notes every name the code looks up."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.read: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.read.add(name)
        return self.values[name]

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self.read.add(name)
        return name in self.values

    def get(self, name: str, default: Any = None) -> Any:  # type: ignore[override]
        self.read.add(name)
        return self.values.get(name, default)

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def _name_like_constants(module: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                and re.fullmatch(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+", node.value):
            names.add(node.value)
    return names


def variables_read(tmp_path: Path) -> set[str]:
    """Every variable `runner.configuration.environment` (and its env*.py modules) reads, with
    everything set, with the inline forms instead of the `*_FILE` ones, with nearly nothing set,
    and through the real loader."""
    candidates = set().union(*(_name_like_constants(module) for module in
                               (ROOT / "runner" / "configuration").glob("env*.py")))
    job_file = tmp_path / "replicate_jobs.txt"
    job_file.write_text("/src;/dst;sync\n")
    password = tmp_path / "password"
    password.write_text("pw-0123456789\n")
    password.chmod(0o600)
    specific = {"REPLICATE_JOB_FILE": str(job_file), "SMTP_PORT": "25", "HOOK_TIMEOUT": "60",
                "WEBHOOK_TIMEOUT": "10", "RESTIC_TAG": "tag", "SMTP_TLS": "off"}
    everything = {name: specific.get(name, "1") for name in candidates}
    inline = {name: value for name, value in everything.items()
              if not (name.endswith("_FILE") and name.removesuffix("_FILE") in candidates)}
    read: set[str] = set()
    for values in (everything, inline, {"RESTIC_REPOSITORY": "/repo"}):
        environ = RecordingEnviron(values)
        assert wants_environment(environ)
        build(environ, tmp_path / "state")
        read |= environ.read
    environ = RecordingEnviron({"RESTIC_REPOSITORY": "/repo",
                                "RESTIC_PASSWORD_FILE": str(password),
                                "BACKUP_ROOT_DIR": "/data",
                                "RESTIC_RUNNER_STATE_DIR": str(tmp_path / "state")})
    load_from_environment(environ)
    return read | environ.read


def test_every_environment_variable_is_in_migration_md(tmp_path: Path) -> None:
    read = variables_read(tmp_path)
    assert {"RESTIC_REPOSITORY", "BACKUP_CRON", "SMTP_HOST", "NFS_TARGET",
            "RESTIC_RUNNER_STATE_DIR"} <= read  # the recorder sees what it should
    documented = set(code_spans((DOCS / "migration.md").read_text(encoding="utf-8")))
    documented |= {name for span in documented for name in re.split(r"[ ,=]+", span)}
    missing = sorted(read - documented)
    assert not missing, \
        f"variables read by runner/configuration/environment.py, not in migration.md: {missing}"


# --- metrics -----------------------------------------------------------------------------------

METRICS_DOC = DOCS / "metrics.md"
_METRIC_NAME = re.compile(r"[a-z_][a-z0-9_]*")


def exported_sample_names(tmp_path: Path) -> set[str]:
    """The sample names of the real exposition: one job of every kind, each with a finished run
    carrying every stat the code turns into a metric, and a running one."""
    secret = tmp_path / "password"
    secret.write_text("pw-0123456789\n")
    jobs: dict[str, Any] = {f"job-{kind}": {"kind": kind, "args": ["--keep-last", "1"]}
                            for kind in JOB_KINDS}
    jobs["job-backup"]["paths"] = ["/data"]
    for kind in DRY_RUN_KINDS:  # with a dry run each: its families are apart
        jobs[f"job-{kind}"]["params"] = ["dry_run"]
    config = parse_config({"state_dir": str(tmp_path / "state"), "hostname": "docs-host",
                           "restic": {"repository": "/repo", "password_file": str(secret)},
                           "jobs": jobs}, tmp_path / "restic-runner.toml")
    history = History(config.state_dir)
    for name, job in config.jobs.items():
        ended = new_record(job=name, kind=job.kind, hostname=config.hostname, repository=None,
                           trigger={"source": "cli"}, version="0")
        ended.update(status="succeeded", exit_code=0, finished_at=utc_now(),
                     duration_seconds=1.0,
                     stats={stat: 1 for stat in STAT_METRICS.get(job.kind, {})})
        history.insert(ended)
        if job.kind in DRY_RUN_KINDS:
            dry = new_record(job=name, kind=job.kind, hostname=config.hostname,
                             repository=None, trigger={"source": "cli"}, version="0",
                             dry_run=True)
            dry.update(status="succeeded", exit_code=0, finished_at=utc_now())
            history.insert(dry)
        history.insert(new_record(job=name, kind=job.kind, hostname=config.hostname,
                                  repository=None, trigger={"source": "cli"}, version="0"))
    text = exposition(config, history).decode()
    history.close()
    return {sample.name for family in text_string_to_metric_families(text)
            for sample in family.samples}


def literal_family_names() -> set[str]:
    """Families the code names with a literal (`GaugeMetricFamily("name", …)`), anywhere."""
    names = set()
    for package in ("runner", "notifiers"):
        for module in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Call) and node.args \
                        and isinstance(node.args[0], ast.Constant) \
                        and isinstance(node.args[0].value, str):
                    func = node.func
                    called = func.attr if isinstance(func, ast.Attribute) else \
                        getattr(func, "id", "")
                    if called.endswith("MetricFamily"):
                        suffix = "_total" if called.startswith("Counter") else ""
                        names.add(node.args[0].value + suffix)
    return names


def documented_metric_names() -> set[str]:
    """Code spans of metrics.md that name a metric; `restic_<kind>_…` stands for every kind,
    `restic_<dry-run kind>_…` for each kind that has a dry run."""
    kinds = [kind.replace("-", "_") for kind in JOB_KINDS]
    names = set()
    for span in code_spans(METRICS_DOC.read_text(encoding="utf-8")):
        span = span.replace("<dry-run kind>", "<dry-kind>")
        if "<dry-kind>" in span:
            expanded = [span.replace("<dry-kind>", k) for k in sorted(DRY_RUN_KINDS)]
        else:
            expanded = [span.replace("<kind>", k) for k in kinds] if "<kind>" in span else [span]
        for name in expanded:
            if _METRIC_NAME.fullmatch(name):
                names.add(name)
    return names


def test_every_metric_family_is_in_metrics_md(tmp_path: Path) -> None:
    exported = exported_sample_names(tmp_path)
    assert {"restic_backup_last_data_added_bytes", "restic_restore_test_running_since_timestamp",
            "restic_runner_notification_failures_total"} <= exported
    missing = sorted((exported | literal_family_names()) - documented_metric_names())
    assert not missing, f"metrics exported but not in metrics.md: {missing}"


def test_metrics_md_names_no_metric_that_does_not_exist(tmp_path: Path) -> None:
    known = exported_sample_names(tmp_path) | literal_family_names()
    pushgateway = {"push_time_seconds", "push_failure_time_seconds"}
    stale = sorted(name for name in documented_metric_names()
                   if name.startswith("restic_") and name not in known | pushgateway)
    assert not stale, f"metrics.md names metrics the code does not export: {stale}"


def test_every_alert_is_in_metrics_md() -> None:
    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "restic-runner.rules.yml")
                           .read_text(encoding="utf-8"))
    rows = {line.split("|")[1].strip().strip("`"): line
            for line in prose_lines(section(METRICS_DOC, "## Alerts"))
            if line.startswith("| `")}
    wrong = []
    for group in rules["groups"]:
        for rule in group["rules"]:
            if "alert" not in rule:
                continue
            row = rows.get(rule["alert"])
            cells = [c.strip() for c in row.split("|")] if row else []
            if not row:
                wrong.append(f"{rule['alert']}: no row")
            elif cells[-2] != rule["labels"]["severity"] or cells[-3] != rule.get("for", "–"):
                wrong.append(f"{rule['alert']}: for/severity differ: {cells[-3:-1]}")
    assert not wrong, "\n".join(wrong)


def _commands(group: Any, prefix: str = "") -> list[str]:
    import click

    names = []
    for name, command in group.commands.items():
        full = f"{prefix}{name}"
        if isinstance(command, click.Group):
            names += _commands(command, f"{full} ")
        else:
            names.append(full)
    return names


def test_every_cli_command_is_in_cli_md() -> None:
    from runner.cli.main import main

    text = (DOCS / "cli.md").read_text()
    commands = _commands(main)
    assert len(commands) >= 11
    missing = [c for c in commands if f"`restic-runner {c}" not in text]
    assert not missing, f"docs/cli.md does not describe: {missing}"
