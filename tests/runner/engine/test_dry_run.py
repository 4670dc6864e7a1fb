"""Dry runs (issue 13, item 4), in-process: a job that pins `dry_run = true` cannot be turned
off by a trigger's params, neither by the API's parser nor were they to reach the engine; bad
dry-run settings name their key. Real restic repositories (how dry runs are recorded and
reported, through the real CLI: tests/e2e/cli/test_dry_run.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runner.configuration.config import parse_config
from runner.configuration.load import load_config
from runner.errors import ConfigError
from runner.service.params import parse_trigger_body
from runner.service.problems import Problem
from tests.support.secrets import secret_file
from tests.support.workspace import Workspace

PREVIEW = """
[jobs.preview]
kind = "forget"
args = ["--keep-last", "3"]
dry_run = true
"""


# --- item 4: a pinned dry run ---------------------------------------------------------------------

@pytest.mark.slow  # seven snapshots by restic, then a forget: ~6 s per version
def test_a_trigger_param_cannot_turn_a_pinned_dry_run_off(ws: Workspace) -> None:
    ws.snapshots_by_restic(7)
    ws.write_config(PREVIEW.replace("dry_run = true", 'dry_run = true\nparams = ["dry_run"]'))
    job = load_config(str(ws.config_path)).job("preview")
    with pytest.raises(Problem) as refused:
        parse_trigger_body(b'{"params": {"dry_run": false}}', job)
    assert refused.value.status == 400
    assert "params.dry_run" in refused.value.detail
    assert parse_trigger_body(b"{}", job) == {}
    # and were such a param to reach the engine, the job's own setting still wins
    record = ws.run_in_process("preview", {"dry_run": False})
    assert record["status"] == "succeeded" and record["dry_run"] is True
    assert len(ws.snapshots()) == 7


@pytest.mark.parametrize(("job", "key"), [
    ({"kind": "check", "dry_run": True}, "jobs.j.dry_run"),
    ({"kind": "unlock", "dry_run": True}, "jobs.j.dry_run"),
    ({"kind": "forget", "args": ["--keep-last", "1"], "dry_run": "yes"}, "jobs.j.dry_run"),
    ({"kind": "forget", "args": ["--keep-last", "1"], "dry_run": True, "max_age": "2d"},
     "jobs.j.max_age"),
])
def test_bad_dry_run_settings_name_the_key(tmp_path: Path, job: dict[str, Any],
                                           key: str) -> None:
    password = secret_file(tmp_path / "pw", "pw")
    with pytest.raises(ConfigError) as error:
        parse_config({"state_dir": str(tmp_path / "s"),
                      "restic": {"repository": "/r", "password_file": str(password)},
                      "jobs": {"j": job}}, tmp_path / "c.toml")
    assert key in str(error.value)


# --- item 5: a dry run is never the last success -----------------------------------------------

