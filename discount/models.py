"""Discount codes and every rule about one: what a code looks like, when it is usable,
what it takes off, and the uses carts hold.

    discount = Discount.objects.with_code("dis20").get()   # codes are case-insensitive
    discount.check_usable(at=timezone.now())                # raises the reason it is not
    discount.amount_off(Decimal("20.00"), "USD")            # Decimal('5.00')
    discount.uses_held(at=timezone.now())                   # consumed + live reservations

Codes are ASCII: `normalize_code` refuses anything that NFKC normalisation would change
or that is outside `CODE_ALPHABET`, so a look-alike (the Kelvin sign "K", full-width
letters) never matches another code.

A cart that applies a code holds one use, a `DiscountReservation`: `reserved` when
applied, `consumed` when the cart is paid (then `times_used` counts it), `released` when
the cart was not paid within `DISCOUNT_RESERVATION_TTL`. `usage_limit` bounds consumed
uses plus live reservations (see `discount.services`).

The database guards what must never be false, whatever code writes: one row per code
ignoring case, a positive value, at most 100 %, an end after the start, never more
consumed uses than the limit, and one live reservation per cart.
"""

from __future__ import annotations

import re
import secrets
import unicodedata
from datetime import datetime
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce, Lower
from django.utils import timezone

from cart.models import SKU_PATTERN, PaymentStatus
from common import money
from common.compiled import CompiledQuery, CompiledSaves
from common.fields import AmountField, check_fits_currency, clean_currency
from discount.errors import (
    DiscountBudgetExhaustedError,
    DiscountCodeMalformedError,
    DiscountCodeTakenError,
    DiscountCurrencyMismatchError,
    DiscountExpiredError,
    DiscountInactiveError,
    DiscountInUseError,
    DiscountMinimumNotMetError,
    DiscountNoEffectError,
    DiscountNoMatchingLinesError,
    DiscountNotStartedError,
    DiscountUsageLimitReachedError,
)

HUNDRED = Decimal(100)
MAX_SCOPE_ENTRIES = 200

CODE_ALPHABET = "letters A-Z (any case), digits 0-9, '-' and '_', starting with a letter or digit"
CODE_MAX_LENGTH = 64
_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*", re.ASCII)


def normalize_code(raw: str) -> str:
    """The form codes are compared in (lower case), or `DiscountCodeMalformedError`.

    A code that NFKC normalisation changes ("\u212a" is "K", "ＤＩＳ" is "DIS") or that
    leaves the ASCII alphabet is refused, never folded into another code.
    """
    text = raw.strip()
    if (
        len(text) > CODE_MAX_LENGTH
        or unicodedata.normalize("NFKC", text) != text
        or not _CODE.fullmatch(text)
    ):
        raise DiscountCodeMalformedError()
    return text.lower()


class DiscountKind(models.TextChoices):
    AMOUNT = "amount", "Fixed amount off"
    PERCENT = "percent", "Percentage off"


class DiscountQuerySet(models.QuerySet):
    def with_code(self, code: str) -> DiscountQuerySet:
        """Match a code ignoring case, through the index on LOWER(code); a malformed code
        matches nothing."""
        try:
            normalized = normalize_code(code)
        except DiscountCodeMalformedError:
            return self.none()
        return self.alias(code_lower=Lower("code")).filter(code_lower=normalized)

    def with_reserved_uses(self, *, at: datetime) -> DiscountQuerySet:
        """Each discount with `reserved_uses_now`: its live reservations at `at`."""
        held = Q(reservations__status=ReservationStatus.RESERVED) & (
            Q(reservations__expires__gt=at)
            | Q(reservations__cart__payment_status=PaymentStatus.PROCESSING)
        )
        return self.annotate(reserved_uses_now=models.Count("reservations", filter=held))

    def with_reserved_uses_against_limit(self, *, at: datetime) -> DiscountQuerySet:
        """Each discount with `reserved_uses_now` where its `usage_limit` counts them, 0
        for a code without a limit: the live reservations of a popular unlimited code
        (thousands) are not counted on every apply. A subquery, not a join and GROUP BY,
        so the database skips it for those codes."""
        live = (
            DiscountReservation.objects.holding(at=at)
            .filter(discount=models.OuterRef("pk"))
            .order_by()
            .values("discount")
            .annotate(count=models.Count("pk"))
            .values("count")
        )
        return self.annotate(
            reserved_uses_now=models.Case(
                models.When(usage_limit__isnull=True, then=models.Value(0)),
                default=Coalesce(models.Subquery(live), models.Value(0)),
            )
        )


class Discount(CompiledSaves, models.Model):
    code = models.CharField(
        max_length=64,
        validators=[
            RegexValidator(
                r"^[A-Za-z0-9][A-Za-z0-9_-]*\Z",
                "Use letters, digits, '-' and '_' only, starting with a letter or digit.",
                code="invalid_code",
            )
        ],
        help_text="Case-insensitive and unique that way: 'dis20' finds 'DIS20'.",
    )
    kind = models.CharField(max_length=10, choices=DiscountKind, default=DiscountKind.AMOUNT)
    value = AmountField(
        help_text="Amount off in the cart's currency, or a percentage (0 < value <= 100)."
    )
    currency = models.CharField(
        max_length=3,
        blank=True,
        default="",
        help_text="If set, the code only applies to carts in this ISO-4217 currency.",
    )
    description = models.CharField(max_length=500, blank=True, default="")
    created = models.DateTimeField(auto_now_add=True, db_index=True)
    started = models.DateTimeField(
        null=True, blank=True, help_text="Usable from this moment on; empty: from creation."
    )
    ended = models.DateTimeField(
        null=True, blank=True, help_text="Usable until this moment; empty: never expires."
    )
    active = models.BooleanField(default=True, help_text="Switch off to stop the code at once.")
    min_cart_total = AmountField(
        null=True,
        blank=True,
        help_text="Smallest cart subtotal the code applies to, in `currency` (required then).",
    )
    usage_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="How many carts may use the code; empty: unlimited."
    )
    times_used = models.PositiveIntegerField(
        default=0, editable=False, help_text="Consumed uses: carts paid with the code."
    )
    skus = models.JSONField(
        default=list,
        blank=True,
        help_text="If set (or sku_prefixes), the code applies only to the cart lines with "
        "one of these SKUs (exact, case-sensitive); empty: the whole cart.",
    )
    sku_prefixes = models.JSONField(
        default=list,
        blank=True,
        help_text="…or to the lines whose SKU starts with one of these.",
    )
    limit_per_customer = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="How many carts of one customer (the cart's customer_ref) may use the code.",
    )
    first_order_only = models.BooleanField(
        default=False,
        help_text="Only for a customer with no paid cart yet (once per customer).",
    )
    budget_amount = AmountField(
        null=True,
        blank=True,
        help_text="Most the code may give away across all carts, in `currency` (required "
        "then): amounts reserved by carts not paid yet and consumed by paid ones count.",
    )
    amount_consumed = AmountField(
        default=Decimal("0"), editable=False, help_text="Given away to paid carts."
    )
    automatic = models.BooleanField(
        default=False,
        help_text="A promotion: applies by itself to every cart its rules fit (the best "
        "one wins); its code is its name and cannot be typed.",
    )

    objects = DiscountQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]
        indexes = [
            models.Index(fields=["active", "-created"], name="discount_active_created"),
            models.Index(fields=["automatic", "active"], name="discount_automatic_active"),
        ]
        constraints = [
            models.UniqueConstraint(Lower("code"), name="discount_code_unique_ignoring_case"),
            models.CheckConstraint(condition=Q(value__gt=0), name="discount_value_positive"),
            models.CheckConstraint(
                condition=~Q(kind=DiscountKind.PERCENT) | Q(value__lte=100),
                name="discount_percent_at_most_100",
            ),
            models.CheckConstraint(
                condition=Q(started__isnull=True)
                | Q(ended__isnull=True)
                | Q(ended__gt=F("started")),
                name="discount_ends_after_start",
            ),
            models.CheckConstraint(
                condition=Q(usage_limit__isnull=True) | Q(times_used__lte=F("usage_limit")),
                name="discount_used_within_limit",
            ),
            models.CheckConstraint(
                condition=Q(amount_consumed__gte=0), name="discount_consumed_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return self.code

    # --- Rules -------------------------------------------------------------------------

    def check_usable(self, *, at: datetime, reserved: int = 0) -> None:
        """Raise the `DiscountError` saying why the code cannot be used at `at` by one
        more cart, `reserved` uses being held by live reservations (see `uses_held`)."""
        if not self.active:
            raise DiscountInactiveError()
        if self.started is not None and at < self.started:
            raise DiscountNotStartedError()
        if self.ended is not None and at >= self.ended:
            raise DiscountExpiredError()
        if self.usage_limit is not None and self.times_used + reserved >= self.usage_limit:
            raise DiscountUsageLimitReachedError()

    def uses_held(self, *, at: datetime) -> int:
        """Uses the limit counts at `at`: consumed ones and live reservations."""
        return self.times_used + self.reservations.holding(at=at).count()

    @property
    def scoped(self) -> bool:
        """Whether the code applies to some lines only (`skus`, `sku_prefixes`)."""
        return bool(self.skus or self.sku_prefixes)

    @property
    def per_customer(self) -> bool:
        """Whether the code counts its uses per customer (a cart needs a customer_ref)."""
        return self.limit_per_customer is not None or self.first_order_only

    def customer_limit(self) -> int | None:
        """Uses one customer may hold or have consumed: first-order codes count as one."""
        if self.first_order_only:
            return 1 if self.limit_per_customer is None else min(1, self.limit_per_customer)
        return self.limit_per_customer

    def applies_to(self, sku: str) -> bool:
        """Whether the code discounts a cart line with this SKU: any line when it is not
        scoped, else one whose SKU is listed or starts with a listed prefix."""
        if not self.scoped:
            return True
        return sku in self.skus or any(sku.startswith(prefix) for prefix in self.sku_prefixes)

    def amount_off_cart(self, cart) -> Decimal:
        """What the code takes off this cart (see `amount_off`), or the `DiscountError`
        why it does not fit it. A scoped code is computed on the lines it applies to (a
        percentage of their amounts, a flat amount capped at them); the minimum is still
        compared with the whole cart's subtotal."""
        if not self.scoped:
            return self.amount_off(cart.subtotal, cart.currency)
        eligible = (
            sum(
                (line.amount for line in cart.lines.all() if self.applies_to(line.sku)), Decimal(0)
            )
            if cart.itemized
            else Decimal(0)
        )
        if self.currency and self.currency != cart.currency:
            raise DiscountCurrencyMismatchError()
        if not eligible:
            raise DiscountNoMatchingLinesError()
        return self.amount_off(cart.subtotal, cart.currency, eligible=eligible)

    def check_budget(self, *, amount: Decimal, held: Decimal) -> None:
        """Raise `DiscountBudgetExhaustedError` when giving `amount` more, beside the
        `held` amounts (consumed and live reservations), would pass `budget_amount`."""
        if self.budget_amount is not None and held + amount > self.budget_amount:
            raise DiscountBudgetExhaustedError()

    def amount_off(
        self, subtotal: Decimal, currency: str, *, eligible: Decimal | None = None
    ) -> Decimal:
        """What the code takes off a cart's subtotal, in the cart's currency.

        A percentage is rounded half-up to the currency's minor unit; a flat amount is
        rounded down (5.5 off a JPY cart is 5: a code never gives more than it says).
        Never more than the subtotal. Raises `DiscountCurrencyMismatchError`,
        `DiscountMinimumNotMetError` or `DiscountNoEffectError` when the code does not
        apply to such a cart.
        """
        if self.currency and self.currency != currency:
            raise DiscountCurrencyMismatchError()
        if self.min_cart_total is not None and subtotal < self.min_cart_total:
            raise DiscountMinimumNotMetError()
        base = subtotal if eligible is None else eligible
        value = Decimal(str(self.value))  # an unsaved instance may hold an int
        if self.kind == DiscountKind.PERCENT:
            off = money.quantize(base * value / HUNDRED, currency)
        else:
            off = money.round_down(value, currency)
        off = min(off, base)
        if off == 0:
            raise DiscountNoEffectError()
        return off

    def clean(self) -> None:
        """Every rule for a new or edited discount, whichever door it comes through: the
        API and the admin both save through `discount_create` / `discount_update`, which
        run it (the admin's form runs it first too, to show the errors beside the fields).
        """
        errors: dict[str, ValidationError] = {}
        if self.code and self.code_taken():
            errors["code"] = ValidationError(
                DiscountCodeTakenError.message, code=DiscountCodeTakenError.code
            )
        if self.kind_locked():
            # Carts that used the code show its kind beside the amount they got.
            errors["kind"] = ValidationError(
                "A code already used cannot change kind.", code="kind_in_use"
            )
        if self.currency:
            try:
                self.currency = clean_currency(self.currency)
            except ValidationError as exc:
                errors["currency"] = exc
        currency = self.currency if "currency" not in errors else ""
        if self.value is not None:
            try:
                self._check_value(currency)
            except ValidationError as exc:
                errors["value"] = exc
        if self.min_cart_total is not None:
            try:
                self._check_min_cart_total(currency)
            except ValidationError as exc:
                errors["min_cart_total"] = exc
        if self.started and self.ended and self.ended <= self.started:
            errors["ended"] = ValidationError(
                "The end must come after the start.", code="ends_before_start"
            )
        elif self._state.adding and self.ended is not None and self.ended <= timezone.now():
            errors["ended"] = ValidationError(
                "This end is in the past: the discount would be expired already.",
                code="already_expired",
            )
        for name in ("skus", "sku_prefixes"):
            try:
                setattr(self, name, _clean_sku_list(getattr(self, name)))
            except ValidationError as exc:
                errors[name] = exc
        if self.budget_amount is not None:
            try:
                self._check_budget_amount(currency)
            except ValidationError as exc:
                errors["budget_amount"] = exc
        if self.usage_limit is not None:
            held = self.uses_held(at=timezone.now()) if self.pk else self.times_used
            if self.usage_limit < held:
                errors["usage_limit"] = ValidationError(
                    f"The code is used or reserved {held} times already.",
                    code="below_times_used",
                )
        if errors:
            raise ValidationError(errors)

    def code_taken(self) -> bool:
        """Whether another discount already has this code, in any case, or it is one of
        the generated codes."""
        try:
            own = normalize_code(self.code)
        except DiscountCodeMalformedError:
            own = ""  # no discount's code: a malformed code is refused by its own rule
        rows = _CODES_NAMED.run(code=own, generated=self.code.strip().upper())
        return any(row.generated or row.pk != self.pk for row in rows)

    def kind_locked(self) -> bool:
        """Whether this edit changes the kind of a code that carts have used (or hold)."""
        if self._state.adding or not (self.times_used or self.reservations.exists()):
            return False
        return Discount.objects.filter(pk=self.pk).exclude(kind=self.kind).exists()

    def check_deletable(self) -> None:
        """Raise `DiscountInUseError` if a cart refers to the code: switch it off instead."""
        # Carts refer to it, or did (a reservation released when a cart was not paid).
        used = max(self.carts.count(), self.reservations.values("cart_id").distinct().count())
        if used:
            carts = f"{used} cart{'s' if used > 1 else ''}"
            raise DiscountInUseError(
                f"{carts} used this code, so it stays: switch it off instead."
            )

    def _check_value(self, currency: str) -> None:
        if self.value <= 0:
            raise ValidationError(
                "The value must be greater than zero.", code="value_not_positive"
            )
        if self.kind == DiscountKind.PERCENT and self.value > HUNDRED:
            raise ValidationError("A percentage cannot exceed 100.", code="percent_above_100")
        if self.kind == DiscountKind.AMOUNT and self.value > money.MAX_AMOUNT:
            raise ValidationError(
                f"The value cannot exceed {money.MAX_AMOUNT}.", code="amount_too_large"
            )
        if self.kind == DiscountKind.AMOUNT and currency:
            check_fits_currency(self.value, currency)

    def amount_held(self, *, at: datetime) -> Decimal:
        """What the budget counts at `at`: consumed amounts and live reservations'."""
        reserved = self.reservations.holding(at=at).aggregate(total=models.Sum("amount"))
        return self.amount_consumed + (reserved["total"] or Decimal(0))

    def _check_budget_amount(self, currency: str) -> None:
        if not 0 < self.budget_amount <= money.MAX_AMOUNT:
            raise ValidationError(
                f"The budget must be above 0 and at most {money.MAX_AMOUNT}.",
                code="out_of_range",
            )
        if not self.currency:
            raise ValidationError(
                "A budget needs a currency: set currency too.", code="currency_required"
            )
        if currency:
            check_fits_currency(self.budget_amount, currency)
        if self.pk:
            held = self.amount_held(at=timezone.now())
            if self.budget_amount < held:
                raise ValidationError(
                    f"The code has given or reserved {held} already.", code="below_amount_held"
                )

    def _check_min_cart_total(self, currency: str) -> None:
        if not 0 <= self.min_cart_total <= money.MAX_AMOUNT:
            raise ValidationError(
                f"The minimum must be between 0 and {money.MAX_AMOUNT}.", code="out_of_range"
            )
        if not self.currency:
            raise ValidationError(
                "A minimum cart total needs a currency: set currency too.",
                code="currency_required",
            )
        if currency:
            check_fits_currency(self.min_cart_total, currency)


def _clean_sku_list(value) -> list[str]:
    """A list of distinct SKUs (or prefixes) in the SKU alphabet, at most 200."""
    if value in (None, ""):
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        # Not "invalid": a model form shows its own "Enter a valid JSON." for that code.
        # "not_a_list" is what the API's list field answers for a string or an object.
        raise ValidationError("Send a list of SKUs (strings).", code="not_a_list")
    if len(value) > MAX_SCOPE_ENTRIES:
        raise ValidationError(f"At most {MAX_SCOPE_ENTRIES} entries.", code="too_many_entries")
    bad = [item for item in value if not re.match(SKU_PATTERN, item) or len(item) > 64]
    if bad:
        raise ValidationError(
            f"Not a SKU: {bad[0]!r} (letters, digits, '.', '_', '/' and '-', at most 64).",
            code="invalid_sku",
        )
    return list(dict.fromkeys(value))


# Generated codes: 13 symbols from `secrets` over an alphabet without look-alikes (no
# 0/O, 1/I/L): 31**13 > 2**64 codes, so even a million live codes leave a guess under the
# rate limits one chance in 10**13.
GENERATED_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
GENERATED_LENGTH = 13
PREFIX_MAX_LENGTH = 32


def generate_code(prefix: str) -> str:
    """One fresh code: `prefix` and 13 random symbols, e.g. XMAS-7KQ4M-XW2P9-HD3."""
    number = secrets.randbelow(len(GENERATED_ALPHABET) ** GENERATED_LENGTH)
    symbols = []
    for _ in range(GENERATED_LENGTH):
        number, digit = divmod(number, len(GENERATED_ALPHABET))
        symbols.append(GENERATED_ALPHABET[digit])
    body = "".join(symbols)
    return f"{prefix}{body[:5]}-{body[5:10]}-{body[10:]}"


class DiscountCode(CompiledSaves, models.Model):
    """A generated single-use code of a discount: one cart may hold it (its reservation
    names it), and once that cart is paid nobody else can. Stored upper-case."""

    # A discount no cart used may be deleted (a typo), its unused codes with it. No index
    # of its own: `discountcode_discount` (discount, id) serves lookups by discount.
    discount = models.ForeignKey(
        Discount, on_delete=models.CASCADE, related_name="codes", db_index=False
    )
    code = models.CharField(max_length=CODE_MAX_LENGTH, unique=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["discount", "id"], name="discountcode_discount")]

    def __str__(self) -> str:
        return self.code


class ReservationStatus(models.TextChoices):
    RESERVED = "reserved", "Reserved: applied to a cart not paid yet"
    CONSUMED = "consumed", "Consumed: the cart was paid"
    RELEASED = "released", "Released: the cart was not paid in time"


class DiscountReservationQuerySet(models.QuerySet):
    def holding(self, *, at: datetime) -> DiscountReservationQuerySet:
        """Reservations that count against the limit at `at`: not expired yet, or held by
        a cart being paid (its payment decides; an expired one is never released then)."""
        return self.filter(status=ReservationStatus.RESERVED).filter(
            Q(expires__gt=at) | Q(cart__payment_status=PaymentStatus.PROCESSING)
        )


class DiscountReservation(CompiledSaves, models.Model):
    """One use of a code by one cart: reserved when applied, consumed when the cart is
    paid, released when it was not paid in time. `amount` is what the code took off."""

    # No index of its own: `reservation_discount` (discount, status, expires) serves
    # lookups by discount, and every apply would keep a second one up to date for nothing.
    discount = models.ForeignKey(
        Discount, on_delete=models.PROTECT, related_name="reservations", db_index=False
    )
    cart = models.ForeignKey(
        "cart.Cart", on_delete=models.PROTECT, related_name="discount_reservations"
    )
    status = models.CharField(
        max_length=10, choices=ReservationStatus, default=ReservationStatus.RESERVED
    )
    code = models.ForeignKey(
        "DiscountCode",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="reservations",
        help_text="The generated single-use code the cart used, if it used one.",
    )
    amount = AmountField(help_text="What the code took off the cart, in `currency`.")
    currency = models.CharField(max_length=3)
    expires = models.DateTimeField(
        help_text="A reserved use of a cart not paid by then is released."
    )
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    objects = DiscountReservationQuerySet.as_manager()

    class Meta:
        ordering = ["-created"]
        indexes = [
            models.Index(fields=["discount", "status", "expires"], name="reservation_discount"),
            models.Index(fields=["status", "expires"], name="reservation_status_expires"),
        ]
        constraints = [
            # A cart takes one discount: at most one reservation that is not released.
            models.UniqueConstraint(
                fields=["cart"],
                condition=~Q(status="released"),
                name="reservation_one_live_per_cart",
            ),
            # A generated code is single-use: one reservation holds it, or consumed it.
            models.UniqueConstraint(
                fields=["code"],
                condition=~Q(status="released") & Q(code__isnull=False),
                name="reservation_one_per_generated_code",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.discount_id} for cart {self.cart_id}: {self.status}"


def _codes_named(code: str, generated: str):
    """In one statement: the discount whose own code is `code` (lower case, through the
    index on LOWER(code)) and the one owning the generated code `generated` (upper case),
    each row saying which it is."""
    own = (
        Discount.objects.alias(code_lower=Lower("code"))
        .filter(code_lower=code)
        .annotate(generated=Value(False))
        .values("id", "generated")
        .order_by()
    )
    owner = (
        DiscountCode.objects.filter(code=generated)
        .annotate(generated=Value(True))
        .values("discount_id", "generated")
        .order_by()
    )
    return own.union(owner, all=True)


# Every discount created or edited asks it (`Discount.code_taken`, run by `clean`):
# compiled once, as compiling its two parts cost more CPU than the rest of a create.
_CODES_NAMED = CompiledQuery(_codes_named, code=str, generated=str)
