"""Why a cart refuses a change.

raise CartPaidError()   # -> 409 {"error": {"code": "cart_paid", ...}}
"""

from common.errors import ApplicationError, ConflictError


class CartDiscountAlreadyAppliedError(ApplicationError):
    code = "discount_already_applied"
    message = "This cart already has a discount; a cart takes one discount code."
    field = "code"


class CartFrozenError(ConflictError):
    """A paid cart, or one being paid, no longer changes."""

    code = "cart_frozen"
    message = "This cart can no longer change."


class CartPaidError(CartFrozenError):
    code = "cart_paid"
    message = "This cart is paid and can no longer change."


class CartPaymentInProgressError(CartFrozenError):
    code = "cart_payment_in_progress"
    message = "This cart is being paid and cannot change until the payment completes."


class CartNotDeletableError(ConflictError):
    """Someone tried to pay the cart: its attempts belong to the payment ledger."""

    code = "cart_not_deletable"
    message = "A cart someone tried to pay stays: its payment attempts are in the ledger."


class InvalidPaymentTransitionError(ConflictError):
    code = "invalid_payment_transition"
    message = "The cart's payment status cannot change that way."


class CartTotalMismatchError(ApplicationError):
    """A `total` sent beside lines must be what the lines add up to."""

    code = "total_mismatch"
    message = "The total is not the sum of the lines' quantity × unit_price."
    field = "total"


class CartItemsNumberMismatchError(ApplicationError):
    """An `items_number` sent beside lines must be the sum of their quantities."""

    code = "items_number_mismatch"
    message = "items_number is not the sum of the lines' quantities."
    field = "items_number"


class CartSubtotalTooLargeError(ApplicationError):
    code = "subtotal_too_large"
    message = "The lines add up to more than a cart may hold."
    field = "lines"


class CartNotItemizedError(ConflictError):
    """A cart created with a total alone stays a total: its lines are not known."""

    code = "cart_not_itemized"
    message = "This cart was created with a total and no lines: lines cannot be added to it."


class CartLineNotFoundError(ApplicationError):
    status_code = 404
    code = "line_not_found"
    message = "This cart has no line with that id."
    field = "line_id"


class CartTooManyLinesError(ApplicationError):
    code = "too_many_lines"
    message = "A cart holds at most 500 lines."
    field = "lines"
