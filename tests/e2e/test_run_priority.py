"""`[server] run_nice`: the runs `serve` and `schedule` start run that much nicer (their
supervisor, the tool and the hooks), so the API keeps a CPU when many runs compete for it; a
CLI `run` keeps its caller's niceness. A pre hook reports the niceness it inherited (field 19 of
/proc/self/stat) and its session's autogroup niceness (the kernel shares CPU time between
sessions first: a run's own session must be nicer too, and its tool and hooks must stay in it).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import requests

from tests.support.processes import free_port, wait_until
from tests.support.service import start_service, token_client
from tests.support.workspace import Workspace

AUTOGROUP = Path("/proc/self/autogroup")
BASE = os.getpriority(os.PRIO_PROCESS, 0)  # what this test process (and a CLI run) has


def _autogroup_nice() -> int | None:
    """The autogroup niceness of this test's session (a CLI run's). None where the kernel has
    no autogroups, and where this session is in the kernel's default one, whose file is empty:
    the machine's init and all it starts without `setsid` (the CI runner starts the suite so)."""
    fields = AUTOGROUP.read_text().split() if AUTOGROUP.exists() else []
    return int(fields[-1]) if fields else None


BASE_GROUP = _autogroup_nice()
# a hook's niceness and its session's autogroup niceness ('-' where it has none)
REPORT = ("g=$(sed -n 's/.* nice //p' /proc/$$/autogroup 2>/dev/null); "
          "echo $(cut -d ' ' -f 19 /proc/$$/stat) ${g:--}")


def _configure(ws: Workspace, *, port: int = 0, server: str = "", schedule: str = "") -> Path:
    out = ws.root / "niceness"
    ws.write_config(f"""
[jobs.nightly]
kind = "backup"
paths = ["{ws.data}"]
pre_hook = ["/bin/sh", "-c", "{REPORT} >> {out}"]
{schedule}
""" + token_client(ws), top=f'[server]\nbind = "127.0.0.1:{port or free_port()}"\n{server}')
    return out


def _reported(out: Path, count: int = 1) -> list[tuple[int, int | None]]:
    """(niceness, autogroup niceness) per hook run."""
    wait_until(lambda: out.exists() and len(out.read_text().splitlines()) >= count, timeout=60)
    return [(int(nice), None if group == "-" else int(group))
            for nice, group in (line.split() for line in out.read_text().splitlines())]


def _group(added: int) -> int | None:
    """The autogroup niceness of a run's own session: a supervisor's `setsid` gives it a new
    autogroup wherever the kernel has them, even when the test's own session is the default."""
    return added if AUTOGROUP.exists() else None


def _trigger(url: str) -> None:
    response = requests.post(f"{url}/trigger/nightly?wait=20",
                             headers={"Authorization": "Bearer rrt_a-token-for-this-test"},
                             timeout=60)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "succeeded"


def test_a_cli_run_keeps_its_callers_niceness(ws18: Workspace) -> None:
    out = _configure(ws18)
    assert ws18.run_json("nightly")[0] == 0
    assert _reported(out) == [(BASE, BASE_GROUP)]


@pytest.mark.parametrize(("server", "added"), [("", 10), ("run_nice = 3\n", 3),
                                                ("run_nice = 0\n", 0)])
def test_runs_the_api_starts_are_nicer_by_run_nice(ws18: Workspace, server: str,
                                                   added: int) -> None:
    port = free_port()
    out = _configure(ws18, port=port, server=server)
    service = start_service(ws18, port)
    try:
        _trigger(service.url)
        _trigger(service.url)  # the second from a supervisor forked after the first
        # a session of its own (a new autogroup, nice 0), made nicer by run_nice
        assert _reported(out, 2) == [(BASE + added, _group(added))] * 2
        workers = subprocess.run(["pgrep", "-P", str(service.process.pid)],
                                 capture_output=True, text=True).stdout.split()
        assert workers and all(os.getpriority(os.PRIO_PROCESS, int(pid)) == BASE
                               for pid in workers), "the service itself keeps its niceness"
    finally:
        service.stop()


def test_scheduled_runs_are_nicer_by_run_nice(ws18: Workspace) -> None:
    out = _configure(ws18, schedule='schedule = "every 1s"')
    proc = ws18.popen("schedule")
    try:
        assert _reported(out)[0] == (BASE + 10, _group(10))
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.parametrize("value", ["-1", "20", "true", '"10"'])
def test_run_nice_outside_0_to_19_names_the_key(ws18: Workspace, value: str) -> None:
    _configure(ws18, server=f"run_nice = {value}\n")
    done = ws18.cli("config", "check")
    assert done.returncode == 2
    assert "server.run_nice: expected an integer from 0 to 19" in done.stderr, done.stderr
