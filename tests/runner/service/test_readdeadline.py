"""The read deadline's watchdog on real socket pairs (the service-level behaviour, slow clients
against gunicorn, is in tests/fuzz/test_http_hostile.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from runner.service.readdeadline import ReadDeadlines, reading, request_read

ANSWER = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n"


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server, client = socket.socketpair()
    client.settimeout(5)
    yield server, client
    server.close()
    client.close()


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks)


def test_a_request_not_read_in_time_is_answered_408_and_cut(
        pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    deadlines = ReadDeadlines(0.2, ANSWER)
    watch = deadlines.arm(server)
    got: list[bytes] = []
    # a worker thread blocked reading a head that never completes
    reader = threading.Thread(target=lambda: got.append(server.recv(4096)))
    reader.start()
    started = time.monotonic()
    assert _read_all(client) == ANSWER  # and then EOF
    reader.join(5)
    assert got == [b""], "the blocked reader was not released"
    assert 0.15 < time.monotonic() - started < 3
    assert watch.expired and not watch.disarm()


def test_a_request_read_in_time_is_left_alone(pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    deadlines = ReadDeadlines(0.2, ANSWER)
    watch = deadlines.arm(server)
    assert watch.disarm()
    time.sleep(0.4)
    server.sendall(b"the app's own answer")
    assert client.recv(100) == b"the app's own answer"
    assert not watch.expired


def test_deadlines_fire_in_order_whatever_order_they_were_armed_in() -> None:
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        deadlines = ReadDeadlines(0.6, ANSWER)
        late = deadlines.arm(pairs[0][0])
        deadlines.timeout = 0.1  # a shorter deadline armed later must not wait for the first
        early = deadlines.arm(pairs[1][0])
        never = deadlines.arm(pairs[2][0])
        assert never.disarm()
        time.sleep(0.3)
        assert early.expired and not late.expired
        time.sleep(0.5)
        assert late.expired and not never.expired
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_the_app_learns_whether_its_request_came_in_time(
        pair: tuple[socket.socket, socket.socket]) -> None:
    server, _ = pair
    assert request_read()  # no deadline on this thread (Flask's test client, a CLI)
    deadlines = ReadDeadlines(0.1, ANSWER)
    reading(deadlines.arm(server))
    assert request_read()
    reading(deadlines.arm(server))
    time.sleep(0.3)
    assert not request_read()  # its client has its 408: the app must not act on it
