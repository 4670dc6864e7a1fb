"""Processes, ports and waiting: reading /proc, free loopback ports, polling for a condition,
and stopping what a test started."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


# --- /proc ---------------------------------------------------------------------------------------

def proc_stats() -> Iterator[tuple[int, list[str]]]:
    """(pid, the /proc/<pid>/stat fields after the command name: state, ppid, pgid, ...) of
    every process; one that ends while we read is skipped."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            yield int(entry.name), fields


def pids_of_group_members(pgid: int) -> list[int]:
    return [pid for pid, fields in proc_stats() if int(fields[2]) == pgid and fields[0] != "Z"]


def children_of(pid: int) -> set[int]:
    return {child for child, fields in proc_stats() if int(fields[1]) == pid}


def descendants(root: int) -> list[tuple[int, int]]:
    """(pid, parent pid) of every live descendant of `root`, parents before children."""
    children: dict[int, list[int]] = {}
    for pid, fields in proc_stats():
        if fields[0] != "Z":
            children.setdefault(int(fields[1]), []).append(pid)
    order, queue = [], [(pid, root) for pid in children.get(root, [])]
    while queue:
        pid, ppid = queue.pop(0)
        order.append((pid, ppid))
        queue += [(child, pid) for child in children.get(pid, [])]
    return order


def argv_of(pid: int) -> list[str]:
    """A process's argv ([] once it has ended)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in raw.split(b"\0") if a]


def processes_with_cmdline(needle: str) -> list[int]:
    """Live (not zombie) processes whose command line contains `needle`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if needle.encode() in cmdline and state != "Z":
                found.append(int(entry.name))
    return found


@contextmanager
def umask(mask: int) -> Iterator[None]:
    """The umask this process (and what it starts) has inside the `with`."""
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


# --- ports ---------------------------------------------------------------------------------------

def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 15.0) -> None:
    """Until something listens on 127.0.0.1:`port`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


# --- waiting -------------------------------------------------------------------------------------

def wait_until(predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.05) -> T:
    """Poll `predicate` until it returns something true (returned), or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


# --- stopping ------------------------------------------------------------------------------------

def stop_process(process: subprocess.Popen[Any], timeout: float = 30.0) -> None:
    """SIGTERM (`serve` cancels its running jobs gracefully), then SIGKILL: to its whole session
    when it leads one."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        if os.getsid(process.pid) == process.pid:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait()


def kill(process: subprocess.Popen[Any]) -> None:
    """SIGKILL a process this test started, if it still runs."""
    if process.poll() is None:
        process.kill()
        process.wait(10)
