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
