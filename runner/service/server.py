"""`restic-runner serve`: the API under gunicorn (never Flask's development server).

gthread workers: a long-poll (`?wait=`) holds a thread, not a whole worker. Runs do not live in
the workers (see `runner.service.launcher`), so worker restarts, `max_requests` recycling and
reloads
never touch a run.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.glogging import Logger
from gunicorn.workers.gthread import TConn, ThreadWorker

from runner.configuration.config import Config
from runner.engine.locks import NamedLock
from runner.service.readdeadline import ReadDeadlines, reading, request_timeout
from runner.service.refusals import ORDINARY_ANSWER
from runner.service.writedeadline import WriteDeadlines, WriteWatch


class RunnerServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, config: Config, options: dict[str, Any], *,
                 on_halt: Callable[[], None] | None = None) -> None:
        self.runner_config = config
        self.options = options
        self.on_halt = on_halt
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from runner.service.api import create_app

        app = create_app(self.runner_config)
        app.wsgi_app = deadline_on_writes(app.wsgi_app)
        return app

    def run(self) -> None:
        RunnerArbiter(self).run()


class RunnerArbiter(Arbiter):  # type: ignore[misc]
    """gunicorn's master, which tells the service's companions to stop when it starts to stop
    its workers, not after: the launcher, the scheduler and the deliveries worker stop at the
    same time as the workers, so `serve` ends within one `graceful_timeout`, not one each."""

    def stop(self, graceful: bool = True) -> None:
        """Called only when the service ends (SIGTERM, SIGINT, SIGQUIT, a fatal error)."""
        if self.app.on_halt is not None:
            self.app.on_halt()
        super().stop(graceful)


def problem_answer(status: int, reason: str, detail: str) -> bytes:
    """A whole HTTP answer with a problem+json body that closes the connection, for what is
    refused before the app sees it. `detail` is fixed wording, never request bytes."""
    from runner.service.problems import problem_body

    body = problem_body(status, reason, detail).encode()
    head = (f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/problem+json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("latin-1") + body


WRITE_STALL_SECONDS = 10  # a send to a client that takes no byte for this long fails
WRITE_BUDGET_SECONDS = 15.0  # an answer (but a streamed log) must be taken within this
LINGER_SECONDS = 2.0  # a closed connection's unread input is drained this long at most
MAX_PENDING = 900  # silent new connections a worker keeps (of gunicorn's 1000); beyond, the
# oldest is dropped, so silent ones never stop a worker from accepting
LONG_ANSWER = "restic_runner.long_answer"  # WSGI environ key: no write budget (a log stream)

_write_deadlines: WriteDeadlines | None = None  # this worker process's, once it runs


def deadline_on_writes(app: Callable[..., Any]) -> Callable[..., Any]:
    """WSGI middleware: once the app has answered, the client must take the answer promptly
    (`runner.service.writedeadline`: slow answers are bounded per address group and in all, and none
    takes longer than `WRITE_BUDGET_SECONDS`); a client reading a byte now and then kept a
    thread for ever, since each send made progress and no send timeout fired."""

    def wsgi(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        from runner.service.refusals import address_group

        result = app(environ, start_response)
        sock = environ.get("gunicorn.socket")
        if _write_deadlines is None or sock is None or environ.get(LONG_ANSWER):
            return result
        group = address_group(environ.get("REMOTE_ADDR"))
        return _TimedAnswer(result, _write_deadlines, _write_deadlines.arm(sock, group))

    return wsgi


class _TimedAnswer:
    """An answer iterable whose write deadline ends when the server closes it."""

    def __init__(self, result: Any, deadlines: WriteDeadlines, watch: WriteWatch) -> None:
        self._result, self._deadlines, self._watch = result, deadlines, watch

    def __iter__(self) -> Any:
        return iter(self._result)

    def close(self) -> None:
        self._deadlines.done(self._watch)
        close = getattr(self._result, "close", None)
        if close is not None:
            close()


class RunnerConn(TConn):  # type: ignore[misc]
    """gunicorn's connection, whose graceful close never blocks the worker's event loop:
    gunicorn waited up to 2 s there for the client to close, during which the worker accepted
    and dispatched nothing (2 connections a second that stay open stalled it for good)."""

    lingerer: Callable[[Any], None] | None = None

    def close(self, graceful: bool = False) -> None:
        if not graceful or self.lingerer is None:
            super().close(False)
            return
        try:
            self.sock.shutdown(socket.SHUT_WR)  # our FIN: the answer is complete
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            return
        self.lingerer(self.sock)  # drained on the poller, closed at EOF or after 2 s


def _has_data(sock: Any) -> bool:
    """Whether a non-blocking socket has something to read (or was closed) right now."""
    import socket

    try:
        sock.recv(1, socket.MSG_PEEK)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True  # reset: let the thread find out and close it
    return True


class ProblemThreadWorker(ThreadWorker):  # type: ignore[misc]
    """gunicorn's gthread worker: its refusals are problem+json in fixed words
    (`handle_error`); a connection gets a thread only once it has sent something, its request
    must then be read within `[server] read_timeout` (`runner.service.readdeadline`), and its
    answers
    taken without stalling."""

    def init_process(self) -> None:
        global _write_deadlines
        from collections import deque

        timeout = self.app.runner_config.server.read_timeout
        threads = self.app.runner_config.server.threads
        self.read_deadlines = ReadDeadlines(timeout, problem_answer(*request_timeout(timeout)),
                                            per_group=max(2, threads // 4),
                                            total=max(2, threads // 2))
        _write_deadlines = WriteDeadlines(WRITE_BUDGET_SECONDS, per_group=max(2, threads // 4),
                                          total=max(2, threads // 2))
        self.lingering: deque[tuple[float, socket.socket]] = deque()
        super().init_process()

    def accept(self, listener: Any) -> None:
        """A new connection gets no thread until it has sent something: it waits on the
        poller, as a kept-alive one does, and is closed unheard after `read_timeout` (gunicorn
        gives each a thread for up to 5 s first: 16 idle connections held every thread). Its
        answers must be taken by the client: a send that stalls `WRITE_STALL_SECONDS` fails
        and the connection is closed (a client that reads nothing held a thread for ever)."""
        import errno
        import selectors
        import struct
        import time
        from functools import partial

        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE) and self.pending_conns:
                self._drop_oldest_pending()  # out of descriptors: the silent go first
                return
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.nr_conns += 1
        client_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO,
                               struct.pack("ll", WRITE_STALL_SECONDS, 0))
        client_sock.setblocking(False)
        conn = RunnerConn(self.cfg, client_sock, client_addr, listener.getsockname())
        conn.lingerer = self.linger
        if _has_data(client_sock):  # the usual case: the request came with the connection
            conn.data_ready = True
            self.enqueue_req(conn)
            return
        conn.timeout = time.monotonic() + self.app.runner_config.server.read_timeout
        if len(self.pending_conns) >= MAX_PENDING:  # silent ones must not fill the worker
            self._drop_oldest_pending()
        self.pending_conns.append(conn)
        self.poller.register(client_sock, selectors.EVENT_READ,
                             partial(self.on_pending_socket_readable, conn))

    def _cap_keepalive(self, deadline: float) -> None:
        """The worker is stopping (gunicorn caps its kept-alive connections here): a connection
        that has sent nothing has no request to finish either, so it goes now, not after
        `read_timeout` (serve's stop waited up to 10 s for silent connections)."""
        super()._cap_keepalive(deadline)
        while self.pending_conns:
            self._drop_oldest_pending()

    def _drop_oldest_pending(self) -> None:
        old = self.pending_conns.popleft()
        with contextlib.suppress(OSError, KeyError, ValueError):
            self.poller.unregister(old.sock)
        self.nr_conns -= 1
        old.close()

    def linger(self, sock: socket.socket) -> None:
        """Drain a half-closed connection's input on the poller (never blocking the loop), and
        close it at EOF, after 64 KiB, or after `LINGER_SECONDS`."""
        import selectors
        import time
        from functools import partial

        self.lingering.append((time.monotonic() + LINGER_SECONDS, sock))
        try:
            self.poller.register(sock, selectors.EVENT_READ, partial(self._drain, sock))
        except (OSError, ValueError, KeyError):
            sock.close()

    def _drain(self, sock: socket.socket, _fileobj: Any = None) -> None:
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data or len(data) == 65536:
            with contextlib.suppress(OSError, KeyError, ValueError):
                self.poller.unregister(sock)
            sock.close()

    def murder_pending(self) -> None:
        """gunicorn's, and the lingering connections whose time is up."""
        import time

        super().murder_pending()
        now = time.monotonic()
        while self.lingering and (self.lingering[0][0] <= now
                                  or self.lingering[0][1].fileno() < 0):
            _, sock = self.lingering.popleft()
            if sock.fileno() >= 0:
                with contextlib.suppress(OSError, KeyError, ValueError):
                    self.poller.unregister(sock)
                sock.close()

    def enqueue_req(self, conn: Any) -> None:
        """A new connection, or a kept-alive or deferred one with data: its clock starts."""
        conn.read_watch = self.read_deadlines.arm(conn.sock)
        super().enqueue_req(conn)

    def handle(self, conn: Any) -> Any:
        watch = getattr(conn, "read_watch", None)
        if watch is not None and watch.expired:
            return False  # answered 408 while it waited for a thread: close it
        reading(watch)
        if watch is not None:
            from runner.service.refusals import address_group

            client = conn.client[0] if isinstance(conn.client, tuple) else None
            self.read_deadlines.reading_started(watch, address_group(client))
        try:
            return super().handle(conn)
        finally:
            reading(None)
            if watch is not None:
                watch.disarm()

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """A request gunicorn refused (or an error outside the app): answered problem+json in
        fixed words, and logged through the one throttled refusal log, never line by line."""
        from gunicorn import util

        from runner.service.refusals import note_refusal, parse_refusal

        refusal = parse_refusal(exc)
        if refusal is None:
            self.log.exception("internal error handling a request")
            refusal = (500, "Internal Server Error", "see the service log")
        else:
            address = addr[0] if isinstance(addr, tuple) and addr else None
            note_refusal(address, refusal[0], refusal[2])
        try:
            util.write_nonblock(client, problem_answer(*refusal))
        except Exception:  # the client went away: nothing to tell it
            self.log.debug("could not send the refusal")


class AccessLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger; refused requests (4xx) get no access line of their own but go
    through the one throttled refusal log (`runner.service.refusals`): a flood of bad requests of
    any
    kind must not become a flood of log lines, or fill the disk. A 4xx that is part of the
    protocol (a poll of a run that has not ended, a trigger of a busy job) is no refusal."""

    log_format = "text"

    def setup(self, cfg: Any) -> None:
        """Both of gunicorn's logs go to stdout, masked, as text or JSON lines."""
        super().setup(cfg)
        import logging
        import sys

        from runner.eventlog import formatter

        for logger in (self.error_log, self.access_log):
            handler = logging.StreamHandler(sys.stdout)
            handler.setFormatter(formatter(self.log_format))
            logger.handlers[:] = [handler]

    def info(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        """With reuse_port each worker binds its own socket, so the master's "Listening at: %s
        (%s)" has no address to name: dropped; the one start-up line, naming the address and
        the pid, is `serve`'s `when_ready`."""
        if str(msg).startswith("Listening at:") and args and not args[0]:
            return
        super().info(msg, *args, **kwargs)

    def exception(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        """gunicorn logs any socket error but a reset with a traceback (a client that stops
        taking its answer wrote 1.2 KB each): those go through the refusal log's budgets."""
        if str(msg).startswith("Socket error processing request"):
            from runner.service.refusals import note_refusal

            note_refusal(None, 408, "a client stopped taking its answer (socket error)")
            return
        super().exception(msg, *args, **kwargs)

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        """One bounded line per request (`runner.service.refusals.access_line`); refusals and
        answers
        to callers without a credential go through the per-address and per-minute budgets."""
        from runner.service.refusals import (
            CLIENT_NAME,
            REFUSAL_KIND,
            REFUSAL_NOTED,
            access_line,
            note_open_request,
            note_refusal,
        )

        status = getattr(resp, "status_code", None) or 0
        address = environ.get("REMOTE_ADDR")
        if 400 <= status < 500 and not environ.get(ORDINARY_ANSWER):
            if not environ.get(REFUSAL_NOTED):
                note_refusal(address, status, environ.get(REFUSAL_KIND) or "refused by the API")
            return
        line = access_line(environ, status, getattr(resp, "sent", 0),
                           request_time.total_seconds())
        if environ.get(CLIENT_NAME) is None:
            note_open_request(address, line, f"{status} without a credential",
                              self.access_log)
            return
        self.access_log.info(line)


def gunicorn_options(config: Config, *, bind: str | None, workers: int | None) -> dict[str, Any]:
    server = config.server
    return {
        "bind": [bind or server.bind],
        "workers": workers or server.workers,
        "worker_class": "runner.service.server.ProblemThreadWorker",
        "threads": server.threads,
        "graceful_timeout": int(server.graceful_timeout),
        # a worker may be busy for a whole long-poll; beyond that it is stuck
        "timeout": int(server.max_wait) + 30,
        "max_requests": server.max_requests,
        "max_requests_jitter": server.max_requests // 10 if server.max_requests else 0,
        "accesslog": "-",
        "logger_class": type("ServiceLogger", (AccessLogger,),
                             {"log_format": server.log_format}),
        "errorlog": "-",
        "proc_name": "restic-runner",
        "control_socket_disable": True,  # gunicorn >= 25 would open one under $HOME
        # no forwarding header is honoured, from any address (gunicorn trusts 127.0.0.1 by
        # default): SCRIPT_NAME from a same-host client would bypass a proxy's path rules
        "forwarded_allow_ips": "",
        "forwarder_headers": "",
        "secure_scheme_headers": {},
        # SO_REUSEPORT: the kernel spreads connections over the workers; without it one
        # worker often accepts every keep-alive connection of a burst and the other idles
        "reuse_port": True,
    }


def claim_state_dir(config: Config) -> NamedLock:
    """One `serve` per state directory (`state_dir/serve.lock`, as the scheduler's own lock): a
    second one would take over the first one's launcher socket. Held for the service's life
    by the master (and what it forks); keep the returned lock referenced."""
    from runner.errors import UserError
    from runner.fsutil import private_dir

    lock = NamedLock(private_dir(config.state_dir), "serve")
    if not lock.try_acquire():
        holder = lock.holder()
        pid = holder.pid if holder else "unknown"
        raise UserError(f"another restic-runner serve (pid {pid}) uses state_dir "
                        f"{config.state_dir}: one service per state directory")
    lock.write_holder("serve")
    return lock


def _bind_target(address: str) -> tuple[int, int, int, Any] | None:
    """(family, type, proto, sockaddr) of a TCP `bind` address; None for a unix socket."""
    from gunicorn.util import parse_address

    from runner.errors import UserError

    if address.startswith(("unix:", "fd://")):
        return None
    host, port = parse_address(address)
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM,
                                   flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise UserError(f"server.bind: cannot resolve {host}: {exc.strerror}") from None
    family, kind, proto, _, sockaddr = infos[0]
    return family, kind, proto, sockaddr


def _taken(address: str, exc: OSError) -> Exception:
    from runner.errors import UserError

    return UserError(f"server.bind: cannot listen on {address}: {exc.strerror} (another "
                     "process listens there, or holds the port?)")


def ensure_bindable(address: str) -> None:
    """Each worker binds a socket of its own (reuse_port): a port that is taken made every
    worker exit and gunicorn start new ones, forever. Tried once here, before anything starts,
    without SO_REUSEPORT, so another service's reuse_port listener counts as taken too."""
    target = _bind_target(address)
    if target is None:
        return
    family, kind, proto, sockaddr = target
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(sockaddr)
        except OSError as exc:
            raise _taken(address, exc) from None


def hold_port(address: str) -> socket.socket | None:
    """A socket bound to the port, never listening, kept by the master for the service's life:
    it has SO_REUSEPORT (so this user's workers can bind beside it) but not SO_REUSEADDR, so
    nobody else can bind the port any more — not even between `ensure_bindable` and the
    workers (a local user binding with SO_REUSEADDR, listening later, would have taken the
    connections and their bearer tokens). Not listening, it is given no connection. Made
    after the companions are forked: a run's supervisor outlives the service and must not keep
    the port."""
    target = _bind_target(address)
    if target is None:
        return None
    family, kind, proto, sockaddr = target
    guard = socket.socket(family, kind, proto)
    try:
        guard.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        guard.bind(sockaddr)
    except OSError as exc:
        guard.close()
        raise _taken(address, exc) from None
    return guard


def serve(config: Config, *, bind: str | None = None, workers: int | None = None) -> None:
    import time

    from notifiers.announce import start_announcer
    from notifiers.worker import start_deliveries_worker
    from runner.engine.children import signal_children, wait_children
    from runner.scheduling.scheduler import start_service_scheduler
    from runner.service.launcher import start_launcher

    state_lock = claim_state_dir(config)  # held until this process exits
    ensure_bindable(bind or config.server.bind)
    launcher = start_launcher(config)  # before any worker exists, and before SQLite is opened
    companions = [launcher, *(pid for pid in (start_deliveries_worker(config),
                                              start_service_scheduler(config),
                                              start_announcer(config)) if pid)]
    try:
        port_guard = hold_port(bind or config.server.bind)  # referenced until serve returns
    except Exception:
        signal_children(companions)
        wait_children(companions, time.monotonic() + config.server.graceful_timeout + 3)
        raise
    stopping_since: list[float] = []

    def on_halt() -> None:
        """SIGTERM to the service: running jobs get SIGINT (restic removes its repository
        locks) and are recorded `cancelled`, while gunicorn stops its workers."""
        if not stopping_since:
            stopping_since.append(time.monotonic())
            signal_children(companions)

    def on_exit(_server: Any) -> None:
        """The workers are gone: wait for the companions, within what is left of the one
        graceful_timeout since the stop began (and a moment to record what they stopped)."""
        on_halt()
        wait_children(companions, stopping_since[0] + config.server.graceful_timeout + 3)
        state_lock.release()

    def when_ready(server: Any) -> None:
        # gunicorn's own "Listening at:" line is dropped (AccessLogger.info): it names no
        # address with reuse_port
        server.log.info("restic-runner %s serving on http://%s with %d workers (pid %d)",
                        __version__, options["bind"][0], options["workers"], server.pid)

    from runner import __version__

    options = gunicorn_options(config, bind=bind, workers=workers)
    options["on_exit"] = on_exit
    options["when_ready"] = when_ready
    try:
        RunnerServer(config, options, on_halt=on_halt).run()
    finally:
        if port_guard is not None:
            port_guard.close()
