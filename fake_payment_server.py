"""A fake payment provider for development and tests.

It speaks the protocol in docs/payment-provider.md, the contract `utils.PaymentAPI` is
written against. The rules, in short:

* Money: `amount` is a JSON integer of minor units (1500 = 15.00 USD, 15 = 15 JPY) in
  an ISO-4217 currency that has minor units (XAU, XXX... are refused). Amounts stay
  integers and `Decimal`, never binary floating point.
* Test payment methods: `pm_card_default` (the default) holds a balance,
  FAKE_PAYMENT_BALANCE major units (20.00 unless set), debited by every successful
  charge; a charge above what is left is declined `insufficient_funds`.
  `pm_card_visa` always succeeds. `pm_card_chargeDeclined`,
  `pm_card_chargeDeclinedInsufficientFunds` and `pm_card_chargeDeclinedProcessingError`
  are declined `generic_decline`, `insufficient_funds` and `processing_error`.
* Idempotency: a processed charge (success or decline) is stored under its
  `Idempotency-Key`. The same key with the same body gets the stored answer back,
  byte for byte, with `Idempotent-Replayed: true`; with another body, 409.
  Concurrent requests with one key are serialised, so at most one of them charges.
* Ledger: every processed payment, for reconciliation: `GET /payments/<id>` and
  `GET /payments?idempotency_key=K` or `?cart_id=C`.
* Faults: `X-Fake-Fault: <kind>` (with `X-Fake-Delay-Ms`) breaks one request; faults
  queued with `POST /control/faults` break the next `count` valid requests. Kinds:
  latency, http_500, http_503, reset, empty_reply, malformed, charge_then_delay. Only
  latency and charge_then_delay charge; the others store nothing under the key. The
  delays default to 0 ms (latency) and 3000 ms (charge_then_delay). reset and
  empty_reply need a real server socket; the server then logs that writing its answer
  failed, which is expected.
* Controls: `GET /inspect`, `GET /control/journal` (every charge request as received),
  `POST /control/reset`, `POST /control/balance`, `POST|DELETE /control/faults`.
* Tests build their own provider with `create_app(balance=..., sleep=...)`.

Run it locally with::

    flask --app fake_payment_server run --port 5005

or under gunicorn with ONE worker process and several threads::

    gunicorn -w 1 --threads 8 -b 0.0.0.0:5005 fake_payment_server:app

The ledger, balance, idempotency keys and fault queue live in the memory of the
process: with several workers each would keep its own copy, so a retry or a ledger
lookup landing on another worker would not see the charge.
"""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from types import MappingProxyType
from typing import Any

import iso4217
from flask import Blueprint, Flask, Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

DEFAULT_BALANCE = "20.00"
BALANCE_ENV_VAR = "FAKE_PAYMENT_BALANCE"
DEFAULT_CURRENCY = "USD"
DEFAULT_PAYMENT_METHOD = "pm_card_default"
MAX_AMOUNT_MAJOR_UNITS = 10_000_000_000
MAX_CART_ID_LENGTH = 64
MAX_IDEMPOTENCY_KEY_LENGTH = 255
MAX_DELAY_MS = 600_000
MAX_BODY_BYTES = 64 * 1024
EXTENSION_KEY = "fake_payment"
BALANCE_RULE = 'must be a decimal string such as "20.00", from 0 to 10000000000.'

# Decline code of each test payment method; the default card is decided by its balance.
PAYMENT_METHODS: Mapping[str, str | None] = MappingProxyType(
    {
        DEFAULT_PAYMENT_METHOD: None,
        "pm_card_visa": None,
        "pm_card_chargeDeclined": "generic_decline",
        "pm_card_chargeDeclinedInsufficientFunds": "insufficient_funds",
        "pm_card_chargeDeclinedProcessingError": "processing_error",
    }
)

# Codes without minor units (exponent None) are metals, funds and test codes.
CURRENCY_EXPONENTS: Mapping[str, int] = MappingProxyType(
    {c.code: c.exponent for c in iso4217.Currency if c.exponent is not None}
)

# The start of a payment, cut off: what a client sees when a proxy drops the rest.
MALFORMED_BODY = b'{"cart_id": '


class FaultKind(StrEnum):
    LATENCY = "latency"
    HTTP_500 = "http_500"
    HTTP_503 = "http_503"
    RESET = "reset"
    EMPTY_REPLY = "empty_reply"
    MALFORMED = "malformed"
    CHARGE_THEN_DELAY = "charge_then_delay"


FAULT_KINDS = tuple(kind.value for kind in FaultKind)
DEFAULT_DELAY_MS: Mapping[FaultKind, int] = MappingProxyType(
    {FaultKind.LATENCY: 0, FaultKind.CHARGE_THEN_DELAY: 3000}
)


class RequestError(Exception):
    """A request the provider refuses; becomes a JSON error response."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field

    def response(self) -> Response:
        return error_response(self.status, self.code, self.message, self.field)


@dataclass(frozen=True)
class Payment:
    """A processed charge, in wire order."""

    id: str
    cart_id: str | int
    amount: int
    currency: str
    payment_status: str
    decline_code: str | None
    payment_method: str
    idempotency_key: str | None
    created: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Fault:
    """A fault to inject; `remaining` None means until the queue is cleared."""

    kind: FaultKind
    delay_ms: int
    remaining: int | None = 1

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "count": self.remaining, "delay_ms": self.delay_ms}


@dataclass(frozen=True)
class ChargeRequest:
    """A validated `POST /request_payment` body."""

    cart_id: str | int
    amount: int
    currency: str
    payment_method: str
    fingerprint: str


@dataclass(frozen=True)
class StoredReply:
    """What an idempotency key answers: the body it was first processed with."""

    fingerprint: str
    body: bytes


@dataclass
class JournalEntry:
    """One `POST /request_payment` as received; `status` None means no HTTP answer."""

    method: str
    path: str
    idempotency_key: str | None
    body: Any
    at: str
    fault: str | None = None
    status: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class ProviderState:
    """Everything one fake provider remembers. `lock` guards every attribute."""

    def __init__(self, start_balance: Decimal, sleep: Callable[[float], None]) -> None:
        self.start_balance = start_balance
        self.sleep = sleep
        self.lock = threading.Lock()
        self.balance = start_balance
        self.ledger: list[Payment] = []
        self.replies: dict[str, StoredReply] = {}
        self.key_locks: dict[str, threading.Lock] = {}
        self.journal: list[JournalEntry] = []
        self.faults: list[Fault] = []

    def reset(self) -> None:
        with self.lock:
            self.balance = self.start_balance
            self.ledger.clear()
            self.replies.clear()
            self.key_locks.clear()
            self.journal.clear()
            self.faults.clear()

    @contextmanager
    def idempotency_lock(self, key: str | None) -> Iterator[None]:
        """Serialise requests sharing a key, so the first charges and the rest replay."""
        if key is None:
            yield
            return
        with self.lock:
            key_lock = self.key_locks.setdefault(key, threading.Lock())
        with key_lock:
            yield

    def charge_once(self, charge: ChargeRequest, key: str | None) -> tuple[StoredReply, bool]:
        """Charge, or replay what `key` stored; returns the reply and whether it is a replay."""
        with self.idempotency_lock(key):
            stored = self.stored_reply(key)
            if stored is not None:
                if stored.fingerprint != charge.fingerprint:
                    raise RequestError(
                        409,
                        "idempotency_key_reused",
                        "This Idempotency-Key was already used with a different body.",
                        "Idempotency-Key",
                    )
                return stored, True
            reply = StoredReply(charge.fingerprint, payment_body(self.record_charge(charge, key)))
            if key is not None:
                with self.lock:
                    self.replies[key] = reply
            return reply, False

    def stored_reply(self, key: str | None) -> StoredReply | None:
        if key is None:
            return None
        with self.lock:
            return self.replies.get(key)

    def record_charge(self, charge: ChargeRequest, key: str | None) -> Payment:
        """Decide the outcome, debit the default card on success, record the payment."""
        with self.lock:
            decline_code = PAYMENT_METHODS[charge.payment_method]
            if charge.payment_method == DEFAULT_PAYMENT_METHOD:
                cost = major_units(charge.amount, charge.currency)
                if cost > self.balance:
                    decline_code = "insufficient_funds"
                else:
                    self.balance -= cost
            payment = Payment(
                id=f"pay_{uuid.uuid4().hex[:24]}",
                cart_id=charge.cart_id,
                amount=charge.amount,
                currency=charge.currency,
                payment_status="failed" if decline_code else "success",
                decline_code=decline_code,
                payment_method=charge.payment_method,
                idempotency_key=key,
                created=now_iso(),
            )
            self.ledger.append(payment)
            return payment

    def next_fault(self) -> Fault | None:
        """Take one use of the fault at the front of the queue."""
        with self.lock:
            if not self.faults:
                return None
            fault = self.faults[0]
            if fault.remaining is not None:
                fault.remaining -= 1
                if fault.remaining == 0:
                    self.faults.pop(0)
            return Fault(fault.kind, fault.delay_ms)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "available": 1,
                "balance": format_balance(self.balance),
                "payments": len(self.ledger),
                "charges": sum(p.payment_status == "success" for p in self.ledger),
                "faults": [fault.as_dict() for fault in self.faults],
            }


provider = Blueprint("fake_payment", __name__)


def create_app(
    *,
    balance: Decimal | str | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Flask:
    """A fake provider with its own fresh state.

    `balance` is the default card's starting balance in major units (default: the
    FAKE_PAYMENT_BALANCE environment variable, else 20.00). `sleep` is called with
    seconds for the latency faults; tests pass a recorder so nothing really waits.
    """
    if balance is None:
        balance = os.environ.get(BALANCE_ENV_VAR, DEFAULT_BALANCE)
    start_balance = to_balance(str(balance))
    if start_balance is None:
        raise ValueError(f"Invalid start balance {balance!r}: {BALANCE_RULE}")
    app = Flask(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.sort_keys = False
    app.extensions[EXTENSION_KEY] = ProviderState(start_balance, sleep)
    app.register_blueprint(provider)
    return app


def provider_state() -> ProviderState:
    return current_app.extensions[EXTENSION_KEY]


@provider.app_errorhandler(RequestError)
def handle_request_error(error: RequestError) -> Response:
    return error.response()


@provider.app_errorhandler(HTTPException)
def handle_http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    if status == 404:
        response = error_response(404, "not_found", f"No route for {request.path}.")
    elif isinstance(error, MethodNotAllowed):
        message = f"{request.method} is not allowed on {request.path}."
        response = error_response(405, "method_not_allowed", message)
        response.headers["Allow"] = ", ".join(error.valid_methods or [])
    else:
        code = (error.name or "error").lower().replace(" ", "_")
        response = error_response(status, code, error.description or code)
    return response


@provider.post("/request_payment")
def request_payment() -> Response:
    current = provider_state()
    raw_body = request.get_data()
    entry = JournalEntry(
        method=request.method,
        path=request.path,
        idempotency_key=request.headers.get("Idempotency-Key"),
        body=readable_body(raw_body),
        at=now_iso(),
    )
    with current.lock:
        current.journal.append(entry)
    try:
        response, status = process_payment_request(current, entry, raw_body)
    except RequestError as error:
        response, status = error.response(), error.status
    with current.lock:
        entry.status = status
    return response


def process_payment_request(
    current: ProviderState, entry: JournalEntry, raw_body: bytes
) -> tuple[Response, int | None]:
    """Validate, apply a fault if any, charge; returns the response and the status sent.

    Faults apply only to valid requests, so a bad request never uses up a queued one.
    """
    key = idempotency_key()
    header_fault = fault_from_headers()
    charge = parse_charge(json_object(raw_body))
    fault = header_fault or current.next_fault()
    if fault is not None:
        with current.lock:
            entry.fault = fault.kind.value
        answer = fault_answer(fault.kind)
        if answer is not None:
            return answer
        if fault.kind == FaultKind.LATENCY:
            current.sleep(fault.delay_ms / 1000)
    response = payment_response(*current.charge_once(charge, key))
    if fault is not None and fault.kind == FaultKind.CHARGE_THEN_DELAY:
        current.sleep(fault.delay_ms / 1000)
    return response, 200


def fault_answer(kind: FaultKind) -> tuple[Response, int | None] | None:
    """The answer a fault gives instead of charging, or None when the charge goes ahead."""
    if kind == FaultKind.HTTP_500:
        message = "Injected fault: internal error."
        return error_response(500, "internal_error", message), 500
    if kind == FaultKind.HTTP_503:
        message = "Injected fault: service unavailable."
        return error_response(503, "service_unavailable", message), 503
    if kind == FaultKind.MALFORMED:
        return Response(MALFORMED_BODY, 200, mimetype="application/json"), 200
    if kind in (FaultKind.RESET, FaultKind.EMPTY_REPLY):
        return drop_connection(kind)
    return None


def drop_connection(kind: FaultKind) -> tuple[Response, int | None]:
    """Close the client's connection without an answer: RST for reset, FIN for empty_reply.

    The server then writes its (empty) response to the closed socket and logs that the
    write failed; the server itself carries on.
    """
    sock = request.environ.get("gunicorn.socket") or request.environ.get("werkzeug.socket")
    if not isinstance(sock, socket.socket):
        message = f"The {kind.value} fault needs a real socket; this server gives none."
        return error_response(500, "fault_unsupported_here", message), 500
    with suppress(OSError):
        if kind == FaultKind.RESET:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            sock.shutdown(socket.SHUT_RDWR)
    # sock.close() would wait for the server's own file objects on the socket to close;
    # closing the descriptor sends the RST or FIN now.
    with suppress(OSError):
        os.close(sock.detach())
    return Response(b"", 200), None


@provider.get("/payments/<payment_id>")
def get_payment(payment_id: str) -> Response:
    current = provider_state()
    with current.lock:
        found = [p for p in current.ledger if p.id == payment_id]
    if not found:
        raise RequestError(404, "payment_not_found", f"No payment with id {payment_id}.")
    return jsonify(found[0].as_dict())


@provider.get("/payments")
def list_payments() -> Response:
    key = request.args.get("idempotency_key")
    cart_id = request.args.get("cart_id")
    current = provider_state()
    with current.lock:
        payments = [
            p
            for p in current.ledger
            if (key is None or p.idempotency_key == key)
            and (cart_id is None or str(p.cart_id) == cart_id)
        ]
    return jsonify({"data": [p.as_dict() for p in payments]})


@provider.get("/inspect")
def inspect_provider() -> Response:
    return jsonify(provider_state().snapshot())


@provider.get("/control/journal")
def journal() -> Response:
    current = provider_state()
    with current.lock:
        entries = [entry.as_dict() for entry in current.journal]
    return jsonify({"data": entries})


@provider.post("/control/reset")
def reset() -> Response:
    current = provider_state()
    current.reset()
    return jsonify(current.snapshot())


@provider.post("/control/balance")
def set_balance() -> Response:
    balance = to_balance(required(json_object(request.get_data()), "balance"))
    if balance is None:
        raise RequestError(400, "invalid_field", f"balance {BALANCE_RULE}", "balance")
    current = provider_state()
    with current.lock:
        current.balance = balance
    return jsonify(current.snapshot())


@provider.post("/control/faults")
def queue_fault() -> Response:
    body = json_object(request.get_data())
    kind = parse_fault_kind(required(body, "kind"), "kind")
    count = body.get("count", 1)
    if count is not None and not (is_integer(count) and count > 0):
        message = "count must be a positive integer, or null for until cleared."
        raise RequestError(400, "invalid_field", message, "count")
    delay_ms = body.get("delay_ms")
    if delay_ms is None:
        delay_ms = DEFAULT_DELAY_MS.get(kind, 0)
    fault = Fault(kind, parse_delay_ms(delay_ms, "delay_ms"), count)
    current = provider_state()
    with current.lock:
        current.faults.append(fault)
    response = jsonify(current.snapshot())
    response.status_code = 201
    return response


@provider.delete("/control/faults")
def clear_faults() -> Response:
    current = provider_state()
    with current.lock:
        current.faults.clear()
    return jsonify(current.snapshot())


def idempotency_key() -> str | None:
    """The request's Idempotency-Key: 1 to 255 printable ASCII characters, or absent."""
    key = request.headers.get("Idempotency-Key")
    if key is None:
        return None
    if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH or not all(" " <= c <= "~" for c in key):
        limit = MAX_IDEMPOTENCY_KEY_LENGTH
        message = f"Idempotency-Key must be 1 to {limit} printable ASCII characters."
        raise RequestError(400, "invalid_field", message, "Idempotency-Key")
    return key


def fault_from_headers() -> Fault | None:
    """The fault this one request asks for with X-Fake-Fault and X-Fake-Delay-Ms."""
    delay_header = request.headers.get("X-Fake-Delay-Ms")
    delay_ms = None
    if delay_header is not None:
        digits = delay_header.isascii() and delay_header.isdigit() and len(delay_header) < 10
        delay_ms = parse_delay_ms(int(delay_header) if digits else delay_header, "X-Fake-Delay-Ms")
    kind_header = request.headers.get("X-Fake-Fault")
    if kind_header is None:
        return None
    kind = parse_fault_kind(kind_header, "X-Fake-Fault")
    return Fault(kind, DEFAULT_DELAY_MS.get(kind, 0) if delay_ms is None else delay_ms)


def parse_fault_kind(value: Any, field_name: str) -> FaultKind:
    if isinstance(value, str) and value in FAULT_KINDS:
        return FaultKind(value)
    message = f"{field_name} must be one of: {', '.join(FAULT_KINDS)}."
    raise RequestError(400, "invalid_field", message, field_name)


def parse_delay_ms(value: Any, field_name: str) -> int:
    if not (is_integer(value) and 0 <= value <= MAX_DELAY_MS):
        message = f"{field_name} must be an integer from 0 to {MAX_DELAY_MS}."
        raise RequestError(400, "invalid_field", message, field_name)
    return value


def to_balance(value: Any) -> Decimal | None:
    """A balance in major units from a decimal string ("100.00") or integer; None if invalid."""
    if not (isinstance(value, str) or is_integer(value)):
        return None
    try:
        balance = Decimal(value)
    except InvalidOperation:
        return None
    if not balance.is_finite() or not 0 <= balance <= MAX_AMOUNT_MAJOR_UNITS:
        return None
    return balance


def json_object(raw_body: bytes) -> dict[str, Any]:
    """The request body as a JSON object; fractional numbers come back as Decimal."""
    if not request.is_json:
        message = "Content-Type must be application/json."
        raise RequestError(400, "invalid_field", message, "Content-Type")
    try:
        body = loads(raw_body)
    except (ValueError, RecursionError):
        raise RequestError(400, "malformed_json", "The body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise RequestError(400, "malformed_json", "The body must be a JSON object.")
    return body


def loads(raw_body: bytes) -> Any:
    """Strict JSON: UTF-8 only, no NaN or Infinity, fractions as Decimal."""

    def reject_constant(name: str) -> None:
        raise ValueError(f"{name} is not JSON.")

    text = raw_body.decode("utf-8")
    return json.loads(text, parse_float=Decimal, parse_constant=reject_constant)


def readable_body(raw_body: bytes) -> Any:
    """The body for the journal: parsed when it is JSON, else the text as received."""
    try:
        return loads(raw_body)
    except (ValueError, RecursionError):
        return raw_body.decode("utf-8", errors="replace")


def parse_charge(body: dict[str, Any]) -> ChargeRequest:
    """Validate a charge request body field by field."""
    cart_id = required(body, "cart_id")
    if not (
        is_integer(cart_id)
        or (isinstance(cart_id, str) and 0 < len(cart_id) <= MAX_CART_ID_LENGTH)
    ):
        message = (
            f"cart_id must be an integer or a string of 1 to {MAX_CART_ID_LENGTH} characters."
        )
        raise RequestError(400, "invalid_field", message, "cart_id")

    amount = required(body, "amount")
    if not (is_integer(amount) and amount > 0):
        message = "amount must be a positive integer number of minor units."
        raise RequestError(400, "invalid_field", message, "amount")

    currency = body.get("currency", DEFAULT_CURRENCY)
    if not isinstance(currency, str) or currency.upper() not in CURRENCY_EXPONENTS:
        message = "currency must be an ISO 4217 code of a currency with minor units."
        raise RequestError(400, "invalid_field", message, "currency")
    currency = currency.upper()
    if amount > MAX_AMOUNT_MAJOR_UNITS * 10 ** CURRENCY_EXPONENTS[currency]:
        message = f"amount must not exceed {MAX_AMOUNT_MAJOR_UNITS} {currency}."
        raise RequestError(400, "invalid_field", message, "amount")

    payment_method = body.get("payment_method", DEFAULT_PAYMENT_METHOD)
    if not isinstance(payment_method, str) or payment_method not in PAYMENT_METHODS:
        message = f"payment_method must be one of: {', '.join(PAYMENT_METHODS)}."
        raise RequestError(400, "invalid_field", message, "payment_method")

    fingerprint = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return ChargeRequest(cart_id, amount, currency, payment_method, fingerprint)


def required(body: dict[str, Any], name: str) -> Any:
    if name not in body:
        raise RequestError(400, "missing_field", f"{name} is required.", name)
    return body[name]


def is_integer(value: Any) -> bool:
    """True for a JSON integer; bool is an int subclass in Python but not a number here."""
    return isinstance(value, int) and not isinstance(value, bool)


def major_units(amount: int, currency: str) -> Decimal:
    """1500 USD -> Decimal("15.00"); 15 JPY -> Decimal("15")."""
    return Decimal(amount).scaleb(-CURRENCY_EXPONENTS[currency])


def format_balance(balance: Decimal) -> str:
    """At least two decimals, more only when the balance has them: "20.00", "19.995"."""
    exponent = balance.normalize().as_tuple().exponent
    places = max(2, -exponent) if isinstance(exponent, int) else 2
    return f"{balance:.{places}f}"


def payment_body(payment: Payment) -> bytes:
    return json.dumps(payment.as_dict()).encode()


def payment_response(reply: StoredReply, replayed: bool) -> Response:
    response = Response(reply.body, 200, mimetype="application/json")
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


def error_response(status: int, code: str, message: str, field: str | None = None) -> Response:
    response = jsonify({"error": {"code": code, "message": message, "field": field}})
    response.status_code = status
    return response


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


app = create_app()
