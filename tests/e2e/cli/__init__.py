"""`restic-runner` run as a process against real restic (both versions, `ws`), as cron and a
shell run it: the subprocess end-to-end tests of the rooms whose in-process tests are in
tests/runner/."""
