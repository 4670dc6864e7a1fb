"""Side by side: the peer's own worker scripts (restic-backup-helper 2.14.2, run from a copy
with their container paths rewritten: tests.support.peer) and restic-runner in environment
mode, on the same repository, data and variables, with real restic and rclone. Compared by
name, type and meaning: the last-run JSON fields, the METRICS_DIR textfile's metric families
and labels, the hooks' arguments and environment names, the exit codes, the mail subjects.

Expected differences (values, never names or types), listed in EXPECTED_DIFFERENCES: each side
runs at its own time on its own snapshot, so times, durations, snapshot ids and the sizes of
what each backup added differ; `release` is the peer's image release on its side and
restic-runner's on ours; ABSENT_WITH lists the fields an older restic cannot give us; our
textfiles may add the labels in EXTRA_LABELS. The peer's mail
goes to a `mail` stub (the machine has no mailx: tests.support.peer says why), ours to an SMTP
server on a loopback port."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from tests.support.peer import json_shape
from tests.support.processes import wait_until
from tests.support.sidebyside import HOSTNAME, USER_VARIABLE, SideBySide, side_by_side
from tests.support.smtp import ScriptedSmtp
from tests.support.workspace import Workspace

pytestmark = pytest.mark.slow

# field -> why its value may differ (its name and JSON type may not)
EXPECTED_DIFFERENCES = {
    "release": "the peer's image release there, restic-runner's version here",
    "started_at": "each side runs at its own time; ours is UTC with milliseconds "
                  "(2026-01-02T03:04:05.678Z), the peer's local time with an offset "
                  "(2026-01-02T04:04:05+0100): both ISO 8601",
    "finished_at": "as started_at",
    "duration_seconds": "each side runs at its own time",
    "snapshot_id": "each side makes its own snapshot",
    "files_new": "the second backup of the same data finds it unchanged",
    "files_changed": "the second backup of the same data finds it unchanged",
    "files_unmodified": "the second backup of the same data finds it unchanged",
    "bytes_added": "the second backup of the same data adds (almost) nothing",
    "bytes_stored": "the second backup of the same data adds (almost) nothing",
}
# fields ours cannot write with an older restic, and why: {restic version: {field: why}}
ABSENT_WITH = {
    "0.14": {"bytes_stored": "restic 0.14's JSON summary has no data_added_packed (the peer "
                             "reads it from restic's text output); restic >= 0.17 gives it"},
}
# labels our textfiles add to the peer's (selectors on the peer's labels still match)
EXTRA_LABELS = {
    "job_name": "restic-runner names the job a series is of (several jobs may share a kind)",
}
# metric families whose values follow the fields above
VOLATILE_METRICS = re.compile(r"_(duration_seconds|timestamp|files_\w+)$")
# restic's human summary of a backup, which the peer's mail body and backup-last.log carry
RESTIC_SUMMARY = (r"^Files:\s+\d+ new,\s+\d+ changed,\s+\d+ unmodified",
                  r"^Dirs:\s+\d+ new,", r"^Added to the repository: ",
                  r"^processed \d+ files", r"^snapshot [0-9a-f]{8,} saved")
SIZE = re.compile(r"^\d+(\.\d+)? (B|KiB|MiB|GiB|TiB)$")


def normalised_subject(subject: str) -> str:
    """A mail subject without what legitimately differs between two runs."""
    subject = re.sub(r" · (\d+h)?(\d+m)?\d+s( · |$)", r" · <duration>\3", subject)
    subject = re.sub(r"\(snap [0-9a-f]{8}\)", "(snap <id>)", subject)
    return re.sub(r"\d+(\.\d+)? (B|KiB|MiB|GiB|TiB) new", "<size> new", subject)


def ours_subjects(smtp: ScriptedSmtp, count: int) -> list[str]:
    """The subjects of the mails our side sent (delivery may finish after the run)."""
    wait_until(lambda: len(smtp.messages) >= count, 20, interval=0.05)
    return [str(message["Subject"]) for message in smtp.messages]


def assert_same_last_run(pair: SideBySide, job: str) -> tuple[dict, dict]:
    """Every field the peer writes is in ours, with its JSON type; the values that mean the
    same run outcome are equal."""
    peer, ours = pair.last_run("peer", job), pair.last_run("ours", job)
    peer_shape, ours_shape = json_shape(peer), json_shape(ours)
    absent = ABSENT_WITH.get(pair.ws.restic_version, {})
    missing = sorted(set(peer_shape) - set(ours_shape) - set(absent))
    assert not missing, f"last-{job}.json lacks the peer's fields {missing}:\n{ours}"
    wrong = {k: (peer_shape[k], ours_shape[k]) for k in peer_shape
             if k in ours_shape and peer_shape[k] != ours_shape[k]}
    assert not wrong, f"last-{job}.json: (peer's type, ours) differ: {wrong}"
    for key in set(peer) & set(ours) - set(EXPECTED_DIFFERENCES):
        assert ours[key] == peer[key], (key, peer[key], ours[key])
    started, finished = (datetime.fromisoformat(ours[k]) for k in ("started_at", "finished_at"))
    assert started.tzinfo is not None and started <= finished, ours  # ISO 8601, with a zone
    return peer, ours


def assert_same_metrics(pair: SideBySide, job: str) -> None:
    """The peer's families are in our restic_<job>.prom with the peer's labels; the values
    that mean the outcome are equal."""
    peer, ours = pair.metrics("peer", job), pair.metrics("ours", job)
    missing = sorted(set(peer) - set(ours))
    assert not missing, f"restic_{job}.prom lacks the peer's families {missing}"
    for family, (labels, value) in peer.items():
        extra = set(ours[family][0]) - set(labels)
        assert extra <= set(EXTRA_LABELS), (family, labels, ours[family][0])
        assert {k: ours[family][0].get(k) for k in labels} == labels, (family, ours[family][0])
        if not VOLATILE_METRICS.search(family):
            assert float(ours[family][1]) == float(value), (family, value, ours[family][1])


def assert_same_hooks(pair: SideBySide, job: str, exit_code: int) -> None:
    """Pre hook: no argument; post hook: the exit code as $1; both see the variables the
    peer's hooks see (the container's environment, the user's own included), ours also
    RESTIC_RUNNER_* ones."""
    for phase, args in ((f"pre-{job}", []), (f"post-{job}", [str(exit_code)])):
        peer, ours = pair.hook("peer", phase), pair.hook("ours", phase)
        assert peer is not None and peer[0] == args, (phase, peer)
        assert ours is not None, f"our {phase} hook did not run"
        assert ours[0] == args, (phase, ours[0])
        given = set(pair.variables) & set(peer[1])
        assert USER_VARIABLE[0] in given
        missing = sorted(given - set(ours[1]))
        assert not missing, f"our {phase} hook lacks {missing}"
        assert ours[1][USER_VARIABLE[0]] == USER_VARIABLE[1]
        assert any(name.startswith("RESTIC_RUNNER_") for name in ours[1]), sorted(ours[1])


def test_a_backup_side_by_side(ws: Workspace, smtp: ScriptedSmtp) -> None:
    """A good backup (with the inline forget): exit 0 on both; the same last-backup.json
    fields and types, the same metric families and labels, the same hook calls, mail subjects
    of the same form, restic's summary lines in the mail body and backup-last.log; both
    snapshots are in the repository."""
    pair = side_by_side(ws, smtp.start().port)
    peer_done, ours_done = pair.run_peer("backup"), pair.run_ours("backup")
    assert peer_done.returncode == 0, peer_done.stdout + peer_done.stderr
    assert ours_done.returncode == 0, ours_done.stdout + ours_done.stderr
    peer, ours = assert_same_last_run(pair, "backup")
    snapshots = {s["short_id"] for s in ws.snapshots()}
    assert {peer["snapshot_id"], ours["snapshot_id"]} <= snapshots
    assert SIZE.match(ours["bytes_added"]), ours
    assert SIZE.match(ours.get("bytes_stored", "")) or "bytes_stored" in ABSENT_WITH.get(
        ws.restic_version, {}), ours
    assert all(ours[k].isdigit() for k in ("files_new", "files_changed", "files_unmodified"))
    assert ours["forget_exit_code"] == "0"
    assert_same_metrics(pair, "backup")
    assert_same_hooks(pair, "backup", 0)
    [(peer_subject, rcpt, body)] = pair.peer.mails()
    [ours_subject] = ours_subjects(smtp, 1)
    assert normalised_subject(ours_subject) == normalised_subject(peer_subject), \
        (peer_subject, ours_subject)
    assert f"(snap {ours['snapshot_id'][:8]})" in ours_subject
    assert rcpt == "ops@example.invalid" == str(smtp.messages[0]["To"])
    ours_body = smtp.messages[0].get_body(preferencelist=("plain",)).get_content()
    ours_log = (pair.ours.log / "backup-last.log").read_text()
    peer_log = (pair.peer.log / "backup-last.log").read_text()
    for pattern in RESTIC_SUMMARY:  # restic's own summary lines, not JSON
        if re.search(pattern, body, re.M) and re.search(pattern, peer_log, re.M):
            assert re.search(pattern, ours_body, re.M), (pattern, ours_body)
            assert re.search(pattern, ours_log, re.M), (pattern, ours_log)


@pytest.mark.parametrize("failure", ["missing path", "wrong password"])
def test_a_failing_backup_side_by_side(ws18: Workspace, smtp: ScriptedSmtp,
                                       failure: str) -> None:
    """A backup of a path that does not exist, or with a wrong password: the same non-zero
    exit code (restic's) on both, in last-backup.json and the metrics, as the post hook's $1
    and in the mail subject ("[FAIL <code>] Backup <host> · <duration> · <repository>")."""
    pair = side_by_side(ws18, smtp.start().port)
    if failure == "missing path":
        change = {"BACKUP_ROOT_DIR": str(ws18.root / "no-such-directory")}
    else:
        wrong = ws18.root / "wrong-password"
        wrong.write_text("not-the-password\n")
        wrong.chmod(0o600)
        change = {"RESTIC_PASSWORD_FILE": str(wrong)}
    peer_done, ours_done = pair.run_peer("backup", **change), pair.run_ours("backup", **change)
    assert peer_done.returncode != 0
    assert ours_done.returncode == peer_done.returncode, (peer_done.returncode,
                                                          ours_done.stdout + ours_done.stderr)
    ours = assert_same_last_run(pair, "backup")[1]
    assert ours["exit_code"] == peer_done.returncode
    assert_same_metrics(pair, "backup")
    assert_same_hooks(pair, "backup", peer_done.returncode)
    [(peer_subject, _, _)] = pair.peer.mails()
    assert peer_subject.startswith(f"[FAIL {peer_done.returncode}] Backup {HOSTNAME} · ")
    [ours_subject] = ours_subjects(smtp, 1)
    assert normalised_subject(ours_subject) == normalised_subject(peer_subject), \
        (peer_subject, ours_subject)


@pytest.mark.parametrize("job", ["check", "forget", "prune"])
def test_a_maintenance_job_side_by_side(ws18: Workspace, smtp: ScriptedSmtp, job: str) -> None:
    """/bin/check, /bin/forget (the standalone worker: RESTIC_FORGET_ARGS reused) and
    /bin/prune with their *_CRON empty, and `run <job>`: exit 0, the same last-<job>.json,
    metrics, hooks and mail subject form ("[OK] <Job> <host> · <duration> · <repository>")."""
    ws18.snapshots_by_restic(2)
    pair = side_by_side(ws18, smtp.start().port)
    peer_done, ours_done = pair.run_peer(job), pair.run_ours(job)
    assert peer_done.returncode == 0, peer_done.stdout + peer_done.stderr
    assert ours_done.returncode == 0, ours_done.stdout + ours_done.stderr
    assert_same_last_run(pair, job)
    assert_same_metrics(pair, job)
    assert_same_hooks(pair, job, 0)
    [(peer_subject, _, _)] = pair.peer.mails()
    assert peer_subject.startswith(f"[OK] {job.capitalize()} {HOSTNAME} · "), peer_subject
    [ours_subject] = ours_subjects(smtp, 1)
    assert normalised_subject(ours_subject) == normalised_subject(peer_subject), \
        (peer_subject, ours_subject)


def test_forget_without_a_policy_side_by_side(ws18: Workspace, smtp: ScriptedSmtp) -> None:
    """FORGET_CRON set, RESTIC_FORGET_ARGS empty: the peer's /bin/forget refuses with exit 2
    ("No retention policy configured"); ours exits 2 as well, and the backup still runs.
    Deliberate difference: the peer records that refusal as a run (last-forget.json, a
    "[FAIL 2] Forget" mail, the post hook, each time its cron fires); ours disables the job
    (a start-up warning, a failing doctor line) and a manual run is refused before it starts."""
    pair = side_by_side(ws18, smtp.start().port)
    change = {"FORGET_CRON": "30 1 * * *", "RESTIC_FORGET_ARGS": ""}
    peer_done, ours_done = pair.run_peer("forget", **change), pair.run_ours("forget", **change)
    assert peer_done.returncode == 2, peer_done.stdout + peer_done.stderr
    assert ours_done.returncode == 2, ours_done.stdout + ours_done.stderr
    backup = pair.run_ours("backup", **change)
    assert backup.returncode == 0, backup.stdout + backup.stderr


def test_a_replicate_run_side_by_side(ws18: Workspace, smtp: ScriptedSmtp) -> None:
    """A job file with a good copy line and a malformed line: both process 2 lines, count 1
    failed, exit 2 (the peer's code for a malformed line), write the counts as the peer does,
    run the hooks once ($1 = 2) and send one mail with the counts."""
    pair = side_by_side(ws18, smtp.start().port)
    source = ws18.data
    job_file = ws18.root / "replicate_jobs.txt"
    job_file.write_text(f"# two lines\n{source};{ws18.root / 'copy-PEER'};copy\n"
                        f"{ws18.root / 'no-destination'};\n")
    peer_done = pair.run_peer("replicate", REPLICATE_JOB_FILE=str(job_file))
    job_file.write_text(job_file.read_text().replace("copy-PEER", "copy-OURS"))
    ours_done = pair.run_ours("replicate", REPLICATE_JOB_FILE=str(job_file))
    assert peer_done.returncode == 2, peer_done.stdout + peer_done.stderr
    assert ours_done.returncode == 2, ours_done.stdout + ours_done.stderr
    assert (ws18.root / "copy-PEER").is_dir() and (ws18.root / "copy-OURS").is_dir()
    peer = assert_same_last_run(pair, "replicate")[0]
    assert (peer["replicate_jobs_processed"], peer["replicate_jobs_failed"]) == ("2", "1")
    assert_same_metrics(pair, "replicate")
    assert "restic_replicate_last_replicate_jobs_failed" in pair.metrics("ours", "replicate")
    assert_same_hooks(pair, "replicate", 2)
    [(peer_subject, _, _)] = pair.peer.mails()
    assert peer_subject.endswith("· 2 jobs (1 failed)"), peer_subject
    [ours_subject] = ours_subjects(smtp, 1)
    assert normalised_subject(ours_subject) == normalised_subject(peer_subject), \
        (peer_subject, ours_subject)


def test_hooks_get_the_secrets_and_outputs_do_not(ws18: Workspace, smtp: ScriptedSmtp) -> None:
    """RESTIC_PASSWORD given inline (the peer's smoke setup): the hooks of both sides see it
    (the peer's hooks call restic themselves), while our outputs (the command's, the compat
    log files, the mail) never show it."""
    pair = side_by_side(ws18, smtp.start().port)
    password = ws18.password_file.read_text().strip()
    del pair.variables["RESTIC_PASSWORD_FILE"]
    del pair.ours.variables["RESTIC_PASSWORD_FILE"]
    pair.variables["RESTIC_PASSWORD"] = pair.ours.variables["RESTIC_PASSWORD"] = password
    peer_done, ours_done = pair.run_peer("backup"), pair.run_ours("backup")
    assert peer_done.returncode == 0, peer_done.stdout + peer_done.stderr
    assert ours_done.returncode == 0, ours_done.stdout + ours_done.stderr
    assert_same_hooks(pair, "backup", 0)
    hook = pair.hook("ours", "post-backup")
    assert hook is not None and hook[1]["RESTIC_PASSWORD"] == password
    ours_subjects(smtp, 1)
    mail = smtp.messages[0].as_string()
    files = [p.read_text(errors="replace") for p in pair.ours.log.rglob("*") if p.is_file()]
    leaks = [text[:200] for text in [ours_done.stdout, ours_done.stderr, mail, *files]
             if password in text]
    assert not leaks, leaks
