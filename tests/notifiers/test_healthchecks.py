"""healthchecks.io pings: /start and /<exit code> with the run id, the log's tail within the
server's Ping-Body-Limit, /log for skipped runs, UUID, self-hosted and slug URLs."""

from __future__ import annotations

import uuid

from tests.support.receivers import Receiver
from tests.support.secrets import secret_file
from tests.support.workspace import Workspace

CHECK = str(uuid.uuid4())


def configure(ws: Workspace, receiver: Receiver, *, url: str, extra: str = "",
              hook: str = "") -> None:
    noisy = ws.root / "noisy.sh"  # a long log: far more than the receiver's 1500-byte limit
    # with a `hold` file present, the hook waits for `release` (a run kept going on demand)
    noisy.write_text("#!/bin/sh\nfor i in $(seq 1 200); do echo \"line $i of the hook's "
                     "output, long enough to fill a log\"; done\n"
                     f"if [ -e {ws.root}/hold ]; then\n"
                     f"  while [ ! -e {ws.root}/release ]; do sleep 0.05; done\nfi\n")
    noisy.chmod(0o755)
    url_file = secret_file(ws.root / "hc.url", url)
    ws.write_config(f"""
[jobs.nightly]
kind = "backup"
paths = ["{ws.data}"]
pre_hook = ["{noisy}"]
pre_hook_on_error = "continue"
{hook}

[jobs.broken]
kind = "backup"
paths = ["{ws.data}/missing"]

[notify.healthchecks.nightly]
url_file = "{url_file}"
jobs = ["nightly", "broken"]
{extra}
""")


def test_start_and_exit_code_with_the_same_rid(ws18: Workspace, hc_receiver: Receiver) -> None:
    configure(ws18, hc_receiver, url=f"{hc_receiver.url}/{CHECK}")
    code, record = ws18.run_json("nightly")
    assert code == 0
    start, end = hc_receiver.wait_for(2)
    rid = record["run_id"]
    assert start.path == f"/{CHECK}/start?rid={rid}"
    assert start.body == b""
    assert end.path == f"/{CHECK}/0?rid={rid}"
    assert 0 < len(end.body) <= 1500  # the limit the server advertised on /start
    text = end.body.decode("utf-8")
    assert "finished: succeeded" in text  # the tail: the end of the log, not its start
    assert "line 1 of" not in text
    notes = [(n["event"], n["status"]) for n in record["notifications"]]
    assert notes == [("run.started", "delivered"), ("run.succeeded", "delivered")]


def test_a_failed_run_pings_its_exit_code(ws18: Workspace, hc_receiver: Receiver) -> None:
    configure(ws18, hc_receiver, url=f"{hc_receiver.url}/ping/{CHECK}")  # self-hosted form
    code, record = ws18.run_json("broken")
    assert code != 0
    start, end = hc_receiver.wait_for(2)
    assert start.path == f"/ping/{CHECK}/start?rid={record['run_id']}"
    assert end.path == f"/ping/{CHECK}/{code}?rid={record['run_id']}"


def test_slug_urls_with_create(ws18: Workspace, hc_receiver: Receiver) -> None:
    configure(ws18, hc_receiver, url=f"{hc_receiver.url}/pingkey-Ab12/nightly-backup",
              extra="create = true")
    code, record = ws18.run_json("nightly")
    assert code == 0
    start, end = hc_receiver.wait_for(2)
    assert start.path == f"/pingkey-Ab12/nightly-backup/start?rid={record['run_id']}&create=1"
    assert end.path == f"/pingkey-Ab12/nightly-backup/0?rid={record['run_id']}&create=1"


def test_without_an_advertised_limit_the_body_is_cut_at_100000_bytes(
        ws18: Workspace, receiver: Receiver) -> None:
    configure(ws18, receiver, url=f"{receiver.url}/{CHECK}",
              hook='args = ["--verbose"]')
    code, _ = ws18.run_json("nightly")
    assert code == 0
    _, end = receiver.wait_for(2)
    log_size = sum(p.stat().st_size for p in (ws18.state / "logs" / "nightly").glob("*.log"))
    assert len(end.body) == min(log_size, 100_000)


def test_a_skipped_run_sends_log(ws18: Workspace, hc_receiver: Receiver) -> None:
    configure(ws18, hc_receiver, url=f"{hc_receiver.url}/{CHECK}")
    (ws18.root / "hold").touch()
    first = ws18.popen("run", "nightly")
    try:
        hc_receiver.wait_for(1)  # the first run has started; its hook holds it
        code, skipped = ws18.run_json("nightly")
        assert code == 0 and skipped["status"] == "skipped"
    finally:
        (ws18.root / "release").touch()
        assert first.wait(60) == 0
    paths = [r.path for r in hc_receiver.wait_for(3)]
    assert f"/{CHECK}/log?rid={skipped['run_id']}" in paths
    assert not any(p.startswith(f"/{CHECK}/start?rid={skipped['run_id']}") for p in paths)


def test_the_url_file_is_masked_in_errors(ws18: Workspace) -> None:
    down = Receiver(9)  # discard port: nothing listens
    configure(ws18, down, url=f"http://127.0.0.1:9/{CHECK}", extra="")
    ws18.config_path.write_text(ws18.config_path.read_text() + "\n[notify]\ncli_wait = 0\n")
    done = ws18.cli("run", "nightly", "--json")
    assert done.returncode == 0
    assert CHECK not in done.stdout + done.stderr
    for log in (ws18.state / "logs").rglob("*.log"):
        assert CHECK not in log.read_text()
    assert CHECK not in (ws18.state / "last-nightly.json").read_text()
