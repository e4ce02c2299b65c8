"""Writing discounts: creating, editing and deleting them, and counting their uses.

    discount = discount_create(code="DIS20", value=Decimal("5"), ended=tomorrow)
    discount = discount_update(discount=discount, data={"active": False})
    discount_use(discount=discount, at=now)   # +1 use in SQL, or the DiscountError why not
    discount_delete(discount=discount)        # DiscountInUseError once a cart used it

Every write runs the rules of `Discount.clean()`, so the API, the admin and any other
door refuse the same things with the same messages (Django's ValidationError, which the
API answers as a 400 naming the field and the admin shows beside it).

A use is counted when a code is applied to a cart (see `cart.services`). The count is a
single conditional UPDATE, so it can never pass the limit however many requests race;
the database's check constraint backs it up.
"""

from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F, Q

from discount.errors import DiscountCodeTakenError, DiscountUsageLimitReachedError
from discount.models import Discount, DiscountKind


def discount_create(
    *,
    code: str,
    value: Decimal,
    kind: str = DiscountKind.AMOUNT,
    currency: str = "",
    description: str = "",
    started: datetime | None = None,
    ended: datetime | None = None,
    active: bool = True,
    min_cart_total: Decimal | None = None,
    usage_limit: int | None = None,
) -> Discount:
    """Create a discount code. Raises `ValidationError` for a broken rule (`code_taken`
    when the code exists in any case, `already_expired`, …)."""
    discount = Discount(
        code=code,
        value=value,
        kind=kind,
        currency=currency,
        description=description,
        started=started,
        ended=ended,
        active=active,
        min_cart_total=min_cart_total,
        usage_limit=usage_limit,
    )
    discount.full_clean(validate_unique=False, validate_constraints=False)
    with _code_unique(code):
        discount.save()
    return discount


def discount_update(*, discount: Discount, data: dict[str, Any]) -> Discount:
    """Change some settings of a code; its use count is never written from here, and a
    code already used keeps its kind (`kind_in_use`).

    The row is locked and re-read, so a use counted meanwhile is neither lost nor able to
    slip past a lowered `usage_limit` (the model's rules run on the fresh row).
    """
    with transaction.atomic():
        locked = Discount.objects.select_for_update().get(pk=discount.pk)
        for name, value in data.items():
            setattr(locked, name, value)
        locked.full_clean(validate_unique=False, validate_constraints=False)
        with _code_unique(locked.code, exclude_pk=locked.pk):
            locked.save(update_fields=list(data))
    return locked


def discount_delete(*, discount: Discount) -> None:
    """Delete a code no cart has used (a typo, say). Raises `DiscountInUseError` otherwise:
    carts keep referring to the codes they used; switch such a code off instead."""
    with transaction.atomic():
        locked = Discount.objects.select_for_update().get(pk=discount.pk)
        locked.check_deletable()
        locked.delete()


@contextmanager
def _code_unique(code: str, exclude_pk: int | None = None):
    # The serializer already checked the code; this catches two requests racing for it.
    try:
        with transaction.atomic():
            yield
    except IntegrityError:
        if Discount.objects.with_code(code).exclude(pk=exclude_pk).exists():
            raise DiscountCodeTakenError() from None
        raise


def discount_use(*, discount: Discount, at: datetime) -> None:
    """Count one use of the code, if it is still usable at `at`, in one conditional UPDATE.

    The UPDATE itself re-checks what may have changed since `discount` was read (switched
    off, window, limit), so the common case costs one query; only a refusal re-reads the
    row, to raise the `DiscountError` that says why.
    """
    counted = (
        Discount.objects.filter(pk=discount.pk, active=True)
        .filter(Q(started__isnull=True) | Q(started__lte=at))
        .filter(Q(ended__isnull=True) | Q(ended__gt=at))
        .filter(Q(usage_limit__isnull=True) | Q(times_used__lt=F("usage_limit")))
        .update(times_used=F("times_used") + 1)
    )
    if not counted:
        Discount.objects.get(pk=discount.pk).check_usable(at=at)
        raise DiscountUsageLimitReachedError()  # usable again already: it was full
    discount.times_used += 1  # at least; other carts may have used it meanwhile
