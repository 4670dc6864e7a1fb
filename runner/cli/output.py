"""What the command line prints: every line through the redactor, our own errors as one line and
exit 2, a bug as its masked traceback and exit 1. Without click, so `run` can use it."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, NoReturn


def echo(text: str, *, err: bool = False) -> None:
    """Every line the CLI prints goes through the redactor, and shows control characters
    (ESC, CR, ...: from a receiver's answer or a file name) escaped instead of sending them to
    the terminal (its own line ends and tabs stay)."""
    from security.controlchars import printable_lines
    from security.masking import redact_text

    stream = sys.stderr if err else sys.stdout
    stream.write(printable_lines(redact_text(text)) + "\n")
    stream.flush()


def fail(message: str, code: int = 2) -> NoReturn:
    echo(f"restic-runner: error: {message}", err=True)
    sys.exit(code)


def guarded(func: Callable[..., Any]) -> Callable[..., Any]:
    """Our own errors become one clear line and exit 2, never a traceback. A bug still shows
    its traceback (masked like every other output) and exits 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from security.errors import UserError

        try:
            return func(*args, **kwargs)
        except UserError as exc:
            fail(str(exc), exc.exit_code)
        except Exception:
            import traceback

            echo(traceback.format_exc().rstrip(), err=True)
            fail("internal error (the traceback above is masked); please report it", 1)
    return wrapper
