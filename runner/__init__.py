"""restic-runner: run restic and rclone jobs under a lock, record them, mask every secret."""

__version__ = "0.1.0"
