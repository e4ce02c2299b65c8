"""HTTP exchanges that end when they should, whatever the other side sends.

requests' read timeout bounds each read from the socket, not the exchange: a server (or
a proxy) sending its answer a byte at a time keeps a call alive for as long as it likes.
For the payment provider's client that broke a rule money depends on (an attempt
untouched for PAYMENT_ATTEMPT_STALE_SECONDS is taken for abandoned, and another card may
be charged); for a delivery to the shop it held a worker past the delivery's lease (and
the event was sent twice). So:

    adapter = WatchedAdapter(...)          # HTTPAdapter's arguments; mount it on a session
    with Deadline(seconds) as deadline:
        response = session.request(..., stream=True)
        answer = read_whole(response)      # raises AnswerTooLargeError past the limit
    deadline.passed                        # True: whatever failed failed because of it

When the deadline passes, the process's watchdog thread shuts the connection's socket
down (the connection classes of `WatchedAdapter` tell it which) and the read waiting on
it ends at once. An answer is read whole up to `MAX_ANSWER_BYTES`, so a huge one (or a
small gzip expanding to one) is never held in memory.

One watchdog thread per process watches every deadline (`_Watchdog`): a thread started
for each exchange (a `threading.Timer`, as until 2026-12-02) cost more CPU than the
rest of the deadline's work on every provider call.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

logger = logging.getLogger(__name__)

# The largest answer read: the provider's and the shop's are a few hundred bytes.
MAX_ANSWER_BYTES = 1 << 20


class Deadline:
    """The deadline of the exchange the current thread is making (see above)."""

    _current = threading.local()

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._socket: Any = None
        self._over = False
        self.passed = False

    def __enter__(self) -> Deadline:
        _watchdog.watch(self, time.monotonic() + self.seconds)  # raises: nothing is set
        Deadline._current.value = self
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._over = True
            self._socket = None
        Deadline._current.value = None

    @classmethod
    def watch(cls, sock: Any) -> None:
        """Called as a connection waits for its answer: this socket is the one to shut."""
        deadline = getattr(cls._current, "value", None)
        if deadline is None or sock is None:
            return
        with deadline._lock:
            deadline._socket = sock
            if deadline.passed:
                _shut(sock)

    @classmethod
    def forget(cls, sock: object) -> None:
        """Called as a connection goes back to the pool, answered: its socket is no longer
        this exchange's to shut (another thread may take it at once)."""
        deadline = getattr(cls._current, "value", None)
        if deadline is None:
            return
        with deadline._lock:
            if deadline._socket is sock:
                deadline._socket = None

    def _pass(self) -> None:
        with self._lock:
            if self._over:
                return
            self.passed = True
            if self._socket is not None:
                _shut(self._socket)


class _Watchdog:
    """One daemon thread passing the process's deadlines as their time comes.

    A deadline is put in a heap by the time it passes; one that ends first stays there,
    marked over, and is dropped when the thread next wakes. The thread sleeps until the
    earliest deadline it holds and is woken only by one earlier than that: with
    exchanges that end well within their deadline it wakes about once per deadline's
    length, whatever the rate of exchanges (a timer per exchange started and stopped a
    thread for each one)."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._condition = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()  # equal times: no Deadline is ever compared
        self._thread: threading.Thread | None = None

    def watch(self, deadline: Deadline, when: float) -> None:
        with self._condition:
            if self._thread is None or not self._thread.is_alive():
                # Started by the first deadline, or again by the next one if it could not
                # start (out of threads for a moment: that exchange fails, later ones
                # are still watched) or stopped.
                thread = threading.Thread(target=self._run, name="http-deadlines", daemon=True)
                thread.start()
                self._thread = thread
            heap = self._heap
            heapq.heappush(heap, (when, next(self._order), deadline))
            if heap[0][2] is deadline:
                self._condition.notify()  # earlier than what the thread sleeps until

    def _run(self) -> None:
        condition, heap = self._condition, self._heap
        while True:
            due = []
            with condition:
                while True:
                    now = time.monotonic()
                    while heap and (heap[0][2]._over or heap[0][0] <= now):
                        due.append(heapq.heappop(heap)[2])
                    if due:
                        break
                    # At most _LONGEST_WAIT at a time: Condition.wait refuses a timeout
                    # past threading.TIMEOUT_MAX, and one absurd deadline must not stop
                    # the thread that passes every other.
                    condition.wait(min(heap[0][0] - now, _LONGEST_WAIT) if heap else None)
            for deadline in due:
                try:
                    deadline._pass()  # an exchange that ended first is left alone
                except Exception:  # one deadline's failure must not end every other's
                    logger.exception("A deadline could not shut its connection")


_LONGEST_WAIT = 60.0
_watchdog = _Watchdog()
# A forked child (a gunicorn worker) has no watchdog thread: it starts its own.
os.register_at_fork(after_in_child=_watchdog._reset)


def _shut(sock: Any) -> None:
    # Through an HTTPS proxy to an HTTPS server the connection's socket is urllib3's
    # SSLTransport, which wraps the real one.
    real = getattr(sock, "socket", sock)
    with contextlib.suppress(OSError):  # already closed: nothing is waiting on it
        real.shutdown(socket.SHUT_RDWR)


class _WatchedHTTPConnection(HTTPConnection):
    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        Deadline.watch(self.sock)
        return super().getresponse(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def getresponse(self, *args: Any, **kwargs: Any) -> Any:
        Deadline.watch(self.sock)
        return super().getresponse(*args, **kwargs)


class _WatchedHTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection

    def _put_conn(self, conn: Any) -> None:
        Deadline.forget(getattr(conn, "sock", None))
        super()._put_conn(conn)


class _WatchedHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection

    def _put_conn(self, conn: Any) -> None:
        Deadline.forget(getattr(conn, "sock", None))
        super()._put_conn(conn)


_WATCHED_POOLS = {"http": _WatchedHTTPConnectionPool, "https": _WatchedHTTPSConnectionPool}


class WatchedAdapter(HTTPAdapter):
    """requests' adapter whose connections (direct or through a proxy) tell `Deadline`
    which socket to shut."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _WATCHED_POOLS

    def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(*args, **kwargs)
        manager.pool_classes_by_scheme = _WATCHED_POOLS
        return manager


@dataclass(frozen=True)
class Answer:
    """An answer read whole (within the deadline and MAX_ANSWER_BYTES)."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    @property
    def text(self) -> str:
        # Strictly: bytes that are not UTF-8 are a bad answer (a ValueError), not text
        # with U+FFFD in it.
        return self.content.decode("utf-8")


class AnswerTooLargeError(Exception):
    pass


def read_whole(response: Any, limit: int = MAX_ANSWER_BYTES) -> Answer:
    """The whole answer of a streamed `response`; AnswerTooLargeError past `limit`."""
    body = bytearray()
    try:
        for chunk in response.iter_content(64 * 1024):
            body += chunk
            if len(body) > limit:
                raise AnswerTooLargeError(f"answer too large: more than {limit} bytes")
    finally:
        response.close()  # back to the pool once read whole; closed otherwise
    return Answer(response.status_code, response.headers, bytes(body))
