"""Why a discount code cannot be used. Each reason has its own machine-readable code.

raise DiscountExpiredError()
# -> 400 {"error": {"code": "discount_expired", "field": "code", ...}}

The reasons that say whether a code exists (`DiscountUnavailableError`: unknown, off, not
started, expired, used up) are told to staff; an anonymous caller with ENV=PROD gets one
`DiscountInvalidError` for all of them (see `public_discount_error`), so guessing codes
teaches nothing. The reasons that depend on the cart (currency, minimum) stay specific:
they only ever concern a code that is live, which a guess that succeeds reveals anyway.
"""

from common.errors import ApplicationError, ConflictError


class DiscountError(ApplicationError):
    """A discount code was refused. The field at fault is the submitted `code`."""

    field = "code"


class DiscountCodeMalformedError(DiscountError):
    code = "invalid_code"
    message = (
        "A discount code is made of the letters A-Z (any case), the digits 0-9, '-' and "
        "'_', starting with a letter or digit, at most 64 characters."
    )


class DiscountInvalidError(DiscountError):
    """What an anonymous caller hears instead of any `DiscountUnavailableError`."""

    code = "discount_invalid"
    message = "This discount code is not valid."


class DiscountUnavailableError(DiscountError):
    """The code cannot be used by anyone now; the reason says whether it exists."""


class DiscountNotFoundError(DiscountUnavailableError):
    code = "discount_not_found"
    message = "This discount code does not exist."


class DiscountInactiveError(DiscountUnavailableError):
    code = "discount_inactive"
    message = "This discount code is not active."


class DiscountNotStartedError(DiscountUnavailableError):
    code = "discount_not_started"
    message = "This discount code is not valid yet."


class DiscountExpiredError(DiscountUnavailableError):
    code = "discount_expired"
    message = "This discount code has expired."


class DiscountUsageLimitReachedError(DiscountUnavailableError):
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


class DiscountReservationExpiredError(ConflictError):
    """Paying a cart whose reserved use of a code expired, and the code cannot be
    reserved again: the discount has left the cart and nothing was charged."""

    code = "discount_reservation_expired"
    extra_schema = {"cart": {"$ref": "#/components/schemas/Cart"}}
    message = (
        "This cart's discount was reserved for a limited time, which has passed, and the "
        "code can no longer be used: it was removed from the cart. Nothing was charged; "
        "check the cart's new total and pay again."
    )
    field = "code"


def public_discount_error(error: DiscountError, *, reveal_reasons: bool) -> DiscountError:
    """The refusal a caller is told: `error` itself, or `DiscountInvalidError` when the
    reasons are hidden from this caller and `error` would say whether the code exists."""
    if reveal_reasons or not isinstance(error, DiscountUnavailableError):
        return error
    return DiscountInvalidError()


class DiscountInUseError(ConflictError):
    """A code carts refer to cannot be deleted; switching it off stops it."""

    code = "discount_in_use"
    message = "Carts used this code, so it cannot be deleted: switch it off instead."


class DiscountBudgetExhaustedError(DiscountUnavailableError):
    code = "discount_budget_exhausted"
    message = "This discount code has given away as much as its budget allows."


class DiscountNoMatchingLinesError(DiscountError):
    code = "discount_no_matching_lines"
    message = "This discount code applies to certain products only, and this cart has none."


class DiscountCustomerRequiredError(DiscountError):
    code = "discount_customer_required"
    message = "This discount code counts its uses per customer: the cart needs a customer_ref."


class DiscountCustomerLimitReachedError(DiscountError):
    code = "discount_customer_limit_reached"
    message = "This customer has used this discount code as many times as it allows."


class DiscountFirstOrderOnlyError(DiscountError):
    code = "discount_first_order_only"
    message = "This discount code is for a customer's first order only."


class DiscountCodeUsedError(DiscountUnavailableError):
    code = "discount_code_used"
    message = "This single-use discount code has been used already."


class DiscountNotBetterError(DiscountError):
    """A code gives no more than the automatic promotion the cart already holds."""

    code = "discount_not_better"
    message = (
        "This cart already has an automatic promotion that takes off as much or more than "
        "this code would: it keeps the promotion."
    )
