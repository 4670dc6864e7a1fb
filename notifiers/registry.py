"""The configured targets. Adding a target kind is one settings type in
runner/configuration/notify.py, one module here, and one line in `KINDS`."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from runner.configuration.notify import (
    HealthchecksSettings,
    MailSettings,
    PushgatewaySettings,
    TextfileSettings,
    WebhookSettings,
)

if TYPE_CHECKING:
    from notifiers.base import Target
    from runner.configuration.config import Config

# settings type -> the class that delivers to such a target; each is built as
# `cls(settings, config)`, its module imported only when one is configured
KINDS: dict[type, str] = {
    PushgatewaySettings: "notifiers.pushgateway:PushgatewayTarget",
    TextfileSettings: "notifiers.textfile:TextfileTarget",
    WebhookSettings: "notifiers.webhooks:WebhookTarget",
    HealthchecksSettings: "notifiers.healthchecks:HealthchecksTarget",
    MailSettings: "notifiers.mail:MailTarget",
}


def build_targets(config: Config) -> list[Target]:
    """Every target of `[notify]`, in the order `NotifySettings.targets()` gives."""
    targets = []
    for settings in config.notify.targets():
        module, name = KINDS[type(settings)].split(":")
        targets.append(getattr(importlib.import_module(module), name)(settings, config))
    return targets
