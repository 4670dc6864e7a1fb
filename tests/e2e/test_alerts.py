"""What operators see in Prometheus, with real components: Debian's Pushgateway and Prometheus
(the shipped rules loaded, the gateway scraped with `honor_labels: true` as docs/metrics.md
says), and `restic-runner serve` or `schedule` pushing to the gateway. A job nobody ever
triggered has its group from start-up, so `ResticRunnerNeverSucceeded` goes pending for it."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.support.envmode import EnvRunner
from tests.support.paths import RUNNER
from tests.support.processes import free_port, stop_process, wait_until
from tests.support.prometheus import pushgateway_scrape, running_prometheus
from tests.support.pushgateway import (
    PG_PASSWORD,
    PG_USER,
    Pushgateway,
    start_pushgateway,
    start_pushgateway_on,
)
from tests.support.secrets import secret_file
from tests.support.service import start_serve
from tests.support.workspace import Workspace

JOBS = """
[jobs.nightly]
kind = "backup"
paths = ["{data}"]
schedule = "0 3 * * *"

[jobs.verify]
kind = "check"
max_age = "3d"
"""


def pushgateway_config(ws: Workspace, url: str, *, password: bool, extra: str = "") -> str:
    auth = ""
    if password:
        secret = secret_file(ws.root / "pg.password", PG_PASSWORD)
        auth = f'username = "{PG_USER}"\npassword_file = "{secret}"\n'
    return f'\n[notify]\nretry_initial = "1s"\n{extra}\n[notify.pushgateway]\nurl = "{url}"\n{auth}'


def announced(gateway: Pushgateway, job: str) -> float | None:
    return gateway.value("restic_runner_job_max_age_seconds", job="restic_runner",
                         hostname="test-host", job_name=job)


def test_a_job_that_never_ran_goes_pending_in_prometheus(ws18: Workspace,
                                                         tmp_path: Path) -> None:
    (tmp_path / "pg").mkdir()
    gateway = start_pushgateway(tmp_path / "pg", password=PG_PASSWORD)
    port = free_port()
    ws18.write_config(JOBS.format(data=ws18.data)
                      + pushgateway_config(ws18, gateway.url, password=True),
                      top=f'[server]\nbind = "127.0.0.1:{port}"\nworkers = 1\n')
    url = f"http://127.0.0.1:{port}"
    serve = start_serve(ws18.env(), ws18.root, url, ws18.root / "serve.log")
    try:
        # nothing ran: start-up alone put both groups there, with what the alerts need
        wait_until(lambda: announced(gateway, "nightly") and announced(gateway, "verify"), 20)
        assert announced(gateway, "nightly") == 26 * 3600
        assert announced(gateway, "verify") == 3 * 86400
        assert gateway.value("restic_backup_running", job_name="nightly") == 0.0
        assert gateway.value("restic_backup_last_success_timestamp", job_name="nightly") is None
        assert gateway.value("push_time_seconds", job_name="verify") is not None

        scrape = pushgateway_scrape(gateway.url, auth=(PG_USER, PG_PASSWORD),
                                    secrets_dir=tmp_path)
        with running_prometheus(tmp_path / "prometheus", [scrape]) as prometheus:
            def pending() -> dict[str, dict[str, object]]:
                alerts = prometheus.alerts("ResticRunnerNeverSucceeded")
                return {a["labels"]["job_name"]: a for a in alerts
                        if a["state"] == "pending"} if len(alerts) == 2 else {}

            alerts = wait_until(pending, 30, 0.2)
            assert set(alerts) == {"nightly", "verify"}
            labels = alerts["verify"]["labels"]
            assert labels == {"alertname": "ResticRunnerNeverSucceeded", "hostname": "test-host",
                              "job_name": "verify", "severity": "critical"}
            annotations = alerts["verify"]["annotations"]
            assert isinstance(annotations, dict) and annotations["max_age"] == "3d 0h 0m 0s"
            # no other alert: nothing failed, nothing is old, nothing is running
            assert {a["labels"]["alertname"] for a in prometheus.alerts()} == \
                {"ResticRunnerNeverSucceeded"}
        assert PG_PASSWORD not in (ws18.root / "serve.log").read_text()
    finally:
        stop_process(serve)
        gateway.stop()


def test_start_up_never_waits_for_a_dead_gateway(ws18: Workspace, tmp_path: Path) -> None:
    """The gateway is down when `serve` starts: the service answers at once, and the groups
    arrive once the gateway is up (the announcement is retried from the outbox)."""
    pg_port, port = free_port(), free_port()
    ws18.write_config(JOBS.format(data=ws18.data)
                      + pushgateway_config(ws18, f"http://127.0.0.1:{pg_port}", password=False),
                      top=f'[server]\nbind = "127.0.0.1:{port}"\nworkers = 1\n')
    url = f"http://127.0.0.1:{port}"
    serve = start_serve(ws18.env(), ws18.root, url, ws18.root / "serve.log")
    (tmp_path / "pg").mkdir()
    gateway = None
    try:
        # the deliveries worker tried, failed, and keeps it for a retry
        log = ws18.root / "serve.log"
        wait_until(lambda: "job.announce of run announce:nightly to pushgateway" in
                   log.read_text(), 20, 0.1)
        gateway = start_pushgateway_on(tmp_path / "pg", pg_port)
        wait_until(lambda: announced(gateway, "nightly") and announced(gateway, "verify"), 30,
                   0.2)
    finally:
        stop_process(serve)
        if gateway is not None:
            gateway.stop()


def test_schedule_announces_and_names_groups_no_longer_pushed(ws18: Workspace,
                                                               tmp_path: Path) -> None:
    """`restic-runner schedule` (what the container runs in environment mode without an API)
    announces too; the groups of this host's jobs that are no longer pushed (removed from the
    config, or from `[notify.pushgateway] jobs`) are named in its log, and are exactly what
    `prune_groups` (`metrics prune`) deletes."""
    from notifiers.pushgateway import prune_groups
    from runner.configuration.load import load_config

    (tmp_path / "pg").mkdir()
    gateway = start_pushgateway(tmp_path / "pg")
    try:
        jobs = JOBS.format(data=ws18.data)
        ws18.write_config(jobs + '\n[jobs.old]\nkind = "check"\n'
                          + pushgateway_config(ws18, gateway.url, password=False))
        assert ws18.run_json("old")[0] == 0  # `old` and `verify` have groups from a run
        assert ws18.run_json("verify")[0] == 0
        # `old` leaves the config; `verify` stays, but is no longer pushed
        ws18.write_config(jobs + pushgateway_config(ws18, gateway.url, password=False)
                          + 'jobs = ["nightly"]\n')
        log = ws18.root / "schedule.log"
        with open(log, "wb") as out:
            scheduler = subprocess.Popen([RUNNER, "schedule"], env=ws18.env(), cwd=ws18.root,
                                         stdout=out, stderr=out)
        try:
            wait_until(lambda: announced(gateway, "nightly"), 20)
            assert gateway.value("restic_backup_running", job_name="nightly") == 0.0
            wait_until(lambda: "metrics prune" in log.read_text(), 20, 0.1)
            assert "groups of jobs no longer pushed from test-host: old, verify; " \
                   "`restic-runner metrics prune` deletes them" in log.read_text()
        finally:
            stop_process(scheduler)
        groups = {g["labels"]["job_name"] for g in gateway.groups()}
        assert groups == {"nightly", "old", "verify"}  # named, never deleted at start-up
        deleted = prune_groups(load_config(str(ws18.config_path)))
        assert sorted(g["job_name"] for g in deleted) == ["old", "verify"]
        assert {g["labels"]["job_name"] for g in gateway.groups()} == {"nightly"}
    finally:
        gateway.stop()


def test_a_failure_fires_its_alert_and_keeps_the_last_success_stats(ws18: Workspace,
                                                                    tmp_path: Path) -> None:
    """A success, then a failure of the same job (its paths vanish): Prometheus, reading the
    gateway only, fires `ResticRunnerLastRunFailed` and still has the success's stats."""
    (tmp_path / "pg").mkdir()
    gateway = start_pushgateway(tmp_path / "pg")
    try:
        ws18.write_config(JOBS.format(data=ws18.data)
                          + pushgateway_config(ws18, gateway.url, password=False))
        code, ok = ws18.run_json("nightly")
        assert code == 0 and ok["stats"]["data_added"] > 0
        ws18.data.rename(ws18.root / "moved-away")
        code, failed = ws18.run_json("nightly")
        assert code != 0 and failed["status"] == "failed"
        with running_prometheus(tmp_path / "prometheus",
                                [pushgateway_scrape(gateway.url)]) as prometheus:
            def firing() -> list[dict[str, object]]:
                return [a for a in prometheus.alerts("ResticRunnerLastRunFailed")
                        if a["state"] == "firing"]

            alert = wait_until(firing, 30, 0.2)[0]
            assert alert["labels"] == {"alertname": "ResticRunnerLastRunFailed",
                                       "hostname": "test-host", "job_name": "nightly",
                                       "severity": "warning"}
            assert alert["value"] == f"{failed['exit_code']}e+00"

            def value(metric: str) -> float | None:
                samples = prometheus.query(f'{metric}{{job_name="nightly"}}')
                return float(samples[0]["value"][1]) if samples else None

            assert value("restic_backup_last_success") == 0
            assert value("restic_backup_last_data_added_bytes") is None  # the failure's: none
            for stat, suffix in (("data_added", "data_added_bytes"), ("files_new", "files_new"),
                                 ("files_changed", "files_changed")):
                assert value(f"restic_backup_last_success_{suffix}") == ok["stats"][stat]
            success_at = value("restic_backup_last_success_timestamp")
            assert success_at is not None and success_at > 0
    finally:
        gateway.stop()


def test_environment_mode_announces_the_helpers_jobs(ws18: Workspace, tmp_path: Path) -> None:
    """The container in environment mode (restic-backup-helper's variables, no config file)
    runs `restic-runner schedule`: its jobs are in the gateway before any cron line fires."""
    (tmp_path / "pg").mkdir()
    gateway = start_pushgateway(tmp_path / "pg")
    runner = EnvRunner(tmp_path / "env", ws18.restic, {
        "RESTIC_REPOSITORY": str(ws18.repo), "RESTIC_PASSWORD_FILE": str(ws18.password_file),
        "BACKUP_ROOT_DIR": str(ws18.data), "BACKUP_CRON": "0 3 * * *",
        "CHECK_CRON": "0 4 * * 0", "HOSTNAME": "helper-host",
        "RESTIC_RUNNER_PUSHGATEWAY_URL": gateway.url})
    runner.root.mkdir()
    scheduler = runner.popen("schedule")
    try:
        def groups() -> set[str]:
            return {g["labels"]["job_name"] for g in gateway.groups()
                    if g["labels"].get("hostname") == "helper-host"
                    and "restic_runner_job_max_age_seconds" in g}

        assert {"backup", "check"} <= wait_until(
            lambda: groups() if {"backup", "check"} <= groups() else set(), 30, 0.2)
        assert gateway.value("restic_backup_running", job_name="backup") == 0.0
        assert gateway.value("restic_check_running", job_name="check") == 0.0
    finally:
        stop_process(scheduler)
        gateway.stop()
