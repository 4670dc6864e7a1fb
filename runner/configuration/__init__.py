"""Configuration: TOML or restic-backup-helper's variables into frozen, validated objects."""
