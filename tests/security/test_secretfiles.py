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


def test_world_readable_secret_files_by_mode(tmp_path: Path) -> None:
    """A config file keeps the strict rule; environment mode accepts a world-readable file (as
    Docker and Kubernetes mount secrets) unless every local user can also write it."""
    from security.secretfiles import SecretFileError, accept_world_readable

    path = tmp_path / "secret"
    path.write_text("s3cret-value\n")
    path.chmod(0o444)
    try:
        accept_world_readable(False)
        with pytest.raises(SecretFileError, match="readable by every local user"):
            read_secret_file(path, "password_file")
        accept_world_readable(True)
        assert read_secret_file(path, "password_file") == "s3cret-value"
        path.chmod(0o646)
        with pytest.raises(SecretFileError, match="writable by every local user"):
            read_secret_file(path, "password_file")
    finally:
        accept_world_readable(False)


def test_a_foreign_owner_is_refused_in_environment_mode(tmp_path: Path) -> None:
    import os

    from security.secretfiles import SecretFileError, accept_world_readable

    if os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")  # the image's tests run as root
    path = tmp_path / "secret"
    path.write_text("s3cret-value\n")
    path.chmod(0o644)
    os.chown(path, 4242, 4242)
    try:
        accept_world_readable(True)
        with pytest.raises(SecretFileError, match="owned by uid 4242"):
            read_secret_file(path, "password_file")
    finally:
        accept_world_readable(False)
