"""restic-runner: run restic and rclone jobs under a lock, record them, mask every secret.

Rooms, lowest first (each imports only the rooms below it; docs/architecture.md):
`configuration`, `engine`, `scheduling`, `service`, `cli`, with `errors`, `fsutil`,
`eventlog` and `checks` shared by all, and the top-level packages `security` (below
everything) and `notifiers` (between the engine and scheduling)."""

__version__ = "0.1.0"
