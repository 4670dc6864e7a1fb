"""The demo's webhook receiver (scripts/demo.sh): a loopback HTTP server that checks every POST's
Standard Webhooks signature with the `standardwebhooks` library, as docs/notifications.md shows a
receiver doing, and appends what it got to a JSON-lines file the demo reads.

Usage: demo_webhook_receiver.py SECRET_FILE PORT_FILE EVENTS_FILE
Binds 127.0.0.1 on a free port and writes the port to PORT_FILE once it listens.
"""

from __future__ import annotations

import json
import os
import re
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from standardwebhooks import Webhook


def describe(payload: dict[str, Any]) -> dict[str, Any]:
    """What the demo prints of a verified webhook: its type and the run it is about."""
    run = payload.get("data") or {}
    return {"verified": True, "type": payload.get("type"), "job": run.get("job"),
            "run_id": run.get("run_id"), "status": run.get("status"),
            "exit_code": run.get("exit_code"), "error": run.get("error")}


def make_handler(webhook: Webhook, events: Path) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {name.lower(): value for name, value in self.headers.items()}
            try:
                payload = webhook.verify(body, headers)
                record, code = describe(payload), 204
            except Exception as error:  # any failed check: say which, refuse the delivery
                record = {"verified": False, "reason": f"{type(error).__name__}: {error}"}
                code = 401
            # printed by the demo: anyone on the host can post here, so an id that is not a
            # plain token (control characters, a forged line) is never shown as sent
            sent_id = headers.get("webhook-id") or ""
            record["webhook_id"] = sent_id if re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", sent_id) \
                else "(malformed)"
            with events.open("a") as out:
                out.write(json.dumps(record) + "\n")
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the events file is the log

    return Handler


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    secret_file, port_file, events = Path(argv[1]), Path(argv[2]), Path(argv[3])
    try:
        webhook = Webhook(secret_file.read_text().strip())
    except Exception as error:  # never print the file's content: it is a secret
        print(f"{secret_file}: not a whsec_ secret ({type(error).__name__})", file=sys.stderr)
        return 1
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(webhook, events))
    tmp = port_file.with_name(port_file.name + ".tmp")
    tmp.write_text(f"{server.server_address[1]}\n")
    os.replace(tmp, port_file)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
