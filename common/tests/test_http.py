"""common.http's deadline shuts only its own exchange's socket, whatever connection it
rides on: never a pooled connection another thread took since, and through an HTTPS
proxy too (where the socket is urllib3's SSLTransport around the real one)."""

from __future__ import annotations

import http.server
import socket
import socketserver
import threading
import time
from types import SimpleNamespace

import pytest
import requests

from common import http as bounded
from common.http import Deadline, WatchedAdapter, read_whole


class Answers(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: one pooled connection serves both

    def do_GET(self):
        if self.path == "/slow":
            time.sleep(0.5)
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_a_deadline_passing_after_its_answer_leaves_the_pooled_connection_alone(monkeypatch):
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Answers)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    session = requests.Session()
    session.mount("http://", WatchedAdapter(pool_maxsize=1))
    # Thread "first" is descheduled between its answer (its connection back in the pool)
    # and the end of its deadline, which passes meanwhile.
    leave = Deadline.__exit__

    def late_exit(self, *exc_info):
        if threading.current_thread().name == "first":
            time.sleep(0.6)
        return leave(self, *exc_info)

    monkeypatch.setattr(Deadline, "__exit__", late_exit)
    outcome = {}

    def first():
        with Deadline(0.3) as deadline:
            read_whole(session.get(f"{base}/fast", stream=True))
        outcome["first passed"] = deadline.passed

    def second():
        time.sleep(0.1)  # takes the connection "first" gave back
        try:
            with Deadline(10):
                outcome["second"] = read_whole(session.get(f"{base}/slow", stream=True))
        except requests.RequestException as exc:
            outcome["second"] = exc

    threads = [threading.Thread(target=first, name="first"), threading.Thread(target=second)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    finally:
        server.shutdown()
        session.close()

    assert outcome["first passed"]
    assert getattr(outcome["second"], "status_code", outcome["second"]) == 200


def test_the_socket_under_an_ssl_transport_is_the_one_shut():
    left, right = socket.socketpair()
    try:
        bounded._shut(SimpleNamespace(socket=left))  # SSLTransport has no shutdown()
        assert right.recv(1) == b""  # the other end sees the shutdown
    finally:
        left.close()
        right.close()


def test_deadlines_share_one_watchdog_thread():
    before = threading.active_count()
    for _ in range(50):
        with Deadline(30):
            pass
    # At most the watchdog itself is new (when no deadline had started it yet).
    assert threading.active_count() <= before + 1
    assert sum(t.name == "http-deadlines" for t in threading.enumerate()) == 1


def test_a_shorter_deadline_passes_on_time_behind_a_longer_one():
    outcome = {}

    def long_exchange():
        with Deadline(5) as deadline:
            time.sleep(0.6)
        outcome["long passed"] = deadline.passed

    thread = threading.Thread(target=long_exchange)
    thread.start()
    time.sleep(0.05)  # the watchdog sleeps until the 5 s deadline
    started = time.monotonic()
    with Deadline(0.2) as short:
        while not short.passed and time.monotonic() - started < 3:
            time.sleep(0.01)
    waited = time.monotonic() - started
    thread.join(5)
    assert short.passed
    assert 0.2 <= waited < 0.5
    assert outcome["long passed"] is False


def test_a_deadline_that_ended_is_never_passed():
    with Deadline(0.1) as deadline:
        pass
    time.sleep(0.3)
    assert not deadline.passed


def test_a_passing_deadline_shuts_the_socket_it_watches():
    left, right = socket.socketpair()
    try:
        with Deadline(0.1) as deadline:
            Deadline.watch(left)
            right.settimeout(3)
            assert right.recv(1) == b""  # shut down by the watchdog
        assert deadline.passed
    finally:
        left.close()
        right.close()


def test_a_deadline_that_fails_to_shut_its_socket_leaves_the_watchdog_running():
    class Unshuttable:
        def shutdown(self, how):
            raise RuntimeError("not a socket after all")

    with Deadline(0.05) as broken:
        Deadline.watch(Unshuttable())
        time.sleep(0.2)
    assert broken.passed
    with Deadline(0.05) as later:
        time.sleep(0.2)
    assert later.passed  # the watchdog still runs


@pytest.fixture
def own_watchdog(monkeypatch):
    """A watchdog of the test's own, not the process's."""
    watchdog = bounded._Watchdog()
    monkeypatch.setattr(bounded, "_watchdog", watchdog)
    return watchdog


def test_a_watchdog_thread_that_could_not_start_is_started_by_the_next_deadline(
    own_watchdog, monkeypatch
):
    # Out of threads for a moment (RLIMIT_NPROC, memory): that exchange fails, and every
    # later one is still watched (a thread that never ran no longer takes the place).
    real_start = threading.Thread.start
    failures = []

    def start_failing_once(thread):
        if thread.name == "http-deadlines" and not failures:
            failures.append(thread)
            raise RuntimeError("can't start new thread")
        return real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start_failing_once)
    with pytest.raises(RuntimeError), Deadline(0.05):
        pass
    assert getattr(Deadline._current, "value", None) is None  # no deadline left behind

    with Deadline(0.1) as later:
        time.sleep(0.5)
    assert later.passed


def test_a_deadline_too_long_to_wait_for_leaves_the_others_watched(own_watchdog):
    # Condition.wait refuses a timeout past threading.TIMEOUT_MAX: the thread died, and no
    # deadline of the process passed any more.
    with Deadline(1e10):
        time.sleep(0.2)
    with Deadline(0.1) as later:
        time.sleep(0.5)
    assert later.passed
