"""Errors a user can act on: one clear message each, turned into exit 2 by the CLI."""

from __future__ import annotations

from security.errors import UserError

__all__ = ["ConfigError", "UserError"]


class ConfigError(UserError):
    """A configuration problem, located by file and dotted key."""

    def __init__(self, file: str, key: str, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {problem}")
