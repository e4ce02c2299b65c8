"""Reading discounts.

discount = discount_get_by_code(code="dis20")   # DiscountNotFoundError if none
discount.check_usable(at=now, reserved=discount.reserved_uses_now)
"""

from datetime import datetime

from django.utils import timezone

from discount.errors import DiscountNotFoundError
from discount.models import Discount, normalize_code


def discount_get_by_code(*, code: str, at: datetime | None = None) -> Discount:
    """The discount with this code in any case, with `reserved_uses_now` (its live
    reservations at `at`, default now) read in the same query; `DiscountNotFoundError` if
    there is none, `DiscountCodeMalformedError` if `code` is not made of the code alphabet.
    """
    normalize_code(code)
    at = at or timezone.now()
    discount = Discount.objects.with_code(code).with_reserved_uses(at=at).first()
    if discount is None:
        raise DiscountNotFoundError()
    return discount
