"""Unit tests of `utils.PaymentAPI` against a scripted fake session: no network."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass
from decimal import Decimal
from http.client import RemoteDisconnected
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import (
    ConnectTimeoutError,
    MaxRetryError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

import utils
from observability.context import HEADER as REQUEST_ID_HEADER
from observability.context import request_id_bound
from utils import (
    IDEMPOTENCY_KEY_MAX_LENGTH,
    PaymentAPI,
    PaymentMethodRejectedError,
    PaymentNotFoundError,
    PaymentOutcome,
    PaymentProviderError,
    PaymentProviderProtocolError,
    PaymentProviderRefusedError,
    PaymentProviderTimeoutError,
    PaymentProviderUnavailableError,
    PaymentResult,
    RefundOutcome,
    RefundRefusedError,
    RefundResult,
)

BASE_URL = "http://provider.test"
TIMEOUT = (2.0, 5.0)
KEY = "cart-42-attempt-1"


class FakeResponse:
    """The part of `requests.Response` the client uses."""

    def __init__(
        self,
        status_code: int = 200,
        body: Any = None,
        *,
        text: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status_code = status_code
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.text = text if text is not None else json.dumps(body)

    def json(self) -> Any:
        return json.loads(self.text)

    def iter_content(self, chunk_size: int):
        yield self.text.encode("utf-8", "surrogateescape")

    def close(self) -> None:
        pass


@dataclass
class Call:
    method: str
    url: str
    json: Any
    params: Any
    headers: Any
    timeout: Any


class FakeSession:
    """Records every request and plays a script of responses and exceptions."""

    def __init__(self, *script: Any) -> None:
        self.script = list(script)
        self.calls: list[Call] = []

    def request(
        self, method, url, *, json=None, params=None, headers=None, timeout=None, stream=False
    ):
        assert stream, "the client reads answers itself, bounded (MAX_ANSWER_BYTES)"
        self.calls.append(Call(method, url, json, params, headers, timeout))
        if not self.script:
            raise AssertionError(f"unexpected extra request {method} {url}")
        item = self.script.pop(0)
        if isinstance(item, BaseException):
            raise item
        if callable(item):  # answers computed from the request
            return item(method, url, json=json, params=params, headers=headers, timeout=timeout)
        return item


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def payment(**overrides: Any) -> dict[str, Any]:
    """A provider payment as the contract documents it."""
    body = {
        "id": "pay_5f0c3a9e8b7d4c21a0e1f2d3",
        "cart_id": "42",
        "amount": 1500,
        "currency": "USD",
        "payment_status": "success",
        "decline_code": None,
        "payment_method": "pm_card_default",
        "idempotency_key": KEY,
        "created": "2026-11-21T05:00:00.000000+00:00",
    }
    body.update(overrides)
    return body


def ok(**overrides: Any) -> FakeResponse:
    return FakeResponse(200, payment(**overrides))


def error(status: int, code: str, message: str = "boom", field: str | None = None):
    err = {"code": code, "message": message}
    if field:
        err["field"] = field
    return FakeResponse(status, {"error": err})


def make_api(*script: Any, max_retries: int = 2):
    session = FakeSession(*script)
    sleeps = Sleeps()
    api = PaymentAPI(
        BASE_URL,
        connect_timeout=TIMEOUT[0],
        read_timeout=TIMEOUT[1],
        max_retries=max_retries,
        backoff=0.2,
        session=session,
        sleep=sleeps,
    )
    return api, session, sleeps


def charge(api: PaymentAPI, **overrides: Any) -> PaymentResult:
    kwargs = {"cart_id": "42", "amount": Decimal("15.00"), "idempotency_key": KEY}
    kwargs.update(overrides)
    return api.request_payment(**kwargs)


# -- results ----------------------------------------------------------------------------


def test_successful_charge_returns_typed_result_with_exact_decimal_amount():
    api, session, _ = make_api(ok())

    result = charge(api)

    assert isinstance(result, PaymentResult)
    assert result.payment_id == "pay_5f0c3a9e8b7d4c21a0e1f2d3"
    assert result.cart_id == "42"
    assert isinstance(result.amount, Decimal)
    assert result.amount == Decimal("15.00")
    assert str(result.amount) == "15.00"
    assert result.currency == "USD"
    assert result.status == PaymentOutcome.SUCCESS == "success"
    assert result.succeeded is True
    assert result.decline_code is None
    assert result.payment_method == "pm_card_default"
    assert result.idempotency_key == KEY
    assert result.replayed is False
    assert len(session.calls) == 1


def test_result_is_immutable():
    api, _, _ = make_api(ok())
    result = charge(api)
    with pytest.raises(AttributeError):
        result.amount = Decimal(0)  # type: ignore[misc]


def test_jpy_charge_sends_whole_yen_and_returns_whole_yen():
    api, session, _ = make_api(ok(amount=1500, currency="JPY"))

    result = charge(api, amount=Decimal(1500), currency="jpy")

    assert session.calls[0].json["amount"] == 1500
    assert session.calls[0].json["currency"] == "JPY"
    assert result.amount == Decimal(1500)
    assert str(result.amount) == "1500"
    assert result.currency == "JPY"


def test_three_decimal_currency_bhd_round_trips_exactly():
    api, session, _ = make_api(ok(amount=1234, currency="BHD"))

    result = charge(api, amount=Decimal("1.234"), currency="BHD")

    assert session.calls[0].json["amount"] == 1234
    assert str(result.amount) == "1.234"
    assert result.currency == "BHD"


def test_decline_is_returned_as_failed_result_not_raised():
    api, _, _ = make_api(ok(payment_status="failed", decline_code="insufficient_funds"))

    result = charge(api)

    assert result.status == PaymentOutcome.FAILED
    assert result.succeeded is False
    assert result.decline_code == "insufficient_funds"


# -- what goes over the wire --------------------------------------------------------------


def test_wire_body_is_integer_minor_units_currency_and_string_cart_id():
    api, session, _ = make_api(ok())

    charge(api, cart_id=42)

    call = session.calls[0]
    assert call.method == "POST"
    assert call.url == f"{BASE_URL}/request_payment"
    assert call.json == {"cart_id": "42", "amount": 1500, "currency": "USD"}
    assert type(call.json["amount"]) is int
    assert all(type(value) in (int, str) for value in call.json.values())
    assert call.headers["Idempotency-Key"] == KEY


def test_payment_method_is_sent_only_when_given():
    api, session, _ = make_api(ok(payment_method="pm_card_visa"), ok())

    charge(api, payment_method="pm_card_visa")
    charge(api)

    assert session.calls[0].json["payment_method"] == "pm_card_visa"
    assert "payment_method" not in session.calls[1].json


def test_key_is_generated_when_none_given_and_returned_in_result():
    def answer_with_sent_key(method, url, **kwargs):
        return ok(idempotency_key=kwargs["headers"]["Idempotency-Key"])

    api, session, _ = make_api(answer_with_sent_key)
    result = api.request_payment(cart_id="42", amount=Decimal("15.00"))

    key = session.calls[0].headers["Idempotency-Key"]
    assert len(key) == 32  # uuid4().hex
    assert int(key, 16) >= 0
    assert result.idempotency_key == key


def test_generated_key_is_the_same_on_every_retry():
    api, session, _ = make_api(
        requests.ConnectionError("reset"), error(503, "service_unavailable"), error(500, "x")
    )

    with pytest.raises(PaymentProviderUnavailableError) as caught:
        api.request_payment(cart_id="42", amount=Decimal("15.00"))

    keys = {call.headers["Idempotency-Key"] for call in session.calls}
    assert len(session.calls) == 3
    assert len(keys) == 1
    assert caught.value.idempotency_key == keys.pop()


def test_each_call_generates_a_fresh_key():
    api, session, _ = make_api(error(400, "invalid_field"), error(400, "invalid_field"))
    for _ in range(2):
        with pytest.raises(PaymentProviderProtocolError):
            api.request_payment(cart_id="42", amount=Decimal("15.00"))
    assert (
        session.calls[0].headers["Idempotency-Key"] != session.calls[1].headers["Idempotency-Key"]
    )


def test_connect_and_read_timeout_tuple_is_passed_on_every_call():
    api, session, _ = make_api(
        requests.ConnectionError("refused"),
        ok(),
        FakeResponse(200, {"data": []}),
        ok(),
        FakeResponse(200, {"available": 1}),
    )

    charge(api)
    api.find_payment(idempotency_key=KEY)
    api.get_payment("pay_5f0c3a9e8b7d4c21a0e1f2d3")
    api.inspect()

    assert len(session.calls) == 5
    assert all(call.timeout == TIMEOUT for call in session.calls)


def test_every_request_asks_for_json_and_carries_the_request_id_the_provider_journals():
    api, session, _ = make_api(requests.ConnectionError("refused"), ok(), ok())

    with request_id_bound("req-7f3a9c"):
        charge(api)
    charge(api)  # outside a request: no id to pass on

    # Header names, and media types, are case-insensitive in HTTP.
    sent = [CaseInsensitiveDict(call.headers) for call in session.calls]
    assert [headers["Accept"].lower() for headers in sent] == ["application/json"] * 3
    assert [headers.get(REQUEST_ID_HEADER) for headers in sent] == ["req-7f3a9c"] * 2 + [None]


def test_trailing_slash_of_base_url_is_dropped():
    session = FakeSession(ok())
    api = PaymentAPI(
        BASE_URL + "/",
        connect_timeout=1,
        read_timeout=1,
        max_retries=0,
        backoff=0,
        session=session,
    )
    charge(api)
    assert session.calls[0].url == f"{BASE_URL}/request_payment"


# -- retries ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        requests.ConnectionError("connection refused"),
        requests.ConnectTimeout("connect timed out"),
        requests.ReadTimeout("read timed out"),
        error(500, "internal_error"),
        error(503, "service_unavailable"),
    ],
    ids=["connection-error", "connect-timeout", "read-timeout", "http-500", "http-503"],
)
def test_transient_failure_is_retried_with_backoff_until_success(failure):
    api, session, sleeps = make_api(failure, failure, ok())

    result = charge(api)

    assert result.succeeded
    assert len(session.calls) == 3
    assert sleeps == [0.2, 0.4]
    assert {call.headers["Idempotency-Key"] for call in session.calls} == {KEY}
    assert len({json.dumps(call.json, sort_keys=True) for call in session.calls}) == 1


def test_success_after_one_failure_sleeps_once():
    api, session, sleeps = make_api(error(503, "service_unavailable"), ok())
    assert charge(api).succeeded
    assert len(session.calls) == 2
    assert sleeps == [0.2]


def test_backoff_doubles_each_retry_and_does_not_sleep_after_the_last_attempt():
    failure = error(503, "service_unavailable")
    api, session, sleeps = make_api(failure, failure, failure, failure, max_retries=3)

    with pytest.raises(PaymentProviderUnavailableError):
        charge(api)

    assert len(session.calls) == 4
    assert sleeps == [0.2, 0.4, 0.8]


def test_no_retries_configured_means_one_attempt():
    api, session, sleeps = make_api(error(503, "service_unavailable"), max_retries=0)
    with pytest.raises(PaymentProviderUnavailableError):
        charge(api)
    assert len(session.calls) == 1
    assert sleeps == []


def test_exhausted_5xx_retries_raise_unavailable_with_a_clear_message():
    failure = error(503, "service_unavailable")
    api, _, _ = make_api(failure, failure, failure)

    with pytest.raises(PaymentProviderUnavailableError) as caught:
        charge(api)

    assert type(caught.value) is PaymentProviderUnavailableError
    assert str(caught.value) == (
        "payment provider unavailable after 3 attempts: 503 service_unavailable"
    )
    assert caught.value.status_code == 503
    assert caught.value.idempotency_key == KEY
    # A provider can fail after its commit: a 5xx proves nothing was charged no more than
    # a lost answer does.
    assert (caught.value.maybe_processed, caught.value.maybe_in_flight) == (True, False)


URL = f"{BASE_URL}/request_payment"


def refused() -> requests.ConnectionError:
    """What requests raises when the connection is refused."""
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111]")
    return requests.ConnectionError(MaxRetryError(None, URL, reason))


def unresolved() -> requests.ConnectionError:
    reason = NameResolutionError("provider.test", None, socket.gaierror(-2, "Name unknown"))
    return requests.ConnectionError(MaxRetryError(None, URL, reason))


def connect_timeout() -> requests.ConnectTimeout:
    return requests.ConnectTimeout(MaxRetryError(None, URL, ConnectTimeoutError(None, "slow")))


def reset() -> requests.ConnectionError:
    reason = ConnectionResetError(104, "Connection reset by peer")
    return requests.ConnectionError(ProtocolError("Connection aborted.", reason))


def remote_disconnected() -> requests.ConnectionError:
    reason = RemoteDisconnected("Remote end closed connection without response")
    return requests.ConnectionError(ProtocolError("Connection aborted.", reason))


# Each transport failure, and (maybe processed, maybe still in flight) after it.
TRANSPORT_FAILURES = [
    pytest.param(refused, (False, False), id="connection-refused"),
    pytest.param(unresolved, (False, False), id="dns-failure"),
    pytest.param(connect_timeout, (False, False), id="connect-timeout"),
    pytest.param(reset, (True, False), id="reset-after-sending"),
    pytest.param(remote_disconnected, (True, False), id="eof-after-sending"),
    pytest.param(
        lambda: requests.exceptions.ChunkedEncodingError("ended"), (True, False), id="broken-body"
    ),
    pytest.param(lambda: requests.ReadTimeout("read timed out"), (True, True), id="read-timeout"),
    pytest.param(
        lambda: requests.ConnectionError("no cause given"), (True, False), id="unclassified"
    ),
]


@pytest.mark.parametrize(("failure", "proves"), TRANSPORT_FAILURES)
def test_each_transport_failure_says_whether_the_request_may_have_left(failure, proves):
    api, session, _ = make_api(failure(), failure(), failure())

    with pytest.raises(PaymentProviderUnavailableError) as caught:
        charge(api)

    assert (caught.value.maybe_processed, caught.value.maybe_in_flight) == proves
    assert isinstance(caught.value, PaymentProviderTimeoutError) is proves[1]
    assert "after 3 attempts" in str(caught.value)
    assert len(session.calls) == 3
    assert {call.headers["Idempotency-Key"] for call in session.calls} == {KEY}


def test_one_attempt_that_may_have_left_taints_attempts_that_provably_did_not():
    api, _, _ = make_api(refused(), reset(), refused())

    with pytest.raises(PaymentProviderUnavailableError) as caught:
        charge(api)

    assert caught.value.maybe_processed is True


def test_a_lost_answer_then_a_good_one_is_the_good_one():
    # A reused keep-alive connection closed by the server looks like a reset: the retry
    # with the same key gets the answer (stored, if the first was processed).
    api, session, _ = make_api(
        remote_disconnected(),
        FakeResponse(200, payment(), headers={"Idempotent-Replayed": "true"}),
    )

    result = charge(api)

    assert result.succeeded
    assert result.replayed
    assert len(session.calls) == 2


def test_exhausted_read_timeouts_raise_timeout_error_meaning_maybe_charged():
    failure = requests.ReadTimeout("read timed out")
    api, session, _ = make_api(failure, failure, failure)

    with pytest.raises(PaymentProviderTimeoutError) as caught:
        charge(api)

    assert isinstance(caught.value, PaymentProviderUnavailableError)
    assert caught.value.idempotency_key == KEY
    assert "may still be processed" in str(caught.value)
    assert (caught.value.maybe_processed, caught.value.maybe_in_flight) == (True, True)
    assert len(session.calls) == 3


def test_a_timed_out_charge_names_the_key_to_reconcile_with_and_the_last_answer():
    api, _, _ = make_api(
        requests.ReadTimeout("read timed out"),
        error(503, "service_unavailable"),
        error(503, "service_unavailable"),
    )

    with pytest.raises(PaymentProviderTimeoutError) as caught:
        charge(api)

    assert str(caught.value) == (
        "payment provider gave no complete answer after 3 attempts (last: 503 "
        "service_unavailable); the request may still be processed, reconcile by "
        f"idempotency key {KEY!r}"
    )
    assert caught.value.status_code == 503


def test_a_timed_out_read_without_a_key_says_so_without_a_key_to_reconcile_with():
    api, _, _ = make_api(requests.ReadTimeout("read timed out"), max_retries=0)

    with pytest.raises(PaymentProviderTimeoutError) as caught:
        api.get_payment("pay_1")

    assert str(caught.value) == (
        "payment provider gave no complete answer after 1 attempts "
        "(last: read timeout: read timed out); the request may still be processed"
    )
    assert caught.value.status_code is None
    assert caught.value.idempotency_key is None


def test_an_earlier_read_timeout_still_means_maybe_charged_when_later_attempts_fail():
    api, _, _ = make_api(
        requests.ReadTimeout("read timed out"),
        error(503, "service_unavailable"),
        requests.ConnectionError("refused"),
    )
    with pytest.raises(PaymentProviderTimeoutError):
        charge(api)


@pytest.mark.parametrize(
    "nonsense",
    [FakeResponse(200, text='{"cart_id": '), error(409, "idempotency_key_reused")],
    ids=["malformed", "unexpected-4xx"],
)
def test_nonsense_after_an_earlier_read_timeout_still_means_maybe_charged(nonsense):
    # The timed-out request may still be charging while the retry gets garbage: the
    # caller must reconcile, not conclude "not charged" (found by the soak test).
    api, session, _ = make_api(requests.ReadTimeout("read timed out"), nonsense)

    with pytest.raises(PaymentProviderTimeoutError) as caught:
        charge(api)

    assert isinstance(caught.value.__cause__, PaymentProviderProtocolError)
    assert caught.value.idempotency_key == KEY
    assert caught.value.maybe_in_flight is True
    assert len(session.calls) == 2


def test_a_read_timeout_while_reading_the_body_means_maybe_still_in_flight():
    failure = requests.ConnectionError(ReadTimeoutError(None, "/request_payment", "timed out"))
    api, session, _ = make_api(failure, failure, failure)
    with pytest.raises(PaymentProviderTimeoutError) as caught:
        charge(api)
    assert caught.value.idempotency_key == KEY
    assert caught.value.maybe_in_flight is True
    assert len(session.calls) == 3


def test_an_answer_that_broke_off_means_maybe_charged_but_not_in_flight():
    failure = requests.exceptions.ChunkedEncodingError("Response ended prematurely")
    api, session, _ = make_api(failure, failure, failure)
    with pytest.raises(PaymentProviderUnavailableError) as caught:
        charge(api)
    assert not isinstance(caught.value, PaymentProviderTimeoutError)
    assert (caught.value.maybe_processed, caught.value.maybe_in_flight) == (True, False)
    assert len(session.calls) == 3


def test_zero_backoff_retries_without_sleeping():
    session = FakeSession(error(503, "x"), ok())
    sleeps = Sleeps()
    api = PaymentAPI(
        BASE_URL,
        connect_timeout=1,
        read_timeout=1,
        max_retries=1,
        backoff=0,
        session=session,
        sleep=sleeps,
    )
    assert charge(api).succeeded
    assert len(session.calls) == 2
    assert sleeps == []


def test_5xx_without_an_error_body_is_still_retried_and_reported():
    page = FakeResponse(502, text="<html>Bad gateway</html>")
    api, _, _ = make_api(page, page, page)
    with pytest.raises(
        PaymentProviderUnavailableError, match="after 3 attempts: 502 server error"
    ):
        charge(api)


def test_redirect_is_a_protocol_error_and_not_followed():
    api, session, _ = make_api(requests.TooManyRedirects("Exceeded 0 redirects."))
    with pytest.raises(PaymentProviderProtocolError, match="redirected") as caught:
        charge(api)
    assert len(session.calls) == 1
    assert caught.value.idempotency_key == KEY  # what the caller reconciles with


def test_a_read_timeout_retry_answered_from_the_idempotency_store_is_a_replayed_success():
    api, session, _ = make_api(
        requests.ReadTimeout("read timed out"),
        FakeResponse(200, payment(), headers={"Idempotent-Replayed": "true"}),
    )
    result = charge(api)
    assert result.succeeded
    assert result.replayed
    assert len(session.calls) == 2


@pytest.mark.parametrize(
    ("status", "code", "refusal"),
    [
        (400, "invalid_field", True),
        (400, "missing_field", True),
        (409, "idempotency_key_reused", False),
    ],
)
def test_4xx_is_a_protocol_error_and_never_retried(status, code, refusal):
    api, session, sleeps = make_api(error(status, code, "nope", field="amount"))

    with pytest.raises(PaymentProviderProtocolError) as caught:
        charge(api)

    assert len(session.calls) == 1
    assert sleeps == []
    assert caught.value.status_code == status
    assert caught.value.code == code
    assert code in str(caught.value)
    # The provider's own refusal proves nothing was charged; a reused key means a request
    # with it was processed before.
    assert isinstance(caught.value, PaymentProviderRefusedError) is refusal
    assert caught.value.maybe_processed is not refusal


def test_a_4xx_without_the_providers_error_shape_may_hide_a_charge():
    api, _, _ = make_api(FakeResponse(404, text="<h1>Not Found</h1>"))

    with pytest.raises(PaymentProviderProtocolError) as caught:
        charge(api)

    assert not isinstance(caught.value, PaymentProviderRefusedError)
    assert caught.value.maybe_processed is True


@pytest.mark.parametrize(
    "lost",
    [
        reset,
        lambda: requests.exceptions.ChunkedEncodingError("Response ended prematurely"),
        lambda: error(503, "service_unavailable"),
    ],
    ids=["reset", "answer-broke-off", "http-503"],
)
def test_a_refusal_after_a_lost_answer_may_still_hide_a_charge(lost):
    # The first attempt may have charged (an answer that broke off even proves it): the
    # retry's refusal only refuses the retry.
    api, _, _ = make_api(lost(), error(400, "invalid_field", "nope", field="amount"))

    with pytest.raises(PaymentProviderRefusedError) as caught:
        charge(api)

    assert (caught.value.maybe_processed, caught.value.maybe_in_flight) == (True, False)


def test_nonsense_is_maybe_processed():
    api, _, _ = make_api(FakeResponse(200, text='{"cart_id": '))

    with pytest.raises(PaymentProviderProtocolError) as caught:
        charge(api)

    assert (caught.value.maybe_processed, caught.value.maybe_in_flight) == (True, False)


def test_non_request_errors_of_requests_are_wrapped_and_not_retried():
    api, session, _ = make_api(requests.exceptions.InvalidURL("bad url"))
    with pytest.raises(PaymentProviderError) as caught:
        charge(api)
    assert caught.value.maybe_processed is True  # nothing proves it never left
    assert caught.value.idempotency_key == KEY
    assert len(session.calls) == 1


def test_a_request_error_whose_cause_proves_it_never_left_means_not_charged():
    failure = requests.RequestException(refused().args[0])  # the refused connection's cause
    api, session, _ = make_api(failure)

    with pytest.raises(PaymentProviderError) as caught:
        charge(api)

    assert caught.value.maybe_processed is False
    assert caught.value.idempotency_key == KEY
    assert len(session.calls) == 1


# -- what each attempt reports to the metrics ---------------------------------------------


@pytest.fixture
def reported(monkeypatch):
    """What every attempt tells ATTEMPT_OBSERVERS (the provider metrics), timed by a clock
    that moves only when read: attempt n (from 0) starts at 100 * (n + 1) and lasts
    (n + 1) / 4 seconds."""
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(utils, "ATTEMPT_OBSERVERS", [lambda **attempt: seen.append(attempt)])
    ticks = iter([100.0, 100.25, 200.0, 200.5, 300.0, 300.75])
    monkeypatch.setattr(utils, "time", SimpleNamespace(monotonic=lambda: next(ticks)))
    return seen


# requests' own message for a read timeout: it has colons of its own.
READ_TIMEOUT = (
    "HTTPConnectionPool(host='provider.test', port=80): Read timed out. (read timeout=5.0)"
)


def test_each_attempt_reports_its_outcome_its_duration_and_whether_it_was_a_retry(reported):
    api, _, _ = make_api(
        requests.ReadTimeout(READ_TIMEOUT), error(503, "service_unavailable"), ok()
    )

    charge(api)

    assert reported == [
        {
            "method": "POST",
            "path": "/request_payment",
            "outcome": outcome,
            "seconds": s,
            "retry": n,
        }
        for n, (outcome, s) in enumerate([("read_timeout", 0.25), ("503", 0.5), ("200", 0.75)])
    ]


@pytest.mark.parametrize(
    ("failure", "outcome"),
    [
        (refused, "not_connected"),
        (unresolved, "not_connected"),
        (connect_timeout, "connect_timeout"),
        (reset, "connection_lost"),
        (remote_disconnected, "connection_lost"),
        (
            lambda: requests.ConnectionError(ReadTimeoutError(None, "/x", "Read timed out.")),
            "read_timeout",
        ),
        (lambda: requests.ReadTimeout(READ_TIMEOUT), "read_timeout"),
        (lambda: requests.exceptions.ChunkedEncodingError("ended"), "answer_broke_off"),
        (lambda: requests.TooManyRedirects("Exceeded 0 redirects."), "error"),
    ],
    ids=[
        "refused",
        "dns-failure",
        "connect-timeout",
        "reset",
        "eof",
        "timeout-reading-the-body",
        "read-timeout",
        "broken-body",
        "redirect",
    ],
)
def test_an_attempt_without_an_answer_reports_why_as_its_outcome(reported, failure, outcome):
    # The operator's graph of provider errors by outcome: a timed-out body is a timeout
    # (the charge may still happen), not a lost connection.
    api, _, _ = make_api(failure(), max_retries=0)

    with pytest.raises(PaymentProviderError):
        charge(api)

    assert [attempt["outcome"] for attempt in reported] == [outcome]
    assert reported[0]["seconds"] == 0.25


# -- protocol errors ----------------------------------------------------------------------


def raw(text: str) -> FakeResponse:
    return FakeResponse(200, text=text)


@pytest.mark.parametrize(
    "response",
    [
        raw("<html>Bad gateway</html>"),
        raw(""),
        raw("[]"),
        raw(json.dumps([payment()])),
        raw("null"),
        ok(id=None),
        FakeResponse(200, {k: v for k, v in payment().items() if k != "id"}),
        FakeResponse(200, {k: v for k, v in payment().items() if k != "amount"}),
        ok(id=""),
        ok(cart_id="43"),
        ok(cart_id=None),
        ok(amount=1499),
        ok(amount="1500"),
        ok(amount=True),
        raw(json.dumps(payment()).replace('"amount": 1500', '"amount": 1500.0')),
        raw(json.dumps(payment()).replace('"amount": 1500', '"amount": 1.5e3')),
        raw(json.dumps(payment()).replace('"amount": 1500', '"amount": NaN')),
        raw(json.dumps(payment()).replace('"amount": 1500', '"amount": 1500, "fee": NaN')),
        # The same value twice: only the duplicate key itself is wrong.
        raw(json.dumps(payment()).replace('"amount": 1500', '"amount": 1500, "amount": 1500')),
        ok(currency="EUR"),
        ok(currency="usd"),
        ok(currency=None),
        ok(payment_status="pending"),
        ok(payment_status=None),
        ok(payment_status="failed", decline_code=None),
        ok(payment_status="failed", decline_code=""),
        ok(payment_status="success", decline_code="generic_decline"),
        ok(payment_method=None),
        ok(idempotency_key="someone-else"),
        ok(idempotency_key=5),
        ok(currency="XYZ"),
    ],
    ids=[
        "not-json",
        "empty-body",
        "json-list",
        "list-of-payment",
        "json-null",
        "id-null",
        "missing-id",
        "missing-amount",
        "empty-id",
        "wrong-cart-id",
        "null-cart-id",
        "wrong-amount",
        "amount-as-string",
        "amount-as-bool",
        "float-y-amount-1500.0",
        "float-y-amount-exponent",
        "amount-NaN",
        "NaN-beside-the-amount",
        "duplicate-amount-key",
        "wrong-currency",
        "lower-case-currency",
        "missing-currency",
        "unknown-status",
        "null-status",
        "failed-without-decline-code",
        "failed-with-empty-decline-code",
        "success-with-decline-code",
        "missing-payment-method",
        "other-idempotency-key",
        "non-string-idempotency-key",
        "unknown-currency",
    ],
)
def test_nonsense_answer_is_a_protocol_error_and_not_retried(response):
    api, session, sleeps = make_api(response)

    with pytest.raises(PaymentProviderProtocolError) as caught:
        charge(api)

    assert len(session.calls) == 1
    assert sleeps == []
    assert caught.value.idempotency_key == KEY


def test_payment_method_other_than_requested_is_a_protocol_error():
    api, _, _ = make_api(ok(payment_method="pm_card_default"))
    with pytest.raises(PaymentProviderProtocolError):
        charge(api, payment_method="pm_card_visa")


def test_integer_cart_id_echo_matches_when_compared_as_string():
    api, _, _ = make_api(ok(cart_id=42))
    assert charge(api, cart_id=42).cart_id == "42"


@pytest.mark.parametrize("status", [201, 204, 302])
def test_unexpected_non_200_answer_is_a_protocol_error(status):
    api, session, _ = make_api(FakeResponse(status, payment()))
    with pytest.raises(PaymentProviderProtocolError):
        charge(api)
    assert len(session.calls) == 1


# -- replayed answers ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Idempotent-Replayed", "idempotent-replayed"])
def test_replayed_header_marks_the_result_replayed(name):
    api, _, _ = make_api(FakeResponse(200, payment(), headers={name: "true"}))
    assert charge(api).replayed is True


def test_replayed_header_false_is_not_replayed():
    api, _, _ = make_api(FakeResponse(200, payment(), headers={"Idempotent-Replayed": "false"}))
    assert charge(api).replayed is False


# -- arguments refused before anything is sent -------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "exc"),
    [
        ({"amount": Decimal("10.005")}, ValueError),
        ({"amount": Decimal("15.5"), "currency": "JPY"}, ValueError),
        ({"amount": Decimal("1.2345"), "currency": "BHD"}, ValueError),
        ({"amount": Decimal(0)}, ValueError),
        ({"amount": Decimal("-1.00")}, ValueError),
        ({"amount": Decimal("NaN")}, ValueError),
        ({"amount": Decimal("Infinity")}, ValueError),
        ({"amount": Decimal(100000000000)}, ValueError),
        ({"amount": 15.0}, TypeError),
        ({"amount": "15.00"}, TypeError),
        ({"currency": "XYZ"}, ValueError),
        ({"cart_id": ""}, ValueError),
        ({"cart_id": None}, ValueError),
        ({"idempotency_key": ""}, ValueError),
        ({"idempotency_key": 5}, TypeError),
        ({"idempotency_key": " padded "}, ValueError),
        ({"idempotency_key": "k" * 256}, ValueError),
        ({"idempotency_key": "clé"}, ValueError),
        ({"payment_method": ""}, ValueError),
    ],
    ids=[
        "usd-three-decimals",
        "jpy-decimals",
        "bhd-four-decimals",
        "zero",
        "negative",
        "nan",
        "infinity",
        "above-max-amount",
        "float-amount",
        "string-amount",
        "unknown-currency",
        "empty-cart-id",
        "no-cart-id",
        "empty-key",
        "non-string-key",
        "padded-key",
        "key-too-long",
        "non-ascii-key",
        "empty-payment-method",
    ],
)
def test_invalid_charge_arguments_raise_before_any_request(overrides, exc):
    api, session, _ = make_api(ok())
    with pytest.raises(exc):
        charge(api, **overrides)
    assert session.calls == []


def test_amount_with_too_many_decimals_raises_value_error_before_any_call():
    api, session, _ = make_api(ok())
    with pytest.raises(ValueError, match="more decimals than USD allows"):
        api.request_payment(cart_id="42", amount=Decimal("15.001"), currency="USD")
    assert session.calls == []


def test_trailing_zeros_beyond_the_currency_precision_are_accepted():
    api, session, _ = make_api(ok())
    charge(api, amount=Decimal("15.0000"))
    assert session.calls[0].json["amount"] == 1500


# -- reconciliation -----------------------------------------------------------------------


def test_find_payment_returns_the_payment_stored_under_the_key():
    api, session, _ = make_api(FakeResponse(200, {"data": [payment()]}))

    result = api.find_payment(idempotency_key=KEY)

    assert result is not None
    assert result.payment_id == "pay_5f0c3a9e8b7d4c21a0e1f2d3"
    assert result.amount == Decimal("15.00")
    assert result.replayed is False
    call = session.calls[0]
    assert (call.method, call.url, call.params) == (
        "GET",
        f"{BASE_URL}/payments",
        {"idempotency_key": KEY},
    )


def test_find_payment_returns_none_when_the_provider_has_no_payment():
    api, _, _ = make_api(FakeResponse(200, {"data": []}))
    assert api.find_payment(idempotency_key=KEY) is None


def test_find_payment_when_provider_is_down_raises_unavailable():
    down = requests.ConnectionError("connection refused")
    api, session, sleeps = make_api(down, down, down)
    with pytest.raises(PaymentProviderUnavailableError):
        api.find_payment(idempotency_key=KEY)
    assert len(session.calls) == 3
    assert sleeps == [0.2, 0.4]


@pytest.mark.parametrize(
    "body",
    [
        [payment()],
        {"data": None},
        {"data": [payment(), payment(id="pay_2")]},
        {"data": [payment(idempotency_key="other")]},
        {"data": [payment(amount=10**90)]},
    ],
    ids=["not-an-object", "data-not-a-list", "two-payments-one-key", "other-key", "huge-amount"],
)
def test_find_payment_nonsense_is_a_protocol_error(body):
    api, _, _ = make_api(FakeResponse(200, body))
    with pytest.raises(PaymentProviderProtocolError):
        api.find_payment(idempotency_key=KEY)


def test_get_payment_returns_the_payment():
    api, session, _ = make_api(ok(payment_status="failed", decline_code="generic_decline"))

    result = api.get_payment("pay_5f0c3a9e8b7d4c21a0e1f2d3")

    assert result.status == PaymentOutcome.FAILED
    assert result.decline_code == "generic_decline"
    assert session.calls[0].method == "GET"
    assert session.calls[0].url == f"{BASE_URL}/payments/pay_5f0c3a9e8b7d4c21a0e1f2d3"


def test_get_payment_quotes_the_id_in_the_path():
    api, session, _ = make_api(ok(id="pay/../x"))
    api.get_payment("pay/../x")
    assert session.calls[0].url == f"{BASE_URL}/payments/pay%2F..%2Fx"


def test_get_payment_404_raises_payment_not_found():
    api, session, _ = make_api(error(404, "payment_not_found", "No such payment."))
    with pytest.raises(PaymentNotFoundError) as caught:
        api.get_payment("pay_missing")
    assert isinstance(caught.value, PaymentProviderError)
    assert caught.value.status_code == 404
    assert len(session.calls) == 1


def test_get_payment_404_without_the_provider_error_code_is_a_protocol_error():
    api, _, _ = make_api(FakeResponse(404, text="<h1>Not Found</h1>"))
    with pytest.raises(PaymentProviderProtocolError):
        api.get_payment("pay_missing")


@pytest.mark.parametrize("payment_id", ["", None])
def test_get_payment_without_an_id_raises_before_any_request(payment_id):
    api, session, _ = make_api()
    with pytest.raises(ValueError, match="payment_id"):
        api.get_payment(payment_id)
    assert session.calls == []


def test_get_payment_answer_for_another_id_is_a_protocol_error():
    api, _, _ = make_api(ok(id="pay_other"))
    with pytest.raises(PaymentProviderProtocolError):
        api.get_payment("pay_5f0c3a9e8b7d4c21a0e1f2d3")


def test_get_payment_accepts_integer_cart_id_of_other_clients():
    api, _, _ = make_api(ok(cart_id=7, idempotency_key=None))
    result = api.get_payment("pay_5f0c3a9e8b7d4c21a0e1f2d3")
    assert result.cart_id == "7"
    assert result.idempotency_key is None


# -- health -------------------------------------------------------------------------------


def test_inspect_returns_the_health_answer_without_floats():
    health = '{"available": 1, "balance": "20.00", "payments": 0, "ratio": 0.1, "faults": []}'
    api, session, _ = make_api(raw(health))

    answer = api.inspect()

    assert answer["available"] == 1
    assert answer["balance"] == "20.00"
    assert answer["ratio"] == Decimal("0.1")  # as written: a float would be 0.1000000000000000055…
    assert session.calls[0].url == f"{BASE_URL}/inspect"


def test_inspect_answer_that_is_not_an_object_is_a_protocol_error():
    api, _, _ = make_api(raw("[1, 2]"))
    with pytest.raises(PaymentProviderProtocolError):
        api.inspect()


def test_inspect_when_provider_is_down_raises_unavailable():
    api, _, _ = make_api(error(503, "x"), error(503, "x"), error(503, "x"))
    with pytest.raises(PaymentProviderUnavailableError):
        api.inspect()


# -- configuration ------------------------------------------------------------------------


def test_settings_are_read_once_when_the_client_is_created():
    first = {
        "PAYMENT_API_BASE_URL": "http://first.test",
        "PAYMENT_API_CONNECT_TIMEOUT": 1.5,
        "PAYMENT_API_READ_TIMEOUT": 7.0,
        "PAYMENT_API_MAX_RETRIES": 1,
        "PAYMENT_API_RETRY_BACKOFF": 0.3,
    }
    session = FakeSession(error(503, "x"), error(503, "x"))
    sleeps = Sleeps()
    with override_settings(**first):
        api = PaymentAPI(session=session, sleep=sleeps)

    changed = {
        "PAYMENT_API_BASE_URL": "http://second.test",
        "PAYMENT_API_READ_TIMEOUT": 99.0,
        "PAYMENT_API_MAX_RETRIES": 5,
    }
    with override_settings(**changed), pytest.raises(PaymentProviderUnavailableError):
        charge(api)

    assert [call.url for call in session.calls] == ["http://first.test/request_payment"] * 2
    assert all(call.timeout == (1.5, 7.0) for call in session.calls)
    assert sleeps == [0.3]


def test_missing_setting_is_reported_as_improperly_configured():
    with override_settings():
        del settings.PAYMENT_API_BASE_URL
        with pytest.raises(ImproperlyConfigured, match="PAYMENT_API_BASE_URL"):
            PaymentAPI(session=FakeSession())


def test_explicit_arguments_win_over_settings():
    with override_settings(PAYMENT_API_BASE_URL="http://settings.test"):
        api = PaymentAPI(
            BASE_URL,
            connect_timeout=1,
            read_timeout=2,
            max_retries=0,
            backoff=0,
            session=FakeSession(),
        )
    assert api.base_url == BASE_URL


@pytest.mark.parametrize(
    "kwargs",
    [
        {"base_url": "provider.test"},
        {"connect_timeout": 0},
        {"read_timeout": -1},
        {"max_retries": -1},
        {"max_retries": 1.5},
        {"backoff": -0.1},
    ],
)
def test_invalid_configuration_is_refused(kwargs):
    args = {
        "base_url": BASE_URL,
        "connect_timeout": 1,
        "read_timeout": 1,
        "max_retries": 0,
        "backoff": 0,
        "session": FakeSession(),
    }
    args.update(kwargs)
    with pytest.raises(ImproperlyConfigured):
        PaymentAPI(**args)


def test_default_session_is_pooled_and_urllib3_retries_are_disabled():
    api = PaymentAPI(BASE_URL, connect_timeout=1, read_timeout=1, max_retries=2, backoff=0.2)
    try:
        session = api._session
        assert isinstance(session, requests.Session)
        adapter = session.get_adapter(f"{BASE_URL}/request_payment")
        assert adapter.max_retries.total == 0
        assert adapter._pool_maxsize >= 2
        assert session.max_redirects == 0
    finally:
        api.close()


def _environment(monkeypatch, **values: str) -> None:
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_default_session_reads_the_environment_once_when_it_is_created(monkeypatch):
    _environment(
        monkeypatch, http_proxy="http://proxy.test:3128", REQUESTS_CA_BUNDLE="/etc/provider.pem"
    )
    api = PaymentAPI(BASE_URL, connect_timeout=1, read_timeout=1, max_retries=0, backoff=0)
    try:
        session = api._session
        monkeypatch.setenv("http_proxy", "http://elsewhere.test:1")
        sent = session.merge_environment_settings(
            f"{BASE_URL}/request_payment", {}, None, None, None
        )
        assert sent["proxies"]["http"] == "http://proxy.test:3128"
        assert sent["verify"] == "/etc/provider.pem"
        assert session.trust_env is False  # not read again for every request
    finally:
        api.close()


def test_default_session_sends_directly_to_a_provider_no_proxy_names(monkeypatch):
    _environment(monkeypatch, http_proxy="http://proxy.test:3128", no_proxy="provider.test")
    api = PaymentAPI(BASE_URL, connect_timeout=1, read_timeout=1, max_retries=0, backoff=0)
    try:
        assert api._session.proxies == {}
        assert api._session.verify is True
    finally:
        api.close()


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {  # a charge
            "method": "post",
            "url": f"{BASE_URL}/request_payment",
            "json": {"cart_id": "42", "amount": 1500, "currency": "USD"},
            "headers": {"Accept": "application/json", "Idempotency-Key": KEY},
        },
        {  # a ledger lookup
            "method": "GET",
            "url": f"{BASE_URL}/payments",
            "params": {"idempotency_key": "k y/é"},
            "headers": {"Accept": "application/json", "X-Request-ID": "req-1"},
        },
        {  # a header removed, a cookie and auth of the request's own
            "method": "GET",
            "url": f"{BASE_URL}/inspect?x=1",
            "params": {"y": "2"},
            "headers": {"User-Agent": None},
            "cookies": {"c": "d"},
            "auth": ("user", "pw"),
        },
        {  # a cookie of the session's name: the request's wins
            "method": "GET",
            "url": f"{BASE_URL}/inspect",
            "cookies": {"session-cookie": "2"},
        },
    ],
)
def test_the_default_session_prepares_each_request_as_requests_does(monkeypatch, request_kwargs):
    _environment(monkeypatch, http_proxy="http://proxy.test:3128", REQUESTS_CA_BUNDLE="/ca.pem")
    api = PaymentAPI(BASE_URL, connect_timeout=1, read_timeout=1, max_retries=0, backoff=0)
    try:
        session = api._session
        session.auth = ("netrc-user", "netrc-pw")
        session.cookies.set("session-cookie", "1")
        ours = session.prepare_request(requests.Request(**request_kwargs))
        theirs = requests.Session.prepare_request(session, requests.Request(**request_kwargs))
        assert (ours.method, ours.url, ours.body) == (theirs.method, theirs.url, theirs.body)
        assert list(ours.headers.items()) == list(theirs.headers.items())
        assert ours.hooks == theirs.hooks
        for proxies, stream, verify, cert in [({}, True, None, None), (None, None, False, "c")]:
            environment = (f"{BASE_URL}/x", proxies, stream, verify, cert)
            assert session.merge_environment_settings(
                *environment
            ) == requests.Session.merge_environment_settings(session, *environment)
    finally:
        api.close()


def test_close_leaves_an_injected_session_alone():
    class ClosableSession(FakeSession):
        closed = False

        def close(self):
            self.closed = True

    session = ClosableSession()
    api = PaymentAPI(
        BASE_URL, connect_timeout=1, read_timeout=1, max_retries=0, backoff=0, session=session
    )
    api.close()
    assert session.closed is False


def test_a_refused_payment_method_is_its_own_error_and_not_retried():
    api, session, sleeps = make_api(
        error(400, "invalid_field", "unknown payment method", field="payment_method")
    )

    with pytest.raises(PaymentMethodRejectedError) as caught:
        charge(api, payment_method="pm_card_nope")

    assert not isinstance(caught.value, PaymentProviderProtocolError)
    assert caught.value.idempotency_key == KEY
    assert caught.value.maybe_processed is False
    assert len(session.calls) == 1
    assert sleeps == []


def test_a_400_naming_another_field_is_our_bug_a_protocol_error():
    api, _, _ = make_api(error(400, "invalid_field", "bad amount", field="amount"))
    with pytest.raises(PaymentProviderProtocolError):
        charge(api)


def test_worst_case_seconds_is_every_attempt_timing_out_plus_the_backoff():
    api, _, _ = make_api(max_retries=2)  # timeouts 2 + 5, backoff 0.2 then 0.4

    assert api.worst_case_seconds == pytest.approx(3 * 7.0 + 0.6)


# -- refunds ------------------------------------------------------------------------------

PAYMENT_ID = "pay_5f0c3a9e8b7d4c21a0e1f2d3"
REFUND_KEY = "refund-1"


def refund_body(**overrides: Any) -> dict[str, Any]:
    body = {
        "id": "re_0c1d2e3f4a5b6c7d8e9f0a1b",
        "payment_id": PAYMENT_ID,
        "cart_id": "42",
        "amount": 500,
        "currency": "USD",
        "status": "succeeded",
        "reason": None,
        "idempotency_key": REFUND_KEY,
        "created": "2026-11-21T05:01:00.000000+00:00",
    }
    body.update(overrides)
    return body


def give_back(api: PaymentAPI, **overrides: Any) -> RefundResult:
    kwargs = {
        "payment_id": PAYMENT_ID,
        "amount": Decimal("5.00"),
        "currency": "USD",
        "idempotency_key": REFUND_KEY,
    }
    kwargs.update(overrides)
    return api.request_refund(**kwargs)


def test_a_refund_returns_a_typed_result_with_an_exact_amount():
    api, session, _ = make_api(FakeResponse(200, refund_body()))

    made = give_back(api, reason="requested_by_customer")

    assert made == RefundResult(
        refund_id="re_0c1d2e3f4a5b6c7d8e9f0a1b",
        payment_id=PAYMENT_ID,
        amount=Decimal("5.00"),
        currency="USD",
        status=RefundOutcome.SUCCEEDED,
        idempotency_key=REFUND_KEY,
        replayed=False,
    )
    assert made.succeeded
    call = session.calls[0]
    assert (call.method, call.url) == ("POST", f"{BASE_URL}/refunds")
    assert call.json == {
        "payment_id": PAYMENT_ID,
        "amount": 500,
        "currency": "USD",
        "reason": "requested_by_customer",
    }
    assert call.headers["Idempotency-Key"] == REFUND_KEY


def test_a_failed_refund_is_a_result_not_an_error():
    api, _, _ = make_api(FakeResponse(200, refund_body(status="failed")))

    assert give_back(api).succeeded is False


def test_a_refund_is_retried_with_its_key_and_a_replay_is_marked():
    api, session, _ = make_api(
        reset(), FakeResponse(200, refund_body(), headers={"Idempotent-Replayed": "true"})
    )

    made = give_back(api)

    assert made.replayed
    assert [call.headers["Idempotency-Key"] for call in session.calls] == [REFUND_KEY] * 2


@pytest.mark.parametrize("code", ["amount_exceeds_refundable", "payment_not_refundable"])
def test_a_refund_the_provider_refuses_is_its_own_error(code):
    api, session, _ = make_api(error(400, code, "no", field="amount"))

    with pytest.raises(RefundRefusedError) as caught:
        give_back(api)

    assert caught.value.code == code
    assert caught.value.maybe_processed is False
    assert len(session.calls) == 1


def test_a_refund_refused_after_a_timeout_may_still_have_been_made():
    api, _, _ = make_api(
        requests.ReadTimeout("read timed out"),
        error(400, "amount_exceeds_refundable", field="amount"),
    )

    with pytest.raises(PaymentProviderTimeoutError) as caught:
        give_back(api)

    assert isinstance(caught.value.__cause__, RefundRefusedError)
    assert caught.value.maybe_in_flight is True


@pytest.mark.parametrize(
    "body",
    [
        refund_body(id=""),
        refund_body(payment_id="pay_other"),
        refund_body(amount=499),
        refund_body(amount="500"),
        refund_body(currency="EUR"),
        refund_body(currency="usd"),
        refund_body(status="pending"),
        refund_body(idempotency_key="other"),
        refund_body(idempotency_key=5),
        {k: v for k, v in refund_body().items() if k != "status"},
        [refund_body()],
    ],
    ids=[
        "empty-id",
        "other-payment",
        "other-amount",
        "string-amount",
        "other-currency",
        "lower-case-currency",
        "unknown-status",
        "other-key",
        "non-string-key",
        "missing-status",
        "not-an-object",
    ],
)
def test_a_nonsense_refund_answer_is_a_protocol_error(body):
    api, _, _ = make_api(FakeResponse(200, body))

    with pytest.raises(PaymentProviderProtocolError) as caught:
        give_back(api)

    assert caught.value.maybe_processed is True
    assert caught.value.idempotency_key == REFUND_KEY  # the caller looks the refund up by it


@pytest.mark.parametrize(
    ("overrides", "exc"),
    [
        ({"payment_id": ""}, ValueError),
        ({"amount": Decimal("0")}, ValueError),
        ({"amount": Decimal("1.001")}, ValueError),
        ({"amount": 5.0}, TypeError),
        ({"idempotency_key": ""}, ValueError),
        ({"currency": "XYZ"}, ValueError),
    ],
)
def test_invalid_refund_arguments_raise_before_any_request(overrides, exc):
    api, session, _ = make_api()
    with pytest.raises(exc):
        give_back(api, **overrides)
    assert session.calls == []


def test_find_refund_returns_the_refund_stored_under_the_key_or_none():
    api, session, _ = make_api(
        FakeResponse(200, {"data": [refund_body()]}), FakeResponse(200, {"data": []})
    )

    found = api.find_refund(idempotency_key=REFUND_KEY)
    missing = api.find_refund(idempotency_key=REFUND_KEY)

    # Found in the ledger, not an answer replayed by the key.
    assert found == RefundResult(
        refund_id="re_0c1d2e3f4a5b6c7d8e9f0a1b",
        payment_id=PAYMENT_ID,
        amount=Decimal("5.00"),
        currency="USD",
        status=RefundOutcome.SUCCEEDED,
        idempotency_key=REFUND_KEY,
        replayed=False,
    )
    assert missing is None
    assert session.calls[0].params == {"idempotency_key": REFUND_KEY}
    assert session.calls[0].url == f"{BASE_URL}/refunds"


@pytest.mark.parametrize(
    "body",
    [
        {"data": [refund_body(), refund_body(id="re_2")]},
        {"data": "x"},
        # A ledger lookup knows no amount or currency to compare with: the refund must
        # still be one the books can hold.
        {"data": [refund_body(amount=0)]},
        {"data": [refund_body(amount=-500)]},
        {"data": [refund_body(currency="usd")]},
        {"data": [refund_body(currency="XYZ")]},
        {"data": [refund_body(currency=840)]},
        {"data": [refund_body(amount=10**90)]},
    ],
    ids=[
        "two-refunds-one-key",
        "data-not-a-list",
        "zero-amount",
        "negative-amount",
        "lower-case-currency",
        "unknown-currency",
        "numeric-currency",
        "huge-amount",
    ],
)
def test_find_refund_nonsense_is_a_protocol_error(body):
    api, _, _ = make_api(FakeResponse(200, body))
    with pytest.raises(PaymentProviderProtocolError) as caught:
        api.find_refund(idempotency_key=REFUND_KEY)
    assert caught.value.idempotency_key == REFUND_KEY


def test_a_refund_of_one_minor_unit_is_read_back():
    api, _, _ = make_api(
        FakeResponse(200, refund_body(amount=1)),
        FakeResponse(200, {"data": [refund_body(amount=1)]}),
    )

    made = give_back(api, amount=Decimal("0.01"))
    found = api.find_refund(idempotency_key=REFUND_KEY)

    assert made.amount == found.amount == Decimal("0.01")


def test_list_payments_returns_the_carts_payments_oldest_first():
    api, session, _ = make_api(
        FakeResponse(200, {"data": [payment(), payment(id="pay_2", idempotency_key="other")]})
    )

    found = api.list_payments(cart_id=42)

    assert [p.payment_id for p in found] == ["pay_5f0c3a9e8b7d4c21a0e1f2d3", "pay_2"]
    assert session.calls[0].params == {"cart_id": "42"}


def test_list_payments_refuses_a_payment_of_another_cart():
    api, _, _ = make_api(FakeResponse(200, {"data": [payment(cart_id="43")]}))
    with pytest.raises(PaymentProviderProtocolError):
        api.list_payments(cart_id="42")


# -- edges: every allowed key, one minor unit, what a ledger lookup checks ----------------
@pytest.mark.parametrize(
    "key",
    ["k", "k" * IDEMPOTENCY_KEY_MAX_LENGTH, "order 42", "order~42", "~"],
    ids=["one-character", "longest", "space-inside", "tilde", "tilde-alone"],
)
def test_every_allowed_idempotency_key_is_sent_as_given(key):
    api, session, _ = make_api(ok(idempotency_key=key))

    charge(api, idempotency_key=key)

    assert session.calls[0].headers["Idempotency-Key"] == key


@pytest.mark.parametrize(
    "key",
    ["", "k" * (IDEMPOTENCY_KEY_MAX_LENGTH + 1), " k", "k\x7f", "k\x1f"],
    ids=["empty", "one-too-long", "leading-space", "delete-character", "control-character"],
)
def test_a_key_outside_the_allowed_ones_is_refused_before_anything_is_sent(key):
    api, session, _ = make_api()

    with pytest.raises(ValueError, match="idempotency_key"):
        charge(api, idempotency_key=key)

    assert session.calls == []


def test_a_charge_of_one_minor_unit_is_read_back():
    api, _, _ = make_api(ok(amount=1))

    result = charge(api, amount=Decimal("0.01"))

    assert result.amount == Decimal("0.01")


@pytest.mark.parametrize(
    ("stored", "problem"),
    [
        ({"amount": 0}, "amount"),
        ({"amount": -1500}, "amount"),
        ({"currency": "usd"}, "currency"),
        ({"currency": "XYZ"}, "currency"),
        ({"idempotency_key": "someone-else"}, "idempotency_key"),
    ],
    ids=["zero-amount", "negative-amount", "lower-case-currency", "unknown-currency", "other-key"],
)
def test_a_ledger_lookup_answer_that_cannot_be_a_charge_is_a_protocol_error(stored, problem):
    api, _, _ = make_api(FakeResponse(200, {"data": [payment(**stored)]}))

    with pytest.raises(PaymentProviderProtocolError, match=problem) as caught:
        api.find_payment(idempotency_key=KEY)

    assert caught.value.idempotency_key == KEY


def test_a_ledger_lookup_finds_the_charge_stored_under_the_key():
    api, session, _ = make_api(FakeResponse(200, {"data": [payment()]}))

    found = api.find_payment(idempotency_key=KEY)

    assert (found.amount, found.currency, found.idempotency_key) == (Decimal("15.00"), "USD", KEY)
    assert session.calls[0].params == {"idempotency_key": KEY}


def test_the_default_session_sends_its_own_query_parameters_as_requests_does():
    api = PaymentAPI(BASE_URL, connect_timeout=1, read_timeout=1, max_retries=0, backoff=0)
    try:
        session = api._session
        session.params = {"v": "1"}
        request = {"method": "GET", "url": f"{BASE_URL}/x", "params": {"w": "2"}}
        ours = session.prepare_request(requests.Request(**request))
        theirs = requests.Session.prepare_request(session, requests.Request(**request))
        assert ours.url == theirs.url
    finally:
        api.close()
