"""`python -m runner` is `restic-runner`."""

from runner.cli.entry import main

main()
