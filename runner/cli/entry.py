"""The `restic-runner` console script. `--version` and `run`, what cron calls, are answered
without loading click (its import alone is half the cron path's budget). Every other command,
and every `run` argument list this reader does not take exactly, goes to click
(`runner.cli.main`), which stays the one definition of the command line, its help and errors;
tests/runner/cli/test_entry.py checks both read `run` the same way. No `from __future__ import
annotations` here: NamedTuple would compile each string annotation on every start."""

import sys
from typing import NamedTuple

RUN_FLAGS = {"--json": "as_json", "--fail-if-busy": "fail_if_busy"}


class RunArgs(NamedTuple):
    job: str
    config_file: str | None
    as_json: bool
    fail_if_busy: bool


def _config_value(args: list[str], i: int) -> tuple[str, int] | None:
    """The value of the `--config` option at `args[i]` and the index after it."""
    if args[i].startswith("--config="):
        return args[i].removeprefix("--config="), i + 1
    if i + 1 < len(args):
        return args[i + 1], i + 2
    return None


def parse_run(args: list[str]) -> RunArgs | None:
    """`[--config FILE] run JOB [--config FILE] [--json] [--fail-if-busy]`, in any order after
    `run`; None for anything else (help, `--`, an unknown or repeated option, a value that
    looks like an option), which click then reads."""
    i, config_file = 0, None
    if args and (args[0] == "--config" or args[0].startswith("--config=")):
        found = _config_value(args, 0)
        if found is None:
            return None
        config_file, i = found
    if i >= len(args) or args[i] != "run":
        return None
    job, local_config, flags = None, None, {"as_json": False, "fail_if_busy": False}
    i += 1
    while i < len(args):
        arg = args[i]
        if arg in RUN_FLAGS and not flags[RUN_FLAGS[arg]]:
            flags[RUN_FLAGS[arg]] = True
            i += 1
        elif (arg == "--config" or arg.startswith("--config=")) and local_config is None:
            found = _config_value(args, i)
            if found is None:
                return None
            local_config, i = found
        elif not arg.startswith("-") and job is None:
            job, i = arg, i + 1
        else:
            return None
    for value in (config_file, local_config):
        if value is not None and (value.startswith("-") or not value):
            return None
    if job is None:
        return None
    return RunArgs(job, local_config or config_file, **flags)


def main() -> None:
    args = sys.argv[1:]
    if args == ["--version"]:
        from runner import __version__

        sys.stdout.write(f"restic-runner {__version__}\n")
        return
    run = parse_run(args)
    if run is not None:
        from runner.cli.run import run_job

        run_job(run.job, run.config_file, as_json=run.as_json, fail_if_busy=run.fail_if_busy)
    from runner.cli.main import main as click_main

    click_main(prog_name="restic-runner")
