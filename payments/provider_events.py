"""Settling attempts and refunds from the events the provider pushes (its webhooks).

    outcome = payment_settle_from_event(event_type="payment.succeeded", data={...})

`data` is the payment (or refund) as the provider's ledger shows it. The rules are the
ones the pay flow and `reconcile_payments` apply to a ledger record, through the same
functions, so an event can only move an attempt forward:

- an open attempt (`processing`, or `unknown` after a lost answer) is settled by it at
  once: charged (the cart is paid), or declined;
- an attempt closed as "nothing charged" that the provider did charge is a late charge:
  it pays the cart, or, if another attempt paid it first, it is a duplicate charge, given
  back by the `give_back_duplicate` task queued as it is recorded (reconcile too);
- a settled attempt stays as it is: a late `payment.failed` never undoes a success, and
  an event seen twice changes nothing the second time;
- `refund.succeeded` settles an open refund, or one closed as not made (the refund flow's
  `refund_record_result`).

Returns a short outcome for the log of provider events. Raises `ValueError` for data that
is not a payment or refund this service can read.
"""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.db import models

import utils
from common import money
from common.errors import ApplicationError
from payments import transitions
from payments.models import Payment, PaymentAttemptStatus, Refund, RefundStatus
from payments.services import payment_record_result, refund_record_result

logger = logging.getLogger(__name__)

PAYMENT_EVENTS = {"payment.succeeded", "payment.failed"}
REFUND_EVENTS = {"refund.succeeded"}
EVENT_TYPES = PAYMENT_EVENTS | REFUND_EVENTS


def payment_settle_from_event(*, event_type: str, data: dict[str, Any]) -> str:
    if event_type in PAYMENT_EVENTS:
        return _settle_payment(_payment_result(data))
    if event_type in REFUND_EVENTS:
        return _settle_refund(_refund_result(data))
    raise ValueError(f"unknown event type {event_type!r}")


def _settle_payment(result: utils.PaymentResult) -> str:
    payment = (
        Payment.objects.select_related("cart")
        .filter(idempotency_key=result.idempotency_key or "")
        .first()
    )
    if payment is None:
        return _charge_of_no_attempt(result)
    before = payment.status
    if payment.is_open:
        try:
            settled = payment_record_result(cart=payment.cart, payment=payment, result=result)
        except ApplicationError:  # an answer about another payment: held open, logged
            return "does not match its attempt: left open"
    elif before == PaymentAttemptStatus.ERROR and result.succeeded:
        try:
            settled = transitions.attempt_charged(payment=payment, result=result)
        except transitions.RecordMismatchError:
            logger.error("Provider event for closed attempt %s is not its own", payment.pk)
            return "does not match its attempt: left closed"
    else:
        return f"attempt already {before}: unchanged"
    # A charge the cart does not owe (`duplicate`) is given back by the task the
    # transition queued.
    return f"attempt {before} -> {settled.status}"


def _charge_of_no_attempt(result: utils.PaymentResult) -> str:
    """A charge no attempt of ours sent: on a paid cart, a duplicate charge to give back;
    otherwise reconcile is the judge (it lists the cart's charges)."""
    from cart.models import Cart

    cart = Cart.objects.filter(pk=_uuid_or_none(result.cart_id)).first()
    if not (result.succeeded and cart is not None and cart.is_paid):
        logger.warning("Provider event for no attempt of ours: %s", result)
        return "no attempt of ours: left to reconcile"
    if Payment.objects.filter(provider_payment_id=result.payment_id).exists():
        return "charge already recorded: unchanged"
    transitions.duplicate_charge_recorded(cart=cart, result=result)  # and its give-back
    return "duplicate charge recorded: to give back"


def _settle_refund(result: utils.RefundResult) -> str:
    refund = (
        Refund.objects.select_related("payment")
        .filter(idempotency_key=result.idempotency_key or "")
        .first()
    )
    if refund is None:
        logger.warning("Provider event for no refund of ours: %s", result)
        return "no refund of ours: left to reconcile"
    before = refund.status
    if before == RefundStatus.SUCCESS:
        return "refund already success: unchanged"
    try:
        settled = refund_record_result(refund=refund, result=result)
    except ApplicationError:
        return "does not match its refund: left open"
    return f"refund {before} -> {settled.status}"


def _uuid_or_none(value: str):
    import uuid

    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


# -- reading the provider's objects ------------------------------------------------------------


def _field(data: dict[str, Any], name: str, kind: type) -> Any:
    value = data.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ValueError(f"{name} must be a {kind.__name__}")
    return value


def _holds(value: Any, column: models.Field) -> bool:
    # Whether the column it is recorded in (a key: looked up by) takes it: text no longer
    # than the column, without the NUL PostgreSQL refuses in any text. Else a 500 there,
    # which the provider retries forever.
    return isinstance(value, str) and len(value) <= column.max_length and "\x00" not in value


def _id(data: dict[str, Any], name: str, column: models.Field) -> str:
    value = data.get(name)
    if not _holds(value, column):
        raise ValueError(
            f"{name} must be text of at most {column.max_length} characters, without NUL"
        )
    return value


def _optional_text(data: dict[str, Any], name: str, column: models.Field) -> str | None:
    # A member the settling does not hinge on (a decline code, the payment method, the
    # key that finds our attempt): when it is not text a column holds, the event is still
    # settled, as if it were absent (no key of ours is such text), and nothing is recorded.
    value = data.get(name)
    return value if _holds(value, column) else None


def _amount(data: dict[str, Any]) -> tuple[Decimal, str]:
    currency = _field(data, "currency", str)
    units = _field(data, "amount", int)
    try:
        amount = money.from_minor_units(units, currency)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"bad amount or currency: {exc}") from exc
    except ArithmeticError as exc:  # more digits than a Decimal rounds to (10**90 cents)
        raise ValueError("bad amount: more digits than any amount has") from exc
    # What any payment or refund of ours can be (the ledger's rule in `utils`, and
    # the pay flow's bound): a charge to give back is recorded with it.
    if not 0 < amount <= money.MAX_AMOUNT:
        raise ValueError(
            f"bad amount: {amount} {currency} is not above 0 and at most {money.MAX_AMOUNT}"
        )
    return amount, currency


def _payment_result(data: dict[str, Any]) -> utils.PaymentResult:
    amount, currency = _amount(data)
    status = _field(data, "payment_status", str)
    if status not in {s.value for s in utils.PaymentOutcome}:
        raise ValueError("payment_status must be success or failed")
    return utils.PaymentResult(
        payment_id=_id(data, "id", Payment.provider_payment_id.field),
        cart_id=str(data.get("cart_id")),
        amount=amount,
        currency=currency,
        status=utils.PaymentOutcome(status),
        decline_code=_optional_text(data, "decline_code", Payment.decline_code.field),
        payment_method=_optional_text(data, "payment_method", Payment.payment_method.field) or "",
        idempotency_key=_optional_text(data, "idempotency_key", Payment.idempotency_key.field),
        replayed=False,
    )


def _refund_result(data: dict[str, Any]) -> utils.RefundResult:
    amount, currency = _amount(data)
    status = _field(data, "status", str)
    if status not in {s.value for s in utils.RefundOutcome}:
        raise ValueError("status must be succeeded or failed")
    return utils.RefundResult(
        refund_id=_id(data, "id", Refund.provider_refund_id.field),
        payment_id=_id(data, "payment_id", Payment.provider_payment_id.field),
        amount=amount,
        currency=currency,
        status=utils.RefundOutcome(status),
        idempotency_key=_optional_text(data, "idempotency_key", Refund.idempotency_key.field),
        replayed=False,
    )
