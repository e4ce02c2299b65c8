"""What the fake provider reads and writes on the wire: strict JSON requests checked field
by field, and JSON error answers.

    body = json_object(request.get_data())     # RequestError 400 unless a JSON object
    charge = parse_charge(body)                # field by field, with a body fingerprint
    raise RequestError(400, "invalid_field", "amount must be ...", "amount")

Money stays in integer minor units of an ISO-4217 currency that has minor units; decimal
numbers in a body are read as `Decimal`, never as binary floats.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any

import iso4217
from flask import Response, jsonify, request

DEFAULT_CURRENCY = "USD"
DEFAULT_PAYMENT_METHOD = "pm_card_default"
PREPAID_PAYMENT_METHOD = "pm_card_prepaid"
MAX_AMOUNT_MAJOR_UNITS = 10_000_000_000
MAX_CART_ID_LENGTH = 64
MAX_ID_LENGTH = 64
MAX_REASON_LENGTH = 64
MAX_IDEMPOTENCY_KEY_LENGTH = 255
MONEY_RULE = 'must be a decimal string such as "20.00", from 0 to 10000000000.'

# Decline code of each test payment method; None: decided by the card's rule (the default
# card's per-charge limit, the prepaid card's balance) or always charged (pm_card_visa).
PAYMENT_METHODS: Mapping[str, str | None] = MappingProxyType(
    {
        DEFAULT_PAYMENT_METHOD: None,
        PREPAID_PAYMENT_METHOD: None,
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
class ChargeRequest:
    """A validated `POST /request_payment` body."""

    cart_id: str | int
    amount: int
    currency: str
    payment_method: str
    fingerprint: str


@dataclass(frozen=True)
class RefundRequest:
    """A validated `POST /refunds` body; the payment is checked when it is processed."""

    payment_id: str
    amount: int
    currency: str | None
    reason: str | None
    fingerprint: str


def error_response(status: int, code: str, message: str, field: str | None = None) -> Response:
    response = jsonify({"error": {"code": code, "message": message, "field": field}})
    response.status_code = status
    return response


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


def fingerprint(body: dict[str, Any]) -> str:
    """The body in a canonical form: key order and spacing do not change it."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)


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
    currency = parse_currency(body.get("currency", DEFAULT_CURRENCY))
    amount = parse_amount(required(body, "amount"), currency)
    payment_method = body.get("payment_method", DEFAULT_PAYMENT_METHOD)
    if not isinstance(payment_method, str) or payment_method not in PAYMENT_METHODS:
        message = f"payment_method must be one of: {', '.join(PAYMENT_METHODS)}."
        raise RequestError(400, "invalid_field", message, "payment_method")
    return ChargeRequest(cart_id, amount, currency, payment_method, fingerprint(body))


def parse_refund(body: dict[str, Any]) -> RefundRequest:
    """Validate a refund request body field by field (the payment is checked later)."""
    payment_id = required(body, "payment_id")
    if not isinstance(payment_id, str) or not 0 < len(payment_id) <= MAX_ID_LENGTH:
        message = f"payment_id must be a string of 1 to {MAX_ID_LENGTH} characters."
        raise RequestError(400, "invalid_field", message, "payment_id")
    currency = body.get("currency")
    if currency is not None:
        currency = parse_currency(currency)
    amount = parse_amount(required(body, "amount"), currency or DEFAULT_CURRENCY)
    reason = body.get("reason")
    if reason is not None and not (
        isinstance(reason, str) and 0 < len(reason) <= MAX_REASON_LENGTH
    ):
        message = f"reason must be a string of 1 to {MAX_REASON_LENGTH} characters."
        raise RequestError(400, "invalid_field", message, "reason")
    return RefundRequest(payment_id, amount, currency, reason, fingerprint(body))


def parse_currency(currency: Any) -> str:
    if not isinstance(currency, str) or currency.upper() not in CURRENCY_EXPONENTS:
        message = "currency must be an ISO 4217 code of a currency with minor units."
        raise RequestError(400, "invalid_field", message, "currency")
    return currency.upper()


def parse_amount(amount: Any, currency: str) -> int:
    if not (is_integer(amount) and amount > 0):
        message = "amount must be a positive integer number of minor units."
        raise RequestError(400, "invalid_field", message, "amount")
    if amount > MAX_AMOUNT_MAJOR_UNITS * 10 ** CURRENCY_EXPONENTS[currency]:
        message = f"amount must not exceed {MAX_AMOUNT_MAJOR_UNITS} {currency}."
        raise RequestError(400, "invalid_field", message, "amount")
    return amount


def required(body: dict[str, Any], name: str) -> Any:
    if name not in body:
        raise RequestError(400, "missing_field", f"{name} is required.", name)
    return body[name]


def is_integer(value: Any) -> bool:
    """True for a JSON integer; bool is an int subclass in Python but not a number here."""
    return isinstance(value, int) and not isinstance(value, bool)


def to_money(value: Any) -> Decimal | None:
    """Major units from a decimal string ("100.00") or an integer; None if invalid."""
    if not (isinstance(value, str) or is_integer(value)):
        return None
    try:
        money = Decimal(value)
    except InvalidOperation:
        return None
    if not money.is_finite() or not 0 <= money <= MAX_AMOUNT_MAJOR_UNITS:
        return None
    return money


def major_units(amount: int, currency: str) -> Decimal:
    """1500 USD -> Decimal("15.00"); 15 JPY -> Decimal("15")."""
    return Decimal(amount).scaleb(-CURRENCY_EXPONENTS[currency])


def format_money(value: Decimal) -> str:
    """At least two decimals, more only when the value has them: "20.00", "19.995"."""
    exponent = value.normalize().as_tuple().exponent
    places = max(2, -exponent) if isinstance(exponent, int) else 2
    return f"{value:.{places}f}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
