"""The service's clock stepping across the replay window (docs/security.md): a signed
request is accepted when its timestamp is within ±300 s of the server's clock, and its
`webhook-id` is remembered so that a replay is refused. A replayed request must stay refused
whatever the server's clock does.

The real `restic-runner serve` runs with its wall clock (`time.time()`, the clock the gatekeeper
and the replay store use) set to this test's clock plus an offset read from a file at every
call, so the test steps it while the service runs. The system clock cannot be stepped (other
people's processes share it), and libfaketime (Debian's `libfaketime` 0.9.10, tried with
FAKETIME_TIMESTAMP_FILE + FAKETIME_NO_CACHE=1) does not work with this Python: with
FAKETIME_DONT_FAKE_MONOTONIC=1 every `time.sleep` fails with EINVAL (gunicorn's master dies at
once), and with the monotonic clock faked too `threading.Event.wait` never returns. So a
stand-in does the same at the Python level: a `sitecustomize.py` on the service's PYTHONPATH
wraps `time.time` (the only stand-in here; gunicorn, Flask, SQLite and restic are real). The
monotonic clock is left alone, as an NTP step leaves it. Requests are signed with the
`standardwebhooks` library, not the product's code.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from standardwebhooks import Webhook

from tests.support.faults import (
    DUPLICATED,
    JOB_LOCK,
    LOST,
    MESSAGE,
    REPO_LOCK,
    FaultCheck,
    api,
    assert_clear_message,
    assert_equal,
    assert_job_lock_free_api,
    assert_no_repo_lock,
    assert_no_run_lost,
    assert_not_duplicated,
    server_top,
    with_client,
)
from tests.support.processes import free_port, wait_until
from tests.support.secrets import secret_file
from tests.support.service import Service, start_service
from tests.support.workspace import Workspace

SHIFTED_CLOCK = """\
# written by tests/faults/test_clock_faults.py: the service's wall clock, shifted by the offset
# (seconds) in the file named by $RESTIC_RUNNER_TEST_CLOCK_OFFSET, read at every call
import os
import time

_real_time = time.time
_offset_file = os.environ["RESTIC_RUNNER_TEST_CLOCK_OFFSET"]


def _shifted_time():
    try:
        with open(_offset_file) as f:
            return _real_time() + float(f.read())
    except (OSError, ValueError):
        return _real_time()


time.time = _shifted_time
"""
WHSEC = "whsec_" + base64.b64encode(b"clock-test-key-0123456789abcdef").decode()


@dataclass
class SteppedService:
    ws: Workspace
    service: Service
    offset_file: Path

    @property
    def url(self) -> str:
        return self.service.url

    def step(self, seconds: int) -> None:
        """Set the service's wall clock to this test's clock + `seconds` (atomically: the
        service reads the file at every clock call)."""
        tmp = self.offset_file.with_suffix(".tmp")
        tmp.write_text(f"{seconds:+d}\n")
        os.replace(tmp, self.offset_file)

    def post(self, msg_id: str, stamp: int) -> requests.Response:
        """`POST /trigger/nightly`, signed as client "airflow" with this id and timestamp."""
        signature = Webhook(WHSEC).sign(msg_id, datetime.fromtimestamp(stamp, UTC), "{}")
        headers = {"webhook-id": msg_id, "webhook-timestamp": str(stamp),
                   "webhook-signature": signature}
        return requests.post(f"{self.url}/trigger/nightly", data=b"{}", headers=headers,
                             timeout=60)

    def result(self, response: requests.Response) -> dict[str, object]:
        assert response.status_code == 202, (response.status_code, response.text)
        run_id = response.json()["run_id"]

        def ended() -> dict[str, object] | None:
            answer = api(self.url, "GET", f"/runs/{run_id}/result")
            return answer.json() if answer.status_code == 200 else None

        return wait_until(ended, timeout=60, interval=0.2)


@pytest.fixture
def stepped(ws18: Workspace) -> Iterator[SteppedService]:
    port = free_port()
    whsec = secret_file(ws18.root / "airflow.whsec", WHSEC)
    ws18.write_config(f"""
[jobs.nightly]
kind = "backup"
paths = ["{ws18.data}"]

[[clients]]
name = "airflow"
secret_file = "{whsec}"
jobs = ["*"]
""", top=server_top(port))
    with_client(ws18)
    offset_file = ws18.root / "clock-offset"
    offset_file.write_text("+0\n")
    shim = ws18.root / "clock-shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text(SHIFTED_CLOCK)
    ws18.extra_env.update(PYTHONPATH=str(shim), RESTIC_RUNNER_TEST_CLOCK_OFFSET=str(offset_file))
    try:
        service = start_service(ws18, port)
    finally:
        ws18.extra_env.clear()  # the test's own commands run on the real clock
    assert "clock-shim" in (Path(f"/proc/{service.process.pid}/environ").read_text())
    stepped = SteppedService(ws18, service, offset_file)
    yield stepped
    stepped.step(0)  # gunicorn's graceful stop measures with the wall clock
    service.stop()


def _new_id() -> str:
    return "msg_" + os.urandom(12).hex()


def test_replay_refused_as_the_clock_steps_back_and_forward(stepped: SteppedService) -> None:
    ws = stepped.ws
    sent_at = int(time.time())
    msg_id = _new_id()
    first = stepped.result(stepped.post(msg_id, sent_at))  # accepted once
    answers = {"again at once": stepped.post(msg_id, sent_at).status_code}
    stepped.step(-240)  # back 4 min: the request is "from the future" but within the window
    answers["clock 4 min back"] = stepped.post(msg_id, sent_at).status_code
    stepped.step(-600)  # back 10 min: beyond the window
    answers["clock 10 min back"] = stepped.post(msg_id, sent_at).status_code
    stepped.step(+1300)  # forward beyond the window and the seen-id memory
    answers["clock 21 min ahead"] = stepped.post(msg_id, sent_at).status_code
    stepped.step(0)
    answers["clock right again"] = stepped.post(msg_id, sent_at).status_code
    log = stepped.service.log.read_text()
    with FaultCheck("clock steps across the replay window") as check:
        check(DUPLICATED, assert_equal, answers, dict.fromkeys(answers, 401))
        check(LOST, assert_no_run_lost, ws, {str(first["run_id"]): "succeeded"})
        check(DUPLICATED, assert_not_duplicated, ws, runs=1, snapshots=1)
        check(REPO_LOCK, assert_no_repo_lock, ws)
        for reason in ("replay", "future", "expired"):
            check(MESSAGE, assert_clear_message, log,
                  rf"refused 401 from 127\.0\.0\.1: authentication failed \({reason}\)",
                  where="the service log")
        check(JOB_LOCK, assert_job_lock_free_api, ws, stepped.url, "nightly")


def test_replay_refused_after_a_forward_step_and_its_correction(
        stepped: SteppedService) -> None:
    """The clock jumps 21 min ahead and is corrected back (a bad NTP server, a VM restored
    from a snapshot). While it is ahead, a client sharing the host's clock (cron on the same
    machine) is served; afterwards a captured request from before the jump is replayed. Its
    timestamp is within the window again, so only the seen-id store can refuse it: the ids must
    not have been forgotten because of the jump."""
    ws = stepped.ws
    sent_at = int(time.time())
    msg_id = _new_id()
    first = stepped.result(stepped.post(msg_id, sent_at))
    stepped.step(+1300)
    ahead = stepped.result(stepped.post(_new_id(), sent_at + 1300))
    stepped.step(0)  # the step is corrected
    replay = stepped.post(msg_id, sent_at)
    if replay.status_code == 202:  # a duplicate run started: let it end before the checks
        stepped.result(replay)
    log = stepped.service.log.read_text()
    with FaultCheck("clock step forward and back") as check:
        check(DUPLICATED, assert_equal, replay.status_code, 401)
        check(LOST, assert_no_run_lost, ws, {str(first["run_id"]): "succeeded",
                                             str(ahead["run_id"]): "succeeded"})
        check(DUPLICATED, assert_not_duplicated, ws, runs=2, snapshots=2)
        check(REPO_LOCK, assert_no_repo_lock, ws)
        check(MESSAGE, assert_clear_message, log,
              r"refused 401 from 127\.0\.0\.1: authentication failed \(replay\)",
              where="the service log")
        check(JOB_LOCK, assert_job_lock_free_api, ws, stepped.url, "nightly")
