"""healthchecks.io pings: /start and /<exit code> with the run id, the log's tail within the
server's Ping-Body-Limit (10,000 bytes until a server has said its own), marked where it was cut,
/log for skipped runs, UUID, self-hosted and slug URLs, and a 404 that stops the target (a
deleted check; with `create`, an unknown ping key) with a reason `doctor` shows."""

from __future__ import annotations

import json
import re
import uuid

from tests.support.receivers import Receiver
from tests.support.secrets import secret_file
from tests.support.workspace import Workspace

CHECK = str(uuid.uuid4())


def configure(ws: Workspace, receiver: Receiver, *, url: str, extra: str = "",
              hook: str = "", lines: int = 200) -> None:
    noisy = ws.root / "noisy.sh"  # a long log: far more than the receiver's 1500-byte limit
    # with a `hold` file present, the hook waits for `release` (a run kept going on demand)
    noisy.write_text(f"#!/bin/sh\nfor i in $(seq 1 {lines}); do echo \"line $i of the hook's "
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
    *start, end = hc_receiver.wait_for(1)
    assert end.path == f"/ping/{CHECK}/{code}?rid={record['run_id']}"
    # the run fails within milliseconds: its start, if not sent by the time the failure is
    # queued, is dropped (superseded), never sent after it
    started = [n["status"] for n in record["notifications"] if n["event"] == "run.started"]
    assert [r.path for r in start] == ([f"/ping/{CHECK}/start?rid={record['run_id']}"]
                                       if started == ["delivered"] else [])
    assert started in (["delivered"], ["superseded"])


def test_slug_urls_with_create(ws18: Workspace, hc_receiver: Receiver) -> None:
    configure(ws18, hc_receiver, url=f"{hc_receiver.url}/pingkey-Ab12/nightly-backup",
              extra="create = true")
    code, record = ws18.run_json("nightly")
    assert code == 0
    start, end = hc_receiver.wait_for(2)
    assert start.path == f"/pingkey-Ab12/nightly-backup/start?rid={record['run_id']}&create=1"
    assert end.path == f"/pingkey-Ab12/nightly-backup/0?rid={record['run_id']}&create=1"


def the_log(ws: Workspace, job: str, run_id: str) -> bytes:
    return (ws.state / "logs" / job / f"{run_id}.log").read_bytes()


def assert_cut(body: bytes, log: bytes, limit: int, run_id: str) -> None:
    """The body fits in `limit` bytes, ends where the log ends, and its first line says how
    many bytes of the log's start are left out (exactly those before what it kept)."""
    assert len(body) <= limit
    mark, kept = body.split(b"\n", 1)
    match = re.fullmatch(r"\[the first (\d+) bytes of the log are left out: only its end fits "
                         r"in a ping; the whole log: GET /runs/(\S+)/log\]", mark.decode())
    assert match, mark
    assert match[2] == run_id
    assert int(match[1]) == len(log) - len(kept)
    assert log.endswith(kept) and len(body) > limit - 600  # cut at a line's start, no sooner


def test_without_an_advertised_limit_the_body_keeps_the_logs_last_10000_bytes(
        ws18: Workspace, receiver: Receiver) -> None:
    # a self-hosted healthchecks keeps the first 10,000 bytes of a longer body: a longer one
    # would lose the log's end (the summary, the error), so none is sent
    configure(ws18, receiver, url=f"{receiver.url}/{CHECK}", lines=400)
    code, record = ws18.run_json("nightly")
    assert code == 0
    _, end = receiver.wait_for(2)
    log = the_log(ws18, "nightly", record["run_id"])
    assert len(log) > 10_000
    assert_cut(end.body, log, 10_000, record["run_id"])
    assert "finished: succeeded" in end.body.decode()[-400:]  # the summary survives


def test_the_servers_limit_is_honoured_once_seen(ws18: Workspace, receiver: Receiver) -> None:
    """The start ping's answer says 20,000: the end's body uses it, above the default."""
    receiver.default = (200, {"Ping-Body-Limit": "20000"})
    configure(ws18, receiver, url=f"{receiver.url}/{CHECK}", lines=600)
    code, record = ws18.run_json("nightly")
    assert code == 0
    _, end = receiver.wait_for(2)
    log = the_log(ws18, "nightly", record["run_id"])
    assert len(log) > 20_000
    assert_cut(end.body, log, 20_000, record["run_id"])


def test_a_log_within_the_limit_is_sent_whole(ws18: Workspace, receiver: Receiver) -> None:
    configure(ws18, receiver, url=f"{receiver.url}/{CHECK}", lines=5)
    code, record = ws18.run_json("nightly")
    assert code == 0
    _, end = receiver.wait_for(2)
    assert end.body == the_log(ws18, "nightly", record["run_id"])


def stopped_lines(ws: Workspace) -> list[tuple[str, str]]:
    report = json.loads(ws.cli("doctor", "--json").stdout)
    return [(c["status"], c["message"]) for c in report["checks"] if "stopped" in c["message"]]


def test_a_404_for_a_deleted_check_stops_the_target(ws18: Workspace,
                                                    receiver: Receiver) -> None:
    receiver.default = (404, {})
    configure(ws18, receiver, url=f"{receiver.url}/ping/{CHECK}")
    code, record = ws18.run_json("nightly")
    assert code == 0
    notes = [(n["event"], n["status"], n["attempts"]) for n in record["notifications"]]
    # one ping refused, then nothing sent: the start, or the end if the run ended before its
    # start was sent (the start then superseded)
    assert notes in ([("run.started", "disabled", 1), ("run.succeeded", "disabled", 0)],
                     [("run.started", "superseded", 0), ("run.succeeded", "disabled", 1)])
    [(status, line)] = stopped_lines(ws18)
    assert status == "fail"
    assert re.fullmatch(r"healthchecks:nightly: stopped, nothing is sent to it: "
                        r"http://127\.0\.0\.1:\d+/\.\.\. answered HTTP 404: the server has "
                        r"no check with this UUID \(deleted, or a wrong URL\); pings stopped "
                        r"\(since \S+; change its configuration to enable it again\)", line), line
    assert CHECK not in line
    assert len(receiver.requests) == 1


def test_a_404_with_create_means_an_unknown_ping_key(ws18: Workspace,
                                                     receiver: Receiver) -> None:
    # `create=1` makes a missing check; healthchecks answers 404 only when no project has the
    # ping key: no ping can work until the key is fixed
    receiver.default = (404, {})
    configure(ws18, receiver, url=f"{receiver.url}/ping/pingkey-Ab12/nightly-backup",
              extra="create = true")
    code, record = ws18.run_json("nightly")
    assert code == 0
    [refused] = [n for n in record["notifications"] if n["attempts"]]
    assert "knows no project with this ping key" in refused["attempt_log"][0]["error"]
    assert "pingkey-Ab12" not in json.dumps(record)
    [(status, line)] = stopped_lines(ws18)
    assert status == "fail" and "knows no project with this ping key" in line


def test_a_404_for_a_slug_without_create(ws18: Workspace, receiver: Receiver) -> None:
    receiver.default = (404, {})
    configure(ws18, receiver, url=f"{receiver.url}/pingkey-Ab12/nightly-backup")
    ws18.run_json("nightly")
    [(_, line)] = stopped_lines(ws18)
    assert "no check with this slug for this ping key (deleted or renamed; create = true " \
           "would make it)" in line


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
