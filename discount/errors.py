"""Why a discount code cannot be used. Each reason has its own machine-readable code.

raise DiscountExpiredError()
# -> 400 {"error": {"code": "discount_expired", "field": "code", ...}}
"""

from common.errors import ApplicationError, ConflictError


class DiscountError(ApplicationError):
    """A discount code was refused. The field at fault is the submitted `code`."""

    field = "code"


class DiscountNotFoundError(DiscountError):
    code = "discount_not_found"
    message = "This discount code does not exist."


class DiscountInactiveError(DiscountError):
    code = "discount_inactive"
    message = "This discount code is not active."


class DiscountNotStartedError(DiscountError):
    code = "discount_not_started"
    message = "This discount code is not valid yet."


class DiscountExpiredError(DiscountError):
    code = "discount_expired"
    message = "This discount code has expired."


class DiscountUsageLimitReachedError(DiscountError):
    code = "discount_usage_limit_reached"
    message = "This discount code has been used as many times as it allows."


class DiscountCurrencyMismatchError(DiscountError):
    code = "discount_currency_mismatch"
    message = "This discount code is for carts in another currency."


class DiscountMinimumNotMetError(DiscountError):
    code = "discount_minimum_not_met"
    message = "The cart total is below this discount code's minimum."


class DiscountNoEffectError(DiscountError):
    code = "discount_has_no_effect"
    message = "This discount code would take nothing off this cart."


class DiscountCodeTakenError(DiscountError):
    code = "code_taken"
    message = "A discount with this code already exists (codes are case-insensitive)."


class DiscountInUseError(ConflictError):
    """A code carts refer to cannot be deleted; switching it off stops it."""

    code = "discount_in_use"
    message = "Carts used this code, so it cannot be deleted: switch it off instead."
