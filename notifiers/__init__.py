"""Where runs report: one module per target kind behind one small interface
(`notifiers.base.Target`), a registry that builds the configured targets, and a durable outbox
(`notifiers.outbox`) from which a courier (`notifiers.courier`) delivers with retries."""
