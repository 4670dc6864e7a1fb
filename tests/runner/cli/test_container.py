"""runner/cli/container.py, the image's entrypoint, without the image (tests/image runs it in
one): how it reads its command, the shims it writes, and its supervision of a service and a
foreground command (stand-in Python processes here, not restic-runner)."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
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
