"""Configuration: TOML or restic-backup-helper's environment, read into frozen, validated
objects."""
