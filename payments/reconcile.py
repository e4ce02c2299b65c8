"""Settling from the provider's ledgers what the request path could not, and giving back
what was taken twice. `python manage.py reconcile_payments` runs it (from cron).

    counts = payments_reconcile(older_than=timedelta(minutes=1))

In order, each step idempotent (running it twice changes nothing more):

1. Open attempts untouched for `older_than`: a ledger record settles them; an empty
   ledger closes them as not charged, unless a request of theirs may still land.
2. Attempts closed as "nothing charged" within `recheck_closed_within` are looked up
   again: a charge found is recorded (the cart is paid by it, or, if another attempt
   paid the cart, it is a duplicate charge).
3. Carts paid within that window: any successful charge of the cart in the provider's
   ledger that no attempt recorded as its own is a duplicate charge, recorded as one.
4. Every duplicate charge not yet given back is refunded through the refund flow
   (`payments.services.refund_give_back`), reason `duplicate_charge`, with a provider key
   derived from the charge, so a rerun resumes instead of refunding twice.
5. Open refunds untouched for `older_than`, and refunds closed as not made within the
   window, are settled from the refund ledger the same way.

A ledger record under one of our keys that is not what we sent (another cart, amount,
currency, or for a refund another charge) is booked by no step: its row stays as it was
(an open one keeps its in-flight window) and it is counted in `answer_mismatches`, for a
person to check with the provider.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError
from django.db.models import F
from django.utils import timezone

import utils
from common.errors import ApplicationError
from payments import transitions
from payments.models import (
    OPEN_ATTEMPT_STATUSES,
    OPEN_REFUND_STATUSES,
    ErrorCode,
    Payment,
    PaymentAttemptStatus,
    Refund,
    RefundReason,
    RefundStatus,
)
from payments.provider import provider_api
from payments.services import (
    may_still_land,
    payment_record_result,
    refund_give_back,
    refund_record_result,
)

logger = logging.getLogger(__name__)

COUNTS = (
    "success",
    "failed",
    "not_charged",
    "still_unknown",
    "answer_mismatches",
    "late_charges",
    "duplicate_charges",
    "duplicates_refunded",
    "refunds_made",
    "refunds_not_made",
    "refunds_unknown",
)
_AS = {
    PaymentAttemptStatus.SUCCESS: "success",
    PaymentAttemptStatus.FAILED: "failed",
    PaymentAttemptStatus.ERROR: "not_charged",
    PaymentAttemptStatus.DUPLICATE: "duplicate_charges",
    PaymentAttemptStatus.PROCESSING: "still_unknown",
    PaymentAttemptStatus.UNKNOWN: "still_unknown",
}


def payments_reconcile(
    *,
    older_than: timedelta | None = None,
    recheck_closed_within: timedelta = timedelta(hours=1),
    api: utils.PaymentAPI | None = None,
) -> dict[str, int]:
    """Run the steps of the module docstring; returns how many rows each outcome had.

    Only rows untouched for `older_than` (default: settings.PAYMENT_ATTEMPT_STALE_SECONDS)
    are settled from an empty ledger: by then no request of theirs can still be on its way.
    """
    if older_than is None:
        older_than = timedelta(seconds=settings.PAYMENT_ATTEMPT_STALE_SECONDS)
    api = api or provider_api()
    counts = dict.fromkeys(COUNTS, 0)
    now = timezone.now()
    since = now - recheck_closed_within
    _settle_open_attempts(api, counts, now - older_than, now)
    _recheck_closed_attempts(api, counts, since, now)
    _find_duplicate_charges(api, counts, since, now)
    _give_back_duplicates(api, counts)
    _settle_refunds(api, counts, now - older_than, since, now)
    return counts


def _settle_open_attempts(api, counts, untouched_since, now) -> None:
    stale = Payment.objects.filter(
        status__in=OPEN_ATTEMPT_STATUSES, updated__lt=untouched_since
    ).select_related("cart")
    for payment in stale:
        found = None
        try:
            found = api.find_payment(idempotency_key=payment.idempotency_key)
            if found is not None:
                settled = payment_record_result(cart=payment.cart, payment=payment, result=found)
            elif may_still_land(payment):
                # Being sent right now, or a lost request may still be processed: whatever
                # `older_than` the caller chose, an empty ledger proves nothing yet.
                settled = payment
            else:
                settled = transitions.attempt_not_charged(
                    payment=payment, code=ErrorCode.NOT_IN_LEDGER, as_of=payment.updated
                )
        except (utils.PaymentProviderError, ApplicationError) as exc:
            logger.warning("Reconcile: attempt %s still unknown: %s", payment.pk, exc)
            counts["still_unknown"] += 1
            if found is not None and not payment.is_described_by(found):
                counts["answer_mismatches"] += 1
            continue
        counts[_AS[settled.status]] += 1


def _recheck_closed_attempts(api, counts, since, now) -> None:
    closed = Payment.objects.filter(
        status=PaymentAttemptStatus.ERROR, completed__gte=since, completed__lt=now
    )
    for payment in closed:
        try:
            found = api.find_payment(idempotency_key=payment.idempotency_key)
        except utils.PaymentProviderError as exc:
            logger.warning("Reconcile: cannot re-check closed attempt %s: %s", payment.pk, exc)
            continue
        if found is not None and found.succeeded:
            _record_late(counts, payment, found)


def _record_late(counts, payment: Payment, charge: utils.PaymentResult) -> None:
    """A charge found for an attempt closed as "nothing charged" (or one that did not
    record it): recorded, unless the record is about another payment, which no attempt
    can be booked with: it is counted and logged for a person to look at."""
    try:
        _count_late(counts, transitions.attempt_charged(payment=payment, result=charge))
    except transitions.RecordMismatchError:
        logger.error("Reconcile: the provider's record for attempt %s is not its own", payment.pk)
        counts["answer_mismatches"] += 1


def _count_late(counts, payment: Payment) -> None:
    if payment.status == PaymentAttemptStatus.DUPLICATE:
        counts["duplicate_charges"] += 1
    elif payment.status == PaymentAttemptStatus.SUCCESS:
        counts["late_charges"] += 1


def _find_duplicate_charges(api, counts, since, now) -> None:
    paid = Payment.objects.filter(
        status=PaymentAttemptStatus.SUCCESS, completed__gte=since, completed__lt=now, amount__gt=0
    ).select_related("cart")
    for success in paid:
        try:
            charges = [p for p in api.list_payments(cart_id=success.cart_id) if p.succeeded]
        except utils.PaymentProviderError as exc:
            logger.warning(
                "Reconcile: cannot list the charges of cart %s: %s", success.cart_id, exc
            )
            continue
        recorded = set(
            success.cart.payments.exclude(provider_payment_id="").values_list(
                "provider_payment_id", flat=True
            )
        )
        for charge in charges:
            if charge.payment_id in recorded:
                continue
            attempt = Payment.objects.filter(
                cart=success.cart, idempotency_key=charge.idempotency_key or ""
            ).first()
            if attempt is not None:  # an attempt of ours that did not record its charge
                _record_late(counts, attempt, charge)
            else:
                transitions.duplicate_charge_recorded(cart=success.cart, result=charge)
                counts["duplicate_charges"] += 1


def _give_back_duplicates(api, counts) -> None:
    owed = Payment.objects.filter(
        status=PaymentAttemptStatus.DUPLICATE, amount_refunded__lt=F("amount")
    ).select_related("cart")
    for duplicate in owed:
        try:
            refund = payment_give_back_duplicate(duplicate=duplicate, api=api)
        except ApplicationError as exc:
            logger.warning("Reconcile: duplicate %s not given back yet: %s", duplicate.pk, exc)
            counts["refunds_unknown"] += 1
            continue
        if refund is not None and refund.status == RefundStatus.SUCCESS:
            counts["duplicates_refunded"] += 1


def payment_give_back_duplicate(*, duplicate: Payment, api: utils.PaymentAPI) -> Refund | None:
    """Refund what is left of a duplicate charge through the refund flow, reason
    `duplicate_charge`, with a provider key derived from the charge (a rerun resumes
    instead of refunding twice). None: nothing owed, or a refund of it is still open
    (step 5 settles that one). Raises the refund flow's `ApplicationError`s."""
    duplicate = Payment.objects.select_related("cart").get(pk=duplicate.pk)
    if duplicate.status != PaymentAttemptStatus.DUPLICATE:
        return None
    if duplicate.amount_refunded >= duplicate.amount:
        return None
    if duplicate.refunds.filter(status__in=OPEN_REFUND_STATUSES).exists():
        return None
    number = duplicate.refunds.count() + 1
    try:
        return refund_give_back(
            cart=duplicate.cart,
            amount=None,
            request_key="",
            reason=RefundReason.DUPLICATE_CHARGE,
            api=api,
            payment=duplicate,
            provider_key=give_back_key(duplicate.provider_payment_id, number),
        )
    except IntegrityError:
        # Another caller (the give-back task, another reconcile run) took this number
        # since it was counted, before anything was sent: theirs stands, the next run
        # looks again.
        logger.info("Duplicate %s: its refund %s is another caller's", duplicate.pk, number)
        return None


def give_back_key(provider_payment_id: str, number: int) -> str:
    """The provider's key for a duplicate charge's `number`th give-back. Made from the
    charge's id, not from our row of it: the provider answers two give-backs of one
    charge under one number as one, even from two rows. An id that is not text a key may
    hold (printable ASCII without surrounding spaces: the provider's client refuses any
    other, and the give-back was never sent) goes in as its SHA-256."""
    key = f"dup-{provider_payment_id}-{number}"
    if utils.is_key_text(provider_payment_id):
        return key
    digest = hashlib.sha256(provider_payment_id.encode("utf-8", "surrogatepass")).hexdigest()
    return f"dup-sha256-{digest}-{number}"


def _settle_refunds(api, counts, untouched_since, since, now) -> None:
    stale = Refund.objects.filter(
        status__in=OPEN_REFUND_STATUSES, updated__lt=untouched_since
    ).select_related("payment")
    closed = Refund.objects.filter(
        status=RefundStatus.ERROR, completed__gte=since, completed__lt=now
    ).select_related("payment")
    for refund in [*stale, *closed]:
        found = None
        try:
            found = api.find_refund(idempotency_key=refund.idempotency_key)
            if found is not None:
                settled = refund_record_result(refund=refund, result=found)
            elif not refund.is_open:
                continue  # closed, and still nothing there
            elif may_still_land(refund):
                settled = refund
            else:
                settled = transitions.refund_not_made(
                    refund=refund, code=ErrorCode.NOT_IN_LEDGER, as_of=refund.updated
                )
        except (utils.PaymentProviderError, ApplicationError) as exc:
            logger.warning("Reconcile: refund %s still unknown: %s", refund.pk, exc)
            counts["refunds_unknown"] += 1
            if found is not None and not refund.is_described_by(found):
                counts["answer_mismatches"] += 1
            continue
        if settled.status == RefundStatus.SUCCESS:
            counts["refunds_made"] += 1
            if settled.reason == RefundReason.DUPLICATE_CHARGE:
                counts["duplicates_refunded"] += 1
        elif settled.is_open:
            counts["refunds_unknown"] += 1
        elif refund.is_open:
            counts["refunds_not_made"] += 1
