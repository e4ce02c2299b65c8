"""Flows that change carts: creating one, applying a discount code, paying it.

    cart = cart_create(total=Decimal("20"), currency="USD", items_number=5)
    cart = cart_create(currency="USD", lines=[LineInput("TEA-1", "Tea", 2, Decimal("4.50"))])
    change = cart_line_add(cart=cart, line=LineInput("MUG", "Mug", 1, Decimal("8")))
    change = cart_line_update(cart=cart, line_id=7, quantity=3)
    change = cart_line_remove(cart=cart, line_id=7)   # change.discount_removed: why it left
    cart_delete(cart=cart)   # only one nobody tried to pay; frees its reserved use
    cart_apply_discount(cart=cart, discount=discount)
    payment = cart_pay(cart=cart, payment_method="pm_card_visa", idempotency_key="order-42")

Applying a discount locks the cart row (SELECT … FOR UPDATE on PostgreSQL; on SQLite
every write transaction starts IMMEDIATE, which serializes writers), so two requests for
one cart cannot both see "no discount yet": one wins, the other is refused. A use of
the code is reserved in the same transaction (`discount_reserve`), so a refused apply
never holds one, and consumed in the transaction that records the payment as successful
(`discount_consume_reservation`, in `payments.transitions.attempt_charged`); the
transaction that opens a payment attempt keeps the use, renewing an expired one, or
takes the discount off and refuses the payment (`discount_hold_for_payment`, in
`payments.services`; see `discount.services`).

Changing the lines of a cart locks its row too, and re-evaluates its discount in the same
transaction (`discount_reevaluate`): the code then takes off what it gives the new lines,
or leaves the cart with its reservation released, and the change says why.

Paying and refunding are `payments.services` (`cart_pay` is the entry point the tutorial's
`Cart.pay` and the API call); reconciling is `payments.reconcile`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

import utils
from cart.errors import (
    CartDiscountAlreadyAppliedError,
    CartItemsNumberMismatchError,
    CartLineNotFoundError,
    CartNotItemizedError,
    CartSubtotalTooLargeError,
    CartTooManyLinesError,
    CartTotalMismatchError,
)
from cart.models import DISCOUNT_FIELDS, Cart, CartLine
from cart.selectors import cart_get_locked, cart_known_history
from common import money
from discount.errors import DiscountError
from discount.models import Discount, DiscountCode
from discount.services import (
    discount_apply_best_automatic,
    discount_make_room_for_code,
    discount_reevaluate,
    discount_reserve,
)
from payments.models import Payment
from payments.services import payment_pay

_DISCOUNT_FIELDS = DISCOUNT_FIELDS
_LINE_FIELDS = ("subtotal", "items_number", *DISCOUNT_FIELDS)
MAX_LINES = 500


@dataclasses.dataclass(frozen=True)
class LineInput:
    """One line as a caller sends it (validated for shape by the serializer)."""

    sku: str
    name: str
    quantity: int
    unit_price: Decimal


@dataclasses.dataclass(frozen=True)
class LineChange:
    """What a line change did: the cart after it, the line (as it was, once removed),
    and why the cart's discount left it, if it did."""

    cart: Cart
    line: CartLine
    discount_removed: DiscountError | None = None
    discount_code: str | None = None


def cart_create(
    *,
    currency: str,
    total: Decimal | None = None,
    items_number: int | None = None,
    lines: Sequence[LineInput] | None = None,
    customer_ref: str = "",
) -> Cart:
    """A new, pending cart. Without lines, `total` is its amount before any discount (the
    tutorial's cart). With lines, the cart is itemized: `subtotal` is the sum of their
    amounts and `items_number` of their quantities; a `total` or `items_number` sent
    beside them must match (`CartTotalMismatchError`, `CartItemsNumberMismatchError`).
    """
    if lines is None:
        cart = Cart.objects.create(
            subtotal=total,
            total=total,
            currency=currency,
            items_number=items_number,
            customer_ref=customer_ref,
        )
        # Nobody else knows the new cart yet: no lock needed; reserving a promotion
        # takes its own transaction.
        discount_apply_best_automatic(cart=cart)
        return _without_payments(cart)
    subtotal = sum((line.quantity * line.unit_price for line in lines), Decimal(0))
    count = sum(line.quantity for line in lines)
    _check_subtotal(subtotal)
    if total is not None and total != subtotal:
        shown = money.format_amount(subtotal, currency)
        raise CartTotalMismatchError(
            f"The total is {money.format_amount(total, currency)} but the lines add up "
            f"to {shown}: send {shown.split()[0]} or leave the total out."
        )
    if items_number is not None and items_number != count:
        raise CartItemsNumberMismatchError(
            f"items_number is {items_number} but the lines hold {count} items."
        )
    with transaction.atomic():
        cart = Cart.objects.create(
            subtotal=subtotal,
            total=subtotal,
            currency=currency,
            items_number=count,
            itemized=True,
            customer_ref=customer_ref,
        )
        CartLine.objects.bulk_create(
            CartLine(cart=cart, **dataclasses.asdict(line)) for line in lines
        )
        discount_apply_best_automatic(cart=cart)
    return _without_payments(cart)


def _without_payments(cart: Cart) -> Cart:
    """A cart just created has no payment attempts: its answer shows none without asking
    the database (one SELECT less per create)."""
    return cart_known_history(cart, payments=[])


def _check_subtotal(subtotal: Decimal) -> None:
    if subtotal > money.MAX_AMOUNT:
        raise CartSubtotalTooLargeError(
            f"The lines add up to {subtotal}; a cart holds at most {money.MAX_AMOUNT}."
        )


def cart_line_add(*, cart: Cart, line: LineInput) -> LineChange:
    """Add a line to a pending (or declined) itemized cart; see `_change_lines`."""

    def add(locked: Cart) -> CartLine:
        if locked.lines.count() >= MAX_LINES:
            raise CartTooManyLinesError()
        return CartLine.objects.create(cart=locked, **dataclasses.asdict(line))

    return _change_lines(cart, add)


def cart_line_update(*, cart: Cart, line_id: int, **changes) -> LineChange:
    """Change `quantity`, `unit_price` or `name` of one line; see `_change_lines`."""

    def update(locked: Cart) -> CartLine:
        found = _line_of(locked, line_id)
        for name, value in changes.items():
            setattr(found, name, value)
        found.save(update_fields=list(changes))
        return found

    return _change_lines(cart, update)


def cart_line_remove(*, cart: Cart, line_id: int) -> LineChange:
    """Remove one line; see `_change_lines`."""

    def remove(locked: Cart) -> CartLine:
        found = _line_of(locked, line_id)
        removed_id = found.pk
        found.delete()
        found.pk = removed_id
        return found

    return _change_lines(cart, remove)


def _line_of(cart: Cart, line_id: int) -> CartLine:
    try:
        return cart.lines.select_for_update().get(pk=line_id)
    except CartLine.DoesNotExist:
        raise CartLineNotFoundError() from None


def _change_lines(cart: Cart, change: Callable[[Cart], CartLine]) -> LineChange:
    """Run `change` on the locked cart, recount it, and re-evaluate its discount, all in
    one transaction; update `cart` in place. Raises `CartFrozenError` (409) for a paid
    cart or one being paid, `CartNotItemizedError` (409) for a cart made of a total."""
    with transaction.atomic():
        locked = Cart.objects.select_for_update().get(pk=cart.pk)
        locked.check_can_change()
        if not locked.itemized:
            raise CartNotItemizedError()
        applied = locked.applied_discount
        code = applied.code if applied is not None else None
        line = change(locked)
        locked.recount_lines()
        _check_subtotal(locked.subtotal)
        locked.save(update_fields=["subtotal", "items_number", "updated"])
        reason = discount_reevaluate(cart=locked)
        discount_apply_best_automatic(cart=locked)
        # Its share of the discount was split again over the cart's lines (other copies
        # of them): the answer shows the line as the cart now holds it (unless removed).
        shares = {kept.pk: kept.amount_discounted for kept in locked.lines.all()}
        line.amount_discounted = shares.get(line.pk, line.amount_discounted)
    for name in (*_LINE_FIELDS, "payment_status"):
        setattr(cart, name, getattr(locked, name))
    return LineChange(
        cart=cart, line=line, discount_removed=reason, discount_code=code if reason else None
    )


def cart_delete(*, cart: Cart) -> None:
    """Delete a cart nobody tried to pay (`Cart.check_deletable`), with the discount
    reservations it holds: a reserved use is free again at once (a cart never paid never
    consumed one, so `times_used` does not change)."""
    with transaction.atomic():
        locked = Cart.objects.select_for_update().get(pk=cart.pk)
        locked.check_deletable()
        # Reservations refer to their cart (PROTECT: a consumed use never vanishes with
        # it); those of a cart nobody tried to pay are reserved or released, never consumed.
        locked.discount_reservations.all().delete()
        locked.delete()


def cart_apply_discount(
    *, cart: Cart, discount: Discount, code: DiscountCode | None = None
) -> Cart:
    """Apply one discount to the cart, once, and update `cart` in place; `code` is the
    generated single-use code it was typed as, if it was one.

    Raises a `DiscountError` when the code is unusable or does not fit this cart
    (`DiscountNotBetterError` when the automatic promotion it holds gives as much),
    `CartDiscountAlreadyAppliedError` when the cart already has a typed code, and
    `CartFrozenError` (409) when the cart is paid or being paid.
    """
    now = timezone.now()
    with transaction.atomic():
        locked = cart_get_locked(cart.pk, with_has_payments=True)
        locked.check_can_change()
        if locked.discount_id is not None and not locked.discount.automatic:
            raise CartDiscountAlreadyAppliedError()
        amount_off = discount.amount_off_cart(locked)
        if locked.discount_id is not None:
            # An automatic promotion gives way to a code that takes off more.
            discount_make_room_for_code(cart=locked, amount_off=amount_off)
        locked.discount_code = code
        locked.set_discount(discount, amount_off)
        locked.save_discount()
        # Reserving the use re-checks, under the code's row lock, that it is still
        # usable: it may have been switched off or used up since the request was validated.
        # Last, after the cart's UPDATE: on PostgreSQL the applies of one code queue for
        # that lock, held from here to the COMMIT (the code's own re-checks, the INSERT).
        # A refusal rolls the cart's UPDATE back. The UPDATE takes no lock on the code's
        # row first: Django's foreign keys on PostgreSQL are checked at the COMMIT
        # (DEFERRABLE INITIALLY DEFERRED); checked at once, two applies of one code could
        # each hold the row shared for their key and wait for the other's to lock it.
        discount_reserve(discount=discount, cart=locked, amount=amount_off, at=now, code=code)

    # The caller's copy may predate a concurrent line change: show the cart as locked.
    for name in (*_LINE_FIELDS, "payment_status"):
        setattr(cart, name, getattr(locked, name))
    if not locked.has_payments:  # its answer shows none, without asking (it was changeable)
        cart_known_history(cart, payments=[])
    return cart


def cart_pay(
    *,
    cart: Cart,
    payment_method: str | None = None,
    idempotency_key: str | None = None,
    api: utils.PaymentAPI | None = None,
) -> Payment:
    """Charge the cart's total once and update `cart` in place: the entry point of
    `Cart.pay` and the API, done by `payments.services.payment_pay` (its docstring says
    how exactly once holds)."""
    return payment_pay(
        cart=cart, payment_method=payment_method, idempotency_key=idempotency_key, api=api
    )
