"""Carts: what a storefront asks the shop to charge, with at most one discount.

    cart = Cart(total=20, currency="USD", items_number=5)
    cart.save()                      # subtotal = 20, payment_status = "pending"
    cart.apply_discount(discount)    # total = subtotal - amount_discounted, never below 0

`subtotal` is the amount before any discount and never changes; `total` is what will be
charged. `total_discounted` is the tutorial's name for that same payable total. The
tutorial's model methods stay as entry points; the flows they start live in
`cart.services`.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.db import models
from django.db.models import Q

from cart.errors import CartPaidError, CartPaymentInProgressError
from common import money


class PaymentStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    PROCESSING = "processing", "Processing"
    SUCCESS = "success", "Success"
    FAILED = "failed", "Failed"


def _amount_field(**kwargs) -> models.DecimalField:
    return models.DecimalField(
        max_digits=money.AMOUNT_MAX_DIGITS, decimal_places=money.AMOUNT_DECIMAL_PLACES, **kwargs
    )


class Cart(models.Model):
    # A random UUID, not a counter: knowing a cart's id is what lets a storefront read,
    # discount and pay it, so ids must not be guessable.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    subtotal = _amount_field(blank=True, help_text="Amount before discount.")
    total = _amount_field(help_text="Amount to pay: subtotal minus amount_discounted.")
    amount_discounted = _amount_field(default=Decimal("0"))
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
        return f"{self.id} ({self.total} {self.currency}, {self.payment_status})"

    def save(self, *args, **kwargs):
        if self.subtotal is None:
            self.subtotal = self.total
        super().save(*args, **kwargs)

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

    def apply_discount(self, discount) -> None:
        """Apply `discount` and update this instance (see `cart_apply_discount`)."""
        from cart.services import cart_apply_discount

        cart_apply_discount(cart=self, discount=discount)
