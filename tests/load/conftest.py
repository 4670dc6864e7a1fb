"""One restic version is enough here (the API's, as in tests/e2e)."""

from tests.e2e.conftest import api_repo_template, ws

__all__ = ["api_repo_template", "ws"]
