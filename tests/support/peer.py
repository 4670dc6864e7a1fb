"""restic-backup-helper 2.14.2 (the peer, `../shared/reference`) run for real beside
restic-runner: its worker scripts copied into a temporary directory with their container paths
(`/var/log`, `/hooks`, `/config`, `/var/run`, `/bin/<command>`, `/bin/lib.sh`) rewritten to
directories under it, run with bash and the real restic and rclone from PATH.

One stub: the peer mails with `mail -v -s SUBJECT RCPT < body` (mailx through msmtp in its
image). This machine has no mailx, and a real one would need an SMTP relay; a `mail` script
first on PATH records each message (subject, recipient, body) as a file instead, so the tests
compare what the peer formats, not its transport."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.support.paths import ROOT

_PEER = Path("reference") / "restic-backup-helper-2.14.2"


def _peer_root() -> Path:
    """The peer's repository: `$RESTIC_BACKUP_HELPER_DIR`, else `../shared` beside this
    checkout, else the workplace's `/work/shared` (a clean clone for CI may live elsewhere)."""
    given = os.environ.get("RESTIC_BACKUP_HELPER_DIR")
    if given:
        return Path(given)
    candidates = [ROOT.parent / "shared" / _PEER, Path("/work/shared") / _PEER]
    return next((path for path in candidates if path.is_dir()), candidates[0])


PEER_ROOT = _peer_root()
# Container directories the scripts hard-code -> their place under an install's root
CONTAINER_DIRS = {"/var/log": "log", "/hooks": "hooks", "/config": "config", "/var/run": "run"}
RELEASE = "2.14.2-side-by-side"
# commands the peer's entry.sh handles itself (`docker compose run <service> config-check`)
ENTRY_COMMANDS = ("config-check",)

_FAKE_MAIL = """#!/bin/sh
# Test stub for mailx (tests/support/peer.py): records `mail [-v] -s SUBJECT RCPT < body`.
subject=""
while [ "$#" -gt 0 ]; do
  case "$1" in
    -v) shift ;;
    -s) subject="$2"; shift 2 ;;
    *) break ;;
  esac
done
n=$(ls "{outbox}" | wc -l)
{{ printf 'Subject: %s\\n' "$subject"; printf 'To: %s\\n\\n' "$*"; cat; }} > "{outbox}/$n.eml"
"""

# A hook that records its arguments and its environment: <dumps>/<phase>.args (their count,
# then each, NUL-terminated) and <dumps>/<phase>.env (`env -0`).
_DUMP_HOOK = """#!/bin/sh
phase=$(basename "$0" .sh)
printf '%s\\0' "$#" "$@" > "{dumps}/$phase.args"
env -0 > "{dumps}/$phase.env"
exit 0
"""


def peer_commands() -> dict[str, str]:
    """The peer's /bin commands -> their script under app/, from its Dockerfile (`COPY
    /app/x.sh /bin/name` and `ln -s target /bin/alias`)."""
    text = (PEER_ROOT / "Dockerfile").read_text()
    commands = dict((name, script) for script, name in
                    re.findall(r"^COPY /app/(\S+\.sh) /bin/([\w-]+)$", text, re.M))
    for target, alias in re.findall(r"ln -s (\w[\w-]*) /bin/([\w-]+)", text):
        commands[alias] = commands[target]
    return commands


def rewrite(text: str, root: Path, commands: list[str]) -> str:
    """A script's container paths pointed under `root` (`/bin/bash` and `/usr/bin/...` stay)."""
    for directory, name in CONTAINER_DIRS.items():
        text = re.sub(rf"(?<![\w/.]){re.escape(directory)}(?![\w-])", str(root / name), text)
    names = sorted([*commands, "lib.sh"], key=len, reverse=True)
    pattern = "|".join(re.escape(n) for n in names)
    return re.sub(rf"(?<![\w/.])/bin/({pattern})(?![\w.-])",
                  lambda m: str(root / "bin" / m.group(1)), text)


@dataclass(frozen=True)
class PeerInstall:
    """The peer's scripts under `root`: bin/, log/ (its /var/log), hooks/, config/, run/,
    fakebin/ (the `mail` stub), outbox/ (the mails), dumps/ (what dump hooks recorded)."""

    root: Path

    def path(self, name: str) -> Path:
        return self.root / name

    @property
    def log(self) -> Path:
        return self.root / "log"

    @property
    def hooks(self) -> Path:
        return self.root / "hooks"

    @property
    def dumps(self) -> Path:
        return self.root / "dumps"

    def env(self, restic: Path, variables: dict[str, str]) -> dict[str, str]:
        """The peer's process environment: `variables` (as a compose file's `environment:`),
        PATH with the `mail` stub and `restic`'s directory first, its release, TZ."""
        path = os.pathsep.join([str(self.root / "fakebin"), str(restic.parent),
                                os.environ.get("PATH", "/usr/bin:/bin")])
        # In its container restic records the container's hostname (HOSTNAME); here it
        # would record the machine's: RESTIC_HOST (restic >= 0.16) gives it HOSTNAME.
        host = {"RESTIC_HOST": variables["HOSTNAME"]} if "HOSTNAME" in variables else {}
        return {"PATH": path, "HOME": str(self.root), "TZ": "UTC", "LANG": "C.UTF-8",
                "RESTIC_BACKUP_HELPER_RELEASE": RELEASE, **host, **variables}

    def run(self, command: str, *args: str, env: dict[str, str],
            timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """`/bin/<command> ARGS` of the peer, as `docker exec` would run it."""
        return subprocess.run([str(self.root / "bin" / command), *args], env=env,
                              capture_output=True, text=True, timeout=timeout, cwd=self.root)

    def run_entry(self, *args: str, env: dict[str, str],
                  timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """The peer's entry.sh with ARGS (its own commands, e.g. `config-check`)."""
        return subprocess.run([str(self.root / "entry.sh"), *args], env=env,
                              capture_output=True, text=True, timeout=timeout, cwd=self.root)

    def mails(self) -> list[tuple[str, str, str]]:
        """(subject, recipient, body) of every mail the peer sent, in order."""
        found = []
        for path in sorted((self.root / "outbox").glob("*.eml"), key=lambda p: int(p.stem)):
            head, _, body = path.read_text().partition("\n\n")
            fields = dict(line.split(": ", 1) for line in head.splitlines())
            found.append((fields["Subject"], fields["To"], body))
        return found


def install_peer(root: Path) -> PeerInstall:
    """The peer's commands copied under `root` with their paths rewritten, and the stubs."""
    if not PEER_ROOT.is_dir():
        raise FileNotFoundError(f"the peer's repository is missing: {PEER_ROOT}")
    commands = peer_commands()
    for name in ("bin", *CONTAINER_DIRS.values(), "fakebin", "outbox", "dumps"):
        (root / name).mkdir(parents=True, exist_ok=True)
    for name, script in [*commands.items(), ("lib.sh", "lib.sh")]:
        target = root / "bin" / name
        target.write_text(rewrite((PEER_ROOT / "app" / script).read_text(), root,
                                  list(commands)))
        target.chmod(0o755 if name != "lib.sh" else 0o644)
    entry = root / "entry.sh"
    entry.write_text(rewrite((PEER_ROOT / "app" / "entry.sh").read_text(), root, list(commands)))
    entry.chmod(0o755)
    mail = root / "fakebin" / "mail"
    mail.write_text(_FAKE_MAIL.format(outbox=root / "outbox"))
    mail.chmod(0o755)
    return PeerInstall(root)


def write_dump_hooks(directory: Path, dumps: Path, phases: list[str]) -> None:
    """`<directory>/<phase>.sh` for each phase (e.g. "pre-backup"), each recording its
    arguments and environment under `dumps`."""
    directory.mkdir(parents=True, exist_ok=True)
    dumps.mkdir(parents=True, exist_ok=True)
    for phase in phases:
        hook = directory / f"{phase}.sh"
        hook.write_text(_DUMP_HOOK.format(dumps=dumps))
        hook.chmod(0o755)


def hook_call(dumps: Path, phase: str) -> tuple[list[str], dict[str, str]] | None:
    """What a dump hook recorded: its arguments and its environment; None if it never ran."""
    args_file, env_file = dumps / f"{phase}.args", dumps / f"{phase}.env"
    if not args_file.exists():
        return None
    count, *rest = args_file.read_text().split("\0")
    args = rest[:int(count)]
    env = dict(item.split("=", 1) for item in env_file.read_text().split("\0") if "=" in item)
    return args, env


def copy_tree(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


_SAMPLE = re.compile(r"^(?P<name>[A-Za-z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def textfile_samples(text: str) -> dict[str, tuple[dict[str, str], str]]:
    """A Prometheus textfile's samples: metric name -> (labels, value) (one series a family, as
    the peer writes them; the last one wins otherwise)."""
    samples = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and not line.startswith("#"):
            labels = dict(_LABEL.findall(match.group("labels") or ""))
            samples[match.group("name")] = (labels, match.group("value"))
    return samples


def json_shape(document: dict[str, object]) -> dict[str, str]:
    """A last-run JSON document's field names and JSON types."""
    names = {bool: "boolean", int: "number", float: "number", str: "string", type(None): "null",
             list: "array", dict: "object"}
    return {key: names[type(value)] for key, value in document.items()}
