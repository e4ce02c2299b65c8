"""Every change of state of a payment attempt or a refund: one small function each.

    payment = attempt_charged(payment=payment, result=result)   # cart paid, in one transaction
    refund = refund_made(refund=refund, result=result)          # cart partially_refunded/refunded

Each function runs in one transaction, locks the cart row and then the attempt (or refund)
row, acts only if that row is still in the state the change starts from (so a late or
repeated call changes nothing), and saves the cart's status with it. The event reporting
the change to the shop (`cart.paid`, `cart.payment_failed`, `cart.refunded`) is written
in that same transaction (`events.services`), so the change and its event commit together.

Error codes and plain messages come from `payments.models`; the internals that explain
them are logged by the caller, never stored.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.utils import timezone

import utils
from cart.models import Cart, PaymentStatus
from cart.selectors import cart_get_locked, cart_known_history
from common.compiled import CompiledQuery
from discount.services import discount_consume_reservation, discount_match_charge
from events.services import event_cart_paid, event_cart_payment_failed, event_cart_refunded
from payments.models import (
    ATTEMPT_MESSAGES,
    OPEN_ATTEMPT_STATUSES,
    OPEN_REFUND_STATUSES,
    REFUND_MESSAGES,
    ErrorCode,
    Payment,
    PaymentAttemptStatus,
    PaymentRequest,
    Refund,
    RefundReason,
    RefundStatus,
)

logger = logging.getLogger(__name__)

_CART_STATE_FIELDS = ("payment_status", "updated")
# What settling an attempt writes (charged, declined, not charged): the rest of its row
# (cart, amount, key, …) never changes once it is opened.
_SETTLED_FIELDS = (
    "status",
    "provider_payment_id",
    "decline_code",
    "error_code",
    "error",
    "completed",
    "in_flight_until",
    "updated",
)


class RecordMismatchError(Exception):
    """A record of the provider that is not the attempt's (or refund's) own
    (`Payment.is_described_by`): nothing was recorded from it. Whatever the provider did
    under that key, it cannot be booked as this attempt's charge, decline or refund."""


def _check_describes(row: Payment | Refund, result) -> None:
    if result is not None and not row.is_described_by(result):
        raise RecordMismatchError(f"{type(row).__name__} {row.pk}: {result}")


def in_flight_deadline():
    """Until when a request whose answer never came may still be processed."""
    return timezone.now() + timedelta(seconds=settings.PAYMENT_ATTEMPT_STALE_SECONDS)


# The reads every pay sends under the cart's lock (`cart.selectors.cart_get_locked` takes
# it), compiled once (`common.compiled`): compiling them through the ORM on each request
# cost more CPU than their round trips.
ATTEMPTS_LOCKED = CompiledQuery(
    lambda cart_id: (
        Payment.objects.select_for_update().filter(cart_id=cart_id).order_by("created", "id")
    ),
    cart_id=uuid.UUID,
)


def _locked(cart_id, model, pk):
    """The cart, then the row, locked in that order (every transition takes them so);
    the row's `cart` is the locked one, which callers copy the new status from."""
    cart = cart_get_locked(cart_id)
    row = model.objects.select_for_update().get(pk=pk)
    row.cart = cart
    return cart, row


def _locked_with_attempts(cart_id, pk) -> tuple[Cart, Payment, list[Payment]]:
    """`_locked` for an attempt, locking (and reading) every attempt of the cart with it:
    the cart's lock is held by whatever adds one, so these are all it has, in the order
    its answer shows them."""
    cart = cart_get_locked(cart_id)
    attempts = ATTEMPTS_LOCKED.run(cart_id=cart.pk)
    current = None
    for attempt in attempts:
        attempt.cart = cart
        if attempt.pk == pk:
            current = attempt
    if current is None:
        raise Payment.DoesNotExist(f"No attempt {pk} of cart {cart_id}.")
    return cart, current, attempts


# -- attempts ------------------------------------------------------------------------------


def attempt_started(
    *, cart: Cart, payment: Payment, request_key: str | None, payment_method: str
) -> None:
    """The attempt is (re)opened and the cart moves to `processing`. Called inside the
    transaction that locked the cart and chose the attempt; `request_key` is a key that
    transaction found unbound (under the cart's lock, so still unbound): it is bound
    to the attempt."""
    if cart.payment_status != PaymentStatus.PROCESSING:
        cart.move_to(PaymentStatus.PROCESSING)
    payment.status = PaymentAttemptStatus.PROCESSING
    payment.completed = None
    payment.error_code = payment.error = ""
    payment.save()
    cart.save(update_fields=_CART_STATE_FIELDS)
    if request_key:
        PaymentRequest.objects.create(
            cart=cart,
            key=request_key,
            payment_method=payment_method,
            amount=cart.total,
            payment=payment,
        )


def attempt_charged(*, payment: Payment, result: utils.PaymentResult | None) -> Payment:
    """The provider charged the attempt (`result` None: there was nothing to charge).

    An open attempt succeeds and the cart is paid. A charge that lands on an attempt
    already closed as "nothing charged" is recorded: the cart is paid by it, unless
    another attempt paid it first, or the cart changed since so that the charge is not
    its total (`discount_match_charge`); then it is a charge to give back (`duplicate`),
    which the `give_back_duplicate` task (queued as it is recorded) or reconcile refunds.
    Raises `RecordMismatchError` for a record about another payment, whichever door it
    came through (the pay request, a webhook, reconcile).
    """
    _check_describes(payment, result)
    with transaction.atomic():
        cart, current, attempts = _locked_with_attempts(payment.cart_id, payment.pk)
        closed = current.status == PaymentAttemptStatus.ERROR
        if not (current.is_open or closed):
            return current
        if closed:
            logger.error("Payment %s charged after being closed as not charged", current.pk)
        current.provider_payment_id = result.payment_id if result else ""
        current.decline_code = ""
        current.completed = current.completed or timezone.now()
        current.in_flight_until = None
        if cart.is_paid:
            logger.error("Cart %s charged twice (%s): it will be given back", cart.pk, result)
            return _charge_to_give_back(current, ErrorCode.DUPLICATE_CHARGE)
        if closed and not discount_match_charge(cart=cart, charged=current.amount):
            # The cart changed after this attempt was closed (lines, discount): the charge
            # does not pay it as it stands, and marking it paid would sell what was not
            # charged (or keep more than it costs). It is given back, as a duplicate is;
            # the cart stays payable.
            logger.error(
                "Cart %s changed since attempt %s: its late charge will be given back",
                cart.pk,
                current.pk,
            )
            return _charge_to_give_back(current, ErrorCode.CART_CHANGED)
        current.status = PaymentAttemptStatus.SUCCESS
        current.error_code = current.error = ""
        current.save(update_fields=_SETTLED_FIELDS)
        if cart.payment_status != PaymentStatus.PROCESSING:
            cart.move_to(PaymentStatus.PROCESSING)  # a late charge on a payable cart
        cart.move_to(PaymentStatus.SUCCESS)
        cart.save(update_fields=_CART_STATE_FIELDS)
        # The code's reserved use now counts (the cart shows what was charged first).
        discount_consume_reservation(cart=cart, charged=current.amount)
        event_cart_paid(cart=cart, payment=current)
        # The cart was not paid before: no attempt of it was a duplicate, so it has no
        # refund (only a paid cart's charges are given back).
        cart_known_history(cart, payments=attempts, refunds=[])
        return current


def _charge_to_give_back(attempt: Payment, code: ErrorCode) -> Payment:
    """Record a charge the cart does not owe on `attempt` (locked, its charge's fields
    set): `duplicate`, given back by the task queued as it commits (or by reconcile)."""
    attempt.status = PaymentAttemptStatus.DUPLICATE
    attempt.error_code = code
    attempt.error = ATTEMPT_MESSAGES[code]
    attempt.save(update_fields=_SETTLED_FIELDS)
    _give_back_when_committed(attempt)
    return attempt


def _give_back_when_committed(duplicate: Payment) -> None:
    """Whichever door recorded it (a pay, a webhook, reconcile), a charge to give back is
    given back by the worker at once, not at the next reconcile run. Giving it back twice
    is harmless: the second finds nothing owed, or the first's refund number taken."""
    from payments.tasks import give_back_duplicate  # the task module imports this one

    transaction.on_commit(lambda: give_back_duplicate.enqueue(str(duplicate.pk)))


def attempt_declined(*, payment: Payment, result: utils.PaymentResult) -> Payment:
    """The provider declined the card: the attempt and the cart end `failed`. Raises
    `RecordMismatchError` for a decline of another payment.

    The cart may have been paid while the attempt was open (another card's charge that
    landed late, `attempt_charged`): the attempt still ends `failed`, and the cart stays
    paid, without a `cart.payment_failed` (it cannot be paid again)."""
    _check_describes(payment, result)
    with transaction.atomic():
        cart, current, attempts = _locked_with_attempts(payment.cart_id, payment.pk)
        if not current.is_open:
            return current
        current.status = PaymentAttemptStatus.FAILED
        current.provider_payment_id = result.payment_id
        current.decline_code = result.decline_code or ""
        current.error_code = current.error = ""
        current.completed = timezone.now()
        current.in_flight_until = None
        current.save(update_fields=_SETTLED_FIELDS)
        if cart.is_paid:
            logger.warning("Payment %s declined after its cart was paid", current.pk)
            return current
        cart.move_to(PaymentStatus.FAILED)
        cart.save(update_fields=_CART_STATE_FIELDS)
        event_cart_payment_failed(cart=cart, payment=current)
        # The cart moved from processing to failed: it was never paid (paid is final), so
        # it has no refund.
        cart_known_history(cart, payments=attempts, refunds=[])
        return current


def attempt_not_charged(
    *, payment: Payment, code: ErrorCode, as_of: datetime | None = None
) -> Payment:
    """Proven: the attempt charged nothing. The cart goes back to where it was.

    `as_of`: the attempt's `updated` when the proof was gathered (an empty ledger read
    after it). If anything touched it since, such as a pay resuming it and sending it
    again, the proof is about a state that is gone: nothing changes.

    A cart paid while the attempt was open (as for `attempt_declined`) stays paid: the
    attempt ends `error` without a `cart.payment_failed`."""
    with transaction.atomic():
        cart, current = _locked(payment.cart_id, Payment, payment.pk)
        if not current.is_open or (as_of is not None and current.updated != as_of):
            return current
        current.status = PaymentAttemptStatus.ERROR
        current.error_code = code
        current.error = ATTEMPT_MESSAGES[code]
        current.completed = timezone.now()
        current.in_flight_until = None
        current.save(update_fields=_SETTLED_FIELDS)
        if cart.is_paid:
            logger.warning("Payment %s closed as not charged after its cart was paid", current.pk)
            return current
        declined_before = cart.payments.filter(status=PaymentAttemptStatus.FAILED).exists()
        cart.move_to(PaymentStatus.FAILED if declined_before else PaymentStatus.PENDING)
        cart.save(update_fields=_CART_STATE_FIELDS)
        event_cart_payment_failed(cart=cart, payment=current)
        return current


def attempt_held_open(*, payment: Payment, code: ErrorCode, in_flight: bool) -> Payment:
    """The provider may have charged: the attempt stays open (`unknown`), the cart frozen."""
    fields = {"status": PaymentAttemptStatus.UNKNOWN, "error_code": code}
    fields["error"] = ATTEMPT_MESSAGES[code]
    fields["updated"] = timezone.now()
    if in_flight:
        fields["in_flight_until"] = in_flight_deadline()
    Payment.objects.filter(pk=payment.pk, status__in=OPEN_ATTEMPT_STATUSES).update(**fields)
    payment.refresh_from_db()
    return payment


def duplicate_charge_recorded(*, cart: Cart, result: utils.PaymentResult) -> Payment:
    """A successful charge of a paid cart that no attempt of ours sent (or recorded)."""
    with transaction.atomic():
        Cart.objects.select_for_update().get(pk=cart.pk)
        key = result.idempotency_key or f"provider-{result.payment_id}"
        payment, created = Payment.objects.get_or_create(
            idempotency_key=key,
            defaults={
                "cart": cart,
                "amount": result.amount,
                "currency": result.currency,
                "status": PaymentAttemptStatus.DUPLICATE,
                "payment_method": result.payment_method,
                "provider_payment_id": result.payment_id,
                "error_code": ErrorCode.DUPLICATE_CHARGE,
                "error": ATTEMPT_MESSAGES[ErrorCode.DUPLICATE_CHARGE],
                "completed": timezone.now(),
            },
        )
        logger.error("Cart %s charged twice (%s): it will be given back", cart.pk, result)
        if created:
            _give_back_when_committed(payment)
        return payment


# -- refunds -------------------------------------------------------------------------------


def refund_started(
    *, cart: Cart, payment: Payment, amount: Decimal, reason: str, request_key: str, key=None
) -> Refund | None:
    """Reserve `amount` of the charge and record the refund, or None when the charge has
    less than that left (`_change_hold` is the rule that refunds never exceed what was
    charged). Called inside the transaction that locked the cart."""
    if not _change_hold(payment, amount):
        return None
    refund = Refund(
        payment=payment,
        cart=cart,
        amount=amount,
        currency=payment.currency,
        reason=reason,
        request_key=request_key,
    )
    refund.idempotency_key = key or f"refund-{refund.id}"
    refund.save()
    return refund


def refund_resumed(*, refund: Refund) -> None:
    """A refund left open is sent again (with its own key): `processing` while it is."""
    Refund.objects.filter(pk=refund.pk, status__in=OPEN_REFUND_STATUSES).update(
        status=RefundStatus.PROCESSING, updated=timezone.now()
    )
    refund.refresh_from_db()


def refund_reopened(*, refund: Refund) -> bool:
    """A refund proven not made is asked for again (same request, same key): it reserves
    its amount again and is sent again. False, and nothing changes, when the charge no
    longer has that much left. Called inside the transaction that locked the cart."""
    current = Refund.objects.select_for_update().get(pk=refund.pk)
    if current.is_open or current.status == RefundStatus.SUCCESS:
        return True
    if not _reserve_again(current):
        return False
    Refund.objects.filter(pk=refund.pk).update(
        status=RefundStatus.PROCESSING,
        error_code="",
        error="",
        completed=None,
        updated=timezone.now(),
    )
    refund.refresh_from_db()
    return True


def refund_made(*, refund: Refund, result: utils.RefundResult) -> Refund:
    """The provider made the refund. A refund the shop asked for counts on the cart:
    `partially_refunded`, or `refunded` once everything charged was given back. Raises
    `RecordMismatchError` for a record of another refund."""
    _check_describes(refund, result)
    with transaction.atomic():
        cart, current = _locked(refund.cart_id, Refund, refund.pk)
        if current.status == RefundStatus.SUCCESS:
            return current
        released = current.status not in OPEN_REFUND_STATUSES
        if released and not _reserve_again(current):
            logger.error("Refund %s made after being closed, beyond the charge", current.pk)
            return current
        if released:
            logger.error("Refund %s made after being closed as not made", current.pk)
        current.status = RefundStatus.SUCCESS
        current.provider_refund_id = result.refund_id
        current.error_code = current.error = ""
        current.completed = timezone.now()
        current.in_flight_until = None
        current.save()
        if current.reason == RefundReason.REQUESTED_BY_CUSTOMER:
            cart.amount_refunded += current.amount
            captured = current.payment.amount
            cart.move_to(
                PaymentStatus.REFUNDED
                if cart.amount_refunded >= captured
                else PaymentStatus.PARTIALLY_REFUNDED
            )
            cart.save(update_fields=("amount_refunded", *_CART_STATE_FIELDS))
            event_cart_refunded(cart=cart, refund=current)
        return current


def refund_not_made(*, refund: Refund, code: ErrorCode, as_of: datetime | None = None) -> Refund:
    """Proven: nothing was refunded. Its reservation on the charge is released.
    `as_of`: as for `attempt_not_charged`."""
    with transaction.atomic():
        _, current = _locked(refund.cart_id, Refund, refund.pk)
        if not current.is_open or (as_of is not None and current.updated != as_of):
            return current
        current.status = (
            RefundStatus.FAILED
            if code in (ErrorCode.REFUND_REFUSED, ErrorCode.REFUND_DECLINED)
            else RefundStatus.ERROR
        )
        current.error_code = code
        current.error = REFUND_MESSAGES[code]
        current.completed = timezone.now()
        current.in_flight_until = None
        current.save()
        if not _change_hold(current.payment, -current.amount):
            logger.error("Refund %s: its hold could not be released", current.pk)
        return current


def refund_held_open(*, refund: Refund, code: ErrorCode, in_flight: bool) -> Refund:
    """The provider may have refunded: the refund stays open and keeps its reservation."""
    fields = {"status": RefundStatus.UNKNOWN, "error_code": code, "error": REFUND_MESSAGES[code]}
    fields["updated"] = timezone.now()
    if in_flight:
        fields["in_flight_until"] = in_flight_deadline()
    Refund.objects.filter(pk=refund.pk, status__in=OPEN_REFUND_STATUSES).update(**fields)
    refund.refresh_from_db()
    return refund


def _reserve_again(refund: Refund) -> bool:
    return _change_hold(refund.payment, refund.amount)


def _change_hold(charge: Payment, by: Decimal) -> bool:
    """Change what refunds hold of `charge` (read with its cart locked) by `by`
    (negative: a release), unless that would take it above the charge or below zero.
    False, and nothing changes, then.

    The cart's lock makes the refunds of one cart take their turns. The sum is made
    here in `Decimal` (SQLite would add in binary floating point, where 0.10 + 0.20
    exceeds 0.30), and written only if the hold is still what was read (a compare and
    set, should anything change it without the cart's lock); the check constraint
    `payment_refunds_within_amount` backs it up."""
    held = charge.amount_refunded + by
    if not 0 <= held <= charge.amount:
        return False
    changed = Payment.objects.filter(pk=charge.pk, amount_refunded=charge.amount_refunded)
    if not changed.update(amount_refunded=held):
        return False
    charge.amount_refunded = held
    return True
