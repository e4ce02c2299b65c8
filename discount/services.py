"""Writing discounts: creating and editing them, and counting their uses.

    discount = discount_create(code="DIS20", value=Decimal("5"), ended=tomorrow)
    discount_use(discount=discount)   # +1 use, in SQL; DiscountUsageLimitReachedError if full

A use is counted when a code is applied to a cart (see `cart.services`). The count is a
single conditional UPDATE, so it can never pass the limit however many requests race;
the database's check constraint backs it up.
"""

from django.db import IntegrityError, transaction
from django.db.models import F, Q

from discount.errors import DiscountCodeTakenError, DiscountUsageLimitReachedError
from discount.models import Discount


def discount_create(**fields) -> Discount:
    discount = Discount(**fields)
    _save_unique(discount)
    return discount


def discount_update(*, discount: Discount, **fields) -> Discount:
    for name, value in fields.items():
        setattr(discount, name, value)
    _save_unique(discount)
    return discount


def _save_unique(discount: Discount) -> None:
    # The serializer already checked the code; this catches two requests racing for it.
    try:
        with transaction.atomic():
            discount.save()
    except IntegrityError:
        if Discount.objects.with_code(discount.code).exclude(pk=discount.pk).exists():
            raise DiscountCodeTakenError() from None
        raise


def discount_use(*, discount: Discount) -> None:
    """Count one use of the code, refusing when the limit is reached."""
    counted = (
        Discount.objects.filter(pk=discount.pk)
        .filter(Q(usage_limit__isnull=True) | Q(times_used__lt=F("usage_limit")))
        .update(times_used=F("times_used") + 1)
    )
    if not counted:
        raise DiscountUsageLimitReachedError()
    discount.refresh_from_db(fields=["times_used"])
