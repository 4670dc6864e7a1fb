"""The console script reads `run` itself, without click (runner/cli/entry.py). Whatever it
accepts, click must read the same way; what it refuses goes to click unchanged."""

from __future__ import annotations

from typing import Any

import click
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runner.cli import entry
from runner.cli import main as cli_main

TOKENS = ["run", "nightly", "other", "--json", "--fail-if-busy", "--config", "a.toml",
          "--config=b.toml", "--config=", "-x", "--", "-h", "--help", "status", "--version"]


def click_reads(args: list[str], monkeypatch: pytest.MonkeyPatch) -> entry.RunArgs | None:
    """What click hands `run_job` for `args`; None when click does not run a job with them."""
    seen: list[entry.RunArgs] = []

    def fake_run_job(job: str, config_file: str | None, *, as_json: bool,
                     fail_if_busy: bool) -> None:
        seen.append(entry.RunArgs(job, config_file, as_json, fail_if_busy))

    monkeypatch.setattr(cli_main, "run_job", fake_run_job)
    try:
        cli_main.main.main(args, prog_name="restic-runner", standalone_mode=False)
    except (click.exceptions.ClickException, click.exceptions.Exit, SystemExit):
        return None
    except Exception:  # another command ran for real (status without a config): not `run`
        return None
    return seen[0] if seen else None


@pytest.mark.parametrize(("args", "expected"), [
    (["run", "nightly"], entry.RunArgs("nightly", None, False, False)),
    (["run", "nightly", "--json", "--fail-if-busy"], entry.RunArgs("nightly", None, True, True)),
    (["--config", "a.toml", "run", "nightly"], entry.RunArgs("nightly", "a.toml", False, False)),
    (["--config=a.toml", "run", "--config", "b.toml", "nightly"],
     entry.RunArgs("nightly", "b.toml", False, False)),
    (["run", "--json", "nightly"], entry.RunArgs("nightly", None, True, False)),
    (["run"], None),
    (["run", "nightly", "--help"], None),
    (["run", "--", "nightly"], None),
    (["run", "nightly", "other"], None),
    (["run", "nightly", "--json", "--json"], None),
    (["run", "nightly", "--config"], None),
    (["status"], None),
])
def test_the_lines_cron_sends(args: list[str], expected: Any,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    assert entry.parse_run(args) == expected
    if expected is not None:
        assert click_reads(args, monkeypatch) == expected


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=7))
def test_whatever_the_fast_reader_takes_click_reads_the_same(args: list[str]) -> None:
    fast = entry.parse_run(args)
    if fast is None:
        return  # click reads it, as before
    with pytest.MonkeyPatch.context() as monkeypatch:
        assert click_reads(args, monkeypatch) == fast
