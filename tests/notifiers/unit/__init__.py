"""The notifiers' in-process tests: the outbox and its leases on a real history database, no
receiver and no `restic-runner` process (those are the directory above)."""
