"""Flows that change carts: creating one and applying a discount code to it.

    cart = cart_create(total=Decimal("20"), currency="USD", items_number=5)
    cart_apply_discount(cart=cart, discount=discount)

Concurrency: `cart_apply_discount` locks the cart row (SELECT … FOR UPDATE on PostgreSQL;
on SQLite every write transaction starts IMMEDIATE, which serializes writers), so two
requests for one cart cannot both see "no discount yet": one wins, the other is refused.
The use of the code is counted in the same transaction (`discount_use`), so a refused
apply never consumes one.
"""

from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from cart.errors import CartDiscountAlreadyAppliedError
from cart.models import Cart
from discount.models import Discount
from discount.services import discount_use

_DISCOUNT_FIELDS = ("discount", "amount_discounted", "total", "updated")


def cart_create(*, total: Decimal, currency: str, items_number: int) -> Cart:
    return Cart.objects.create(
        subtotal=total, total=total, currency=currency, items_number=items_number
    )


def cart_apply_discount(*, cart: Cart, discount: Discount) -> Cart:
    """Apply one discount code to the cart, once, and update `cart` in place.

    Raises a `DiscountError` when the code is unusable or does not fit this cart,
    `CartDiscountAlreadyAppliedError` when the cart already has a discount, and
    `CartFrozenError` (409) when the cart is paid or being paid.
    """
    with transaction.atomic():
        locked = Cart.objects.select_for_update().get(pk=cart.pk)
        locked.check_can_change()
        if locked.discount_id is not None:
            raise CartDiscountAlreadyAppliedError()
        # Re-read the code inside the transaction: it may have been switched off or
        # used up since the request was validated.
        current = Discount.objects.get(pk=discount.pk)
        current.check_usable(at=timezone.now())
        amount_off = current.amount_off(locked.subtotal, locked.currency)
        discount_use(discount=current)

        locked.discount = current
        locked.amount_discounted = amount_off
        locked.total = locked.subtotal - amount_off
        locked.save(update_fields=_DISCOUNT_FIELDS)

    for name in (*_DISCOUNT_FIELDS, "subtotal", "payment_status"):
        setattr(cart, name, getattr(locked, name))
    discount.times_used = current.times_used
    return cart
