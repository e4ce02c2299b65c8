"""The provider's client against a real socket that misbehaves: an answer sent a byte at a
time, one too large, one that is not UTF-8. Each server is a thread on 127.0.0.1 that
answers one way, for the length of one test.

Why it matters: an attempt untouched for PAYMENT_ATTEMPT_STALE_SECONDS is taken for
abandoned, and may be closed as not charged and another card charged. That holds only if
no exchange outlives connect + read timeout, whatever the other side sends."""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from common.http import MAX_ANSWER_BYTES
from utils import (
    PaymentAPI,
    PaymentProviderProtocolError,
    PaymentProviderTimeoutError,
    PaymentProviderUnavailableError,
)

CONNECT, READ = 0.5, 0.6
CHARGE = {
    "id": "pay_1",
    "cart_id": "cart-1",
    "amount": 1500,
    "currency": "USD",
    "payment_status": "success",
    "payment_method": "pm_card_visa",
    "decline_code": None,
    "idempotency_key": "key-1",
}


@contextmanager
def provider(answer: Callable[[socket.socket], None]) -> Iterator[str]:
    """A server answering every connection with `answer(conn)` after reading the request."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                request = b""
                while b"\r\n\r\n" not in request:
                    request += conn.recv(65536)
                head, _, body = request.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                while len(body) < length:
                    body += conn.recv(65536)
                with contextlib.suppress(OSError):  # the client gave up: the test's point
                    answer(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def head(length: int, *extra: str) -> bytes:
    lines = ["HTTP/1.1 200 OK", "Content-Type: application/json", f"Content-Length: {length}"]
    return ("\r\n".join([*lines, *extra]) + "\r\n\r\n").encode()


def slowly(data: bytes, pause: float, stop_after: float = 8.0) -> Callable[[socket.socket], None]:
    def answer(conn: socket.socket) -> None:
        started = time.monotonic()
        for byte in data:
            if time.monotonic() - started > stop_after:
                return
            conn.sendall(bytes([byte]))
            time.sleep(pause)

    return answer


def pay(url: str) -> object:
    api = PaymentAPI(url, connect_timeout=CONNECT, read_timeout=READ, max_retries=0, backoff=0)
    try:
        return api.request_payment(
            cart_id="cart-1", amount=15, currency="USD", idempotency_key="key-1"
        )
    finally:
        api.close()


CHARGE_BODY = json.dumps(CHARGE).encode()


def headers_then_body_slowly(conn: socket.socket) -> None:
    conn.sendall(head(len(CHARGE_BODY)))
    slowly(CHARGE_BODY, 0.2)(conn)


# Every byte comes well within the read timeout; the whole would take 40 s and more.
@pytest.mark.parametrize(
    "answer",
    [
        pytest.param(slowly(head(len(CHARGE_BODY)) + CHARGE_BODY, 0.2), id="all-slowly"),
        pytest.param(headers_then_body_slowly, id="body-slowly"),
    ],
)
def test_an_answer_sent_a_byte_at_a_time_ends_the_exchange_at_its_deadline(answer):
    with provider(answer) as url:
        started = time.monotonic()
        with pytest.raises(PaymentProviderTimeoutError) as caught:
            pay(url)
        took = time.monotonic() - started

    # Connect + read timeout, and the answer taken for one still in flight.
    assert took < CONNECT + READ + 1.0
    assert caught.value.maybe_processed
    assert caught.value.maybe_in_flight


def test_an_answer_in_time_is_read_whole():
    with provider(lambda conn: conn.sendall(head(len(CHARGE_BODY)) + CHARGE_BODY)) as url:
        result = pay(url)

    assert result.payment_id == "pay_1"
    assert result.succeeded


@pytest.mark.parametrize("encoding", [None, "gzip"])
def test_an_answer_too_large_is_not_held(encoding):
    huge = b'{"id": "' + b"x" * (MAX_ANSWER_BYTES * 2) + b'"}'
    body = gzip.compress(huge) if encoding else huge
    extra = ("Content-Encoding: gzip",) if encoding else ()

    answer = lambda conn: conn.sendall(head(len(body), *extra) + body)  # noqa: E731
    with provider(answer) as url, pytest.raises(PaymentProviderUnavailableError) as caught:
        pay(url)

    assert "answer too large" in str(caught.value)
    assert caught.value.maybe_processed


def test_an_answer_that_is_not_utf8_is_a_bad_answer():
    body = json.dumps({**CHARGE, "id": "pay_\udcff"}).encode("utf-8", "surrogateescape")
    body = body.replace(b"\\udcff", b"\xff")

    answer = lambda conn: conn.sendall(head(len(body)) + body)  # noqa: E731
    with provider(answer) as url, pytest.raises(PaymentProviderProtocolError):
        pay(url)


def test_a_number_no_decimal_holds_is_a_bad_answer():
    body = CHARGE_BODY.replace(b'"amount": 1500', b'"amount": 1e1000000000000000000')

    answer = lambda conn: conn.sendall(head(len(body)) + body)  # noqa: E731
    with provider(answer) as url, pytest.raises(PaymentProviderProtocolError):
        pay(url)
