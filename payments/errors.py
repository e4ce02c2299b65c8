"""Why paying or refunding a cart was refused or did not complete, as the API answers it.

    raise PaymentOutcomeUnknownError()   # -> 504 {"error": {"code": "payment_outcome_unknown",
                                         #          ...}, "payment_taken": null, ...}

Provider trouble carries what it proves about the money: `payment_taken` (pay) or
`refund_made` (refund) is `false` only when it is proven that nothing was charged or
refunded (the rule is `payments.provider.outcome_after_failure`), `null` while it is not
known. Each error names the members its answer carries (`extra_schema`), which the API
docs show on the statuses where it occurs.
"""

from __future__ import annotations

from typing import Any

from common.errors import ApplicationError, ConflictError

RETRYABLE = {"type": "boolean", "description": "Repeating the request is safe."}


class IdempotencyKeyReusedError(ConflictError):
    code = "idempotency_key_reused"
    message = (
        "This Idempotency-Key was used for a different request (another payment method, "
        "cart total or amount). Use a new key for a new request."
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


class RefundDeclinedError(ApplicationError):
    """The provider answered that it could not make the refund: nothing was given back,
    the amount is free again. The answer holds the cart and the refund."""

    status_code = 402
    code = "refund_declined"
    message = "The payment provider could not make the refund. Nothing was refunded."
    field = "amount"
    extra_schema = {
        "cart": {"$ref": "#/components/schemas/Cart"},
        "refund": {"$ref": "#/components/schemas/Refund"},
    }

    def __init__(self, *, cart: dict, refund: dict):
        super().__init__(extra={"cart": cart, "refund": refund})


class ProviderTroubleError(ApplicationError):
    """The provider could not be used, or did not say what it did, for a pay.

    `taken` is what the answer says of the money: False (proven: nothing was charged) or
    None (not known yet). The `Refund…` subclasses say it of a refund (`refund_made`).
    """

    status_code = 503
    taken: bool | None = False
    member = "payment_taken"
    extra_schema = {
        "payment_taken": {
            "type": "boolean",
            "nullable": True,
            "description": "false: proven that nothing was charged. null: not known yet; "
            "retrying resumes the same attempt and cannot charge twice.",
        },
        "retryable": RETRYABLE,
    }

    @classmethod
    def extra_members(cls) -> dict[str, Any]:
        return {cls.member: cls.taken, "retryable": True}


class RefundTroubleMixin:
    """The same trouble, met by a refund: the answer says `refund_made`."""

    member = "refund_made"
    extra_schema = {
        "refund_made": {
            "type": "boolean",
            "nullable": True,
            "description": "false: proven that nothing was refunded. null: not known yet; "
            "retrying with the same Idempotency-Key resumes the same refund.",
        },
        "retryable": RETRYABLE,
    }


class ProviderBusyError(ProviderTroubleError):
    """Too many provider calls are in flight in this process: nothing was opened or sent."""

    status_code = 503
    code = "payment_provider_busy"
    message = (
        "The payment provider is answering slowly and this server has as many payments in "
        "flight as it allows. Nothing was sent. Retry after the Retry-After delay."
    )

    # For a request whose earlier request's attempt is still open: nothing is proven.
    earlier_open_message = (
        "The payment provider is answering slowly and this server has as many payments in "
        "flight as it allows. Nothing was sent for this request, but the cart's payment an "
        "earlier request started is not known yet to have charged or not. Retry after the "
        "Retry-After delay: it resumes that payment and cannot charge twice."
    )

    def __init__(self, message: str | None = None, *, retry_after: int = 1):
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}

    def with_earlier_open(self) -> ProviderBusyError:
        """The same refusal, for a request that would resume an attempt (or refund) an
        earlier request left open: what it says of the money is "not known yet"."""
        unknown = type(self)(self.earlier_open_message)
        unknown.headers = self.headers
        unknown.extra = {**self.extra, self.member: None}
        return unknown


class ProviderUnavailableError(ProviderTroubleError):
    status_code = 503
    code = "payment_provider_unavailable"
    message = "The payment provider is unavailable. No payment was taken; retry later."


class ProviderBadAnswerError(ProviderTroubleError):
    status_code = 502
    code = "payment_provider_error"
    message = "The payment provider refused the request. No payment was taken."


class PaymentOutcomeUnknownError(ProviderTroubleError):
    status_code = 504
    code = "payment_outcome_unknown"
    message = (
        "The payment provider has not confirmed whether it charged. The cart stays frozen "
        "until it is known: retry the request, it resumes the same attempt and cannot "
        "charge twice."
    )
    taken = None


class RefundProviderBusyError(RefundTroubleMixin, ProviderBusyError):
    message = (
        "The payment provider is answering slowly and this server has as many provider "
        "calls in flight as it allows. Nothing was sent. Retry after the Retry-After delay."
    )
    earlier_open_message = (
        "The payment provider is answering slowly and this server has as many provider "
        "calls in flight as it allows. Nothing was sent for this request, but the refund "
        "an earlier request with this Idempotency-Key started is not known yet to have been "
        "made or not; its amount stays held. Retry with the same key after the Retry-After "
        "delay: it resumes that refund and cannot refund twice."
    )


class RefundProviderUnavailableError(RefundTroubleMixin, ProviderUnavailableError):
    message = "The payment provider is unavailable. Nothing was refunded; retry later."


class RefundProviderBadAnswerError(RefundTroubleMixin, ProviderBadAnswerError):
    message = "The payment provider refused the refund request. Nothing was refunded."


class RefundOutcomeUnknownError(RefundTroubleMixin, ProviderTroubleError):
    status_code = 504
    code = "refund_outcome_unknown"
    message = (
        "The payment provider has not confirmed whether it made the refund. Its amount stays "
        "held: retry with the same Idempotency-Key, it resumes the same refund and cannot "
        "refund twice."
    )
    taken = None


class EarlierPaymentOutcomeUnknownError(ConflictError):
    """A pay with another payment method while an earlier attempt may have charged."""

    code = "earlier_payment_outcome_unknown"
    message = (
        "An earlier payment of this cart may have been charged and its outcome is not known "
        "yet. Nothing was sent for this request. Retry later, or repeat the earlier request."
    )
    extra_schema = {
        "payment_taken": {
            "type": "boolean",
            "nullable": True,
            "description": "null: the earlier payment may have charged the cart.",
        },
        "retryable": RETRYABLE,
    }

    @classmethod
    def extra_members(cls) -> dict[str, Any]:
        return {"payment_taken": None, "retryable": True}


class CartNotPaidError(ConflictError):
    code = "cart_not_paid"
    message = "Only a paid cart can be refunded."


class RefundExceedsCapturedError(ConflictError):
    code = "refund_exceeds_captured"
    message = "The refunds of this cart would exceed what was charged."
    field = "amount"


class RefundInProgressError(ConflictError):
    code = "refund_in_progress"
    message = "This refund is being sent to the payment provider right now; retry shortly."


class RefundExceedsLineError(ConflictError):
    """A refund by line asks for more units of a line than are left to give back."""

    code = "refund_exceeds_line"
    message = "More units of this line than are left to refund."
    field = "lines"
