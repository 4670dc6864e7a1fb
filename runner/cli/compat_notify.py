"""restic-backup-helper's `notify-test` (docs/compat-commands.md): one test event to mail,
webhooks, both or every target, or a dry run saying what would be sent; its outcome in the
helper's `last-notify-test.json`. `MAILX_RCPT` without an SMTP server is mail the helper had
configured and could not send: so it is here."""

from __future__ import annotations

import time
from typing import Any

from runner.cli.compat_tools import EXIT_USAGE, parser
from runner.cli.output import echo
from runner.cli.peerdoc import on_off, peer_document, write_peer_document
from runner.configuration.config import Config
from runner.configuration.load import load_config


def notify_test(config_file: str | None, args: list[str]) -> int:
    p = parser("notify-test", "One test event to the notification targets; exit 1 if a "
                              "delivery failed, 2 if none is configured.")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--mail", action="store_true", help="mail only")
    which.add_argument("--webhook", action="store_true", help="webhooks only")
    which.add_argument("--all", action="store_true", help="mail and webhooks, both required")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--subject", default="", help="accepted; the test event's text is fixed")
    p.add_argument("--message", default="", help="accepted; the test event's text is fixed")
    opts = p.parse_args(args)
    started = time.time()
    config = load_config(config_file)
    mode = "all" if opts.all else "mail" if opts.mail else "webhook" if opts.webhook else "auto"
    # MAILX_RCPT without an SMTP server: the helper's mail was "configured" (and failed to
    # send); environment mode left mail out, saying why
    unusable_mail = config.problems.get("notify.mail") if config.notify.mail is None else None
    configured = {"mail": config.notify.mail is not None or bool(unusable_mail),
                  "webhook": bool(config.notify.webhooks)}
    requested = {t: mode in ("all", t) or (mode == "auto" and configured[t]) for t in configured}
    results: list[dict[str, Any]] = []
    code = _notify_check(config, mode, configured, requested)
    if code == 0:
        if opts.subject or opts.message:
            echo("note: --subject and --message are not sent: the test event's text is fixed",
                 err=True)
        results = _notify_send(config, mode, requested, unusable_mail, opts.dry_run)
        code = 1 if any(r["result"] == "failed" for r in results) else 0
    outcome = {t: _notify_outcome(results, t) if requested[t] and code != EXIT_USAGE
               else "skipped" for t in configured}
    hooks = config.notify.webhooks
    document = peer_document(config, "notify-test", code, started, {
        "target_mode": mode, "dry_run": on_off(opts.dry_run),
        "mail_requested": on_off(requested["mail"]),
        "webhook_requested": on_off(requested["webhook"]),
        "mail_configured": on_off(configured["mail"]),
        "webhook_configured": on_off(configured["webhook"]),
        "mail_result": outcome["mail"], "webhook_result": outcome["webhook"],
        "mail_rc": int(outcome["mail"] == "failed"),
        "webhook_rc": int(outcome["webhook"] == "failed"),
        "webhook_url": _masked_webhook(hooks[0]) if hooks else "",
        "subject": opts.subject, "message": opts.message}, {"results": results})
    for problem in write_peer_document(config, document):
        echo(f"warning: {problem}", err=True)
    return code


def _notify_check(config: Config, mode: str, configured: dict[str, bool],
                  requested: dict[str, bool]) -> int:
    """EXIT_USAGE (said) when a requested target is not configured, or none is."""
    what = {"mail": "mail ([notify.mail] / MAILX_RCPT)",
            "webhook": "a webhook ([notify.webhooks] / WEBHOOK_URL)"}
    for target, wanted in requested.items():
        if wanted and not configured[target]:
            echo(f"restic-runner: error: --{target}: no {what[target]} is configured", err=True)
            return EXIT_USAGE
    if not (config.notify.any_target or any(requested.values())):
        echo("restic-runner: error: no notification targets configured", err=True)
        return EXIT_USAGE
    return 0


def _notify_send(config: Config, mode: str, requested: dict[str, bool],
                 unusable_mail: str | None, dry_run: bool) -> list[dict[str, Any]]:
    """Send (or preview) the test event to the selected targets; every outcome printed."""
    from notifiers.probe import notify_test as send_tests
    from runner.configuration.notify import NotifySettings
    from runner.engine.history import History

    notify = config.notify
    if mode != "auto":  # mail and/or webhooks only
        notify = NotifySettings(mail=notify.mail if requested["mail"] else None,
                                webhooks=notify.webhooks if requested["webhook"] else (),
                                retry=notify.retry, cli_wait=notify.cli_wait)
        config = config._replace(notify=notify)
    results: list[dict[str, Any]] = []
    if config.notify.any_target:
        history = History(config.state_dir)
        try:
            results = send_tests(config, history, dry_run=dry_run)
        finally:
            history.close()
    if requested["mail"] and unusable_mail:
        results.append({"target": "mail", "result": "dry-run" if dry_run else "failed",
                        "error": unusable_mail})
    for r in results:
        detail = r.get("error") or r.get("response") or ""
        echo(f"{r['target']}: {r['result']}" + (f" ({detail})" if detail else ""))
    return results


def _notify_outcome(results: list[dict[str, Any]], target: str) -> str:
    """The helper's mail_result / webhook_result: delivered, failed, dry-run (failed when one
    of several webhooks failed)."""
    found = [r["result"] for r in results
             if r["target"] == target or r["target"].startswith(f"{target}:")]
    if not found:
        return "skipped"
    return "failed" if "failed" in found else found[0]


def _masked_webhook(hook: Any) -> str:
    from security.urlmask import mask_webhook_url

    return mask_webhook_url(hook.url) if hook.url else f"(from {hook.url_file})"
