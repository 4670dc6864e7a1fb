"""What a hostile receiver or Pushgateway answers cannot reach a terminal or a log line as
control sequences, nor stop the start-up announcements (docs/reliability.md, sixth review)."""

from __future__ import annotations

import http.server
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from notifiers.httpclient import Answer, HttpError, answer_error
from notifiers.pushgateway import PushgatewayTarget
from runner.cli.output import echo
from runner.configuration.notify import PushgatewaySettings
from runner.eventlog import MaskedText
from security.controlchars import printable, printable_lines

HOSTILE = "not found\x1b[2J\x1b[1;1H\x1b]0;pwned\x07FAKE: all OK\x1b[8m\r\n[ERROR] forged"


def test_control_characters_are_shown_not_sent() -> None:
    assert printable("a\x1b[2Jb\rc\x07\x9bd\te\nf") == \
        "a\\u001b[2Jb\\rc\\u0007\\u009bd\\te\\nf"
    assert printable_lines("a\nb\x1b\tc") == "a\nb\\u001b\tc"
    assert printable("plain: ÄÖ € %/@") == "plain: ÄÖ € %/@"


def test_a_receivers_answer_is_one_line_without_escapes() -> None:
    answer = Answer(404, {}, HOSTILE.encode())
    # a delivery's error (every API client of the job reads it) never quotes the server
    assert answer_error(answer, "https://hc.example/ping/x") == \
        "https://hc.example/... answered HTTP 404"
    text = answer_error(answer, "https://hc.example/ping/x", quote=True)  # doctor, prune
    assert "\x1b" not in text and "\r" not in text and "\n" not in text and "\x07" not in text
    assert "\\u001b[2J" in text and text.startswith("https://hc.example/... answered HTTP 404: ")


def test_the_cli_and_the_log_show_control_characters_escaped(
        capsys: pytest.CaptureFixture[str]) -> None:
    echo(f"reason: {HOSTILE}")
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\r" not in out and out.count("\n") == 2  # the one kept, +1
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "label %s", ("gone\n[ERROR] "
                               "FAKE line\x1b[8m",), None)
    line = MaskedText().format(record)
    assert "\n" not in line and "\x1b" not in line and line.endswith("gone\\n[ERROR] FAKE "
                                                                       "line\\u001b[8m")


@pytest.fixture
def gateway_answering() -> Iterator[list[bytes]]:
    """A fake Pushgateway whose /api/v1/metrics answers the bodies given, in turn."""
    bodies: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = bodies.pop(0)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    bodies.append(str(server.server_address[1]).encode())  # the port, for the test
    yield bodies
    server.shutdown()
    server.server_close()


def test_a_hostile_group_list_is_refused_or_filtered(gateway_answering: list[bytes]) -> None:
    port = int(gateway_answering.pop(0))
    target = PushgatewayTarget(PushgatewaySettings(f"http://127.0.0.1:{port}", timeout=5))
    good = {"job": "restic_runner", "hostname": "h", "job_name": "nightly"}
    gateway_answering.extend([
        json.dumps({"data": ["notadict", {"labels": "x"}, {"labels": {**good, "job_name": 5}},
                             {"labels": good}]}).encode(),
        b'["not", "an", "object"]', b"{not json", json.dumps({"data": "x"}).encode()])
    assert target.groups() == [good]
    for _ in range(3):
        with pytest.raises(HttpError, match="not a Pushgateway's list"):
            target.groups()


def test_warnings_without_a_service_log_are_escaped_too(caplog: pytest.LogCaptureFixture) -> None:
    """`metrics announce` and `run` print warnings with logging's last-resort handler, not the
    service's formatter: a stale group's label still cannot reach the terminal as escapes."""
    from notifiers.announce import _warn
    from notifiers.courier import _log_warning

    with caplog.at_level(logging.WARNING):
        _warn("groups: %s", "gone\x1b[2J\n[ERROR] forged")
        _log_warning("it said: %s", "a\x1b]0;pwned\x07")
    first, second = (r.getMessage() for r in caplog.records)
    assert first == "groups: gone\\u001b[2J\\n[ERROR] forged"
    assert second == "it said: a\\u001b]0;pwned\\u0007"
