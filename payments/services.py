"""Paying a cart exactly once and giving money back, whatever the provider does.

    payment = payment_pay(cart=cart, payment_method="pm_card_visa", idempotency_key="order-42")
    refund = refund_create(cart=cart, amount=Decimal("5.00"), idempotency_key="refund-7")

`cart.services.cart_pay` and `Cart.pay` / `Cart.refund` are entry points to these. The rule
deciding what a failed provider call proves is `payments.provider.outcome_after_failure`;
every change of state is a function of `payments.transitions`.

Paying:

1. Take a provider slot (`payments.provider.provider_slot`): when this process already
   waits on as many provider calls as it allows, answer `payment_provider_busy` at once,
   before anything is opened (a request that needs no provider, such as a replay, is
   still answered).
2. Open an attempt (short transaction, cart row locked): the cart moves to `processing`
   and a `Payment` row records the amount and the idempotency key sent to the provider.
   A second request for the same cart sees it: while it is being sent, 409. Database
   constraints allow one open and one successful attempt per cart.
3. Call the provider with no transaction or lock held. Every charge carries the attempt's
   idempotency key, so the client's retries and any later resumption of the attempt can
   never charge twice.
4. Record the outcome: a charge or a decline settles the attempt and the cart. A failed
   call is judged by the rule: proven not charged (the attempt ends `error`, the cart is
   payable again, `payment_taken: false`), the ledger's record (the outcome), or unknown
   (the attempt stays open, `payment_taken: null`; the next pay with the same payment
   method resumes it with its own key and body, and `payments_reconcile` settles it).
5. A pay with *another* payment method while an attempt is open never sends the new
   card: the ledger is asked about the open attempt first; a record settles it (the cart
   is then paid, or payable), otherwise the answer is 409
   `earlier_payment_outcome_unknown` (or, once no request of it can land any more, the
   attempt is closed as not charged and the new card is charged).
6. A caller's `Idempotency-Key` is bound (`PaymentRequest`) to the attempt that answered
   it, so repeating the request replays that outcome.

Refunding: one `Refund` row per refund. Its amount is reserved on the charged attempt
(`transitions.refund_started`: a conditional UPDATE, backed by a check constraint), so the
refunds of a charge never exceed it however many race; the provider is called with a key
derived from the refund row; the same rule decides a failed call; the reservation is
released only when the refund is proven not made. A repeated `Idempotency-Key` replays
the refund, or resumes it while its outcome is unknown.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from datetime import timedelta
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

import utils
from cart.errors import CartPaidError, CartPaymentInProgressError
from cart.models import Cart
from cart.selectors import cart_get_locked
from common import money
from common.fields import check_fits_currency
from discount.errors import DiscountReservationExpiredError
from discount.services import discount_hold_for_payment
from payments import transitions
from payments.errors import (
    CartNotPaidError,
    EarlierPaymentOutcomeUnknownError,
    IdempotencyKeyReusedError,
    PaymentMethodRefusedError,
    PaymentOutcomeUnknownError,
    ProviderBadAnswerError,
    ProviderBusyError,
    ProviderTroubleError,
    ProviderUnavailableError,
    RefundExceedsCapturedError,
    RefundExceedsLineError,
    RefundInProgressError,
    RefundOutcomeUnknownError,
    RefundProviderBadAnswerError,
    RefundProviderUnavailableError,
)
from payments.models import (
    LINE_COUNTING_REFUND_STATUSES,
    ErrorCode,
    Payment,
    PaymentAttemptStatus,
    PaymentRequest,
    Refund,
    RefundLine,
    RefundReason,
    RefundStatus,
    check_request_key,
)
from payments.provider import (
    FIRST_CALL,
    EarlierRequests,
    outcome_after_failure,
    provider_api,
    provider_slot,
)
from payments.selectors import OPEN_ATTEMPT, payment_open_attempt, payment_request_for_key

logger = logging.getLogger(__name__)

_SETTLED = (PaymentAttemptStatus.SUCCESS, PaymentAttemptStatus.FAILED)


# -- paying --------------------------------------------------------------------------------


def payment_pay(
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
    `CartPaymentInProgressError` (409), `IdempotencyKeyReusedError` (409),
    `EarlierPaymentOutcomeUnknownError` (409), `PaymentMethodRefusedError` (400), or a
    `ProviderTroubleError` (502/503/504) whose `payment_taken` is false only when it is
    proven that nothing was charged.
    """
    check_request_key(idempotency_key)
    method = payment_method or ""
    with ExitStack() as stack:
        try:
            stack.enter_context(provider_slot())
        except ProviderBusyError as busy:
            return _pay_answer_without_provider(busy, cart, method, idempotency_key)
        return _pay(cart, method, idempotency_key, api or provider_api())


def _pay(cart: Cart, method: str, request_key: str | None, api: utils.PaymentAPI) -> Payment:
    payment, earlier = _open_attempt(cart, method, request_key, api)
    if not payment.is_open:  # a repeated request for an attempt that is already settled
        _copy_state(cart, Cart.objects.get(pk=cart.pk))
        return payment
    if payment.amount == 0:  # a fully discounted cart: nothing to charge
        return payment_record_result(cart=cart, payment=payment, result=None)
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
            result = _charge_despite(exc, cart, payment, api, earlier)
        except ProviderTroubleError:
            current = Payment.objects.get(pk=payment.pk)
            if current.status in _SETTLED:  # settled meanwhile (by reconcile): that stands
                _copy_state(cart, Cart.objects.get(pk=cart.pk))
                return current
            raise
    return payment_record_result(cart=cart, payment=payment, result=result)


def _pay_answer_without_provider(
    busy: ProviderBusyError, cart: Cart, method: str, request_key: str | None
) -> Payment:
    """What a pay request gets while the provider slots are taken: its replay, 409 for a
    paid cart, or `busy` (503): "nothing was charged" unless the cart has an attempt an
    earlier request left open, which this one would resume (then: not known yet)."""
    if request_key:
        request = (
            PaymentRequest.objects.select_related("payment")
            .filter(cart=cart, key=request_key)
            .first()
        )
        if request is not None and request.payment_method != method:
            raise IdempotencyKeyReusedError()
        if request is not None and request.payment.status in _SETTLED:
            _copy_state(cart, Cart.objects.get(pk=cart.pk))
            return request.payment
    if cart.is_paid:  # paid is final: a copy that says so is up to date
        raise CartPaidError()
    if OPEN_ATTEMPT.run(cart_id=cart.pk):
        raise busy.with_earlier_open() from None
    raise busy


def _open_attempt(
    cart: Cart, method: str, request_key: str | None, api: utils.PaymentAPI
) -> tuple[Payment, EarlierRequests]:
    """Open (or resume) the cart's attempt. Returns it and what the requests it sent in
    earlier calls may have done."""
    opened = _try_open(cart, method, request_key)
    if isinstance(opened, Payment):  # an open attempt with another payment method
        _settle_before_another_method(opened, api)
        opened = _try_open(cart, method, request_key)
        if isinstance(opened, Payment):  # opened again meanwhile by another request
            raise EarlierPaymentOutcomeUnknownError()
    return opened


def _try_open(
    cart: Cart, method: str, request_key: str | None
) -> tuple[Payment, EarlierRequests] | Payment:
    with transaction.atomic():
        locked = cart_get_locked(cart.pk)
        request = payment_request_for_key(cart=locked, key=request_key) if request_key else None
        earlier = request.payment if request else None
        if request is not None and request.payment_method != method:
            raise IdempotencyKeyReusedError()
        if earlier is not None and earlier.status in _SETTLED:
            return earlier, FIRST_CALL
        if locked.is_paid:
            raise CartPaidError()

        sent_before = FIRST_CALL
        open_attempt = payment_open_attempt(cart=locked)
        # A new charge of the total keeps the discount's use in this transaction, which
        # also makes the cart `processing` (an open attempt's cart is so already).
        discount_lost = open_attempt is None and not discount_hold_for_payment(cart=locked)
        if discount_lost:
            pass  # committed below: the discount left the cart, nothing is opened
        elif open_attempt is not None:
            if _being_sent(open_attempt):
                raise CartPaymentInProgressError()
            if open_attempt.payment_method != method:
                return open_attempt  # never send another card while this may have charged
            # Resume it, with its own key and body, so the provider can only charge it once.
            payment = open_attempt
            sent_before = EarlierRequests(sent=True, in_flight=may_still_land(open_attempt))
        elif earlier is not None:  # the same request again after "nothing was charged"
            if request.amount != locked.total:
                raise IdempotencyKeyReusedError()
            payment = earlier
        else:
            payment = Payment(
                cart=locked,
                amount=locked.total,
                currency=locked.currency,
                payment_method=method,
                idempotency_key=f"cart-{locked.pk}-{request_key or uuid.uuid4().hex}",
            )
        if not discount_lost:
            transitions.attempt_started(
                cart=locked,
                payment=payment,
                request_key=request_key if request is None else None,
                payment_method=method,
            )
    _copy_state(cart, locked)
    if discount_lost:
        raise DiscountReservationExpiredError()
    return payment, sent_before


def _settle_before_another_method(attempt: Payment, api: utils.PaymentAPI) -> None:
    """Before a pay with another card: what did the open attempt do? A ledger record
    settles it; nothing there closes it only when none of its requests can still land."""
    try:
        found = api.find_payment(idempotency_key=attempt.idempotency_key)
    except utils.PaymentProviderError as exc:
        logger.warning("Payment %s: ledger unreadable before another card: %s", attempt.pk, exc)
        raise EarlierPaymentOutcomeUnknownError() from exc
    if found is not None:
        payment_record_result(cart=attempt.cart, payment=attempt, result=found)
    elif may_still_land(attempt):
        raise EarlierPaymentOutcomeUnknownError()
    else:
        transitions.attempt_not_charged(
            payment=attempt, code=ErrorCode.NOT_IN_LEDGER, as_of=attempt.updated
        )


def _being_sent(payment: Payment) -> bool:
    """A `processing` attempt is being sent right now, unless it was abandoned (a crash)."""
    return payment.status == PaymentAttemptStatus.PROCESSING and not _stale(payment)


def may_still_land(row: Payment | Refund) -> bool:
    """Whether a request sent earlier for this attempt (or refund) may still be processed:
    until then an empty ledger proves nothing (pay, refund and reconcile ask this)."""
    if row.status in (PaymentAttemptStatus.PROCESSING, RefundStatus.PROCESSING):
        return not _stale(row)
    return row.in_flight_until is not None and row.in_flight_until > timezone.now()


def _stale(row: Payment | Refund) -> bool:
    stale_after = timedelta(seconds=settings.PAYMENT_ATTEMPT_STALE_SECONDS)
    return row.updated <= timezone.now() - stale_after


def _charge_despite(
    error: utils.PaymentProviderError,
    cart: Cart,
    payment: Payment,
    api: utils.PaymentAPI,
    earlier: EarlierRequests,
) -> utils.PaymentResult:
    """The provider call failed: return the charge the ledger has for the attempt, or raise
    after closing or holding the attempt as `outcome_after_failure` decides."""
    logger.warning("Payment %s: provider call failed: %s", payment.pk, error)
    verdict = outcome_after_failure(
        error,
        earlier=earlier,
        look_up=lambda: api.find_payment(idempotency_key=payment.idempotency_key),
    )
    if verdict.found is not None:
        logger.info("Payment %s: found in the provider's ledger", payment.pk)
        return verdict.found
    if verdict.closed is not None:
        current = transitions.attempt_not_charged(payment=payment, code=verdict.closed)
        _copy_state(cart, current.cart)
        raise _not_done_error(verdict.closed, error)
    transitions.attempt_held_open(
        payment=payment, code=verdict.unknown, in_flight=verdict.in_flight
    )
    raise PaymentOutcomeUnknownError() from error


def payment_record_result(
    *, cart: Cart, payment: Payment, result: utils.PaymentResult | None
) -> Payment:
    """Record the provider's answer (None: nothing to charge) on the attempt and update
    `cart` in place. An answer about another payment leaves the attempt open (504)."""
    try:
        if result is None or result.succeeded:
            current = transitions.attempt_charged(payment=payment, result=result)
        else:
            current = transitions.attempt_declined(payment=payment, result=result)
    except transitions.RecordMismatchError:
        logger.error("Payment %s: the provider's payment does not match: %s", payment.pk, result)
        # It proves nothing of this attempt, whose own request (this call's, one retried
        # after a timeout, or the one a lookup was made for) may still be processed: the
        # attempt keeps an in-flight window, so nothing closes it as "not charged" early.
        transitions.attempt_held_open(
            payment=payment, code=ErrorCode.ANSWER_MISMATCH, in_flight=True
        )
        raise PaymentOutcomeUnknownError() from None
    _copy_state(cart, current.cart)
    return current


def _not_done_error(code: ErrorCode, cause: Exception, *, subject: str = "payment"):
    """The answer for a call proven to have done nothing."""
    if code == ErrorCode.PAYMENT_METHOD_REFUSED:
        error = PaymentMethodRefusedError()
    elif code == ErrorCode.REFUND_REFUSED and getattr(cause, "code", None) == (
        "amount_exceeds_refundable"
    ):
        error = RefundExceedsCapturedError()
    elif code == ErrorCode.PROVIDER_UNAVAILABLE:
        refund = subject == "refund"
        error = RefundProviderUnavailableError() if refund else ProviderUnavailableError()
    else:
        refund = subject == "refund"
        error = RefundProviderBadAnswerError() if refund else ProviderBadAnswerError()
    error.__cause__ = cause
    return error


# -- refunding -------------------------------------------------------------------------------


def refund_create(
    *,
    cart: Cart,
    amount: Decimal | None = None,
    lines: Sequence[Mapping] | None = None,
    idempotency_key: str | None = None,
    api: utils.PaymentAPI | None = None,
) -> Refund:
    """Give back `amount` (default: everything not yet refunded) of what the cart was
    charged, and update `cart` in place (`amount_refunded`, `payment_status`).

    Or give back units of an itemized cart's lines: `lines` is `[{"line_id", "quantity"}]`
    and the amount is what those units were paid after their share of the discount
    (`refund_lines_amount`). Units of a line are never given back twice, however many
    refunds race (`RefundExceedsLineError`, 409).

    Returns the refund: `success`, or `failed` when the provider declined to make it.
    Raises `CartNotPaidError` or `RefundExceedsCapturedError` (409),
    `IdempotencyKeyReusedError` (409), a ValidationError (400) for an amount that is not
    positive or has more decimals than the currency, or a `ProviderTroubleError` whose
    `refund_made` is false only when it is proven that nothing was refunded.
    """
    check_request_key(idempotency_key)
    if amount is not None:
        _check_refund_amount(amount, cart.currency)
    if lines is not None and amount is not None:
        raise ValidationError(
            {
                "lines": ValidationError(
                    "Send an amount or lines, not both.", code="amount_and_lines"
                )
            }
        )
    with ExitStack() as stack:
        try:
            stack.enter_context(provider_slot(subject="refund"))
        except ProviderBusyError as busy:
            return _refund_answer_without_provider(busy, cart, amount, lines, idempotency_key)
        return refund_give_back(
            cart=cart,
            amount=amount,
            request_key=idempotency_key or "",
            reason=RefundReason.REQUESTED_BY_CUSTOMER,
            api=api or provider_api(),
            lines=lines,
        )


def refund_give_back(
    *,
    cart: Cart,
    amount: Decimal | None,
    request_key: str,
    reason: str,
    api: utils.PaymentAPI,
    payment: Payment | None = None,
    provider_key: str | None = None,
    lines: Sequence[Mapping] | None = None,
) -> Refund:
    """The refund flow itself (no provider slot): `refund_create` for the API and the
    admin, `payments.reconcile` for giving back a duplicate charge (`payment`, with a
    `provider_key` derived from that charge)."""
    refund, earlier = _open_refund(
        cart, amount, request_key, reason, payment, provider_key, lines=lines
    )
    if not refund.is_open:  # a repeated request for a refund that is already settled
        _copy_state(cart, Cart.objects.get(pk=cart.pk))
        return refund
    try:
        result = api.request_refund(
            payment_id=refund.payment.provider_payment_id,
            amount=refund.amount,
            currency=refund.currency,
            idempotency_key=refund.idempotency_key,
            reason=refund.reason,
        )
    except utils.PaymentProviderError as exc:
        result = _refund_despite(exc, refund, api, earlier)
    refund = refund_record_result(refund=refund, result=result)
    _copy_state(cart, refund.cart)  # the cart the transition locked and saved
    return refund


def _check_refund_amount(amount: Decimal, currency: str) -> None:
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount <= 0:
        raise ValidationError(
            {"amount": ValidationError("Ensure this value is greater than 0.", code="min_value")}
        )
    try:
        check_fits_currency(amount, currency)
    except ValidationError as exc:
        raise ValidationError({"amount": exc}) from None


def _refund_answer_without_provider(
    busy: ProviderBusyError,
    cart: Cart,
    amount: Decimal | None,
    lines: Sequence[Mapping] | None,
    request_key: str | None,
) -> Refund:
    """What a refund request gets while the provider slots are taken: its key's refund
    replayed, 409 for another body under the key, or `busy` (503): "nothing was
    refunded" unless the key's refund is still open (then: not known yet)."""
    if not request_key:
        raise busy
    refund = Refund.objects.filter(cart=cart, request_key=request_key).first()
    if refund is None:
        raise busy
    if not _asks_for(refund, amount, lines):  # as when not busy: another body is a 409
        raise IdempotencyKeyReusedError()
    if refund.is_open:
        raise busy.with_earlier_open() from None
    if not _replayable(refund):
        raise busy  # not made, to be tried again: that needs the provider
    _copy_state(cart, Cart.objects.get(pk=cart.pk))
    return refund


def _replayable(refund: Refund) -> bool:
    """A refund whose request, repeated, gets its outcome back: made, or declined by the
    provider. One proven not made for another reason is tried again."""
    return refund.status == RefundStatus.SUCCESS or refund.error_code == ErrorCode.REFUND_DECLINED


def _open_refund(
    cart: Cart,
    amount: Decimal | None,
    request_key: str,
    reason: str,
    payment: Payment | None,
    provider_key: str | None,
    lines: Sequence[Mapping] | None = None,
) -> tuple[Refund, EarlierRequests]:
    """Reserve and record a refund (or find the one the key names). Returns it and what
    the requests it sent in earlier calls may have done."""
    with transaction.atomic():
        locked = Cart.objects.select_for_update().get(pk=cart.pk)
        if request_key:
            earlier = locked.refunds.select_related("payment").filter(request_key=request_key)
            refund = earlier.first()
            if refund is not None:
                if not _asks_for(refund, amount, lines):
                    raise IdempotencyKeyReusedError()
                if refund.is_open:
                    if refund.status == RefundStatus.PROCESSING and not _stale(refund):
                        raise RefundInProgressError()
                    earlier = EarlierRequests(sent=True, in_flight=may_still_land(refund))
                    transitions.refund_resumed(refund=refund)
                    return refund, earlier
                if _replayable(refund):
                    return refund, FIRST_CALL  # the same request again: its outcome
                # Proven not made: the same request again tries it again, same key, if
                # what it gives back is still left (its units were freed meanwhile).
                _check_lines_still_left(locked, refund)
                if not transitions.refund_reopened(refund=refund):
                    left = refund.payment.amount - refund.payment.amount_refunded
                    raise RefundExceedsCapturedError(_only_left(left, refund.currency))
                return refund, FIRST_CALL
        if payment is None:
            if not locked.is_paid:
                raise CartNotPaidError()
            payment = locked.payments.get(status=PaymentAttemptStatus.SUCCESS)
        else:
            payment = Payment.objects.get(pk=payment.pk)  # what it holds now, under the lock
        left = payment.amount - payment.amount_refunded
        wanted = left if amount is None else amount
        given_back = []
        if lines is not None:
            wanted, given_back = refund_lines_amount(cart=locked, lines=lines)
        refund = None
        if wanted > 0 and payment.provider_payment_id:
            refund = transitions.refund_started(
                cart=locked,
                payment=payment,
                amount=wanted,
                reason=reason,
                request_key=request_key,
                key=provider_key,
            )
        if refund is None:
            raise RefundExceedsCapturedError(_only_left(left, payment.currency))
        for row in given_back:
            row.refund = refund
        RefundLine.objects.bulk_create(given_back)
    refund.payment = payment
    return refund, FIRST_CALL


def _check_lines_still_left(cart: Cart, refund: Refund) -> None:
    """Before a refund by line proven not made is tried again: its units were freed when
    it was closed, and other refunds may have given them back since. It takes them again
    only if they are left, and still count for what it reserves and sends (a unit counts
    for another amount once it is a line's last): otherwise `RefundExceedsLineError`."""
    given = list(refund.lines.values("line_id", "quantity", "amount"))
    if not given:
        return
    amount, rows = refund_lines_amount(cart=cart, lines=given)  # raises if not left
    counted = {row.line_id: row.amount for row in rows}
    if amount != refund.amount or any(counted[row["line_id"]] != row["amount"] for row in given):
        raise RefundExceedsLineError(
            "The units this refund asked for now count for "
            f"{money.format_amount(amount, refund.currency)}, not the "
            f"{money.format_amount(refund.amount, refund.currency)} it was made for: other "
            "refunds gave back units of their lines since. Ask again with a new "
            "Idempotency-Key."
        )


def _asks_for(refund: Refund, amount: Decimal | None, lines: Sequence[Mapping] | None) -> bool:
    """Whether a request repeating `refund`'s key asks for what it was made for: its
    amount, or the same units of the same lines (a key with another body is a 409)."""
    if amount is not None and amount != refund.amount:
        return False
    given = dict(refund.lines.values_list("line_id").annotate(units=Sum("quantity")).order_by())
    if lines is None and not given:
        return True
    return _units_by_line(lines or ()) == given


def _units_by_line(lines: Sequence[Mapping]) -> dict[int, int]:
    units: dict[int, int] = {}
    for item in lines:
        units[item["line_id"]] = units.get(item["line_id"], 0) + item["quantity"]
    return units


def refund_lines_amount(*, cart: Cart, lines: Sequence[Mapping]) -> tuple[Decimal, list]:
    """What giving back these units of `cart`'s lines (its row locked by the caller)
    amounts to, and the unsaved `RefundLine`s recording them.

    The units of a line were paid its `total` (its amount after its share of the
    discount); the first n of its q units count for `total × n / q` rounded down to the
    minor unit, the last ones for the rest, so a line refunded unit by unit gives back
    exactly its total. Units given back or being given back (refunds made or open)
    are not left; asking for more is `RefundExceedsLineError`.
    """
    if not cart.itemized:
        raise ValidationError(
            {"lines": ValidationError("This cart has no lines.", code="cart_not_itemized")}
        )
    by_id = {line.pk: line for line in cart.lines.all()}
    for index, item in enumerate(lines):
        if item["line_id"] not in by_id:
            raise ValidationError(
                {f"lines.{index}.line_id": ValidationError("No such line.", code="not_found")}
            )
    asked = _units_by_line(lines)
    done = dict(
        RefundLine.objects.filter(
            line__cart=cart, refund__status__in=LINE_COUNTING_REFUND_STATUSES
        )
        .values_list("line_id")
        .annotate(units=Sum("quantity"))
        .order_by()
    )
    total, rows = Decimal(0), []
    for line_id, quantity in asked.items():
        line, before = by_id[line_id], done.get(line_id, 0)
        if before + quantity > line.quantity:
            left = line.quantity - before
            raise RefundExceedsLineError(
                f"Only {left} of the {line.quantity} units of line {line_id} ({line.sku}) "
                "are left to refund."
            )
        amount = _paid_for(line, before + quantity, cart.currency) - _paid_for(
            line, before, cart.currency
        )
        total += amount
        rows.append(RefundLine(line=line, quantity=quantity, amount=amount))
    return total, rows


def _paid_for(line, units: int, currency: str) -> Decimal:
    if units >= line.quantity:
        return line.total
    return money.round_down(line.total * units / line.quantity, currency)


def _only_left(left: Decimal, currency: str) -> str:
    return f"Only {money.format_amount(left, currency)} of what was charged is left to refund."


def _refund_despite(
    error: utils.PaymentProviderError,
    refund: Refund,
    api: utils.PaymentAPI,
    earlier: EarlierRequests,
) -> utils.RefundResult:
    logger.warning("Refund %s: provider call failed: %s", refund.pk, error)
    verdict = outcome_after_failure(
        error,
        earlier=earlier,
        look_up=lambda: api.find_refund(idempotency_key=refund.idempotency_key),
    )
    if verdict.found is not None:
        logger.info("Refund %s: found in the provider's ledger", refund.pk)
        return verdict.found
    if verdict.closed is not None:
        transitions.refund_not_made(refund=refund, code=verdict.closed)
        raise _not_done_error(verdict.closed, error, subject="refund")
    transitions.refund_held_open(refund=refund, code=verdict.unknown, in_flight=verdict.in_flight)
    raise RefundOutcomeUnknownError() from error


def refund_record_result(*, refund: Refund, result: utils.RefundResult) -> Refund:
    """Record the provider's answer on the refund (and the cart, when it was made). An
    answer about another refund leaves it open (504)."""
    if not refund.is_described_by(result):
        logger.error("Refund %s: the provider's refund does not match: %s", refund.pk, result)
        # As for a payment: a request of this refund may still be processed.
        transitions.refund_held_open(refund=refund, code=ErrorCode.ANSWER_MISMATCH, in_flight=True)
        raise RefundOutcomeUnknownError()
    if result.succeeded:
        return transitions.refund_made(refund=refund, result=result)
    return transitions.refund_not_made(refund=refund, code=ErrorCode.REFUND_DECLINED)


def _copy_state(cart: Cart, source: Cart) -> None:
    """Bring the caller's `cart` up to date with a fresher copy: its payment state, and its
    total and discount too, which a discount applied while the request began may have
    changed (the cart row was locked, and the total charged read, after that)."""
    for field in Cart._meta.concrete_fields:
        setattr(cart, field.attname, getattr(source, field.attname))
    # Its attempts and refunds as the transaction that settled it left them, if it did
    # (`cart_known_history`, in `transitions`); any others are older than this state.
    cart._prefetched_objects_cache = dict(getattr(source, "_prefetched_objects_cache", {}))
