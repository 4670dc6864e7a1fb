"""What a job kind's builder gives the engine: one step, an argv and the parser of its output."""

from collections.abc import Callable
from typing import NamedTuple

from runner.engine.jobs.output import OutputParser


class StepSpec(NamedTuple):
    name: str
    argv: tuple[str, ...]
    parser: Callable[[], OutputParser]
    # Only run when every earlier step that decides the outcome succeeded (exit 0).
    needs_success: bool = False
    # False for follow-up steps (forget after backup) whose result is recorded but does not
    # change the run's status or exit code.
    decides_outcome: bool = True
    warning_codes: frozenset[int] = frozenset()
    # Runs even after a failed step (clean-up).
    always: bool = False
    # The replicate job-file line this rclone call belongs to (recorded in the step, with the
    # call's own stats): runner.engine.jobs.replicatelines.
    line: int | None = None
