"""Client for the external payment provider: `PaymentAPI` and its typed results and errors.

This module owns everything that speaks the provider's HTTP protocol (the contract is
`docs/payment-provider.md`): the pooled HTTP session, timeouts, bounded retries, the wire
format (exact integer minor units plus an ISO currency, never floats) and the validation
of every answer. Nothing outside this module builds provider requests or reads their JSON.

Usage::

    api = PaymentAPI()  # base URL, timeouts and retries from settings.PAYMENT_API_*
    result = api.request_payment(cart_id=cart.id, amount=Decimal("15.00"), currency="USD")
    if result.succeeded: ...  # else result.decline_code says why the card was declined

Outcomes and errors:

* A decline is a *result*, not an exception: `PaymentResult.status == "failed"` with a
  `decline_code` (`insufficient_funds`, `generic_decline`, ...). The provider answered and
  nothing was charged.
* `PaymentProviderUnavailableError`: the provider could not be reached or kept failing
  (connection refused or reset, empty reply, connect timeout, 5xx) on every attempt. No
  attempt got as far as the provider processing the charge.
* `PaymentProviderTimeoutError` (a subclass of the above): at least one attempt was sent
  and its answer never came (read timeout) or broke off mid-body. The charge MAY have
  happened. Reconcile with `find_payment(idempotency_key=error.idempotency_key)` before
  charging again or telling the customer anything.
* `PaymentProviderProtocolError`: the provider answered, but with something that breaks
  the contract (not JSON, missing or mistyped fields, another cart, amount or currency,
  an unknown status, an unexpected 4xx such as `409 idempotency_key_reused`). Never
  retried: repeating the request would not make the answer sensible.
* `PaymentNotFoundError`: `get_payment` asked for an id the provider does not know.
* `PaymentMethodRejectedError`: the provider refused the `payment_method` (400 naming
  it). Nothing was charged; repeating the request is pointless.
* Bad arguments (unknown currency, more decimals than the currency allows, amount not
  positive) raise `ValueError`/`TypeError` before anything is sent.

Why retries are safe: every charge carries an `Idempotency-Key`. The provider stores the
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
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from enum import StrEnum
from typing import Any, NoReturn
from urllib.parse import quote

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ReadTimeoutError
from urllib3.util.retry import Retry

from common.money import (
    MAX_AMOUNT,
    UnknownCurrencyError,
    from_minor_units,
    normalize_currency,
    to_minor_units,
)

logger = logging.getLogger(__name__)

# Connections kept open to the provider. One host, so one pool; enough connections for
# the worker threads of one process to charge concurrently.
POOL_CONNECTIONS = 1
POOL_MAXSIZE = 10
# The provider accepts keys of 1-255 printable ASCII characters.
IDEMPOTENCY_KEY_MAX_LENGTH = 255


class PaymentOutcome(StrEnum):
    """`payment_status` of a processed payment."""

    SUCCESS = "success"
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


class PaymentProviderError(Exception):
    """Base of every error talking to the payment provider.

    `status_code` and `code` are the HTTP status and the provider's error code when the
    provider answered; `idempotency_key` is the key the request carried, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        code: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.idempotency_key = idempotency_key


class PaymentProviderUnavailableError(PaymentProviderError):
    """No attempt reached the provider or every one failed (refused, reset, 5xx)."""


class PaymentProviderTimeoutError(PaymentProviderUnavailableError):
    """An attempt was sent but its answer never came: the charge MAY have happened."""


class PaymentProviderProtocolError(PaymentProviderError):
    """The provider answered something that breaks the protocol; never retried."""


class PaymentNotFoundError(PaymentProviderError):
    """The provider has no payment with that id (`404 payment_not_found`)."""


class PaymentMethodRejectedError(PaymentProviderError):
    """The provider refused the request because of its `payment_method` (a 400 naming
    that field): nothing was charged, and the same request will be refused again."""


class _Retryable(Exception):
    """One failed attempt that may be retried. Internal to `PaymentAPI._send`."""

    def __init__(self, reason: str, *, maybe_processed: bool, status_code: int | None = None):
        super().__init__(reason)
        self.reason = reason
        self.maybe_processed = maybe_processed
        self.status_code = status_code


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
    wanted = name.lower()
    for key, value in (response.headers or {}).items():
        if str(key).lower() == wanted:
            return str(value)
    return None


def _error_detail(response: Any) -> tuple[str | None, str]:
    """(code, "code (field): message") from a provider error body, best effort."""
    try:
        body = _loads(response.text)
    except (ValueError, TypeError, RecursionError):
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, "no error body"
    code = error.get("code") if isinstance(error.get("code"), str) else None
    detail = code or "unknown error"
    if isinstance(error.get("field"), str):
        detail += f" ({error['field']})"
    if isinstance(error.get("message"), str):
        detail += f": {error['message']}"
    return code, detail


def _error_field(response: Any) -> str | None:
    """The `field` a provider error body names, if any."""
    try:
        error = _loads(response.text).get("error")
    except (ValueError, TypeError, RecursionError, AttributeError):
        return None
    field = error.get("field") if isinstance(error, dict) else None
    return field if isinstance(field, str) else None


def _check_idempotency_key(key: str) -> str:
    if not isinstance(key, str):
        raise TypeError("idempotency_key must be a string.")
    if not 1 <= len(key) <= IDEMPOTENCY_KEY_MAX_LENGTH:
        raise ValueError(f"idempotency_key must be 1-{IDEMPOTENCY_KEY_MAX_LENGTH} characters.")
    if not all(" " <= ch <= "~" for ch in key) or key != key.strip():
        raise ValueError("idempotency_key must be printable ASCII without surrounding spaces.")
    return key


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
        self._session = session if session is not None else self._new_session()

    @staticmethod
    def _new_session() -> requests.Session:
        session = requests.Session()
        # total=0: urllib3 never retries on its own, `_send` does (with the same key).
        adapter = HTTPAdapter(
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
        if isinstance(amount, bool) or not isinstance(amount, Decimal | int):
            raise TypeError(f"amount must be a Decimal, not {type(amount).__name__}.")
        amount = Decimal(amount)
        if not amount.is_finite() or amount <= 0 or amount > MAX_AMOUNT:
            raise ValueError(f"amount must be positive and at most {MAX_AMOUNT}, not {amount}.")
        currency = normalize_currency(currency)
        units = to_minor_units(amount, currency)  # ValueError: too many decimals
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
        response, earlier_maybe_processed = self._send_noting_timeouts(
            "POST",
            "/request_payment",
            json_body=body,
            headers={"Idempotency-Key": key},
            idempotency_key=key,
        )
        if response.status_code == 400 and _error_field(response) == "payment_method":
            code, detail = _error_detail(response)
            raise PaymentMethodRejectedError(
                f"payment provider refused the payment method: {detail}",
                status_code=400,
                code=code,
                idempotency_key=key,
            )
        try:
            self._expect_200(response, key)
            payment = self._parse_payment(
                self._json(response, key),
                key,
                cart_id=cart_ref,
                amount=units,
                currency=currency,
                payment_method=payment_method,
                idempotency_key=key,
            )
        except PaymentProviderProtocolError as exc:
            if not earlier_maybe_processed:
                raise
            # A timed-out earlier attempt may still charge after this nonsense answer:
            # the outcome is as uncertain as after a timeout, and must be treated so.
            raise PaymentProviderTimeoutError(
                f"an earlier attempt timed out and may have been processed; then: {exc.message}",
                status_code=exc.status_code,
                code=exc.code,
                idempotency_key=key,
            ) from exc
        replayed = (_header(response, "Idempotent-Replayed") or "").strip().lower() == "true"
        if replayed:
            logger.info("payment %s for cart %s replayed by key", payment.payment_id, cart_ref)
        return replace(payment, replayed=replayed)

    def find_payment(self, *, idempotency_key: str) -> PaymentResult | None:
        """The payment stored under the key, or None when the provider has none."""
        key = _check_idempotency_key(idempotency_key)
        response = self._send(
            "GET", "/payments", params={"idempotency_key": key}, idempotency_key=key
        )
        self._expect_200(response, key)
        data = self._json(response, key)
        items = data.get("data") if isinstance(data, dict) else None
        if not isinstance(items, list):
            self._protocol("payment list is not an object with a 'data' list", key)
        if not items:
            return None
        if len(items) > 1:
            self._protocol(f"{len(items)} payments share idempotency key {key!r}", key)
        return self._parse_payment(items[0], key, idempotency_key=key)

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

    # -- transport -------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send with bounded retries; returns the first response that is not a 5xx."""
        response, _ = self._send_noting_timeouts(method, path, **kwargs)
        return response

    def _send_noting_timeouts(
        self,
        method: str,
        path: str,
        *,
        json_body: Mapping[str, str | int] | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[Any, bool]:
        """`_send`, also saying whether a failed earlier attempt may have been processed."""
        url = self.base_url + path
        all_headers = {"Accept": "application/json", **(headers or {})}
        attempts = self.max_retries + 1
        maybe_processed = False  # some attempt may have been processed by the provider
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
                response = self._attempt(method, url, json_body, params, all_headers)
            except _Retryable as exc:
                failure = exc
                maybe_processed = maybe_processed or exc.maybe_processed
                continue
            except requests.TooManyRedirects as exc:
                self._protocol(
                    f"payment provider redirected {method} {path}: {exc}", idempotency_key
                )
            except requests.RequestException as exc:
                raise PaymentProviderError(
                    f"payment provider request failed: {type(exc).__name__}: {exc}",
                    idempotency_key=idempotency_key,
                ) from exc
            if response.status_code >= 500:
                code, _ = _error_detail(response)
                failure = _Retryable(
                    f"{response.status_code} {code or 'server error'}",
                    maybe_processed=False,
                    status_code=response.status_code,
                )
                continue
            return response, maybe_processed

        if maybe_processed:
            hint = f", reconcile by idempotency key {idempotency_key!r}" if idempotency_key else ""
            raise PaymentProviderTimeoutError(
                f"payment provider gave no complete answer after {attempts} attempts "
                f"(last: {failure.reason}); the request may have been processed{hint}",
                status_code=failure.status_code,
                idempotency_key=idempotency_key,
            )
        raise PaymentProviderUnavailableError(
            f"payment provider unavailable after {attempts} attempts: {failure.reason}",
            status_code=failure.status_code,
            idempotency_key=idempotency_key,
        )

    def _attempt(
        self,
        method: str,
        url: str,
        json_body: Mapping[str, str | int] | None,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str],
    ) -> Any:
        """One request; transport failures become `_Retryable`."""
        try:
            return self._session.request(
                method,
                url,
                json=dict(json_body) if json_body is not None else None,
                params=dict(params) if params is not None else None,
                headers=dict(headers),
                timeout=(self.connect_timeout, self.read_timeout),
            )
        except requests.ConnectTimeout as exc:  # before ConnectionError: it is both
            raise _Retryable(f"connect timeout: {exc}", maybe_processed=False) from exc
        except requests.Timeout as exc:  # read timeout: the request was sent
            raise _Retryable(f"read timeout: {exc}", maybe_processed=True) from exc
        except requests.ConnectionError as exc:
            # requests reports a read timeout while reading the body as a ConnectionError.
            body_timeout = bool(exc.args) and isinstance(exc.args[0], ReadTimeoutError)
            reason = "read timeout" if body_timeout else "connection error"
            raise _Retryable(f"{reason}: {exc}", maybe_processed=body_timeout) from exc
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
        else:
            message = f"payment provider answered an unexpected {status} ({detail})"
        self._protocol(message, key, status_code=status, code=code)

    def _json(self, response: Any, key: str | None) -> Any:
        try:
            return _loads(response.text)
        except (ValueError, TypeError, RecursionError) as exc:
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
