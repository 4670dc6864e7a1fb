"""runner/cli/container.py, the image's entrypoint, without the image (tests/image runs it in
one): how it reads its command, the shims it writes, and its supervision of a service and a
foreground command (stand-in Python processes here, not restic-runner)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runner.cli.container import PEER_COMMANDS, is_runner_command, peer_command, write_shims

# a stand-in service: ready marker, then on SIGTERM a short graceful stop and a marker
SERVICE = textwrap.dedent("""
    import signal, sys, time, pathlib
    out = pathlib.Path(sys.argv[1])
    def stop(signum, frame):
        time.sleep(0.5)  # "stopping its runs"
        (out / "service-stopped").write_text(str(signum))
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    (out / "service-ready").write_text("")
    while True:
        time.sleep(0.1)
""")


def test_peer_commands_are_read_as_the_peer_entrypoint_did() -> None:
    assert peer_command("backup") == "backup"
    assert peer_command("/bin/health-summary") == "health-summary"
    assert peer_command("/usr/bin/cron-list") == "cron-list"
    assert peer_command("tail") is None and peer_command("/bin/tail") is None
    assert peer_command("serve") is None
    assert len(set(PEER_COMMANDS)) == 22


def test_restic_runner_commands_are_words_no_program_answers_to() -> None:
    for word in ("restic-runner", "serve", "schedule", "run", "--version", "-h"):
        assert is_runner_command(word), word
    for word in ("tail", "sh", "/bin/sh", "./script"):
        assert not is_runner_command(word), word


def test_shims_one_per_command_never_over_a_file(tmp_path: Path) -> None:
    assert write_shims([tmp_path]) == 0
    for name in PEER_COMMANDS:
        shim = tmp_path / name
        assert shim.stat().st_mode & 0o777 == 0o755
        assert f'restic-runner compat {name} "$@"' in shim.read_text()
        assert shim.read_text().startswith("#!/bin/sh\n")
    other = tmp_path / "other"
    other.mkdir()
    (other / "status").write_text("a file of the image\n")
    assert write_shims([other]) == 1
    assert (other / "status").read_text() == "a file of the image\n"


def _supervisor(tmp_path: Path, foreground: list[str]) -> subprocess.Popen[str]:
    service = [sys.executable, "-c", SERVICE, str(tmp_path)]
    code = (f"import sys; from runner.cli.container import supervise; "
            f"sys.exit(supervise({service!r}, {foreground!r}))")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not (tmp_path / "service-ready").exists():
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    return process


def test_a_stop_signal_stops_the_service_gracefully_then_exits_cleanly(tmp_path: Path) -> None:
    process = _supervisor(tmp_path, ["sleep", "60"])
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0
    assert (tmp_path / "service-stopped").read_text() == str(int(signal.SIGTERM))


def test_the_foreground_ending_stops_the_service_and_gives_its_code(tmp_path: Path) -> None:
    process = _supervisor(tmp_path, ["sh", "-c", "sleep 0.5; exit 3"])
    assert process.wait(20) == 3
    assert (tmp_path / "service-stopped").exists()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGHUP])
def test_other_stop_signals_reach_the_service_as_sigterm(tmp_path: Path, signum: int) -> None:
    process = _supervisor(tmp_path, ["sleep", "60"])
    time.sleep(0.3)
    process.send_signal(signum)
    assert process.wait(20) == 0
    assert (tmp_path / "service-stopped").read_text() == str(int(signal.SIGTERM))


# --- docker/as-service-user.sh: which command lines keep what restoring owners takes ------------

AS_SERVICE_USER = Path(__file__).resolve().parents[3] / "docker" / "as-service-user.sh"
CAPS = 'grep "^CapEff" /proc/self/status | cut -f2; id -u\n'


@pytest.fixture
def stand_ins() -> Iterator[Path]:
    """`restic-runner` and `python3` stand-ins printing their identity, in a directory the
    service user can reach (tmp_path is root's 0700)."""
    import os
    import shutil
    import tempfile

    if os.geteuid() != 0:
        pytest.skip("as-service-user leaves root only when started as root")
    where = Path(tempfile.mkdtemp(prefix="as-service-user-"))
    where.chmod(0o755)
    for name in ("restic-runner", "python3"):
        (where / name).write_text("#!/bin/sh\n" + CAPS)
        (where / name).chmod(0o755)
    yield where
    shutil.rmtree(where)


def _identity(where: Path, *command: str) -> tuple[str, str]:
    done = subprocess.run(["sh", str(AS_SERVICE_USER), *command], capture_output=True,
                          text=True, check=True, cwd=where,
                          env={"PATH": f"{where}:/usr/bin:/bin"})
    caps, uid = done.stdout.split()
    return caps, uid


@pytest.mark.parametrize("argv", [
    ["restic-runner", "restore", "--target", "/r"],
    ["restic-runner", "--config", "/etc/x.toml", "restore"],
    ["restic-runner", "--config=/etc/x.toml", "compat", "restore", "--id", "abc"],
    ["restic-runner", "compat", "--config", "/etc/x.toml", "restore"],
    ["python3", "-m", "runner.cli.container", "restore"],
    ["python3", "-m", "runner.cli.container", "/bin/restore", "--target", "/r"],
    ["python3", "-m", "runner.cli.container", "restic-runner", "compat", "restore"],
])
def test_a_root_restore_keeps_chown_fowner_fsetid_dac_override(stand_ins: Path,
                                                               argv: list[str]) -> None:
    argv[0] = str(stand_ins / argv[0])
    caps, uid = _identity(stand_ins, *argv)
    assert uid == "10001"
    # CAP_CHOWN 0, CAP_DAC_OVERRIDE 1, CAP_DAC_READ_SEARCH 2, CAP_FOWNER 3, CAP_FSETID 4
    assert int(caps, 16) == 0b11111, caps


@pytest.mark.parametrize("argv", [
    ["restic-runner", "run", "restore"],  # a job named restore is a run, hooks and all
    ["restic-runner", "compat", "restore-test"],
    ["restic-runner", "--config", "restore", "run", "x"],
    ["restic-runner", "compat", "backup", "restore"],
    ["restic-runner", "--config"],
    ["python3", "-m", "runner.cli.container", "tail", "restore"],
    ["python3", "restore"],
    ["sh", "-c", "restic-runner restore"],
])
def test_anything_else_keeps_only_dac_read_search(stand_ins: Path, argv: list[str]) -> None:
    if argv[0] != "sh":
        argv[0] = str(stand_ins / argv[0])
    caps, uid = _identity(stand_ins, *argv)
    assert uid == "10001"
    assert int(caps, 16) == 0b100, caps


def test_cron_log_is_made_without_following_a_link_or_waiting_on_a_fifo(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os

    from runner.cli.container import touch_cron_log

    touch_cron_log(tmp_path)
    assert (tmp_path / "cron.log").is_file()
    fifo_dir, link_dir = tmp_path / "fifo", tmp_path / "link"
    fifo_dir.mkdir()
    link_dir.mkdir()
    os.mkfifo(fifo_dir / "cron.log")  # nobody reads it: a plain open for writing would block
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (link_dir / "cron.log").symlink_to(victim)
    started = time.monotonic()
    touch_cron_log(fifo_dir)
    touch_cron_log(link_dir)
    assert time.monotonic() - started < 5
    said = capsys.readouterr().out
    assert said.count("warning: cron.log not created") == 2
    assert victim.read_text() == "precious"
