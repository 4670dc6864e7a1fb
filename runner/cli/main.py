"""`restic-runner`: the command line (click). `--version` and `run` reach here only when
`runner.cli.entry` does not answer them itself; imports stay lazy so every command starts fast."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

from runner import __version__
from runner.cli.output import echo, fail, guarded
from runner.cli.run import EXIT_BUSY, run_job


def _config_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--config", "config_file", metavar="FILE", default=None,
                        help="Config file (default: $RESTIC_RUNNER_CONFIG, "
                             "./restic-runner.toml).")(func)


def _config_file(ctx: click.Context, local: str | None) -> str | None:
    return local or (ctx.obj or {}).get("config_file")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="restic-runner", message="%(prog)s %(version)s")
@_config_option
@click.pass_context
def main(ctx: click.Context, config_file: str | None) -> None:
    """Run restic and rclone jobs under a lock; record, mask and report every run."""
    ctx.obj = {"config_file": config_file}


@main.command()
@click.argument("job")
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Print the run record as JSON.")
@click.option("--fail-if-busy", is_flag=True,
              help=f"Exit {EXIT_BUSY} instead of 0 when the job is already running.")
@click.pass_context
@guarded
def run(ctx: click.Context, job: str, config_file: str | None, as_json: bool,
        fail_if_busy: bool) -> None:
    """Run JOB now, in the foreground; exit with the tool's exit code."""
    run_job(job, _config_file(ctx, config_file), as_json=as_json, fail_if_busy=fail_if_busy)


@main.command()
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@guarded
def status(ctx: click.Context, config_file: str | None, as_json: bool) -> None:
    """Last run of every job and what is running now, from local state."""
    from runner.cli.views import status_report, status_table
    from runner.configuration.load import load_config
    from runner.engine.recovery import open_history

    config = load_config(_config_file(ctx, config_file))
    report = status_report(config, open_history(config.state_dir))
    echo(json.dumps(report, indent=2) if as_json else status_table(report))


@main.group("config")
def config_group() -> None:
    """Configuration commands."""


@config_group.command("check")
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@guarded
def config_check(ctx: click.Context, config_file: str | None, as_json: bool) -> None:
    """Validate the configuration only; exit 2 naming the offending key."""
    from runner.cli.views import config_summary
    from runner.configuration.load import load_config
    from runner.errors import ConfigError, UserError

    try:
        config = load_config(_config_file(ctx, config_file))
    except UserError as exc:
        if as_json:
            error: dict[str, Any] = {"message": str(exc)}
            if isinstance(exc, ConfigError):
                error.update(file=exc.file, key=exc.key, problem=exc.problem)
            echo(json.dumps({"schema": "restic-runner.config-check/1", "ok": False,
                              "error": error}, indent=2))
            sys.exit(2)
        fail(str(exc))
    summary = config_summary(config)
    if as_json:
        echo(json.dumps(summary, indent=2))
    else:
        jobs = ", ".join(f"{n} ({j['kind']})" for n, j in summary["jobs"].items()) or "none"
        echo(f"{config.path}: OK · state_dir {config.state_dir} · jobs: {jobs}")
        for warning in summary["warnings"]:
            echo(f"warning: {warning}", err=True)


@main.command()
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--send-test", is_flag=True,
              help="Also send one test event to every notification target (notify-test).")
@click.pass_context
@guarded
def doctor(ctx: click.Context, config_file: str | None, as_json: bool, send_test: bool) -> None:
    """Read-only diagnostics; exit 1 on any failure."""
    from runner.cli.doctor import run_doctor

    report = run_doctor(_config_file(ctx, config_file), send_test=send_test)
    if as_json:
        echo(json.dumps(report, indent=2))
    else:
        for check in report["checks"]:
            echo(f"[{check['status'].upper():4}] {check['section']}: {check['message']}")
        echo(f"{report['failures']} failure(s), {report['warnings']} warning(s)")
    sys.exit(0 if report["ok"] else 1)


@main.command()
@_config_option
@click.pass_context
@guarded
def schedule(ctx: click.Context, config_file: str | None) -> None:
    """Run the embedded scheduler only, in the foreground (serve runs it too)."""
    from runner.configuration.load import load_config
    from runner.engine.recovery import open_history
    from runner.engine.repoinit import prepare_repositories
    from runner.eventlog import setup_logging
    from runner.scheduling.scheduler import serve_scheduler

    config = load_config(_config_file(ctx, config_file))
    open_history(config.state_dir).close()  # the store is usable; dead runs are marked
    setup_logging(config.server.log_format)
    prepare_repositories(config)
    serve_scheduler(config)


@main.command()
@click.argument("job", required=False)
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Print restic's JSON (masked).")
@click.pass_context
@guarded
def snapshots(ctx: click.Context, job: str | None, config_file: str | None,
              as_json: bool) -> None:
    """The snapshots of JOB's repository (default: the first restic job's), newest first."""
    from runner.cli.snapshots import list_snapshots, restic_job, snapshots_table
    from runner.configuration.load import load_config

    config = load_config(_config_file(ctx, config_file))
    found = list_snapshots(restic_job(config, job))
    echo(json.dumps(found, indent=2) if as_json else snapshots_table(found))


@main.command()
@click.argument("snapshot", required=False, default="latest")
@_config_option
@click.option("--target", metavar="DIR", help="Where to restore (made if missing; must be "
              "empty unless --force).")
@click.option("--include", "include", multiple=True, metavar="PATH",
              help="Restore only this path of the snapshot (repeatable).")
@click.option("--exclude", "exclude", multiple=True, metavar="PATH",
              help="Skip this path (repeatable).")
@click.option("--job", metavar="JOB", help="Whose repository (default: the first restic job's).")
@click.option("--tag", default="", help="With `latest`, --since and --list: only this tag.")
@click.option("--host", default="", help="With `latest`, --since and --list: only this host.")
@click.option("--since", default="", metavar="DATE",
              help="The oldest snapshot at or after DATE (YYYY-MM-DD[THH:MM:SS]).")
@click.option("--dry-run", is_flag=True, help="restic restore --dry-run (restic 0.17+).")
@click.option("--verify", is_flag=True, help="Verify the restored files' contents.")
@click.option("--force", is_flag=True, help="Restore into a non-empty target, /, or a backup "
              "source.")
@click.option("--list", "list_only", is_flag=True, help="List the snapshots; restore nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the run record (or the list) "
              "as JSON.")
@click.pass_context
@guarded
def restore(ctx: click.Context, snapshot: str, config_file: str | None, target: str | None,
            include: tuple[str, ...], exclude: tuple[str, ...], job: str | None, tag: str,
            host: str, since: str, dry_run: bool, verify: bool, force: bool, list_only: bool,
            as_json: bool) -> None:
    """Restore SNAPSHOT (an id, or `latest`) into --target, as the job `restore`: locked,
    recorded, masked and notified like any run; exit with restic's exit code."""
    from runner.cli.adhoc import exit_now
    from runner.cli.compat_tools import list_snapshots, run_restore
    from runner.cli.restore import RestoreRequest
    from runner.configuration.load import load_config

    config = load_config(_config_file(ctx, config_file))
    request = RestoreRequest(snapshot=snapshot, target=target or "", include=include,
                             exclude=exclude, tag=tag, host=host, since=since, dry_run=dry_run,
                             verify=verify, force=force, job=job)
    if list_only:
        sys.exit(list_snapshots(config, request, limit=None, as_json=as_json))
    if not target:
        fail("--target is required (where to restore)")
    exit_now(run_restore(config, request, as_json=as_json))


@main.command(context_settings={"ignore_unknown_options": True,
                                "allow_interspersed_args": False,
                                "help_option_names": ["-h", "--help"]})
@click.argument("command", required=False)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@_config_option
@click.option("--list", "list_names", is_flag=True, help="Print the command names, one a line.")
@click.pass_context
@guarded
def compat(ctx: click.Context, command: str | None, args: tuple[str, ...],
           config_file: str | None, list_names: bool) -> None:
    """Run COMMAND, one of restic-backup-helper's /bin commands, with its meaning and flags
    (docs/compat-commands.md)."""
    from runner.cli.compat import names, run_compat

    if list_names:
        echo("\n".join(names()))
        return
    if not command:
        fail("give a command (restic-runner compat --list names them)")
    sys.exit(run_compat(command, list(args), _config_file(ctx, config_file)))


@main.command("notify-test")
@_config_option
@click.option("--dry-run", is_flag=True, help="Show what would be sent; send nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@guarded
def notify_test(ctx: click.Context, config_file: str | None, dry_run: bool,
                as_json: bool) -> None:
    """One test event to every configured target; exit 1 if any delivery failed."""
    from notifiers.probe import notify_test as send_tests
    from runner.configuration.load import load_config
    from runner.engine.history import History

    config = load_config(_config_file(ctx, config_file))
    if not config.notify.any_target:
        fail("no notification targets configured ([notify.*] in the config)")
    results = send_tests(config, History(config.state_dir), dry_run=dry_run)
    if as_json:
        echo(json.dumps({"dry_run": dry_run, "targets": results}, indent=2))
    else:
        for r in results:
            detail = r.get("error") or r.get("response") or ""
            extra = {k: v for k, v in r.items() if k not in ("target", "result", "error",
                                                               "response", "seconds")}
            echo(f"{r['target']}: {r['result']}" + (f" ({detail})" if detail else "")
                  + (f" {json.dumps(extra)}" if dry_run else ""))
    sys.exit(1 if any(r["result"] == "failed" for r in results) else 0)


@main.group("metrics")
def metrics_group() -> None:
    """Metrics commands."""


@metrics_group.command("prune")
@_config_option
@click.option("--dry-run", is_flag=True, help="List the groups; delete nothing.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
@guarded
def metrics_prune(ctx: click.Context, config_file: str | None, dry_run: bool,
                  as_json: bool) -> None:
    """Delete this host's Pushgateway groups of jobs no longer pushed (removed from the config
    or from [notify.pushgateway] jobs)."""
    from notifiers.pushgateway import prune_groups
    from runner.configuration.load import load_config

    config = load_config(_config_file(ctx, config_file))
    if not config.notify.pushgateway:
        fail("no [notify.pushgateway] configured")
    stale = prune_groups(config, dry_run=dry_run)
    if as_json:
        echo(json.dumps({"dry_run": dry_run, "deleted": [] if dry_run else stale,
                          "stale": stale}, indent=2))
    else:
        verb = "would delete" if dry_run else "deleted"
        for group in stale:
            echo(f"{verb} group job=restic_runner hostname={group['hostname']} "
                  f"job_name={group['job_name']}")
        if not stale:
            echo("no groups of jobs no longer pushed")


@metrics_group.command("announce")
@_config_option
@click.pass_context
@guarded
def metrics_announce(ctx: click.Context, config_file: str | None) -> None:
    """Push every job's Pushgateway group now, as serve and schedule do when they start (for a
    host where only cron runs `restic-runner run`). Exit 1 when one is not delivered yet (the
    next run retries it)."""
    from notifiers.announce import announce_now, announced_jobs
    from runner.configuration.load import load_config

    config = load_config(_config_file(ctx, config_file))
    if not config.notify.pushgateway:
        fail("no [notify.pushgateway] configured")
    if not announced_jobs(config):
        fail("[notify.pushgateway] jobs selects no configured job")
    states = announce_now(config)
    for job, state in states.items():
        echo(f"{job}: {state}", err=state != "delivered")
    sys.exit(0 if all(state == "delivered" for state in states.values()) else 1)


@main.command()
@_config_option
@click.option("--bind", metavar="HOST:PORT", help="Listen address (default: [server] bind).")
@click.option("--workers", type=click.IntRange(1, 64), help="gunicorn workers.")
@click.pass_context
@guarded
def serve(ctx: click.Context, config_file: str | None, bind: str | None,
          workers: int | None) -> None:
    """Serve the HTTP API under gunicorn."""
    from runner.configuration.config import parse_bind
    from runner.configuration.load import load_config
    from runner.engine.childenv import resolve_environment
    from runner.engine.recovery import open_history
    from runner.service.clients import load_clients
    from runner.service.server import serve as run_server

    config = load_config(_config_file(ctx, config_file))
    if bind is not None:
        try:
            parse_bind(bind)
        except ValueError as exc:
            fail(f"--bind: {exc}")
    load_clients(config)  # unreadable or world-readable secret files stop us here
    for job in config.jobs.values():
        resolve_environment(job)
    from runner.configuration.notify import read_notify_secrets

    read_notify_secrets(config.notify, config.signing)
    # checks the store and marks dead runs in a child: this process must not hold SQLite state
    # when it forks the launcher (runner.service.launcher)
    _in_child(lambda: open_history(config.state_dir).close())

    from runner.engine.repoinit import prepare_repositories
    from runner.eventlog import setup_logging

    setup_logging(config.server.log_format)
    prepare_repositories(config)  # init_if_missing: only a repository that does not exist
    run_server(config, bind=bind, workers=workers)


def _in_child(func: Callable[[], None]) -> None:
    """Run `func` in a forked child; a UserError there becomes ours."""
    import os

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        from runner.errors import UserError

        try:
            func()
            code = 0
        except UserError as exc:
            os.write(write_end, str(exc).encode())
            code = 2
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        message = f.read().decode()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        fail(message or "cannot open the state directory")


@main.command()
@click.argument("url")
@click.argument("job")
@click.option("--secret-file", type=click.Path(dir_okay=False), help="whsec_ secret: sign the "
              "request (Standard Webhooks).")
@click.option("--token-file", type=click.Path(dir_okay=False), help="Bearer token file.")
@click.option("--wait", "wait_seconds", type=click.FloatRange(0), default=None,
              help="Wait up to SECONDS for the run to end; exit with its exit code.")
@click.option("--idempotency-key", help="Retries with the same key return the same run.")
@click.option("--tag", "tags", multiple=True, help="Extra tag (the job must allow `tags`).")
@click.option("--dry-run", is_flag=True, help="Ask for a dry run (the job must allow it).")
@click.option("--fail-if-busy", is_flag=True,
              help=f"Exit {EXIT_BUSY} instead of 0 when the job is already running.")
@_config_option
@click.pass_context
@guarded
def trigger(ctx: click.Context, url: str, job: str, secret_file: str | None,
            token_file: str | None, wait_seconds: float | None, idempotency_key: str | None,
            tags: tuple[str, ...], dry_run: bool, fail_if_busy: bool,
            config_file: str | None) -> None:
    """Start JOB on the restic-runner at URL; print the run id (and wait, with --wait)."""
    from runner.cli.client import ApiClient, TriggerOutcome

    if bool(secret_file) == bool(token_file):
        fail("give one of --secret-file or --token-file")
    config_file = _config_file(ctx, config_file)
    if config_file:  # not needed to trigger; when given, checked, and its secrets masked
        from runner.configuration.load import load_config

        load_config(config_file)
    params: dict[str, Any] = {}
    if tags:
        params["tags"] = list(tags)
    if dry_run:
        params["dry_run"] = True
    client = ApiClient.from_files(url, secret_file=secret_file, token_file=token_file)
    outcome: TriggerOutcome = client.trigger(job, params, idempotency_key=idempotency_key,
                                             wait=wait_seconds)
    echo(outcome.message, err=outcome.exit_code not in (0,))
    if outcome.busy:
        sys.exit(EXIT_BUSY if fail_if_busy else 0)
    sys.exit(outcome.exit_code)


@main.group("keys")
def keys_group() -> None:
    """Credentials for clients and for signing."""


@keys_group.command("generate")
@click.argument("kind", type=click.Choice(["whsec", "token", "ed25519"]))
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="File to write (mode 0600); ed25519 also writes OUT.pub.")
@click.option("--force", is_flag=True, help="Overwrite existing files.")
@_config_option
@guarded
def keys_generate(kind: str, out: str, force: bool, config_file: str | None) -> None:
    """Generate a whsec_ secret, a bearer token, or an Ed25519 whsk_/whpk_ pair (no config is
    read: --config is accepted, as by every command)."""
    from pathlib import Path

    from security import keys

    path = Path(out)
    try:
        if kind == "whsec":
            keys.write_secret_file(path, keys.new_whsec(), force=force)
        elif kind == "token":
            keys.write_secret_file(path, keys.new_token(), force=force)
        else:
            private, public = keys.new_ed25519()
            keys.write_secret_file(path, private, force=force)
            pub = path.with_name(path.name + ".pub")
            keys.write_secret_file(pub, public, force=force)
            pub.chmod(0o644)  # a public key is no secret
            echo(f"public key: {public} (also in {pub})")
    except FileExistsError:
        fail(f"{path} exists; pass --force to overwrite it")
    echo(f"wrote {path} (mode 0600)")


if __name__ == "__main__":  # pragma: no cover
    main()
