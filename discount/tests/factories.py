from datetime import timedelta
from decimal import Decimal

import factory
from django.utils import timezone

from discount.models import Discount, DiscountKind


class DiscountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Discount

    code = factory.Sequence(lambda n: f"CODE{n}")
    kind = DiscountKind.AMOUNT
    value = Decimal("5")
    description = "Five off"
    ended = factory.LazyFunction(lambda: timezone.now() + timedelta(days=2))


class PercentDiscountFactory(DiscountFactory):
    kind = DiscountKind.PERCENT
    value = Decimal("10")
