"""Reading secret files (security/secretfiles.py): an empty one is refused, naming the option.
(Secret files whose content can never work, refused by `config check`, `doctor`, `run` and
`serve`: tests/e2e/cli/test_secret_validation.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from runner.errors import UserError
from security.secretfiles import read_secret_file
from tests.support.secrets import CANARY, encodings


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


def _lenient_read(path: Path) -> str:
    from security.secretfiles import accept_world_readable

    try:
        accept_world_readable(True)
        return read_secret_file(path, "password_file")
    finally:
        accept_world_readable(False)


def test_environment_mode_refuses_a_file_a_non_root_group_may_write(tmp_path: Path) -> None:
    """L4: 0664 root:users lets every member of `users` replace the secret; 0664 with root's
    group (a Docker secret mount's ownership) is still accepted."""
    import os

    from security.secretfiles import SecretFileError

    if os.geteuid() != 0:
        pytest.skip("giving a file to another group needs root")  # the image's tests run as root
    path = tmp_path / "secret"
    path.write_text(CANARY + "\n")
    path.chmod(0o664)
    os.chown(path, 0, 100)
    with pytest.raises(SecretFileError, match=r"writable by group gid 100") as refused:
        _lenient_read(path)
    assert str(path) in str(refused.value)
    assert not any(form.decode(errors="replace") in str(refused.value)
                   for form in encodings(CANARY))
    os.chown(path, 0, 0)
    assert _lenient_read(path) == CANARY


def test_environment_mode_refuses_a_file_in_a_directory_anyone_may_write(tmp_path: Path) -> None:
    """L4: a 0644 file in a 0777 directory without the sticky bit (anyone can rename it away and
    put theirs in its place), or a link to one; with the sticky bit (as /tmp) it is accepted."""
    from security.secretfiles import SecretFileError

    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    path = shared / "secret"
    path.write_text(CANARY + "\n")
    path.chmod(0o644)
    with pytest.raises(SecretFileError, match=r"every local user may write to without the "
                                              r"sticky bit"):
        _lenient_read(path)
    mounted = tmp_path / "mounted"
    mounted.mkdir(mode=0o755)
    (mounted / "secret").symlink_to(path)  # a Kubernetes secret is a link into ..data/
    with pytest.raises(SecretFileError, match=str(shared)):
        _lenient_read(mounted / "secret")
    shared.chmod(0o1777)
    assert _lenient_read(path) == CANARY
    assert _lenient_read(mounted / "secret") == CANARY


def test_a_secret_file_holding_a_url_registers_its_password_alone(tmp_path: Path) -> None:
    """L1 with a config file: `env_files = {HTTPS_PROXY = "…"}` holding `user:password@` masks
    the password printed alone, as written and percent-decoded, in every encoding."""
    from urllib.parse import quote

    from security.masking import redact
    from tests.support.secrets import secret_file

    password = "proxy-file-" + CANARY
    path = secret_file(tmp_path / "proxy", f"http://me:{quote(password, safe='')}@proxy:3128")
    read_secret_file(path, "env_files.HTTPS_PROXY")
    for value in (password, quote(password, safe="")):
        for form in encodings(value):
            assert form not in redact(b"<" + form + b">"), (value, form)
