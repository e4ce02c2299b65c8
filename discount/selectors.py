"""Reading discounts.

discount = discount_get_by_code(code="dis20")   # DiscountNotFoundError if none
"""

from discount.errors import DiscountNotFoundError
from discount.models import Discount


def discount_get_by_code(*, code: str) -> Discount:
    discount = Discount.objects.with_code(code).first()
    if discount is None:
        raise DiscountNotFoundError()
    return discount


def discount_code_taken(*, code: str, exclude_pk: int | None = None) -> bool:
    return Discount.objects.with_code(code).exclude(pk=exclude_pk).exists()
