"""The cron path (docs/architecture.md): before `restic-runner run` starts the tool, only the
config, the secret files, the job's lock and the run log have been touched. The modules loaded
at the instant a real restic starts are recorded by wrapping `subprocess.Popen` in the run's
own process (instrumentation only: the run, its restic and its notifiers are all real)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.workspace import Workspace

# none of these may be loaded before the tool starts: they load while it runs, or never
NOT_BEFORE_THE_TOOL = ("click", "flask", "werkzeug", "gunicorn", "sqlite3", "prometheus_client",
                       "requests", "email", "http", "dataclasses", "inspect", "shutil",
                       "notifiers", "runner.service", "runner.scheduling", "runner.cli.main",
                       "runner.cli.views", "runner.engine.history", "security.auth")

RECORDER = textwrap.dedent("""\
    import json, subprocess, sys
    out, args = sys.argv[1], sys.argv[2:]
    original = subprocess.Popen.__init__

    def recording(self, *a, **k):
        if not hasattr(recording, "done"):
            recording.done = True
            with open(out, "w") as f:
                json.dump({"argv": list(a[0]), "modules": sorted(sys.modules)}, f)
        original(self, *a, **k)

    subprocess.Popen.__init__ = recording
    sys.argv = ["restic-runner", *args]
    from runner.cli.entry import main
    main()
    """)


def modules_when_the_tool_starts(ws: Workspace, *args: str) -> tuple[dict, str]:
    script, out = ws.root / "recorder.py", ws.root / "modules.json"
    script.write_text(RECORDER)
    done = subprocess.run([sys.executable, str(script), str(out), *args], env=ws.env(),
                          capture_output=True, text=True, timeout=120, cwd=ws.root)
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text()), done.stdout + done.stderr


def loaded_too_early(modules: list[str]) -> list[str]:
    return [m for m in modules if m.split(".")[0] in NOT_BEFORE_THE_TOOL
            or any(m == p or m.startswith(p + ".") for p in NOT_BEFORE_THE_TOOL)]


def test_only_config_lock_and_log_come_before_restic(ws: Workspace, tmp_path: Path) -> None:
    metrics = tmp_path / "metrics"
    ws.write_config(f'[jobs.nightly]\nkind = "backup"\npaths = ["{ws.data}"]\n',
                    top=f'[notify]\nmetrics_dir = "{metrics}"\n')
    seen, output = modules_when_the_tool_starts(ws, "run", "nightly")
    assert any("restic" in part for part in seen["argv"])  # the first process is restic
    assert loaded_too_early(seen["modules"]) == []
    assert "runner.configuration.config" in seen["modules"]  # the recorder saw the run itself
    assert "succeeded" in output
    record = json.loads((ws.state / "last-nightly.json").read_text())
    assert record["status"] == "succeeded"
    assert (metrics / "restic_nightly.prom").read_text().count("restic_backup_running") >= 1


def test_the_environment_mode_path_too(ws: Workspace, tmp_path: Path) -> None:
    """restic-backup-helper's variables, with a metrics textfile (its METRICS_DIR)."""
    ws.config_path.unlink(missing_ok=True)
    env = {k: v for k, v in ws.env().items() if k != "RESTIC_RUNNER_CONFIG"}
    env.update({
        "RESTIC_REPOSITORY": str(ws.repo), "RESTIC_PASSWORD_FILE": str(ws.password_file),
        "RESTIC_CACHE_DIR": str(ws.root / "cache"), "BACKUP_ROOT_DIR": str(ws.data),
        "RESTIC_RUNNER_STATE_DIR": str(ws.state), "METRICS_DIR": str(tmp_path / "metrics"),
        "PATH": f"{ws.restic.parent}:{env['PATH']}"})
    script, out = ws.root / "recorder.py", ws.root / "modules.json"
    script.write_text(RECORDER)
    done = subprocess.run([sys.executable, str(script), str(out), "run", "backup"],
                          env=env, capture_output=True, text=True, timeout=120,
                          cwd=ws.root)
    assert done.returncode == 0, done.stderr
    seen = json.loads(out.read_text())
    assert loaded_too_early(seen["modules"]) == []
    assert "runner.configuration.environment" in seen["modules"]
    assert (tmp_path / "metrics" / "restic_backup.prom").exists()


def test_version_loads_nothing_of_the_runner(ws: Workspace) -> None:
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "runner", "--version"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "restic-runner 0.1.0"
    loaded = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines()}
    assert {"runner", "runner.cli", "runner.cli.entry"} <= loaded
    assert not {m for m in loaded if m.startswith(("click", "runner.configuration", "runner."
                                                   "engine", "security", "notifiers"))}
