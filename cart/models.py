"""Carts: what a storefront asks the shop to charge, with at most one discount, and the
state machine of their payment status.

    cart = Cart(total=20, currency="USD", items_number=5)
    cart.save()                      # subtotal = 20, payment_status = "pending"
    cart.apply_discount(discount)    # total = subtotal - amount_discounted, never below 0
    cart.pay()                       # payment_status "success" or "failed"
    cart.refund(amount=Decimal("5")) # "partially_refunded", then "refunded"

`subtotal` is the amount before any discount and never changes; `total` is what will be
charged. `total_discounted` is the tutorial's name for that same payable total. The
tutorial's model methods stay as entry points; the flows they start live in
`cart.services` and `payments.services`; the ledger of payment attempts is
`payments.models`.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import F, Q

from cart.errors import (
    CartNotDeletableError,
    CartPaidError,
    CartPaymentInProgressError,
    InvalidPaymentTransitionError,
)
from common import money
from common.fields import AmountField, check_fits_currency, clean_currency

# The payment ledger lives in `payments.models`; its names stay importable from here,
# where the tutorial-era code and tests look for them.
from payments.models import OPEN_ATTEMPT_STATUSES as OPEN_ATTEMPT_STATUSES
from payments.models import Payment as Payment
from payments.models import PaymentAttemptStatus as PaymentAttemptStatus
from payments.models import PaymentRequest as PaymentRequest
from payments.models import Refund as Refund


class PaymentStatus(models.TextChoices):
    """A cart's payment state. The allowed moves are `PAYMENT_TRANSITIONS`."""

    PENDING = "pending", "Pending"
    PROCESSING = "processing", "Processing"
    SUCCESS = "success", "Success"
    FAILED = "failed", "Failed"
    PARTIALLY_REFUNDED = "partially_refunded", "Partially refunded"
    REFUNDED = "refunded", "Refunded"


# pending -> processing -> success | failed. A failed cart may be paid again. An attempt
# that ends without a charge (provider down) puts the cart back where it was. A paid cart
# is never paid again and never changes its contents; refunds move it to
# partially_refunded (again with each partial refund) and to refunded, which is final.
PAYMENT_TRANSITIONS: dict[str, frozenset[str]] = {
    PaymentStatus.PENDING: frozenset({PaymentStatus.PROCESSING}),
    PaymentStatus.PROCESSING: frozenset(
        {PaymentStatus.SUCCESS, PaymentStatus.FAILED, PaymentStatus.PENDING}
    ),
    PaymentStatus.FAILED: frozenset({PaymentStatus.PROCESSING}),
    PaymentStatus.SUCCESS: frozenset({PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED}),
    PaymentStatus.PARTIALLY_REFUNDED: frozenset(
        {PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED}
    ),
    PaymentStatus.REFUNDED: frozenset(),
}
# The cart was paid: it is frozen for discounts and payments, whatever was refunded since.
PAID_STATUSES = frozenset(
    {PaymentStatus.SUCCESS, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.REFUNDED}
)


class Cart(models.Model):
    # A random UUID, not a counter: knowing a cart's id is what lets a storefront read,
    # discount and pay it, so ids must not be guessable.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    subtotal = AmountField(blank=True, help_text="Amount before discount.")
    total = AmountField(help_text="Amount to pay: subtotal minus amount_discounted.")
    amount_discounted = AmountField(default=Decimal("0"))
    amount_refunded = AmountField(
        default=Decimal("0"), help_text="Given back of what was charged (made refunds)."
    )
    items_number = models.PositiveIntegerField()
    currency = models.CharField(max_length=3, help_text="ISO-4217 code, e.g. USD.")
    payment_status = models.CharField(
        max_length=20, choices=PaymentStatus, default=PaymentStatus.PENDING
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
            models.CheckConstraint(
                condition=Q(amount_refunded__gte=0) & Q(amount_refunded__lte=F("total")),
                name="cart_refunds_within_total",
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

    @property
    def is_paid(self) -> bool:
        return self.payment_status in PAID_STATUSES

    def check_can_change(self) -> None:
        """Raise if the cart is paid (refunded or not) or being paid: then it is frozen."""
        if self.is_paid:
            raise CartPaidError()
        if self.payment_status == PaymentStatus.PROCESSING:
            raise CartPaymentInProgressError()

    def check_deletable(self) -> None:
        """Raise `CartNotDeletableError` once someone tried to pay the cart: a paid cart
        stays in the books, and every attempt stays in the payment ledger."""
        if self.is_paid:
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

    def refund(self, **options) -> Refund:
        """Give back `amount` (default: all not yet refunded) and update this instance
        (see `payments.services.refund_create`)."""
        from payments.services import refund_create

        return refund_create(cart=self, **options)
