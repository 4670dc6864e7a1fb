"""restic-runner: run restic and rclone jobs under a lock, record them, mask every secret.

Rooms, lowest first: `configuration`, `engine`, `scheduling`, `service`, `cli` (each imports
only rooms below it); `errors`, `fsutil` and `eventlog` are shared by all of them."""

__version__ = "0.1.0"
