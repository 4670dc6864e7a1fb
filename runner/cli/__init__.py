"""The command line: `restic-runner` and its commands, the views they print, the API client."""
