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


class IdempotencyKeyReusedError(ConflictError):
    code = "idempotency_key_reused"
    message = (
        "This Idempotency-Key was used for a different payment request (another payment "
        "method or cart total). Use a new key for a new request."
    )
    field = "Idempotency-Key"


class PaymentMethodRefusedError(ApplicationError):
    code = "payment_method_refused"
    message = "The payment provider does not accept this payment method. Nothing was charged."
    field = "payment_method"


class CardDeclinedError(ApplicationError):
    """The provider declined the charge: the cart is `failed` and may be paid again.

    Not a failure of the request: the answer holds the cart and the attempt that says why.
    """

    status_code = 402
    code = "card_declined"
    message = "The card was declined."
    field = "payment_method"
    extra_schema = {
        "error": {
            "decline_code": {
                "type": "string",
                "description": "Why the provider declined, e.g. insufficient_funds.",
            }
        },
        "cart": {"$ref": "#/components/schemas/Cart"},
        "payment": {"$ref": "#/components/schemas/Payment"},
    }

    def __init__(self, *, decline_code: str, cart: dict, payment: dict):
        super().__init__(
            extra={"error": {"decline_code": decline_code}, "cart": cart, "payment": payment}
        )


class ProviderTroubleError(ApplicationError):
    """The provider could not be used. Nothing was charged and the request can be retried,
    except `PaymentOutcomeUnknownError`, where a retry settles the open attempt."""

    status_code = 503
    payment_taken: bool | None = False
    extra_schema = {
        "payment_taken": {
            "type": "boolean",
            "nullable": True,
            "description": "false: nothing was charged. null: not known yet; retrying "
            "resumes the same attempt and cannot charge twice.",
        },
        "retryable": {"type": "boolean", "description": "Repeating the request is safe."},
    }

    def __init__(self, message: str | None = None):
        super().__init__(message)

    @classmethod
    def extra_members(cls) -> dict:
        return {"payment_taken": cls.payment_taken, "retryable": True}


class ProviderUnavailableError(ProviderTroubleError):
    status_code = 503
    code = "payment_provider_unavailable"
    message = "The payment provider is unavailable. No payment was taken; retry later."


class ProviderTimeoutError(ProviderTroubleError):
    status_code = 504
    code = "payment_provider_timeout"
    message = "The payment provider did not answer in time. No payment was taken; retry."


class ProviderBadAnswerError(ProviderTroubleError):
    status_code = 502
    code = "payment_provider_error"
    message = "The payment provider answered nonsense. No payment was taken; retry."


class PaymentOutcomeUnknownError(ProviderTroubleError):
    status_code = 504
    code = "payment_outcome_unknown"
    message = (
        "The payment provider did not confirm whether it charged. The cart stays frozen "
        "until it is known: retry the request, it resumes the same attempt and cannot "
        "charge twice."
    )
    payment_taken = None
