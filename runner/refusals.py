"""One throttled log for every request the service refuses, whichever layer refuses it (the HTTP
server's parser, the read deadline, authentication, routing, limits): a flood of any kind from
one address writes at most `LINES_PER_WINDOW` lines a minute, then one summary line with the
count by kind when the minute is over. The lines name the refusal by its status and kind, never
by what the request held (docs/security.md, "Authentication of API callers")."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

REFUSAL_KIND = "restic_runner.refusal"  # WSGI environ key: the app's words for a refusal
ORDINARY_ANSWER = "restic_runner.ordinary"  # WSGI environ key: a 4xx that is no refusal
LINES_PER_WINDOW = 5
WINDOW_SECONDS = 60.0
MAX_ADDRESSES = 10_000  # beyond this many addresses in one window, count them all as one

log = logging.getLogger("restic_runner.refusals")


@dataclass
class _Window:
    started: float
    logged: int = 0
    suppressed: Counter[str] = field(default_factory=Counter)  # "status kind" -> count


class RefusalLog:
    """Per-address windows in this process; `note` is called once per refused request."""

    def __init__(self, lines_per_window: int = LINES_PER_WINDOW,
                 window: float = WINDOW_SECONDS) -> None:
        self.lines_per_window = lines_per_window
        self.window = window
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()
        self._flush_pending = False

    def note(self, address: str | None, status: int, kind: str) -> None:
        """Log `status kind from address`, unless this address used up its lines this window."""
        now = time.monotonic()
        address = address or "unknown"
        with self._lock:
            summaries = self._close_windows(now)
            if address not in self._windows and len(self._windows) >= MAX_ADDRESSES:
                address = "other addresses"
            current = self._windows.setdefault(address, _Window(now))
            if current.logged >= self.lines_per_window:
                current.suppressed[f"{status} {kind}"] += 1
                write = False
                if not self._flush_pending:  # the summary is due even if the flood stops
                    self._flush_later(current.started + self.window - now)
            else:
                current.logged += 1
                write = True
        _summarise(summaries)
        if write:
            log.warning("refused %d from %s: %s", status, address, kind)

    def flush(self) -> None:
        """Write the summaries of the windows that have ended; come back for the others."""
        now = time.monotonic()
        with self._lock:
            self._flush_pending = False
            summaries = self._close_windows(now)
            waiting = [w for w in self._windows.values() if w.suppressed]
            if waiting:
                self._flush_later(waiting[0].started + self.window - now)
        _summarise(summaries)

    def _flush_later(self, delay: float) -> None:
        """One timer at a time (under the lock), however many addresses are throttled."""
        self._flush_pending = True
        timer = threading.Timer(max(0.0, delay) + 0.05, self.flush)
        timer.daemon = True
        timer.start()

    def _close_windows(self, now: float) -> list[tuple[str, Counter[str]]]:
        """End the windows older than the window length: their counts of unlogged refusals.
        Windows are kept in the order they started, so only the oldest are looked at."""
        summaries = []
        while self._windows:
            address, oldest = next(iter(self._windows.items()))
            if now - oldest.started < self.window:
                break
            del self._windows[address]
            if oldest.suppressed:
                summaries.append((address, oldest.suppressed))
        return summaries


# gunicorn's refusals by exception class name: (status, reason, what was wrong, in fixed words).
# gunicorn's own messages quote the request (the method, the header, the line); an answer that
# quotes what a caller sent, masked, tells the caller which guess was a secret.
PARSE_REFUSALS: dict[str, tuple[int, str, str]] = {
    "InvalidRequestLine": (400, "Bad Request", "the request line is malformed"),
    "InvalidRequestMethod": (400, "Bad Request", "the request line has an invalid method"),
    "InvalidHTTPVersion": (400, "Bad Request", "the request line has an invalid HTTP version"),
    "LimitRequestLine": (414, "URI Too Long", "the request line is too long"),
    "InvalidHeader": (400, "Bad Request", "a header is malformed or repeated"),
    "InvalidHeaderName": (400, "Bad Request", "a header name is invalid"),
    "ObsoleteFolding": (400, "Bad Request", "a header uses obsolete line folding"),
    "LimitRequestHeaders": (431, "Request Header Fields Too Large",
                            "a header is too long, or there are too many headers"),
    "ExpectationFailed": (417, "Expectation Failed", "the Expect header is not supported"),
    "UnsupportedTransferCoding": (501, "Not Implemented",
                                  "the transfer coding is not supported"),
    "InvalidChunkSize": (400, "Bad Request", "the chunked body is malformed"),
    "ChunkMissingTerminator": (400, "Bad Request", "the chunked body is malformed"),
    "InvalidChunkExtension": (400, "Bad Request", "the chunked body is malformed"),
    "InvalidProxyLine": (400, "Bad Request", "the PROXY line is malformed"),
    "InvalidProxyHeader": (400, "Bad Request", "the PROXY header is malformed"),
    "ForbiddenProxyRequest": (403, "Forbidden", "forwarding headers are not accepted"),
    "InvalidSchemeHeaders": (400, "Bad Request", "the scheme headers contradict each other"),
    "ConfigurationProblem": (400, "Bad Request", "the request path does not fit the service"),
    "InvalidH2CPreface": (400, "Bad Request", "HTTP/2 is not supported"),
    "SSLError": (400, "Bad Request", "the TLS handshake failed"),
}


def parse_refusal(exc: BaseException) -> tuple[int, str, str] | None:
    """The fixed answer to a request gunicorn could not parse; None for anything else (a bug
    of ours, answered 500)."""
    for cls in type(exc).__mro__:
        if cls.__name__ in ("InvalidResponseHeader", "InvalidResponseHeaderName"):
            return None  # a header we tried to send: our fault
        if cls.__name__ in PARSE_REFUSALS:
            return PARSE_REFUSALS[cls.__name__]
    return None


def _summarise(summaries: list[tuple[str, Counter[str]]]) -> None:
    for address, counts in summaries:
        kinds = ", ".join(f"{kind}: {n}" for kind, n in counts.most_common())
        log.warning("refused %d more requests from %s in the last minute (not logged one by "
                    "one): %s", sum(counts.values()), address, kinds)


REFUSALS = RefusalLog()


def note_refusal(address: str | None, status: int, kind: str) -> None:
    REFUSALS.note(address, status, kind)
