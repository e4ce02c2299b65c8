"""The ledger of a cart's payments: every attempt to charge it and the requests it answered.

    payment = Payment.objects.get(idempotency_key="cart-…-order-42")
    payment.is_open            # processing or unknown: the provider may still charge it

The tables keep the names they had when these models lived in the `cart` app
(`cart_payment`, `cart_paymentrequest`): moving them copied no data. The flows that
write them are in `payments.services`.
"""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models import Q

from common.fields import AmountField


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
    error = models.TextField(blank=True, default="", help_text="Why the provider failed.")
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
        ]

    def __str__(self) -> str:
        return f"{self.amount} {self.currency} for cart {self.cart_id}: {self.status}"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_ATTEMPT_STATUSES


class PaymentRequest(models.Model):
    """A pay request made with an `Idempotency-Key`, and the attempt that answered it.

    Repeating the request with the key returns that attempt's outcome. Several requests
    can share one attempt: a request that finds an attempt left open resumes it, and its
    key then stands for that attempt too.
    """

    cart = models.ForeignKey(
        "cart.Cart", on_delete=models.PROTECT, related_name="payment_requests"
    )
    key = models.CharField(max_length=200)
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
