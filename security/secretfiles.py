"""Reading secrets: from files, with permission checks; every value read is registered with the
redactor before anyone can print it."""

import os
import stat
from pathlib import Path
from typing import NamedTuple

from security.errors import UserError
from security.masking import register_secret, url_secrets


class SecretFileError(UserError):
    """A secret file that cannot be used: unreadable, or readable by every local user."""


# Environment mode (restic-backup-helper's variables) accepts world-readable secret files, as
# Docker (0444) and Kubernetes (0644) mount them; config-file mode does not (docs/security.md).
_policy = {"world_readable": False}


def accept_world_readable(accept: bool) -> None:
    """Set by the configuration loader: True in environment mode, False for a config file."""
    _policy["world_readable"] = accept


def world_readable_accepted() -> bool:
    return _policy["world_readable"]


class FileAccess(NamedTuple):
    path: Path
    exists: bool
    readable: bool
    group_readable: bool
    world_readable: bool
    mode: int | None
    world_writable: bool = False
    owner: int | None = None  # uid
    group_writable: bool = False
    group: int | None = None  # gid
    open_parent: Path | None = None  # a directory of it others may write, without sticky bit

    @property
    def foreign_owner(self) -> bool:
        """Owned by another user than root or us: that user could replace the secret."""
        return self.owner is not None and self.owner not in (0, os.geteuid())

    def describe(self) -> str:
        mode = f"mode {self.mode:04o}" if self.mode is not None else "missing"
        return f"{self.path} ({mode})"


def file_access(path: Path) -> FileAccess:
    try:
        st = path.stat()
    except OSError:
        return FileAccess(path, False, False, False, False, None)
    mode = stat.S_IMODE(st.st_mode)
    return FileAccess(
        path=path, exists=True, readable=os.access(path, os.R_OK),
        group_readable=bool(mode & stat.S_IRGRP), world_readable=bool(mode & stat.S_IROTH),
        mode=mode, world_writable=bool(mode & stat.S_IWOTH), owner=st.st_uid,
        group_writable=bool(mode & stat.S_IWGRP), group=st.st_gid,
        open_parent=_open_parent(path),
    )


def _open_parent(path: Path) -> Path | None:
    """The directory holding `path` (as named, and once links are resolved: a Kubernetes
    secret is a link into `..data/`) that every local user may write to without the sticky bit:
    anyone could rename the secret away and put their own in its place."""
    for directory in dict.fromkeys((path.absolute().parent, Path(os.path.realpath(path)).parent)):
        try:
            mode = directory.stat().st_mode
        except OSError:
            continue
        if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
            return directory
    return None


def lenient_problem(access: FileAccess) -> str:
    """Why environment mode refuses a world-readable secret file ("" when it accepts it): someone
    else than root and us could replace the secret."""
    if access.world_writable:
        return "is writable by every local user (anyone could replace the secret)"
    if access.foreign_owner:
        return (f"is owned by uid {access.owner}, neither root nor this user "
                f"(uid {os.geteuid()}), who could replace the secret")
    if access.group_writable and access.group != 0:
        return (f"is writable by group gid {access.group}, not root's group (its members "
                "could replace the secret); run: chmod g-w")
    if access.open_parent is not None:
        return (f"is in {access.open_parent}, a directory every local user may write to "
                "without the sticky bit (anyone could replace the secret)")
    return ""


def read_secret_file(path: Path, key: str) -> str:
    """The stripped content of a secret file, registered with the redactor. An empty (or
    whitespace-only) file is refused: it would quietly mean "no credential"."""
    value = read_secret_file_raw(path, key).strip()
    if not value:
        raise SecretFileError(f"{key}: secret file {path} is empty (expected the secret in it)")
    register_secret(value)
    register_repository(value)  # a proxy or endpoint URL: its password alone, raw and decoded
    return value


def read_repository_file(path: Path, key: str) -> str:
    """First non-blank, non-comment line of a repository file (as restic-backup-helper reads it).

    The URL may carry a password, so the file is a secret file and the password is registered.
    """
    content = read_secret_file_raw(path, key)
    for line in content.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            register_repository(line)
            return line
    raise SecretFileError(f"{key}: repository file {path} holds no repository line")


def read_secret_file_raw(path: Path, key: str) -> str:
    """The content of a secret file, unregistered: the caller registers the secret part.

    Refuses files every local user can read (docs/security.md); group-readable is allowed.
    Environment mode accepts a world-readable one that no one else can write or owns.
    """
    access = file_access(path)
    if not access.exists or not access.readable:
        raise SecretFileError(f"{key}: secret file {path} is missing or not readable")
    if access.world_readable and world_readable_accepted():
        problem = lenient_problem(access)
        if problem:
            raise SecretFileError(f"{key}: secret file {access.describe()} {problem}")
    elif access.world_readable:
        raise SecretFileError(
            f"{key}: secret file {access.describe()} is readable by every local user; "
            f"run: chmod o-rwx {path}"
        )
    try:
        return path.read_text(encoding="utf-8", errors="surrogateescape")
    except OSError as exc:
        raise SecretFileError(f"{key}: cannot read secret file {path}: {exc.strerror}") from None


def register_repository(url: str) -> None:
    """Register the password of a repository URL, as written and as decoded."""
    for secret in url_secrets(url):
        register_secret(secret)
