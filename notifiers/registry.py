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
