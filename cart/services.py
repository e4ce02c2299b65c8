"""Flows that change carts: creating one, applying a discount code, paying it exactly once.

    cart = cart_create(total=Decimal("20"), currency="USD", items_number=5)
    cart_delete(cart=cart)   # only one nobody tried to pay; gives its discount use back
    cart_apply_discount(cart=cart, discount=discount)
    payment = cart_pay(cart=cart, payment_method="pm_card_visa", idempotency_key="order-42")
    payments_reconcile(older_than=timedelta(minutes=1))   # settle attempts left open

Applying a discount locks the cart row (SELECT … FOR UPDATE on PostgreSQL; on SQLite
every write transaction starts IMMEDIATE, which serializes writers), so two requests for
one cart cannot both see "no discount yet": one wins, the other is refused. A use of
the code is reserved in the same transaction (`discount_reserve`), so a refused apply
never holds one, and consumed in the transaction that records the payment as successful
(`discount_consume_reservation`); a reservation that expired before paying is renewed
or the payment refused first (`discount_renew_reservation`, see `discount.services`).

Paying holds exactly once:

1. Open an attempt (short transaction, cart row locked): the cart moves to `processing`
   and a `Payment` row records the amount and the idempotency key sent to the provider.
   A second request for the same cart now sees an open attempt and gets 409. Database
   constraints allow one open and one successful attempt per cart.
2. Call the provider with no transaction or lock held. Every charge carries the attempt's
   idempotency key, so the client's retries and any later resumption of the attempt can
   never charge twice.
3. Record the outcome (short transaction): success or decline settle the attempt and the
   cart. When the provider failed in a way that may hide a charge (read timeout, an
   answer that makes no sense), its ledger is asked by key before anything is decided:
   a charge found there is the outcome. The attempt ends `error` ("nothing charged",
   the cart payable again) only when no request of it can still land: the provider
   refused a fresh attempt outright, or answered it with nonsense and has no payment
   under its key. Otherwise (a request timed out, or the attempt was resumed) it stays
   open as `unknown`: the next pay request resumes it with the same key, and
   `payments_reconcile` (the `reconcile_payments` command) settles it from the ledger
   once no request can be on its way.
4. A caller's `Idempotency-Key` is bound (`PaymentRequest`) to the attempt that answered
   it, so repeating the request replays that outcome, even when the request had resumed
   an attempt another request opened.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

import utils
from cart.errors import (
    CartDiscountAlreadyAppliedError,
    CartPaidError,
    CartPaymentInProgressError,
    IdempotencyKeyReusedError,
    PaymentMethodRefusedError,
    PaymentOutcomeUnknownError,
    ProviderBadAnswerError,
    ProviderTimeoutError,
    ProviderTroubleError,
    ProviderUnavailableError,
)
from cart.models import (
    OPEN_ATTEMPT_STATUSES,
    Cart,
    Payment,
    PaymentAttemptStatus,
    PaymentRequest,
    PaymentStatus,
)
from discount.models import Discount
from discount.services import (
    discount_consume_reservation,
    discount_renew_reservation,
    discount_reserve,
)

logger = logging.getLogger(__name__)

_CART_STATE_FIELDS = ("payment_status", "updated")
_DISCOUNT_FIELDS = ("discount", "amount_discounted", "total", "updated")


def cart_create(*, total: Decimal, currency: str, items_number: int) -> Cart:
    """A new, pending cart; `total` is its amount before any discount."""
    return Cart.objects.create(
        subtotal=total, total=total, currency=currency, items_number=items_number
    )


def cart_delete(*, cart: Cart) -> None:
    """Delete a cart nobody tried to pay (`Cart.check_deletable`), giving back the use of
    its discount code, so `times_used` keeps counting the carts that hold the code."""
    with transaction.atomic():
        locked = Cart.objects.select_for_update().get(pk=cart.pk)
        locked.check_deletable()
        if locked.discount_id is not None:
            Discount.objects.filter(pk=locked.discount_id).update(times_used=F("times_used") - 1)
        locked.delete()


def cart_apply_discount(*, cart: Cart, discount: Discount) -> Cart:
    """Apply one discount code to the cart, once, and update `cart` in place.

    Raises a `DiscountError` when the code is unusable or does not fit this cart,
    `CartDiscountAlreadyAppliedError` when the cart already has a discount, and
    `CartFrozenError` (409) when the cart is paid or being paid.
    """
    now = timezone.now()
    with transaction.atomic():
        locked = Cart.objects.select_for_update().get(pk=cart.pk)
        locked.check_can_change()
        if locked.discount_id is not None:
            raise CartDiscountAlreadyAppliedError()
        amount_off = discount.amount_off(locked.subtotal, locked.currency)
        # Reserving the use re-checks, under the code's row lock, that it is still
        # usable: it may have been switched off or used up since the request was validated.
        discount_reserve(discount=discount, cart=locked, amount=amount_off, at=now)

        locked.discount = discount
        locked.amount_discounted = amount_off
        locked.total = locked.subtotal - amount_off
        locked.save(update_fields=_DISCOUNT_FIELDS)

    for name in (*_DISCOUNT_FIELDS, "subtotal", "payment_status"):
        setattr(cart, name, getattr(locked, name))
    return cart


def cart_pay(
    *,
    cart: Cart,
    payment_method: str | None = None,
    idempotency_key: str | None = None,
    api: utils.PaymentAPI | None = None,
) -> Payment:
    """Charge the cart's total once and update `cart` in place.

    `idempotency_key` is the caller's key for this pay request: repeating a request with
    it returns the same attempt instead of charging again. Returns the attempt, either
    `success` or `failed` (declined). Raises `CartPaidError` or
    `CartPaymentInProgressError` (409), `IdempotencyKeyReusedError` (409), or a
    `ProviderTroubleError` (502/503/504) when the provider could not be used.
    """
    discount_renew_reservation(cart=cart)  # 409 discount_reservation_expired if it is gone
    payment, resumed = _open_attempt(
        cart=cart, payment_method=payment_method, request_key=idempotency_key
    )
    if not payment.is_open:  # a repeated request for an attempt that is already settled
        _copy_state(cart, Cart.objects.get(pk=cart.pk))
        return payment
    if payment.amount == 0:  # a fully discounted cart: nothing to charge
        return _settle(cart, payment, result=None)

    api = api or utils.payment_api()
    try:
        result = api.request_payment(
            cart_id=str(cart.pk),
            amount=payment.amount,
            currency=payment.currency,
            idempotency_key=payment.idempotency_key,
            payment_method=payment.payment_method or None,
        )
    except utils.PaymentProviderError as exc:
        try:
            result = _charge_despite(exc, cart=cart, payment=payment, api=api, resumed=resumed)
        except ProviderTroubleError:
            current = Payment.objects.get(pk=payment.pk)
            if current.status in _SETTLED:  # settled meanwhile (by reconcile): that stands
                _copy_state(cart, Cart.objects.get(pk=cart.pk))
                return current
            raise
    return _settle(cart, payment, result=result)


def payments_reconcile(
    *,
    older_than: timedelta | None = None,
    recheck_closed_within: timedelta = timedelta(hours=1),
    api: utils.PaymentAPI | None = None,
) -> dict[str, int]:
    """Settle attempts left open (a crash, an unreachable ledger) from the provider's ledger.

    Only attempts untouched for `older_than` (default: settings.PAYMENT_ATTEMPT_STALE_SECONDS)
    are looked at: no request of theirs can still be on its way, so a charge the ledger
    does not know of never happened. As a second line of defence, attempts closed as
    "nothing charged" within `recheck_closed_within` are looked up again, and a charge
    found for one is recorded (`late_charges`). Returns how many attempts ended charged,
    declined, not charged, still unknown, or were charged late.
    """
    if older_than is None:
        older_than = timedelta(seconds=settings.PAYMENT_ATTEMPT_STALE_SECONDS)
    api = api or utils.payment_api()
    counts = {"success": 0, "failed": 0, "not_charged": 0, "still_unknown": 0, "late_charges": 0}
    now = timezone.now()
    stale = Payment.objects.filter(
        status__in=OPEN_ATTEMPT_STATUSES, updated__lt=now - older_than
    ).select_related("cart")
    for payment in stale:
        try:
            found = api.find_payment(idempotency_key=payment.idempotency_key)
            if found is None:
                settled = _close_without_charge(
                    payment.cart, payment, reason="Not in the provider's ledger."
                )
            else:
                settled = _settle(payment.cart, payment, result=found)
        except (utils.PaymentProviderError, PaymentOutcomeUnknownError) as exc:
            logger.warning("Reconcile: attempt %s still unknown: %s", payment.pk, exc)
            counts["still_unknown"] += 1
            continue
        counts[_RECONCILED_AS[settled.status]] += 1

    closed = Payment.objects.filter(  # closed before this run began
        status=PaymentAttemptStatus.ERROR,
        completed__gte=now - recheck_closed_within,
        completed__lt=now,
    ).select_related("cart")
    for payment in closed:
        try:
            found = api.find_payment(idempotency_key=payment.idempotency_key)
        except utils.PaymentProviderError as exc:
            logger.warning("Reconcile: cannot re-check closed attempt %s: %s", payment.pk, exc)
            continue
        if found is not None and found.succeeded:
            _settle(payment.cart, payment, result=found)
            counts["late_charges"] += 1
    return counts


_SETTLED = (PaymentAttemptStatus.SUCCESS, PaymentAttemptStatus.FAILED)
_RECONCILED_AS = {
    PaymentAttemptStatus.SUCCESS: "success",
    PaymentAttemptStatus.FAILED: "failed",
    PaymentAttemptStatus.ERROR: "not_charged",
    PaymentAttemptStatus.PROCESSING: "still_unknown",
    PaymentAttemptStatus.UNKNOWN: "still_unknown",
}


def _open_attempt(
    *, cart: Cart, payment_method: str | None, request_key: str | None
) -> tuple[Payment, bool]:
    """Open (or resume) the cart's attempt. Returns it and whether it may have been sent
    before: then a request of it may still land at the provider."""
    payment_method = payment_method or ""
    resumed = False
    with transaction.atomic():
        locked = Cart.objects.select_for_update().get(pk=cart.pk)
        request = (
            locked.payment_requests.select_related("payment").filter(key=request_key).first()
            if request_key
            else None
        )
        earlier = request.payment if request else None
        if request is not None and request.payment_method != payment_method:
            raise IdempotencyKeyReusedError()
        if earlier is not None and earlier.status in _SETTLED:
            return earlier, False
        if locked.payment_status == PaymentStatus.SUCCESS:
            raise CartPaidError()

        open_attempt = locked.payments.filter(status__in=OPEN_ATTEMPT_STATUSES).first()
        if open_attempt is not None:
            if _in_flight(open_attempt):
                raise CartPaymentInProgressError()
            # Resume it, with its own key and body, so the provider can only charge it once.
            payment, resumed = open_attempt, True
        elif earlier is not None:  # the same request again after "nothing was charged"
            if request.amount != locked.total:
                raise IdempotencyKeyReusedError()
            payment = earlier
            locked.move_to(PaymentStatus.PROCESSING)
        else:
            locked.move_to(PaymentStatus.PROCESSING)
            payment = Payment(
                cart=locked,
                amount=locked.total,
                currency=locked.currency,
                payment_method=payment_method,
                idempotency_key=f"cart-{locked.pk}-{request_key or uuid.uuid4().hex}",
            )
        payment.status = PaymentAttemptStatus.PROCESSING
        payment.completed = None
        payment.save()
        locked.save(update_fields=_CART_STATE_FIELDS)
        if request_key and request is None:
            PaymentRequest.objects.create(
                cart=locked,
                key=request_key,
                payment_method=payment_method,
                amount=locked.total,
                payment=payment,
            )
    _copy_state(cart, locked)
    return payment, resumed


def _in_flight(payment: Payment) -> bool:
    """A `processing` attempt is being sent right now, unless it was abandoned (a crash)."""
    stale_after = timedelta(seconds=settings.PAYMENT_ATTEMPT_STALE_SECONDS)
    return (
        payment.status == PaymentAttemptStatus.PROCESSING
        and payment.updated > timezone.now() - stale_after
    )


def _charge_despite(
    error: utils.PaymentProviderError,
    *,
    cart: Cart,
    payment: Payment,
    api: utils.PaymentAPI,
    resumed: bool,
) -> utils.PaymentResult:
    """The provider call failed: find out whether it charged all the same.

    Returns the charge when the provider's ledger has one under the attempt's key.
    Otherwise raises a `ProviderTroubleError`, after ending the attempt as "nothing
    charged" only where no request of it can still land: a fresh attempt the provider
    refused outright, or one it answered with nonsense and has no payment for. A timed-out
    or resumed attempt stays open, so the next pay resumes it with the same key.
    """
    if isinstance(error, utils.PaymentMethodRejectedError) and not resumed:
        # The provider refused the request outright: nothing charged, and it never will be.
        _close_without_charge(cart, payment, reason=error.message)
        raise PaymentMethodRefusedError() from error
    refused = isinstance(error, utils.PaymentProviderUnavailableError) and not isinstance(
        error, utils.PaymentProviderTimeoutError
    )
    if refused and not resumed:
        # No attempt reached the provider's processing: nothing can have been charged.
        _close_without_charge(cart, payment, reason=error.message)
        raise ProviderUnavailableError() from error
    try:
        found = api.find_payment(idempotency_key=payment.idempotency_key)
    except utils.PaymentProviderError as lookup_error:
        _hold_open(payment, reason=f"{error.message}; ledger lookup: {lookup_error.message}")
        raise PaymentOutcomeUnknownError() from error
    if found is not None:
        logger.info("Payment %s: charge found in the ledger after: %s", payment.pk, error)
        return found
    if isinstance(error, utils.PaymentProviderProtocolError) and not resumed:
        _close_without_charge(cart, payment, reason=error.message)
        raise ProviderBadAnswerError() from error
    _hold_open(payment, reason=f"{error.message}; not in the ledger yet")
    if isinstance(error, utils.PaymentProviderTimeoutError):
        raise ProviderTimeoutError() from error
    if refused:
        raise ProviderUnavailableError() from error
    raise ProviderBadAnswerError() from error


def _settle(cart: Cart, payment: Payment, *, result: utils.PaymentResult | None) -> Payment:
    """Record the provider's answer (None: nothing to charge) on the attempt and the cart."""
    if result is not None and (
        result.amount != payment.amount
        or result.currency != payment.currency
        or result.cart_id != str(cart.pk)
    ):
        _hold_open(payment, reason=f"The provider's payment does not match: {result}")
        raise PaymentOutcomeUnknownError()
    succeeded = result is None or result.succeeded
    with transaction.atomic():
        locked = Cart.objects.select_for_update().get(pk=cart.pk)
        current = Payment.objects.select_for_update().get(pk=payment.pk)
        if current.is_open:
            current.status = (
                PaymentAttemptStatus.SUCCESS if succeeded else PaymentAttemptStatus.FAILED
            )
            current.provider_payment_id = result.payment_id if result else ""
            current.decline_code = (result.decline_code or "") if result else ""
            current.error = ""
            current.completed = timezone.now()
            current.save()
            locked.move_to(PaymentStatus.SUCCESS if succeeded else PaymentStatus.FAILED)
            locked.save(update_fields=_CART_STATE_FIELDS)
            if succeeded:
                discount_consume_reservation(cart=locked)
        elif current.status == PaymentAttemptStatus.ERROR and result and result.succeeded:
            _record_late_charge(locked, current, result)
    _copy_state(cart, locked)
    return current


def _record_late_charge(cart: Cart, payment: Payment, result: utils.PaymentResult) -> None:
    """The provider charged an attempt already closed as "nothing charged". Its ledger is
    the truth: record the charge, and the cart is paid unless another attempt paid it."""
    if cart.payments.filter(status=PaymentAttemptStatus.SUCCESS).exists():
        logger.error("Cart %s charged twice (late charge %s): refund it", cart.pk, result)
        payment.error = f"Charged after being closed ({result.payment_id}): refund it."
        payment.save(update_fields=["error", "updated"])
        return
    logger.error("Payment %s charged after being closed as not charged", payment.pk)
    payment.status = PaymentAttemptStatus.SUCCESS
    payment.provider_payment_id = result.payment_id
    payment.error = ""
    payment.save()
    if cart.payment_status != PaymentStatus.PROCESSING:
        cart.move_to(PaymentStatus.PROCESSING)
    cart.move_to(PaymentStatus.SUCCESS)
    cart.save(update_fields=_CART_STATE_FIELDS)
    discount_consume_reservation(cart=cart)


def _close_without_charge(cart: Cart, payment: Payment, *, reason: str) -> Payment:
    """End an attempt that charged nothing; the cart goes back to where it was."""
    with transaction.atomic():
        locked = Cart.objects.select_for_update().get(pk=cart.pk)
        current = Payment.objects.select_for_update().get(pk=payment.pk)
        if current.is_open:
            current.status = PaymentAttemptStatus.ERROR
            current.error = reason
            current.completed = timezone.now()
            current.save()
            declined_before = locked.payments.filter(status=PaymentAttemptStatus.FAILED).exists()
            locked.move_to(PaymentStatus.FAILED if declined_before else PaymentStatus.PENDING)
            locked.save(update_fields=_CART_STATE_FIELDS)
    _copy_state(cart, locked)
    payment.refresh_from_db()
    return current


def _hold_open(payment: Payment, *, reason: str) -> None:
    """The provider may have charged: keep the attempt open (and the cart frozen)."""
    logger.warning("Payment %s outcome unknown: %s", payment.pk, reason)
    Payment.objects.filter(pk=payment.pk, status__in=OPEN_ATTEMPT_STATUSES).update(
        status=PaymentAttemptStatus.UNKNOWN, error=reason, updated=timezone.now()
    )
    payment.refresh_from_db()


def _copy_state(cart: Cart, source: Cart) -> None:
    for name in _CART_STATE_FIELDS:
        setattr(cart, name, getattr(source, name))
