"""The configured targets. Adding a target kind is one module and one line here."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from notifiers.base import Target
    from runner.configuration.config import Config


def build_targets(config: Config) -> list[Target]:
    """Every target of `[notify]`, in a stable order (pushgateway, textfile, webhooks,
    healthchecks, mail)."""
    n = config.notify
    targets: list[Target] = []
    if n.pushgateway:
        from notifiers.pushgateway import PushgatewayTarget

        targets.append(PushgatewayTarget(n.pushgateway))
    if n.metrics_dir:
        from notifiers.textfile import TextfileTarget

        targets.append(TextfileTarget(n.metrics_dir))
    if n.webhooks:
        from notifiers.webhooks import WebhookTarget

        targets += [WebhookTarget(w, config.signing) for w in n.webhooks]
    if n.healthchecks:
        from notifiers.healthchecks import HealthchecksTarget

        targets += [HealthchecksTarget(h) for h in n.healthchecks]
    if n.mail:
        from notifiers.mail import MailTarget

        targets.append(MailTarget(n.mail))
    return targets


def register_secrets(config: Config) -> None:
    """Read every secret file of `[notify]` and `[signing]` now, so the redactor knows their
    values before any output flows (a hook that prints one is masked like restic's output)."""
    from runner.configuration.notify import secret_files
    from security.masking import register_header_credential, register_secret
    from security.secretfiles import read_secret_file

    for key, path in secret_files(config.notify, config.signing):
        for line in read_secret_file(path, key).splitlines():  # several whsec_ lines
            if key.endswith("auth_header_file"):
                register_header_credential(line.strip())
            else:
                register_secret(line.strip())
