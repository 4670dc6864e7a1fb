"""The supervisor's report reaches the API over a socket as a JSON line: it is checked, never
splatted into the result (an unknown key or a wrong type was a TypeError, or got through)."""

from __future__ import annotations

import pytest

from runner.service.launcher import StartResult, _start_result

NO_REPORT = StartResult("error", message="the run's supervisor did not report back")


@pytest.mark.parametrize(("line", "expected"), [
    (b'{"status": "started", "run_id": "r1"}\n', StartResult("started", "r1")),
    (b'{"status": "busy", "run_id": "r0"}\n', StartResult("busy", "r0")),
    (b'{"status": "error", "message": "state_dir: full"}\n',
     StartResult("error", message="state_dir: full")),
    (b'{"status": "started", "run_id": "r1", "extra": 1}\n', StartResult("started", "r1")),
    (b'{"status": "started", "run_id": 7}\n', StartResult("started", None)),
    (b'{"status": "done"}\n', NO_REPORT),
    (b'["started"]\n', NO_REPORT),
    (b"", NO_REPORT),
    (b"\xff\xfe{", NO_REPORT),
])
def test_a_report_is_checked(line: bytes, expected: StartResult) -> None:
    assert _start_result(line) == expected
