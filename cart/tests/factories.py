from decimal import Decimal

import factory

from cart.models import Cart


class CartFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Cart

    total = Decimal("20.00")
    currency = "USD"
    items_number = 5


def itemized_cart(*lines: tuple[str, int, str], currency: str = "USD") -> Cart:
    """A cart made of lines `(sku, quantity, unit_price)`, through the service."""
    from cart.services import LineInput, cart_create

    return cart_create(
        currency=currency,
        lines=[LineInput(sku, sku.title(), qty, Decimal(price)) for sku, qty, price in lines],
    )
