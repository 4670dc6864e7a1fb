"""Notification targets. One module per target behind one small interface; the registry is empty
until the notifier issue lands (pushgateway, webhooks, healthchecks, mail)."""

from __future__ import annotations

REGISTRY: dict[str, type] = {}
