"""`python -m runner` is `restic-runner`."""

from runner.cli import main

main(prog_name="restic-runner")
