"""Carts: what a storefront asks the shop to charge, with at most one discount, and the
state machine of their payment status.

    cart = Cart(total=20, currency="USD", items_number=5)
    cart.save()                      # subtotal = 20, payment_status = "pending"
    cart.apply_discount(discount)    # total = subtotal - amount_discounted, never below 0
    cart.pay()                       # payment_status "success" or "failed"
    cart.refund(amount=Decimal("5")) # "partially_refunded", then "refunded"

`subtotal` is the amount before any discount; `total` is what will be charged. A cart
is either a total the caller asserts (the tutorial's) or *itemized*: it has `CartLine`s,
its `subtotal` is the sum of their amounts and `items_number` the sum of their
quantities, both derived, and its discount is allocated to its lines
(`Cart.save_discount`), so the line amounts after discount add up to `total`.
`total_discounted` is the tutorial's name for that same payable total. The tutorial's
model methods stay as entry points; the flows they start live in `cart.services` and
`payments.services`; the ledger of payment attempts is `payments.models`.
"""

from __future__ import annotations

import dataclasses
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
from common.compiled import CompiledSaves
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


# A shop's stock-keeping unit, as lines carry it and discounts name it.
SKU_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._/-]*\Z"

# What applying, re-evaluating or removing a discount writes on the cart row.
DISCOUNT_FIELDS = ("discount", "discount_code", "amount_discounted", "total", "updated")


@dataclasses.dataclass(frozen=True)
class AppliedDiscount:
    """The discount a cart holds, as the API shows it: `code` is the code the customer
    typed (a generated single-use one, or the discount's own)."""

    id: int
    code: str
    kind: str


class Cart(CompiledSaves, models.Model):
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
    customer_ref = models.CharField(
        max_length=100,
        blank=True,
        default="",
        db_index=True,
        help_text="The shop's opaque reference of the customer, for per-customer codes.",
    )
    itemized = models.BooleanField(
        default=False,
        db_default=False,  # carts the previous release inserts, during a rollout
        help_text="Made of lines: subtotal and items_number are derived from them.",
    )
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
    discount_code = models.ForeignKey(
        "discount.DiscountCode",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="carts",
        help_text="The generated single-use code the discount was applied with, if any.",
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
    def applied_discount(self) -> AppliedDiscount | None:
        discount = self.discount
        if discount is None:
            return None
        code = self.discount_code.code if self.discount_code_id else discount.code
        return AppliedDiscount(id=discount.id, code=code, kind=discount.kind)

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
        subtotal again. The caller saves (`save_discount`)."""
        self.discount = None
        self.discount_code = None
        self.amount_discounted = Decimal("0")
        self.total = self.subtotal

    def set_discount(self, discount, amount_off: Decimal) -> None:
        """Hold `discount`, taking `amount_off` off the subtotal. The caller saves
        (`save_discount`)."""
        self.discount = discount
        self.amount_discounted = amount_off
        self.total = self.subtotal - amount_off

    def save_discount(self) -> None:
        """Save the discount fields and give each line its share of `amount_discounted`:
        in proportion to the line amounts the discount applies to (`Discount.applies_to`),
        largest remainder, so the shares add up exactly to `amount_discounted`."""
        self.save(update_fields=DISCOUNT_FIELDS)
        if not self.itemized:
            return
        lines = list(self.lines.all())
        shares = [Decimal(0)] * len(lines)
        if self.discount is not None and self.amount_discounted:
            eligible = [i for i, line in enumerate(lines) if self.discount.applies_to(line.sku)]
            weights = [lines[i].amount for i in eligible]
            for i, share in zip(
                eligible,
                money.allocate(self.amount_discounted, weights, self.currency),
                strict=True,
            ):
                shares[i] = share
        changed = [
            line
            for line, share in zip(lines, shares, strict=True)
            if line.amount_discounted != share
        ]
        for line, share in zip(lines, shares, strict=True):
            line.amount_discounted = share
        if changed:
            CartLine.objects.bulk_update(changed, ["amount_discounted"])

    def recount_lines(self) -> None:
        """Derive `subtotal` and `items_number` from the lines. The caller saves."""
        lines = list(self.lines.all())
        self.subtotal = sum((line.amount for line in lines), Decimal(0))
        self.items_number = sum(line.quantity for line in lines)

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


class CartLine(CompiledSaves, models.Model):
    """One thing being bought: `quantity` units of `sku` at `unit_price` each, in the
    cart's currency. `amount_discounted` is its share of the cart's discount."""

    cart = models.ForeignKey(Cart, on_delete=models.CASCADE, related_name="lines")
    sku = models.CharField(max_length=64, help_text="The shop's stock-keeping unit.")
    name = models.CharField(max_length=200)
    quantity = models.PositiveIntegerField()
    unit_price = AmountField()
    amount_discounted = AmountField(
        default=Decimal("0"), help_text="This line's share of the cart's discount."
    )
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(quantity__gte=1), name="cartline_quantity_positive"
            ),
            models.CheckConstraint(
                condition=Q(unit_price__gte=0) & Q(amount_discounted__gte=0),
                name="cartline_amounts_not_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.quantity} × {self.sku}"

    @property
    def currency(self) -> str:
        return self.cart.currency

    @property
    def amount(self) -> Decimal:
        """Before discount: quantity × unit price, exact."""
        return self.quantity * self.unit_price

    @property
    def total(self) -> Decimal:
        """After this line's share of the discount."""
        return self.amount - self.amount_discounted
