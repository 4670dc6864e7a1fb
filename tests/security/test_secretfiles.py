"""Reading secret files (security/secretfiles.py): an empty one is refused, naming the option.
(Secret files whose content can never work, refused by `config check`, `doctor`, `run` and
`serve`: tests/e2e/cli/test_secret_validation.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import UserError
from security.secretfiles import read_secret_file


@pytest.mark.parametrize("content", ["", "\n", "  \t \n\n"])
def test_read_secret_file_refuses_an_empty_file(tmp_path: Path, content: str) -> None:
    path = tmp_path / "secret"
    path.write_text(content)
    path.chmod(0o600)
    with pytest.raises(UserError, match=r"^--token-file: secret file .* is empty"):
        read_secret_file(path, "--token-file")
