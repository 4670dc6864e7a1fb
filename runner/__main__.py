"""`python -m runner` is `restic-runner`."""

from runner.cli.main import main

main(prog_name="restic-runner")
