"""The error a user can act on: one clear message, exit 2 from the CLI, a problem from the API.
It lives in the lowest room so every room can raise it; runner.errors adds the configuration's."""

from __future__ import annotations


class UserError(Exception):
    """An error caused by input the user controls (config, arguments, files)."""

    exit_code = 2
