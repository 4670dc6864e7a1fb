"""One throttled log for every request the service refuses, and for every request it answers
without a credential (the open endpoints), whichever layer answers it (the HTTP server's parser,
the read deadline, authentication, routing, limits). In each worker process and each minute, an
address group (one address; all of 127.0.0.0/8; an IPv6 /64) writes at most `LINES_PER_GROUP`
lines and all addresses together at most `LINES_PER_WINDOW`; what was not written is counted and
summed up in one line when the minute is over. So a flood of any kind, from one address or from
many (a local user can bind any 127.x.y.z), writes a bounded number of lines. The lines name the
request by its status and kind, never by what it held (docs/security.md, "Authentication of API
callers")."""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from collections import Counter

REFUSAL_KIND = "restic_runner.refusal"  # WSGI environ key: the app's words for a refusal
ORDINARY_ANSWER = "restic_runner.ordinary"  # WSGI environ key: a 4xx that is no refusal
CLIENT_NAME = "restic_runner.client"  # WSGI environ key: the authenticated client's name
REFUSAL_NOTED = "restic_runner.refusal_noted"  # WSGI environ key: logged before the answer
LINES_PER_GROUP = 5
LINES_PER_WINDOW = 60
WINDOW_SECONDS = 60.0

log = logging.getLogger("restic_runner.refusals")


def address_group(address: str | None) -> str:
    """What limits count by: an address; all loopback addresses as one (any local user can
    bind any of them); an IPv6 address's /64 (what one host is usually given)."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return address or "unknown"
    if ip.version == 6 and ip.ipv4_mapped is not None:  # an IPv4 caller on a [::] bind
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "loopback"
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


class RefusalLog:
    """The windows of one process; `note` is called once per request to throttle."""

    def __init__(self, lines_per_group: int = LINES_PER_GROUP,
                 lines_per_window: int = LINES_PER_WINDOW,
                 window: float = WINDOW_SECONDS) -> None:
        self.lines_per_group = lines_per_group
        self.lines_per_window = lines_per_window
        self.window = window
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self._logged: Counter[str] = Counter()  # group -> lines written this window
        self._suppressed: Counter[str] = Counter()  # "status kind" -> not written
        self._suppressed_from: Counter[str] = Counter()  # group -> not written
        self._flush_pending = False

    def note(self, address: str | None, status: int, kind: str) -> None:
        """Log `refused <status> from <address>: <kind>`, unless over a budget."""
        self.write(address, f"refused {status} from {address or 'unknown'}: {kind}",
                   f"{status} {kind}")

    def write(self, address: str | None, line: str, kind: str,
              logger: logging.Logger | None = None) -> None:
        """Write `line` (to `logger`, else this module's) unless this address group or this
        window used up its lines."""
        group = address_group(address)
        with self._lock:
            summary = self._roll(time.monotonic())
            if (self._logged[group] >= self.lines_per_group
                    or self._logged.total() >= self.lines_per_window):
                self._suppressed[kind] += 1
                self._suppressed_from[group] += 1
                if not self._flush_pending:  # the summary is due even if the flood stops
                    self._flush_pending = True
                    timer = threading.Timer(self._started + self.window - time.monotonic()
                                            + 0.05, self.flush)
                    timer.daemon = True
                    timer.start()
                line = ""
            else:
                self._logged[group] += 1
        if summary:
            log.warning("%s", summary)
        if line:
            if logger is None:
                log.warning("%s", line)
            else:
                logger.info("%s", line)

    def flush(self) -> None:
        """Write the summary of a window that has ended."""
        with self._lock:
            self._flush_pending = False
            summary = self._roll(time.monotonic())
        if summary:
            log.warning("%s", summary)

    def _roll(self, now: float) -> str:
        """Start a new window if this one is over: the summary of what it did not write."""
        if now - self._started < self.window:
            return ""
        summary = ""
        if self._suppressed:
            kinds = ", ".join(f"{k}: {n}" for k, n in self._suppressed.most_common(8))
            groups = ", ".join(f"{g}: {n}" for g, n in self._suppressed_from.most_common(3))
            summary = (f"{self._suppressed.total()} more requests in the last minute not logged "
                       f"one by one (from {len(self._suppressed_from)} address groups; most from "
                       f"{groups}): {kinds}")
        self._started = now
        self._logged.clear()
        self._suppressed.clear()
        self._suppressed_from.clear()
        return summary


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


REFUSALS = RefusalLog()


def note_refusal(address: str | None, status: int, kind: str) -> None:
    REFUSALS.note(address, status, kind)


def note_open_request(address: str | None, line: str, kind: str,
                      logger: logging.Logger) -> None:
    """An answer to a request without a credential (an open endpoint): its access line,
    through the same budgets."""
    REFUSALS.write(address, line, kind, logger)


MAX_LOGGED_TARGET = 200  # characters of the request target an access line keeps


def access_line(environ: dict[str, object], status: int, length: object,
                seconds: float) -> str:
    """`address client "METHOD target PROTOCOL" status bytes ms`: bounded whatever the request
    (the target cut at 200 characters; no User-Agent or Referer, which a caller fills at will).
    Masked by the log's formatter like every line."""
    target = str(environ.get("RAW_URI") or environ.get("PATH_INFO") or "")
    if len(target) > MAX_LOGGED_TARGET:
        target = target[:MAX_LOGGED_TARGET] + "…"
    method = str(environ.get("REQUEST_METHOD", "-"))[:16]
    protocol = str(environ.get("SERVER_PROTOCOL", "-"))[:16]
    return (f'{environ.get("REMOTE_ADDR", "-")} {environ.get(CLIENT_NAME) or "-"} '
            f'"{method} {target} {protocol}" {status} {length or 0} {seconds * 1000:.0f}ms')
