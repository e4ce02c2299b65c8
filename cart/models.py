"""Carts (what a storefront asks the shop to charge, with at most one discount) and the
ledger of their payment attempts.

    cart = Cart(total=20, currency="USD", items_number=5)
    cart.save()                      # subtotal = 20, payment_status = "pending"
    cart.apply_discount(discount)    # total = subtotal - amount_discounted, never below 0
    cart.pay()                       # payment_status "success" or "failed"

`subtotal` is the amount before any discount and never changes; `total` is what will be
charged. `total_discounted` is the tutorial's name for that same payable total. The
tutorial's model methods stay as entry points; the flows they start live in
`cart.services`.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q

from cart.errors import (
    CartNotDeletableError,
    CartPaidError,
    CartPaymentInProgressError,
    InvalidPaymentTransitionError,
)
from common import money
from common.fields import AmountField, check_fits_currency, clean_currency


class PaymentStatus(models.TextChoices):
    """A cart's payment state. The allowed moves are `PAYMENT_TRANSITIONS`."""

    PENDING = "pending", "Pending"
    PROCESSING = "processing", "Processing"
    SUCCESS = "success", "Success"
    FAILED = "failed", "Failed"


# pending -> processing -> success | failed. A failed cart may be paid again. An attempt
# that ends without a charge (provider down) puts the cart back where it was. Paid is final.
PAYMENT_TRANSITIONS: dict[str, frozenset[str]] = {
    PaymentStatus.PENDING: frozenset({PaymentStatus.PROCESSING}),
    PaymentStatus.PROCESSING: frozenset(
        {PaymentStatus.SUCCESS, PaymentStatus.FAILED, PaymentStatus.PENDING}
    ),
    PaymentStatus.FAILED: frozenset({PaymentStatus.PROCESSING}),
    PaymentStatus.SUCCESS: frozenset(),
}


class Cart(models.Model):
    # A random UUID, not a counter: knowing a cart's id is what lets a storefront read,
    # discount and pay it, so ids must not be guessable.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    subtotal = AmountField(blank=True, help_text="Amount before discount.")
    total = AmountField(help_text="Amount to pay: subtotal minus amount_discounted.")
    amount_discounted = AmountField(default=Decimal("0"))
    items_number = models.PositiveIntegerField()
    currency = models.CharField(max_length=3, help_text="ISO-4217 code, e.g. USD.")
    payment_status = models.CharField(
        max_length=16, choices=PaymentStatus, default=PaymentStatus.PENDING
    )
    discount = models.ForeignKey(
        "discount.Discount",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="carts",
    )
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created"]
        indexes = [
            models.Index(fields=["payment_status", "-created"], name="cart_status_created"),
            models.Index(fields=["currency", "-created"], name="cart_currency_created"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(subtotal__gte=0) & Q(total__gte=0) & Q(amount_discounted__gte=0),
                name="cart_amounts_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(amount_discounted=0) | Q(discount__isnull=False),
                name="cart_discounted_only_with_discount",
            ),
            models.CheckConstraint(
                condition=Q(payment_status__in=PaymentStatus.values),
                name="cart_payment_status_valid",
            ),
        ]

    def __str__(self) -> str:
        total = money.format_amount(self.total, self.currency)
        return f"{self.id} ({total}, {self.payment_status})"

    def save(self, *args, **kwargs):
        if self.subtotal is None:
            self.subtotal = self.total
        self.currency = self.currency.strip().upper()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        """A real currency, and a total with no more decimals than it allows."""
        try:
            self.currency = clean_currency(self.currency)
        except ValidationError as exc:
            raise ValidationError({"currency": exc}) from None
        if self.total is not None:
            try:
                check_fits_currency(self.total, self.currency)
            except ValidationError as exc:
                raise ValidationError({"total": exc}) from None

    @property
    def total_discounted(self) -> Decimal:
        """The tutorial's name for the payable total."""
        return self.total

    def check_can_change(self) -> None:
        """Raise if the cart is paid or being paid: then it is frozen."""
        if self.payment_status == PaymentStatus.SUCCESS:
            raise CartPaidError()
        if self.payment_status == PaymentStatus.PROCESSING:
            raise CartPaymentInProgressError()

    def check_deletable(self) -> None:
        """Raise `CartNotDeletableError` once someone tried to pay the cart: a paid cart
        stays in the books, and every attempt stays in the payment ledger."""
        if self.payment_status == PaymentStatus.SUCCESS:
            raise CartNotDeletableError("It is paid: paid carts stay in the books.")
        attempts = self.payments.count()
        if attempts:
            plural = "s" if attempts > 1 else ""
            raise CartNotDeletableError(
                f"It has {attempts} payment attempt{plural}, which the payment ledger keeps."
            )

    def move_to(self, status: str) -> None:
        """Change `payment_status`, refusing any move the state machine does not allow."""
        if status not in PAYMENT_TRANSITIONS[self.payment_status]:
            self.check_can_change()
            raise InvalidPaymentTransitionError(
                f"A {self.payment_status} cart cannot become {status}."
            )
        self.payment_status = status

    def remove_discount(self) -> None:
        """Take the discount off (its reserved use was released): the total is the
        subtotal again. The caller saves."""
        self.discount = None
        self.amount_discounted = Decimal("0")
        self.total = self.subtotal

    def apply_discount(self, discount) -> None:
        """Apply `discount` and update this instance (see `cart_apply_discount`)."""
        from cart.services import cart_apply_discount

        cart_apply_discount(cart=self, discount=discount)

    def pay(self, **options) -> Payment:
        """Pay the cart through the provider and update this instance (see `cart_pay`).

        A decline is not an exception: the cart ends "failed" and the returned payment
        says why. Provider trouble raises a `ProviderTroubleError`.
        """
        from cart.services import cart_pay

        return cart_pay(cart=self, **options)


class PaymentAttemptStatus(models.TextChoices):
    """One attempt to charge a cart, as the shop knows it."""

    PROCESSING = "processing", "Processing: being sent to the provider"
    UNKNOWN = "unknown", "Unknown: sent, outcome not known yet"
    SUCCESS = "success", "Success: charged"
    FAILED = "failed", "Failed: declined by the provider"
    ERROR = "error", "Error: the provider could not be used, nothing charged"


OPEN_ATTEMPT_STATUSES = (PaymentAttemptStatus.PROCESSING, PaymentAttemptStatus.UNKNOWN)


class Payment(models.Model):
    """The ledger: every attempt to charge a cart and what the provider made of it.

    `idempotency_key` is the key sent to the provider; retrying or resuming an attempt
    reuses it, so the provider charges an attempt at most once.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    cart = models.ForeignKey(Cart, on_delete=models.PROTECT, related_name="payments")
    amount = AmountField()
    currency = models.CharField(max_length=3)
    status = models.CharField(
        max_length=16, choices=PaymentAttemptStatus, default=PaymentAttemptStatus.PROCESSING
    )
    payment_method = models.CharField(max_length=64, blank=True, default="")
    idempotency_key = models.CharField(max_length=255, unique=True)
    provider_payment_id = models.CharField(max_length=64, blank=True, default="")
    decline_code = models.CharField(max_length=64, blank=True, default="")
    error = models.TextField(blank=True, default="", help_text="Why the provider failed.")
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    updated = models.DateTimeField(auto_now=True)
    completed = models.DateTimeField(null=True, blank=True)

    class Meta:
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
        ]

    def __str__(self) -> str:
        amount = money.format_amount(self.amount, self.currency)
        return f"{amount} for cart {self.cart_id}: {self.status}"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_ATTEMPT_STATUSES


class PaymentRequest(models.Model):
    """A pay request made with an `Idempotency-Key`, and the attempt that answered it.

    Repeating the request with the key returns that attempt's outcome. Several requests
    can share one attempt: a request that finds an attempt left open resumes it, and its
    key then stands for that attempt too.
    """

    cart = models.ForeignKey(Cart, on_delete=models.PROTECT, related_name="payment_requests")
    key = models.CharField(max_length=200)
    payment_method = models.CharField(max_length=64, blank=True, default="")
    amount = AmountField(help_text="The cart total when the key was first used.")
    payment = models.ForeignKey(Payment, on_delete=models.PROTECT, related_name="requests")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["cart", "key"], name="payment_request_key_per_cart")
        ]

    def __str__(self) -> str:
        return f"{self.key} -> {self.payment_id}"
