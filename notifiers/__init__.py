"""Notifiers: where runs report, one module per target, through a durable outbox with retries.

Each target implements `notifiers.base.Target`; `notifiers.registry` builds the configured ones;
`notifiers.courier` delivers what `notifiers.outbox` holds."""
