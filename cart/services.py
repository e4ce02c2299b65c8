"""Flows that change carts: creating one, applying a discount code, paying it.

    cart = cart_create(total=Decimal("20"), currency="USD", items_number=5)
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

Paying and refunding are `payments.services` (`cart_pay` is the entry point the tutorial's
`Cart.pay` and the API call); reconciling is `payments.reconcile`.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.utils import timezone

import utils
from cart.errors import CartDiscountAlreadyAppliedError
from cart.models import Cart
from discount.models import Discount
from discount.services import discount_reserve
from payments.models import Payment
from payments.services import payment_pay

_DISCOUNT_FIELDS = ("discount", "amount_discounted", "total", "updated")


def cart_create(*, total: Decimal, currency: str, items_number: int) -> Cart:
    """A new, pending cart; `total` is its amount before any discount."""
    return Cart.objects.create(
        subtotal=total, total=total, currency=currency, items_number=items_number
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


def cart_apply_discount(*, cart: Cart, discount: Discount) -> Cart:
    """Apply one discount code to the cart, once, and update `cart` in place.

    Raises a `DiscountError` when the code is unusable or does not fit this cart,
    `CartDiscountAlreadyAppliedError` when the cart already has a discount, and
    `CartFrozenError` (409) when the cart is paid or being paid.
    """
    now = timezone.now()
    with transaction.atomic():
        locked = Cart.objects.select_for_update().get(pk=cart.pk)
        locked.check_can_change()
        if locked.discount_id is not None:
            raise CartDiscountAlreadyAppliedError()
        amount_off = discount.amount_off(locked.subtotal, locked.currency)
        # Reserving the use re-checks, under the code's row lock, that it is still
        # usable: it may have been switched off or used up since the request was validated.
        discount_reserve(discount=discount, cart=locked, amount=amount_off, at=now)

        locked.discount = discount
        locked.amount_discounted = amount_off
        locked.total = locked.subtotal - amount_off
        locked.save(update_fields=_DISCOUNT_FIELDS)

    for name in (*_DISCOUNT_FIELDS, "subtotal", "payment_status"):
        setattr(cart, name, getattr(locked, name))
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
