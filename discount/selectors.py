"""Reading discounts.

discount = discount_get_by_code(code="dis20")   # DiscountNotFoundError if none
"""

from discount.errors import DiscountNotFoundError
from discount.models import Discount, normalize_code


def discount_get_by_code(*, code: str) -> Discount:
    """The discount with this code in any case; `DiscountNotFoundError` if there is none,
    `DiscountCodeMalformedError` if `code` is not made of the code alphabet."""
    normalize_code(code)
    discount = Discount.objects.with_code(code).first()
    if discount is None:
        raise DiscountNotFoundError()
    return discount
