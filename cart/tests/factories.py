from decimal import Decimal

import factory

from cart.models import Cart


class CartFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Cart

    total = Decimal("20.00")
    currency = "USD"
    items_number = 5
