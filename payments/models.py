"""The ledger of a cart's money: every attempt to charge it, the pay requests each
attempt answered, and every refund.

    payment = Payment.objects.get(idempotency_key="cart-…-order-42")
    payment.is_open                 # processing or unknown: the provider may still charge it
    payment.refunds.all()           # what was given back of it

`Payment.amount_refunded` is what refunds of the attempt hold: made, or not yet proven not
made. A refund reserves its amount there with a conditional UPDATE before anything is
sent, and a check constraint keeps it within `amount`, so however many refunds race the
shop can never give back more than it took. A reservation is released only when the
refund is proven not made.

`error_code` and `error` are what clients see: a stable code and a plain message from
`ATTEMPT_MESSAGES` / `REFUND_MESSAGES`. Provider internals (hosts, URLs, exception text)
go to the logs only.

The attempt tables keep the names they had when these models lived in the `cart` app
(`cart_payment`, `cart_paymentrequest`): moving them copied no data. Every state change
is a function of `payments.transitions`; the flows are in `payments.services`.
"""

from __future__ import annotations

import re
import uuid
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q

from common import money
from common.compiled import CompiledSaves
from common.fields import AmountField
from observability.context import MAX_LENGTH as REQUEST_ID_LENGTH
from observability.context import current_request_id


class PaymentAttemptStatus(models.TextChoices):
    """One attempt to charge a cart, as the shop knows it."""

    PROCESSING = "processing", "Processing: being sent to the provider"
    UNKNOWN = "unknown", "Unknown: sent, outcome not known yet"
    SUCCESS = "success", "Success: charged"
    FAILED = "failed", "Failed: declined by the provider"
    ERROR = "error", "Error: the provider could not be used, nothing charged"
    DUPLICATE = "duplicate", "Duplicate: a charge the cart does not owe, given back"


OPEN_ATTEMPT_STATUSES = (PaymentAttemptStatus.PROCESSING, PaymentAttemptStatus.UNKNOWN)


class ErrorCode(models.TextChoices):
    """Why an attempt or a refund did not simply succeed: stable codes for clients."""

    PROVIDER_UNAVAILABLE = "provider_unavailable"
    PROVIDER_ERROR = "provider_error"
    PAYMENT_METHOD_REFUSED = "payment_method_refused"
    REFUND_REFUSED = "refund_refused"
    REFUND_DECLINED = "refund_declined"
    OUTCOME_UNKNOWN = "outcome_unknown"
    ANSWER_MISMATCH = "answer_mismatch"
    NOT_IN_LEDGER = "not_in_ledger"
    DUPLICATE_CHARGE = "duplicate_charge"
    CART_CHANGED = "cart_changed"


# The plain message shown with each code, the only error text clients ever see.
ATTEMPT_MESSAGES: dict[str, str] = {
    ErrorCode.PROVIDER_UNAVAILABLE: "The payment provider could not be used. Nothing was charged.",
    ErrorCode.PROVIDER_ERROR: "The payment provider refused the request. Nothing was charged.",
    ErrorCode.PAYMENT_METHOD_REFUSED: "The payment provider does not accept this payment "
    "method. Nothing was charged.",
    ErrorCode.OUTCOME_UNKNOWN: "The payment provider has not confirmed whether it charged. "
    "The outcome is being checked; the cart cannot change until it is known.",
    ErrorCode.ANSWER_MISMATCH: "The payment provider's answer does not match this attempt. "
    "The outcome is being checked.",
    ErrorCode.NOT_IN_LEDGER: "The payment provider has no record of this attempt. Nothing "
    "was charged.",
    ErrorCode.DUPLICATE_CHARGE: "Charged after another attempt had paid the cart: the "
    "charge is given back automatically.",
    ErrorCode.CART_CHANGED: "Charged after this attempt was closed, for another total than "
    "the cart has now: the charge is given back automatically; the cart is paid as it stands.",
}
REFUND_MESSAGES: dict[str, str] = {
    ErrorCode.PROVIDER_UNAVAILABLE: "The payment provider could not be used. Nothing was "
    "refunded.",
    ErrorCode.PROVIDER_ERROR: "The payment provider refused the request. Nothing was refunded.",
    ErrorCode.REFUND_REFUSED: "The payment provider refused the refund. Nothing was refunded.",
    ErrorCode.REFUND_DECLINED: "The payment provider could not make the refund. Nothing "
    "was refunded.",
    ErrorCode.OUTCOME_UNKNOWN: "The payment provider has not confirmed whether it refunded. "
    "The outcome is being checked.",
    ErrorCode.ANSWER_MISMATCH: "The payment provider's answer does not match this refund. "
    "The outcome is being checked.",
    ErrorCode.NOT_IN_LEDGER: "The payment provider has no record of this refund. Nothing "
    "was refunded.",
}


class Payment(CompiledSaves, models.Model):
    """The ledger: every attempt to charge a cart and what the provider made of it.

    `idempotency_key` is the key sent to the provider; retrying or resuming an attempt
    reuses it, so the provider charges an attempt at most once. `in_flight_until`: a
    request of the attempt whose answer never came may still be processed until then.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    cart = models.ForeignKey("cart.Cart", on_delete=models.PROTECT, related_name="payments")
    amount = AmountField()
    currency = models.CharField(max_length=3)
    status = models.CharField(
        max_length=16, choices=PaymentAttemptStatus, default=PaymentAttemptStatus.PROCESSING
    )
    payment_method = models.CharField(max_length=64, blank=True, default="")
    idempotency_key = models.CharField(max_length=255, unique=True)
    provider_payment_id = models.CharField(max_length=64, blank=True, default="")
    decline_code = models.CharField(max_length=64, blank=True, default="")
    error_code = models.CharField(max_length=32, blank=True, default="", choices=ErrorCode)
    error = models.TextField(
        blank=True, default="", help_text="The plain message of error_code (see the logs)."
    )
    amount_refunded = AmountField(
        default=Decimal("0"), help_text="Held by refunds: made, or not proven not made."
    )
    in_flight_until = models.DateTimeField(null=True, blank=True)
    request_id = models.CharField(
        max_length=REQUEST_ID_LENGTH,
        blank=True,
        default=current_request_id,
        db_default="",  # rows the previous release inserts, during a rollout
        help_text="X-Request-ID of the request that opened it: find it in the logs.",
    )
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    updated = models.DateTimeField(auto_now=True)
    completed = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "cart_payment"
        ordering = ["created"]
        indexes = [models.Index(fields=["status", "updated"], name="payment_status_updated")]
        constraints = [
            # At most one attempt in flight per cart, and at most one that charged.
            models.UniqueConstraint(
                fields=["cart"],
                condition=Q(status__in=OPEN_ATTEMPT_STATUSES),
                name="payment_one_open_attempt_per_cart",
            ),
            models.UniqueConstraint(
                fields=["cart"],
                condition=Q(status=PaymentAttemptStatus.SUCCESS),
                name="payment_one_success_per_cart",
            ),
            models.CheckConstraint(condition=Q(amount__gte=0), name="payment_amount_not_negative"),
            models.CheckConstraint(
                condition=Q(amount_refunded__gte=0) & Q(amount_refunded__lte=F("amount")),
                name="payment_refunds_within_amount",
            ),
        ]

    def __str__(self) -> str:
        amount = money.format_amount(self.amount, self.currency)
        return f"{amount} for cart {self.cart_id}: {self.status}"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_ATTEMPT_STATUSES

    def is_described_by(self, result) -> bool:
        """Whether a record of the provider (`utils.PaymentResult`) is this attempt's own
        charge: the cart, amount and currency it was sent with. A record under its key
        that says otherwise is about another payment, and proves nothing of this one."""
        return (
            result.cart_id == str(self.cart_id)
            and result.amount == self.amount
            and result.currency == self.currency
        )


REQUEST_KEY_MAX_LENGTH = 200
REQUEST_KEY_PATTERN = rf"^[!-~](?:[ -~]{{0,{REQUEST_KEY_MAX_LENGTH - 2}}}[!-~])?$"
REQUEST_KEY_MESSAGE = (
    f"Use 1 to {REQUEST_KEY_MAX_LENGTH} printable ASCII characters, no space at either end."
)


def check_request_key(key: str | None) -> str | None:
    """A client's `Idempotency-Key` for a pay or a refund: None (no key), or 1 to 200
    printable ASCII characters with no space at either end (a pay's key ends the key
    sent to the provider, which refuses one ending in a space). Raises a ValidationError
    naming `Idempotency-Key`, before anything is written, whatever the door."""
    if key is None:
        return None
    if not isinstance(key, str) or not re.fullmatch(REQUEST_KEY_PATTERN, key):
        raise ValidationError(
            {"Idempotency-Key": ValidationError(REQUEST_KEY_MESSAGE, code="invalid")}
        )
    return key


class PaymentRequest(CompiledSaves, models.Model):
    """A pay request made with an `Idempotency-Key`, and the attempt that answered it.

    Repeating the request with the key returns that attempt's outcome. Several requests
    can share one attempt: a request that finds an attempt left open resumes it, and its
    key then stands for that attempt too.
    """

    # No index of its own: the unique (cart, key) index serves lookups by cart too, and
    # every pay with a key would keep a second one up to date for nothing.
    cart = models.ForeignKey(
        "cart.Cart", on_delete=models.PROTECT, related_name="payment_requests", db_index=False
    )
    key = models.CharField(max_length=REQUEST_KEY_MAX_LENGTH)
    payment_method = models.CharField(max_length=64, blank=True, default="")
    amount = AmountField(help_text="The cart total when the key was first used.")
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="requests")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "cart_paymentrequest"
        constraints = [
            models.UniqueConstraint(fields=["cart", "key"], name="payment_request_key_per_cart")
        ]

    def __str__(self) -> str:
        return f"{self.key} -> {self.payment_id}"


class RefundStatus(models.TextChoices):
    PROCESSING = "processing", "Processing: being sent to the provider"
    UNKNOWN = "unknown", "Unknown: sent, outcome not known yet"
    SUCCESS = "success", "Success: refunded"
    FAILED = "failed", "Failed: the provider refused or declined it, nothing refunded"
    ERROR = "error", "Error: the provider could not be used, nothing refunded"


OPEN_REFUND_STATUSES = (RefundStatus.PROCESSING, RefundStatus.UNKNOWN)


class RefundReason(models.TextChoices):
    REQUESTED_BY_CUSTOMER = "requested_by_customer", "Requested by the shop"
    DUPLICATE_CHARGE = "duplicate_charge", "Duplicate charge, given back automatically"


class Refund(CompiledSaves, models.Model):
    """Money given back of one charged attempt.

    `idempotency_key` is the key sent to the provider, derived from this row (or, for a
    duplicate charge given back by reconcile, from the charge), so resuming a refund can
    never refund twice. `request_key` is the caller's `Idempotency-Key`, if any.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="refunds")
    cart = models.ForeignKey("cart.Cart", on_delete=models.PROTECT, related_name="refunds")
    amount = AmountField()
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=16, choices=RefundStatus, default=RefundStatus.PROCESSING)
    reason = models.CharField(
        max_length=32, choices=RefundReason, default=RefundReason.REQUESTED_BY_CUSTOMER
    )
    idempotency_key = models.CharField(max_length=255, unique=True)
    request_key = models.CharField(max_length=REQUEST_KEY_MAX_LENGTH, blank=True, default="")
    provider_refund_id = models.CharField(max_length=64, blank=True, default="")
    error_code = models.CharField(max_length=32, blank=True, default="", choices=ErrorCode)
    error = models.TextField(blank=True, default="")
    in_flight_until = models.DateTimeField(null=True, blank=True)
    request_id = models.CharField(
        max_length=REQUEST_ID_LENGTH,
        blank=True,
        default=current_request_id,
        db_default="",  # rows the previous release inserts, during a rollout
        help_text="X-Request-ID of the request that opened it: find it in the logs.",
    )
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    updated = models.DateTimeField(auto_now=True)
    completed = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created"]
        indexes = [models.Index(fields=["status", "updated"], name="refund_status_updated")]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="refund_amount_positive"),
            models.UniqueConstraint(
                fields=["cart", "request_key"],
                condition=~Q(request_key=""),
                name="refund_request_key_per_cart",
            ),
        ]

    def __str__(self) -> str:
        amount = money.format_amount(self.amount, self.currency)
        return f"{amount} back of {self.payment_id}: {self.status}"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_REFUND_STATUSES

    def is_described_by(self, result) -> bool:
        """Whether a record of the provider (`utils.RefundResult`) is this refund: of its
        payment's charge, for its amount and currency."""
        return (
            result.payment_id == self.payment.provider_payment_id
            and result.amount == self.amount
            and result.currency == self.currency
        )


# Refunds whose line units count as given back: made, or possibly being made.
LINE_COUNTING_REFUND_STATUSES = (*OPEN_REFUND_STATUSES, RefundStatus.SUCCESS)


class RefundLine(CompiledSaves, models.Model):
    """Units of one cart line that a refund gives back, and what they were paid (after
    their share of the discount)."""

    refund = models.ForeignKey(Refund, on_delete=models.CASCADE, related_name="lines")
    line = models.ForeignKey("cart.CartLine", on_delete=models.PROTECT, related_name="refunds")
    quantity = models.PositiveIntegerField()
    amount = AmountField()

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gte=1), name="refundline_quantity_positive"
            )
        ]

    def __str__(self) -> str:
        return f"{self.quantity} of line {self.line_id}"
