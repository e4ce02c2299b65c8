"""How `utils.PaymentAPI` classifies every way a provider call can fail, each one made by a
real socket server on 127.0.0.1 that misbehaves in exactly one way.

Three classes, and what the caller's rule (`payments.provider.outcome_after_failure`)
makes of them:

* never sent (connection refused, DNS failure, connect timeout): `maybe_processed`
  False; nothing can have been charged.
* answered refusal (a 4xx in the provider's own error shape): `maybe_processed` False;
  the provider said no.
* may have been sent (reset or EOF after sending, an answer that breaks off, a status
  line that is not HTTP, a read timeout, garbage, a 5xx, a 4xx not in the provider's
  shape, a reused key): `maybe_processed` True; the outcome is the ledger's to tell, and
  a read timeout is in addition `maybe_in_flight`.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest

from conftest import free_port
from utils import (
    PaymentAPI,
    PaymentMethodRejectedError,
    PaymentProviderError,
    PaymentProviderProtocolError,
    PaymentProviderRefusedError,
    PaymentProviderTimeoutError,
    PaymentProviderUnavailableError,
)

pytestmark = pytest.mark.integration

Behaviour = Callable[[socket.socket], None]


def read_request(connection: socket.socket) -> bytes:
    """Read one HTTP request (headers and a Content-Length body) off the connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def answer(status: int, body: bytes, *, reason: str = "X", length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def provider_error(code: str, field: str | None = None) -> bytes:
    return json.dumps({"error": {"code": code, "message": "no", "field": field}}).encode()


class RawServer:
    """Accepts connections on 127.0.0.1 and treats each with `behaviour`; counts them."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests = 0
        self.release = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(connection,), daemon=True).start()

    def _handle(self, connection: socket.socket) -> None:
        with connection:
            if read_request(connection):
                self.requests += 1
            with contextlib.suppress(OSError):
                self.behaviour(connection)

    def close(self) -> None:
        self.release.set()
        self.listener.close()


@pytest.fixture
def serve() -> Iterator[Callable[[Behaviour], RawServer]]:
    servers: list[RawServer] = []

    def start(behaviour: Behaviour) -> RawServer:
        servers.append(RawServer(behaviour))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def client(url: str, *, retries: int = 0, connect: float = 1.0, read: float = 1.0) -> PaymentAPI:
    return PaymentAPI(
        url, connect_timeout=connect, read_timeout=read, max_retries=retries, backoff=0
    )


def charge(api: PaymentAPI, method: str | None = None):
    return api.request_payment(
        cart_id="c-sock",
        amount=Decimal("10.00"),
        idempotency_key="sock-1",
        payment_method=method,
    )


def flags(error: PaymentProviderError) -> tuple[bool, bool]:
    return error.maybe_processed, error.maybe_in_flight


# -- never sent ------------------------------------------------------------------------------


def test_a_refused_connection_is_never_sent():
    api = client(f"http://127.0.0.1:{free_port()}", retries=1)

    with pytest.raises(PaymentProviderUnavailableError) as caught:
        charge(api)

    assert flags(caught.value) == (False, False)


def test_a_name_that_does_not_resolve_is_never_sent():
    with pytest.raises(PaymentProviderUnavailableError) as caught:
        charge(client("http://provider.invalid"))

    assert flags(caught.value) == (False, False)


def test_a_connect_timeout_is_never_sent():
    # A listener whose accept queue is full: Linux drops the next SYN, so connecting
    # times out without a byte of the request leaving.
    listener = socket.create_server(("127.0.0.1", 0), backlog=0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        with pytest.raises(PaymentProviderUnavailableError) as caught:
            charge(client(f"http://127.0.0.1:{port}", connect=0.3))
    finally:
        for filler in fillers:
            filler.close()
        listener.close()

    assert not isinstance(caught.value, PaymentProviderTimeoutError)
    assert flags(caught.value) == (False, False)
    assert "connect timeout" in str(caught.value) or "not connected" in str(caught.value)


# -- may have been sent ----------------------------------------------------------------------


def reset(connection: socket.socket) -> None:
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def close_without_answer(connection: socket.socket) -> None:
    connection.shutdown(socket.SHUT_RDWR)


def break_off(connection: socket.socket) -> None:
    connection.sendall(answer(200, b'{"id": "pay_', length=200))


def not_http(connection: socket.socket) -> None:
    connection.sendall(b"hello, this is not HTTP\r\n\r\n")


@pytest.mark.parametrize(
    "behaviour",
    [
        pytest.param(reset, id="reset_after_send"),
        pytest.param(close_without_answer, id="eof_after_send"),
        pytest.param(break_off, id="answer_broke_off"),
        pytest.param(not_http, id="not_http"),
    ],
)
def test_a_request_sent_and_never_answered_may_have_been_processed(serve, behaviour):
    server = serve(behaviour)

    with pytest.raises(PaymentProviderUnavailableError) as caught:
        charge(client(server.url, retries=1))

    assert flags(caught.value)[0] is True
    assert server.requests == 2  # retried once, with the same key


def test_a_read_timeout_may_have_been_processed_and_may_still_be(serve):
    server = serve(lambda connection: server.release.wait(5))

    with pytest.raises(PaymentProviderTimeoutError) as caught:
        charge(client(server.url, read=0.3))

    assert flags(caught.value) == (True, True)


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_may_have_been_processed_and_is_retried(serve, status):
    server = serve(lambda c: c.sendall(answer(status, provider_error("internal_error"))))

    with pytest.raises(PaymentProviderUnavailableError) as caught:
        charge(client(server.url, retries=2))

    assert flags(caught.value) == (True, False)
    assert caught.value.status_code == status
    assert server.requests == 3


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html>gateway</html>", id="not_json"),
        pytest.param(b'{"cart_id": ', id="cut_json"),
        pytest.param(b'{"id": "pay_1", "amount": 1000}', id="missing_fields"),
    ],
)
def test_garbage_may_have_been_processed_and_is_not_retried(serve, body):
    server = serve(lambda c: c.sendall(answer(200, body)))

    with pytest.raises(PaymentProviderProtocolError) as caught:
        charge(client(server.url, retries=2))

    assert not isinstance(caught.value, PaymentProviderRefusedError)
    assert flags(caught.value) == (True, False)
    assert server.requests == 1


def test_an_answer_about_another_amount_may_have_been_processed(serve):
    other = {
        "id": "pay_1",
        "cart_id": "c-sock",
        "amount": 999,
        "currency": "USD",
        "payment_status": "success",
        "decline_code": None,
        "payment_method": "pm_card_default",
        "idempotency_key": "sock-1",
    }
    server = serve(lambda c: c.sendall(answer(200, json.dumps(other).encode())))

    with pytest.raises(PaymentProviderProtocolError) as caught:
        charge(client(server.url))

    assert "amount 999" in str(caught.value)
    assert flags(caught.value) == (True, False)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"<html>404 from a proxy</html>", id="not_the_providers_shape"),
        pytest.param(provider_error("idempotency_key_reused"), id="key_reused"),
    ],
)
def test_a_4xx_that_is_no_refusal_of_the_provider_may_have_been_processed(serve, body):
    server = serve(lambda c: c.sendall(answer(409 if b"reused" in body else 404, body)))

    with pytest.raises(PaymentProviderProtocolError) as caught:
        charge(client(server.url, retries=2))

    assert not isinstance(caught.value, PaymentProviderRefusedError)
    assert flags(caught.value) == (True, False)
    assert server.requests == 1


# -- answered refusals -----------------------------------------------------------------------


def test_a_refused_payment_method_is_an_answered_refusal(serve):
    body = provider_error("invalid_field", "payment_method")
    server = serve(lambda c: c.sendall(answer(400, body)))

    with pytest.raises(PaymentMethodRejectedError) as caught:
        charge(client(server.url, retries=2), method="pm_card_unknown")

    assert flags(caught.value) == (False, False)
    assert server.requests == 1


def test_a_refusal_in_the_providers_shape_is_an_answered_refusal(serve):
    server = serve(lambda c: c.sendall(answer(400, provider_error("invalid_field", "amount"))))

    with pytest.raises(PaymentProviderRefusedError) as caught:
        charge(client(server.url, retries=2))

    assert flags(caught.value) == (False, False)
    assert caught.value.code == "invalid_field"


def test_a_refusal_after_a_lost_answer_may_still_have_been_processed(serve):
    # The first request was reset after sending, the retry was refused: the refusal
    # proves nothing about the first.
    seen = []

    def reset_then_refuse(connection):
        seen.append(1)
        if len(seen) == 1:
            reset(connection)
        else:
            connection.sendall(answer(400, provider_error("invalid_field", "amount")))

    server = serve(reset_then_refuse)

    with pytest.raises(PaymentProviderRefusedError) as caught:
        charge(client(server.url, retries=1))

    assert flags(caught.value)[0] is True
    assert server.requests == 2
