"""Client for the external payment provider: `PaymentAPI` and its typed results and errors.

This module owns everything that speaks the provider's HTTP protocol (the contract is
`docs/payment-provider.md`): the pooled HTTP session, timeouts, bounded retries, the wire
format (exact integer minor units plus an ISO currency, never floats) and the validation
of every answer. Nothing outside this module builds provider requests or reads their JSON.

Usage::

    api = PaymentAPI()  # base URL, timeouts and retries from settings.PAYMENT_API_*
    result = api.request_payment(cart_id=cart.id, amount=Decimal("15.00"), currency="USD")
    if result.succeeded: ...  # else result.decline_code says why the card was declined
    api.request_refund(payment_id=result.payment_id, amount=Decimal("5.00"),
                       currency="USD", idempotency_key="refund-1")

Outcomes and errors:

* A decline is a *result*, not an exception: `PaymentResult.status == "failed"` with a
  `decline_code` (`insufficient_funds`, `generic_decline`, ...). The provider answered and
  nothing was charged. A refund the provider answers `failed` is a result too.
* Every error says what it proves, in two flags, so the caller can apply one rule:
  `maybe_processed` (False only when no request of the call can have been processed:
  each one provably never left, or the provider answered a refusal) and
  `maybe_in_flight` (a read timed out: the request may still be processed later). The
  caller's rule (`payments.provider.outcome_after_failure`) is stricter still: any
  request that may have been processed may also be committed after a ledger lookup
  (a proxy resets the connection, or answers 502/504, while the provider works on), so
  an empty ledger never closes it at once.
* How a transport failure is classified: connection refused, DNS failure and connect
  timeout (urllib3 `NewConnectionError`, `NameResolutionError`, `ConnectTimeoutError`)
  mean the request never left. Anything after that (a reset or EOF, `RemoteDisconnected`,
  a body that broke off, a 5xx, garbage) may hide a processed request; a read timeout
  may in addition still be processed later. A reused keep-alive connection the server
  had closed also surfaces as a reset: it is retried with the same key like the others,
  and the caller's ledger lookup settles what is left.
* `PaymentProviderUnavailableError`: no usable answer after every attempt (refused,
  reset, empty reply, 5xx). `maybe_processed` says whether any attempt may have been
  processed.
* `PaymentProviderTimeoutError` (a subclass of the above): an attempt was sent and its
  answer never came (read timeout): `maybe_in_flight`. Whatever the later attempts
  answered, the charge may still happen: reconcile with `find_payment(idempotency_key=…)`
  before charging again or telling the customer anything.
* `PaymentProviderProtocolError`: the provider answered, but with something that breaks
  the contract (not JSON, missing or mistyped fields, another cart, amount or currency,
  an unknown status, `409 idempotency_key_reused`). Never retried; it may hide a
  processed request. `PaymentProviderRefusedError` (a subclass) is a 4xx error in the
  provider's own shape: a refusal, nothing processed.
* `PaymentNotFoundError`: `get_payment` asked for an id the provider does not know.
* `PaymentMethodRejectedError`: the provider refused the `payment_method` (400 naming
  it). Nothing was charged; repeating the request is pointless.
* `RefundRefusedError`: the provider refused a refund (400 naming a field, e.g.
  `amount_exceeds_refundable`). Nothing was refunded.
* Bad arguments (unknown currency, more decimals than the currency allows, amount not
  positive) raise `ValueError`/`TypeError` before anything is sent.

Why retries are safe: every charge and refund carries an `Idempotency-Key`. The provider stores the
answer under that key, so a retry of a charge that did go through gets the stored payment
back (`replayed=True`) instead of charging twice. When the caller passes no key,
`request_payment` generates one (`uuid4().hex`) and reuses it on every retry of that call;
it is reported back in `PaymentResult.idempotency_key` and on the errors. Callers that may
repeat a charge across calls (a customer clicking "pay" twice, a crashed worker) should
pass their own stable key, e.g. derived from the cart and the attempt.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any, NoReturn
from urllib.parse import quote

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from requests.cookies import RequestsCookieJar, merge_cookies
from requests.sessions import merge_hooks
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import ConnectTimeoutError, ReadTimeoutError
from urllib3.util.retry import Retry

from common.http import (
    Answer,
    AnswerTooLargeError,
    Deadline,
    WatchedAdapter,
    read_whole,
)
from common.money import (
    MAX_AMOUNT,
    UnknownCurrencyError,
    from_minor_units,
    normalize_currency,
    to_minor_units,
)
from observability.context import HEADER as REQUEST_ID_HEADER
from observability.context import current_request_id

logger = logging.getLogger(__name__)

# Told of every HTTP attempt: observer(method=, path=, outcome=, seconds=, retry=), where
# outcome is the HTTP status ("200", "503") or why there is none ("read_timeout",
# "connection_lost", "not_connected", …); retry is 0 for a first attempt.
# `observability.metrics` registers one.
ATTEMPT_OBSERVERS: list[Callable[..., None]] = []

# Connections kept open to the provider. One host, so one pool; enough connections for
# the worker threads of one process to charge concurrently.
POOL_CONNECTIONS = 1
POOL_MAXSIZE = 10
# The provider accepts keys of 1-255 printable ASCII characters.
IDEMPOTENCY_KEY_MAX_LENGTH = 255
# Causes of a transport failure that prove the request never left: the connection was
# refused, the name did not resolve, or connecting timed out. (urllib3's
# NewConnectionError and NameResolutionError are ConnectTimeoutErrors.)
_NEVER_SENT = (ConnectTimeoutError, ConnectionRefusedError, socket.gaierror)


class PaymentOutcome(StrEnum):
    """`payment_status` of a processed payment."""

    SUCCESS = "success"
    FAILED = "failed"


class RefundOutcome(StrEnum):
    """`status` of a processed refund."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class PaymentResult:
    """A payment the provider processed, successful or declined."""

    payment_id: str
    cart_id: str
    amount: Decimal  # major units, quantized to the currency
    currency: str
    status: PaymentOutcome
    decline_code: str | None
    payment_method: str
    idempotency_key: str | None
    replayed: bool  # answered from the provider's idempotency store

    @property
    def succeeded(self) -> bool:
        return self.status is PaymentOutcome.SUCCESS


@dataclass(frozen=True)
class RefundResult:
    """A refund the provider processed: made (`succeeded`) or not (`failed`)."""

    refund_id: str
    payment_id: str
    amount: Decimal  # major units, quantized to the currency
    currency: str
    status: RefundOutcome
    idempotency_key: str | None
    replayed: bool

    @property
    def succeeded(self) -> bool:
        return self.status is RefundOutcome.SUCCEEDED


class PaymentProviderError(Exception):
    """Base of every error talking to the payment provider.

    `status_code` and `code` are the HTTP status and the provider's error code when the
    provider answered; `idempotency_key` is the key the request carried, if any.
    `maybe_processed` is False only when it is proven that the provider processed no
    request of the call; `maybe_in_flight` is True when a request may still be processed
    later (its answer never came).
    """

    maybe_processed = True
    maybe_in_flight = False

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        idempotency_key: str | None = None,
        maybe_processed: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.idempotency_key = idempotency_key
        if maybe_processed is not None:
            self.maybe_processed = maybe_processed


class PaymentProviderUnavailableError(PaymentProviderError):
    """No usable answer after every attempt (refused, reset, empty reply, 5xx)."""


class PaymentProviderTimeoutError(PaymentProviderUnavailableError):
    """An attempt was sent but its answer never came: it may be processed even later."""

    maybe_in_flight = True

    def __init__(self, message: str, **kwargs: Any) -> None:
        kwargs["maybe_processed"] = True
        super().__init__(message, **kwargs)


class PaymentProviderProtocolError(PaymentProviderError):
    """The provider answered something that breaks the protocol; never retried."""


class PaymentProviderRefusedError(PaymentProviderProtocolError):
    """The provider refused the request with a 4xx error of its own: nothing processed."""

    maybe_processed = False


class PaymentNotFoundError(PaymentProviderError):
    """The provider has no payment with that id (`404 payment_not_found`)."""

    maybe_processed = False


class PaymentMethodRejectedError(PaymentProviderError):
    """The provider refused the request because of its `payment_method` (a 400 naming
    that field): nothing was charged, and the same request will be refused again."""

    maybe_processed = False


class RefundRefusedError(PaymentProviderError):
    """The provider refused the refund (a 400 naming a field: `amount_exceeds_refundable`,
    `payment_not_refundable`, ...): nothing was refunded."""

    maybe_processed = False


class _Retryable(Exception):
    """One failed attempt that may be retried. Internal to `PaymentAPI._exchange`."""

    def __init__(
        self,
        reason: str,
        *,
        maybe_processed: bool,
        in_flight: bool = False,
        status_code: int | None = None,
    ):
        super().__init__(reason)
        self.reason = reason
        self.maybe_processed = maybe_processed
        self.in_flight = in_flight
        self.status_code = status_code


@dataclass
class _History:
    """What the failed attempts of one call may have done at the provider."""

    maybe_processed: bool = False
    in_flight: bool = False

    def add(self, failure: _Retryable) -> None:
        self.maybe_processed = self.maybe_processed or failure.maybe_processed
        self.in_flight = self.in_flight or failure.in_flight


def _setting(name: str) -> Any:
    try:
        return getattr(settings, name)
    except AttributeError:
        raise ImproperlyConfigured(f"settings.{name} is required by PaymentAPI.") from None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r}")
        obj[key] = value
    return obj


def _loads(text: object) -> Any:
    """Parse JSON without ever creating a float: decimals become `Decimal`."""
    return json.loads(
        text,  # type: ignore[arg-type]
        parse_float=Decimal,
        parse_constant=_reject_constant,
        object_pairs_hook=_unique_keys,
    )


def _header(response: Any, name: str) -> str | None:
    """Case-insensitive header lookup that also works on a plain dict."""
    headers = response.headers
    if isinstance(headers, CaseInsensitiveDict):  # requests' own: one lookup
        value = headers.get(name)
        return None if value is None else str(value)
    wanted = name.lower()
    for key, value in (headers or {}).items():
        if str(key).lower() == wanted:
            return str(value)
    return None


def _provider_error(response: Any) -> dict[str, Any] | None:
    """The `error` object of a provider error body (its own shape), or None."""
    try:
        body = _loads(response.text)
    except (ValueError, TypeError, RecursionError, ArithmeticError):
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("code"), str):
        return None
    return error


def _replayed(response: Any) -> bool:
    return (_header(response, "Idempotent-Replayed") or "").strip().lower() == "true"


def _error_detail(response: Any) -> tuple[str | None, str]:
    """(code, "code (field): message") from a provider error body, best effort."""
    error = _provider_error(response)
    if error is None:
        return None, "no error body"
    code = error["code"]
    detail = code
    if isinstance(error.get("field"), str):
        detail += f" ({error['field']})"
    if isinstance(error.get("message"), str):
        detail += f": {error['message']}"
    return code, detail


def _error_field(response: Any) -> str | None:
    """The `field` a provider error body names, if any."""
    error = _provider_error(response)
    field = error.get("field") if error else None
    return field if isinstance(field, str) else None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception and what it wraps: urllib3's `reason`, exception arguments and
    explicit causes (`raise ... from`)."""
    stack: list[object] = [exc]
    seen: set[int] = set()
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        stack.extend([getattr(item, "reason", None), item.__cause__, *item.args])


def _never_sent(exc: BaseException) -> bool:
    return any(isinstance(cause, _NEVER_SENT) for cause in _causes(exc))


def is_key_text(key: str) -> bool:
    """Whether an idempotency key is text the provider takes: printable ASCII without
    surrounding spaces (the length is checked apart)."""
    # Printable ASCII is exactly " " to "~" (one test per character was 70 calls a pay).
    return key.isascii() and key.isprintable() and key == key.strip()


def _check_idempotency_key(key: str) -> str:
    if not isinstance(key, str):
        raise TypeError("idempotency_key must be a string.")
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX_LENGTH:
        raise ValueError(f"idempotency_key must be 1-{IDEMPOTENCY_KEY_MAX_LENGTH} characters.")
    if not is_key_text(key):
        raise ValueError("idempotency_key must be printable ASCII without surrounding spaces.")
    return key


def _check_amount(amount: object, currency: str) -> tuple[Decimal, str, int]:
    """(amount, normalized currency, minor units), or ValueError/TypeError."""
    if isinstance(amount, bool) or not isinstance(amount, Decimal | int):
        raise TypeError(f"amount must be a Decimal, not {type(amount).__name__}.")
    amount = Decimal(amount)
    if not amount.is_finite() or amount <= 0 or amount > MAX_AMOUNT:
        raise ValueError(f"amount must be positive and at most {MAX_AMOUNT}, not {amount}.")
    currency = normalize_currency(currency)
    return amount, currency, to_minor_units(amount, currency)  # ValueError: too many decimals


def _read_whole(response: Any) -> Answer:
    """The whole answer (common.http: read within the exchange's deadline, bounded in
    size); one too large is a failure that may have been processed."""
    try:
        return read_whole(response)
    except AnswerTooLargeError as exc:
        raise _Retryable(str(exc), maybe_processed=True) from exc


class _ProviderSession(requests.Session):
    """The client's `requests.Session`, which merges its own settings into each request
    without requests' general merging.

    Its settings are plain dicts and values, set once when it is made (the environment is
    not read: `trust_env` is off). requests merged them into every request through a
    runtime-checked `Protocol` per dict (`to_key_val_list`: about 30 Python calls each),
    encoded an empty query string, and merged them again as "environment settings": a
    fifth of the Python calls of a charge. The result is the same request: the session's
    headers overridden by the request's (None removes one), the request's query string,
    auth and hooks, the session's proxies, CA bundle and certificate. A request with
    cookies of its own, or a session given query parameters (neither is the client's),
    goes through requests' merging.
    """

    def prepare_request(self, request: requests.Request) -> requests.PreparedRequest:
        if request.cookies or self.params:
            # Never what the client sends: requests' own merging, whose rules these are.
            return super().prepare_request(request)
        headers = CaseInsensitiveDict(self.headers)
        headers.update(request.headers or {})
        for name in [name for name, value in headers.items() if value is None]:
            del headers[name]
        cookies = merge_cookies(RequestsCookieJar(), self.cookies)
        prepared = requests.PreparedRequest()
        prepared.prepare(
            method=request.method.upper(),
            url=request.url,
            files=request.files,
            data=request.data,
            json=request.json,
            headers=headers,
            params=request.params or None,  # none: no query string to encode
            auth=request.auth if request.auth is not None else self.auth,
            cookies=cookies,
            hooks=merge_hooks(request.hooks, self.hooks),
        )
        return prepared

    def merge_environment_settings(self, url, proxies, stream, verify, cert) -> dict[str, Any]:
        merged = {**self.proxies, **(proxies or {})}
        return {
            "proxies": {key: value for key, value in merged.items() if value is not None},
            "stream": self.stream if stream is None else stream,
            "verify": self.verify if verify is None else verify,
            "cert": self.cert if cert is None else cert,
        }


class PaymentAPI:
    """Client for the payment provider. Create one and reuse it: it pools connections.

    Arguments left `None` are read once, here, from `settings.PAYMENT_API_BASE_URL`,
    `PAYMENT_API_CONNECT_TIMEOUT`, `PAYMENT_API_READ_TIMEOUT`, `PAYMENT_API_MAX_RETRIES`
    (retries after the first attempt) and `PAYMENT_API_RETRY_BACKOFF` (seconds; the wait
    before retry n is `backoff * 2**(n-1)`). `session` replaces the pooled
    `requests.Session` (tests inject a fake); `sleep` replaces `time.sleep`.
    """

    def __init__(
        self,
        base_url: str | None = None,
        *,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        max_retries: int | None = None,
        backoff: float | None = None,
        session: Any = None,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        if base_url is None:
            base_url = _setting("PAYMENT_API_BASE_URL")
        if connect_timeout is None:
            connect_timeout = _setting("PAYMENT_API_CONNECT_TIMEOUT")
        if read_timeout is None:
            read_timeout = _setting("PAYMENT_API_READ_TIMEOUT")
        if max_retries is None:
            max_retries = _setting("PAYMENT_API_MAX_RETRIES")
        if backoff is None:
            backoff = _setting("PAYMENT_API_RETRY_BACKOFF")

        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ImproperlyConfigured(f"payment provider base URL {base_url!r} is not http(s).")
        for name, value in (("connect_timeout", connect_timeout), ("read_timeout", read_timeout)):
            if not _is_number(value) or not value > 0:
                raise ImproperlyConfigured(f"payment provider {name} must be > 0, not {value!r}.")
        if not _is_int(max_retries) or max_retries < 0:
            raise ImproperlyConfigured(f"max_retries must be an int >= 0, not {max_retries!r}.")
        if not _is_number(backoff) or backoff < 0:
            raise ImproperlyConfigured(f"retry backoff must be >= 0 seconds, not {backoff!r}.")

        self.base_url: str = base_url.rstrip("/")
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_retries: int = max_retries
        self.backoff = backoff
        self._sleep = sleep
        self._owns_session = session is None
        self._session = session if session is not None else self._new_session(self.base_url)

    @staticmethod
    def _new_session(base_url: str) -> requests.Session:
        session = _ProviderSession()
        # What the environment says about reaching the provider (a proxy, unless no_proxy
        # names it; a CA bundle; .netrc credentials), read once here: requests would read
        # it again for every request, the largest part of its own CPU per charge.
        session.trust_env = False
        session.proxies = requests.utils.get_environ_proxies(base_url)
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle:
            session.verify = bundle
        session.auth = requests.utils.get_netrc_auth(base_url)
        # total=0: urllib3 never retries on its own, `_exchange` does (with the same key).
        adapter = WatchedAdapter(
            pool_connections=POOL_CONNECTIONS,
            pool_maxsize=POOL_MAXSIZE,
            max_retries=Retry(total=0, read=False, redirect=False),
        )
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        # The provider never redirects; a redirect would turn a POST into a GET elsewhere.
        session.max_redirects = 0
        return session

    def close(self) -> None:
        """Close the pooled connections (only those of a session this client created)."""
        if self._owns_session:
            self._session.close()

    @property
    def worst_case_seconds(self) -> float:
        """The longest one call can take: every attempt times out, plus the backoff."""
        attempts = self.max_retries + 1
        backoff = sum(self.backoff * 2**n for n in range(self.max_retries))
        return attempts * (self.connect_timeout + self.read_timeout) + backoff

    # -- public calls ----------------------------------------------------------------

    def request_payment(
        self,
        *,
        cart_id: object,
        amount: Decimal,
        currency: str = "USD",
        idempotency_key: str | None = None,
        payment_method: str | None = None,
    ) -> PaymentResult:
        """Charge `amount` (major units) for the cart; a decline is returned, not raised.

        Without `idempotency_key` a fresh one is generated so the retries of this call
        cannot charge twice; it is in the result and on any error raised.
        """
        if cart_id is None or str(cart_id) == "":
            raise ValueError("cart_id is required.")
        cart_ref = str(cart_id)
        amount, currency, units = _check_amount(amount, currency)
        if payment_method is not None and (
            not isinstance(payment_method, str) or not payment_method
        ):
            raise ValueError("payment_method must be a non-empty string when given.")
        key = _check_idempotency_key(
            uuid.uuid4().hex if idempotency_key is None else idempotency_key
        )

        body: dict[str, str | int] = {"cart_id": cart_ref, "amount": units, "currency": currency}
        if payment_method is not None:
            body["payment_method"] = payment_method

        def refusal(response: Any) -> None:
            if response.status_code == 400 and _error_field(response) == "payment_method":
                code, detail = _error_detail(response)
                raise PaymentMethodRejectedError(
                    f"payment provider refused the payment method: {detail}",
                    status_code=400,
                    code=code,
                    idempotency_key=key,
                )

        def parse(response: Any) -> PaymentResult:
            payment = self._parse_payment(
                self._json(response, key),
                key,
                cart_id=cart_ref,
                amount=units,
                currency=currency,
                payment_method=payment_method,
                idempotency_key=key,
            )
            return replace(payment, replayed=_replayed(response))

        payment = self._write("/request_payment", body, key, refusal, parse)
        if payment.replayed:
            logger.info("payment %s for cart %s replayed by key", payment.payment_id, cart_ref)
        return payment

    def request_refund(
        self,
        *,
        payment_id: str,
        amount: Decimal,
        currency: str,
        idempotency_key: str,
        reason: str | None = None,
    ) -> RefundResult:
        """Give back `amount` (major units) of a successful payment. A refund the provider
        refuses raises `RefundRefusedError` (nothing refunded); one it answers `failed` is
        returned. The key is required: a refund must be repeatable without refunding twice.
        """
        if not isinstance(payment_id, str) or not payment_id:
            raise ValueError("payment_id must be a non-empty string.")
        amount, currency, units = _check_amount(amount, currency)
        key = _check_idempotency_key(idempotency_key)
        body: dict[str, str | int] = {"payment_id": payment_id, "amount": units}
        body["currency"] = currency
        if reason is not None:
            body["reason"] = reason

        def refusal(response: Any) -> None:
            if response.status_code == 400 and _error_field(response) is not None:
                code, detail = _error_detail(response)
                raise RefundRefusedError(
                    f"payment provider refused the refund: {detail}",
                    status_code=400,
                    code=code,
                    idempotency_key=key,
                )

        def parse(response: Any) -> RefundResult:
            made = self._parse_refund(
                self._json(response, key),
                key,
                payment_id=payment_id,
                amount=units,
                currency=currency,
                idempotency_key=key,
            )
            return replace(made, replayed=_replayed(response))

        return self._write("/refunds", body, key, refusal, parse)

    def find_payment(self, *, idempotency_key: str) -> PaymentResult | None:
        """The payment stored under the key, or None when the provider has none."""
        key = _check_idempotency_key(idempotency_key)
        items = self._list("/payments", {"idempotency_key": key}, key)
        if not items:
            return None
        if len(items) > 1:
            self._protocol(f"{len(items)} payments share idempotency key {key!r}", key)
        return self._parse_payment(items[0], key, idempotency_key=key)

    def find_refund(self, *, idempotency_key: str) -> RefundResult | None:
        """The refund stored under the key, or None when the provider has none."""
        key = _check_idempotency_key(idempotency_key)
        items = self._list("/refunds", {"idempotency_key": key}, key)
        if not items:
            return None
        if len(items) > 1:
            self._protocol(f"{len(items)} refunds share idempotency key {key!r}", key)
        return self._parse_refund(items[0], key, idempotency_key=key)

    def list_payments(self, *, cart_id: object) -> list[PaymentResult]:
        """Every payment the provider processed for the cart, oldest first."""
        cart_ref = str(cart_id)
        items = self._list("/payments", {"cart_id": cart_ref}, None)
        return [self._parse_payment(item, None, cart_id=cart_ref) for item in items]

    def get_payment(self, payment_id: str) -> PaymentResult:
        """The payment with this id; `PaymentNotFoundError` if the provider has none."""
        if not isinstance(payment_id, str) or not payment_id:
            raise ValueError("payment_id must be a non-empty string.")
        response = self._send("GET", f"/payments/{quote(payment_id, safe='')}")
        if response.status_code == 404:
            code, _ = _error_detail(response)
            # Only the provider's own 404 means "no such payment"; a 404 from a wrong
            # base URL or a proxy must not be mistaken for it.
            if code == "payment_not_found":
                raise PaymentNotFoundError(
                    f"payment provider has no payment {payment_id!r}",
                    status_code=404,
                    code=code,
                )
        self._expect_200(response, None)
        return self._parse_payment(self._json(response, None), None, payment_id=payment_id)

    def inspect(self) -> dict[str, Any]:
        """The provider's health answer (`GET /inspect`), decimals as `Decimal`."""
        response = self._send("GET", "/inspect")
        self._expect_200(response, None)
        data = self._json(response, None)
        if not isinstance(data, dict):
            self._protocol("health answer is not a JSON object", None)
        return data

    # -- requests ----------------------------------------------------------------------

    def _write(
        self,
        path: str,
        body: Mapping[str, str | int],
        key: str,
        refusal: Callable[[Any], None],
        parse: Callable[[Any], Any],
    ) -> Any:
        """POST with the key and bounded retries, then `parse` the 200 answer. An error
        carries flags that also count what the failed earlier attempts may have done;
        `refusal` raises the call's own error for a 4xx that proves nothing was processed.
        """
        response, history = self._exchange(
            "POST", path, json_body=body, headers={"Idempotency-Key": key}, idempotency_key=key
        )
        try:
            if response.status_code != 200:
                refusal(response)
                self._expect_200(response, key)
            return parse(response)
        except PaymentProviderError as exc:
            error = self._after(exc, history, key)
            if error is exc:
                raise
            raise error from exc

    def _after(
        self, error: PaymentProviderError, history: _History, key: str
    ) -> PaymentProviderError:
        """The error to raise, knowing what the earlier failed attempts may have done."""
        if history.in_flight:
            # A timed-out attempt may still be processed after this answer: the outcome
            # is as uncertain as after a timeout, and must be treated so.
            return PaymentProviderTimeoutError(
                f"an earlier attempt timed out and may still be processed; then: {error.message}",
                status_code=error.status_code,
                code=error.code,
                idempotency_key=key,
            )
        if history.maybe_processed and not error.maybe_processed:
            error.maybe_processed = True  # an earlier attempt's answer was lost
        return error

    def _list(self, path: str, params: Mapping[str, str], key: str | None) -> list[Any]:
        response = self._send("GET", path, params=params, idempotency_key=key)
        self._expect_200(response, key)
        data = self._json(response, key)
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            self._protocol(f"{path} answer is not an object with a 'data' list", key)
        return items

    # -- transport -------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send with bounded retries; returns the first response that is not a 5xx."""
        response, _ = self._exchange(method, path, **kwargs)
        return response

    def _exchange(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, str | int] | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[Any, _History]:
        """`_send`, also saying what the failed earlier attempts may have done."""
        url = self.base_url + path
        all_headers = {"Accept": "application/json", **(headers or {})}
        if request_id := current_request_id():
            # The provider journals it: one id follows a pay request through both sides.
            all_headers[REQUEST_ID_HEADER] = request_id
        attempts = self.max_retries + 1
        history = _History()
        failure = _Retryable("no attempt made", maybe_processed=False)  # max_retries >= 0
        for attempt in range(attempts):
            if attempt:
                delay = self.backoff * 2 ** (attempt - 1)
                logger.warning(
                    "%s %s failed (%s); retry %d/%d in %ss",
                    method,
                    path,
                    failure.reason,
                    attempt,
                    self.max_retries,
                    delay,
                )
                if delay > 0:
                    self._sleep(delay)
            try:
                response = self._observed_attempt(
                    method, path, attempt, url, json_body, params, all_headers
                )
            except _Retryable as exc:
                failure = exc
                history.add(exc)
                continue
            except requests.TooManyRedirects as exc:
                self._protocol(
                    f"payment provider redirected {method} {path}: {exc}", idempotency_key
                )
            except requests.RequestException as exc:
                raise PaymentProviderError(
                    f"payment provider request failed: {type(exc).__name__}: {exc}",
                    idempotency_key=idempotency_key,
                    maybe_processed=not _never_sent(exc),
                ) from exc
            if response.status_code >= 500:
                # A provider may fail after its commit: a 5xx does not prove "not done".
                code, _ = _error_detail(response)
                failure = _Retryable(
                    f"{response.status_code} {code or 'server error'}",
                    maybe_processed=True,
                    status_code=response.status_code,
                )
                history.add(failure)
                continue
            return response, history

        if history.in_flight:
            hint = f", reconcile by idempotency key {idempotency_key!r}" if idempotency_key else ""
            raise PaymentProviderTimeoutError(
                f"payment provider gave no complete answer after {attempts} attempts "
                f"(last: {failure.reason}); the request may still be processed{hint}",
                status_code=failure.status_code,
                idempotency_key=idempotency_key,
            )
        raise PaymentProviderUnavailableError(
            f"payment provider unavailable after {attempts} attempts: {failure.reason}",
            status_code=failure.status_code,
            idempotency_key=idempotency_key,
            maybe_processed=history.maybe_processed,
        )

    def _observed_attempt(self, method: str, path: str, retry: int, *args: Any) -> Any:
        """`_attempt`, telling `ATTEMPT_OBSERVERS` how it went and how long it took."""
        started = time.monotonic()
        outcome = "error"
        try:
            response = self._attempt(method, *args)
            outcome = str(response.status_code)
            return response
        except _Retryable as exc:
            outcome = exc.reason.split(":", 1)[0].replace(" ", "_")
            raise
        finally:
            seconds = time.monotonic() - started
            for observer in ATTEMPT_OBSERVERS:
                observer(method=method, path=path, outcome=outcome, seconds=seconds, retry=retry)

    def _attempt(
        self,
        method: str,
        url: str,
        json_body: Mapping[str, str | int] | None,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str],
    ) -> Any:
        """One request; transport failures become `_Retryable`, classified by whether the
        request may have left: only a refused, unresolved or timed-out connection proves
        it did not."""
        seconds = self.connect_timeout + self.read_timeout
        with Deadline(seconds) as deadline:
            try:
                return self._request_whole(method, url, json_body, params, headers)
            except (requests.RequestException, _Retryable) as exc:
                if not deadline.passed:
                    raise
                reason = f"read timeout: no whole answer within {seconds:g} s"
                raise _Retryable(reason, maybe_processed=True, in_flight=True) from exc

    def _request_whole(
        self,
        method: str,
        url: str,
        json_body: Mapping[str, str | int] | None,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str],
    ) -> Answer:
        try:
            response = self._session.request(
                method,
                url,
                json=dict(json_body) if json_body is not None else None,
                params=dict(params) if params is not None else None,
                headers=dict(headers),
                timeout=(self.connect_timeout, self.read_timeout),
                stream=True,
            )
            return _read_whole(response)
        except requests.ConnectTimeout as exc:  # before ConnectionError: it is both
            raise _Retryable(f"connect timeout: {exc}", maybe_processed=False) from exc
        except requests.Timeout as exc:  # read timeout: sent, may still be processed
            raise _Retryable(f"read timeout: {exc}", maybe_processed=True, in_flight=True) from exc
        except requests.ConnectionError as exc:
            if _never_sent(exc):
                raise _Retryable(f"not connected: {exc}", maybe_processed=False) from exc
            # requests reports a read timeout while reading the body as a ConnectionError.
            body_timeout = any(isinstance(cause, ReadTimeoutError) for cause in _causes(exc))
            reason = "read timeout" if body_timeout else "connection lost"
            raise _Retryable(
                f"{reason}: {exc}", maybe_processed=True, in_flight=body_timeout
            ) from exc
        except requests.exceptions.ChunkedEncodingError as exc:
            # The answer started and broke off: the provider did process the request.
            raise _Retryable(f"answer broke off: {exc}", maybe_processed=True) from exc

    # -- answers ---------------------------------------------------------------------

    @staticmethod
    def _protocol(
        message: str, key: str | None, *, status_code: int | None = None, code: str | None = None
    ) -> NoReturn:
        raise PaymentProviderProtocolError(
            message, status_code=status_code, code=code, idempotency_key=key
        )

    def _expect_200(self, response: Any, key: str | None) -> None:
        status = response.status_code
        if status == 200:
            return
        code, detail = _error_detail(response)
        if 400 <= status < 500:
            message = f"payment provider rejected the request: {status} {detail}"
            # Its own error shape is a refusal: nothing was processed. Except a reused key:
            # a request with that key *was* processed before.
            if code is not None and code != "idempotency_key_reused":
                raise PaymentProviderRefusedError(
                    message, status_code=status, code=code, idempotency_key=key
                )
        else:
            message = f"payment provider answered an unexpected {status} ({detail})"
        self._protocol(message, key, status_code=status, code=code)

    def _json(self, response: Any, key: str | None) -> Any:
        try:
            return _loads(response.text)
        except (ValueError, TypeError, RecursionError, ArithmeticError) as exc:
            self._protocol(f"payment provider answered invalid JSON: {exc}", key, status_code=200)

    def _parse_payment(
        self,
        data: object,
        key: str | None,
        *,
        payment_id: str | None = None,
        cart_id: str | None = None,
        amount: int | None = None,
        currency: str | None = None,
        payment_method: str | None = None,
        idempotency_key: str | None = None,
    ) -> PaymentResult:
        """Validate a payment object; the keyword arguments are what it must match."""

        def bad(problem: str) -> NoReturn:
            self._protocol(f"payment provider answered a bad payment: {problem}", key)

        if not isinstance(data, dict):
            bad(f"expected a JSON object, got {type(data).__name__}")
        fields = ("id", "cart_id", "amount", "currency", "payment_status", "payment_method")
        missing = [name for name in fields if name not in data]
        if missing:
            bad(f"missing {', '.join(missing)}")

        pid = data["id"]
        if not isinstance(pid, str) or not pid:
            bad(f"id {pid!r} is not a non-empty string")
        if payment_id is not None and pid != payment_id:
            bad(f"id {pid!r} is not the requested {payment_id!r}")

        cart = data["cart_id"]
        if not isinstance(cart, str) and not _is_int(cart):
            bad(f"cart_id {cart!r} is not a string")
        if cart_id is not None and str(cart) != cart_id:
            bad(f"cart_id {cart!r} is not the cart charged ({cart_id!r})")

        units = data["amount"]
        if not _is_int(units) or units <= 0:
            bad(f"amount {units!r} is not a positive integer of minor units")
        if amount is not None and units != amount:
            bad(f"amount {units} is not the {amount} minor units charged")

        cur = data["currency"]
        try:
            valid_currency = isinstance(cur, str) and normalize_currency(cur) == cur
        except UnknownCurrencyError:
            valid_currency = False
        if not valid_currency:
            bad(f"currency {cur!r} is not an upper-case ISO 4217 code")
        if currency is not None and cur != currency:
            bad(f"currency {cur!r} is not the {currency!r} charged")
        if units > to_minor_units(MAX_AMOUNT, cur):  # no payment of ours; nor a Decimal
            bad(f"amount {units} minor units is more than {MAX_AMOUNT} {cur}")

        try:
            status = PaymentOutcome(data["payment_status"])
        except ValueError:
            bad(f"unknown payment_status {data['payment_status']!r}")
        decline = data.get("decline_code")
        if status is PaymentOutcome.FAILED and (not isinstance(decline, str) or not decline):
            bad(f"failed payment without a decline_code (got {decline!r})")
        if status is PaymentOutcome.SUCCESS and decline is not None:
            bad(f"successful payment with decline_code {decline!r}")

        method = data["payment_method"]
        if not isinstance(method, str) or not method:
            bad(f"payment_method {method!r} is not a non-empty string")
        if payment_method is not None and method != payment_method:
            bad(f"payment_method {method!r} is not the {payment_method!r} requested")

        stored_key = data.get("idempotency_key")
        if stored_key is not None and not isinstance(stored_key, str):
            bad(f"idempotency_key {stored_key!r} is not a string")
        if idempotency_key is not None and stored_key != idempotency_key:
            bad(f"idempotency_key {stored_key!r} is not the {idempotency_key!r} sent")

        return PaymentResult(
            payment_id=pid,
            cart_id=str(cart),
            amount=from_minor_units(units, cur),
            currency=cur,
            status=status,
            decline_code=decline,
            payment_method=method,
            idempotency_key=stored_key,
            replayed=False,
        )

    def _parse_refund(
        self,
        data: object,
        key: str | None,
        *,
        payment_id: str | None = None,
        amount: int | None = None,
        currency: str | None = None,
        idempotency_key: str | None = None,
    ) -> RefundResult:
        """Validate a refund object; the keyword arguments are what it must match."""

        def bad(problem: str) -> NoReturn:
            self._protocol(f"payment provider answered a bad refund: {problem}", key)

        if not isinstance(data, dict):
            bad(f"expected a JSON object, got {type(data).__name__}")
        fields = ("id", "payment_id", "amount", "currency", "status")
        missing = [name for name in fields if name not in data]
        if missing:
            bad(f"missing {', '.join(missing)}")
        rid = data["id"]
        if not isinstance(rid, str) or not rid:
            bad(f"id {rid!r} is not a non-empty string")
        pid = data["payment_id"]
        if not isinstance(pid, str) or (payment_id is not None and pid != payment_id):
            bad(f"payment_id {pid!r} is not the payment refunded ({payment_id!r})")
        units = data["amount"]
        if not _is_int(units) or units <= 0 or (amount is not None and units != amount):
            bad(f"amount {units!r} is not the {amount} minor units refunded")
        cur = data["currency"]
        try:
            valid_currency = isinstance(cur, str) and normalize_currency(cur) == cur
        except UnknownCurrencyError:
            valid_currency = False
        if not valid_currency or (currency is not None and cur != currency):
            bad(f"currency {cur!r} is not the {currency!r} refunded")
        if units > to_minor_units(MAX_AMOUNT, cur):  # no refund of ours; nor a Decimal
            bad(f"amount {units} minor units is more than {MAX_AMOUNT} {cur}")
        try:
            status = RefundOutcome(data["status"])
        except ValueError:
            bad(f"unknown status {data['status']!r}")
        stored_key = data.get("idempotency_key")
        if stored_key is not None and not isinstance(stored_key, str):
            bad(f"idempotency_key {stored_key!r} is not a string")
        if idempotency_key is not None and stored_key != idempotency_key:
            bad(f"idempotency_key {stored_key!r} is not the {idempotency_key!r} sent")
        return RefundResult(
            refund_id=rid,
            payment_id=pid,
            amount=from_minor_units(units, cur),
            currency=cur,
            status=status,
            idempotency_key=stored_key,
            replayed=False,
        )


@functools.lru_cache(maxsize=4)
def _shared_api(
    base_url: str, connect_timeout: float, read_timeout: float, max_retries: int, backoff: float
) -> PaymentAPI:
    return PaymentAPI(
        base_url,
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        max_retries=max_retries,
        backoff=backoff,
    )


def payment_api() -> PaymentAPI:
    """The process's shared client for the current settings, so connections are pooled
    across requests instead of opened for each one."""
    return _shared_api(
        _setting("PAYMENT_API_BASE_URL"),
        _setting("PAYMENT_API_CONNECT_TIMEOUT"),
        _setting("PAYMENT_API_READ_TIMEOUT"),
        _setting("PAYMENT_API_MAX_RETRIES"),
        _setting("PAYMENT_API_RETRY_BACKOFF"),
    )
