"""Why paying or refunding a cart was refused or did not complete, as the API answers it.

    raise PaymentOutcomeUnknownError()   # -> 504 {"error": {"code": "payment_outcome_unknown",
                                         #          ...}, "payment_taken": null, ...}

Provider trouble carries what it proves about the money: `payment_taken` (pay) or
`refund_made` (refund) is `false` only when it is proven that nothing was charged or
refunded (see `payments.provider.outcome_after_failure`), `null` while it is not known.
"""

from __future__ import annotations

from common.errors import ApplicationError, ConflictError


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


class ProviderTroubleError(ApplicationError):
    """The provider could not be used, or did not say what it did.

    `taken` is what the answer says of the money: False (proven: nothing was charged or
    refunded) or None (not known yet). `subject` picks the member: `payment_taken` for a
    pay, `refund_made` for a refund.
    """

    status_code = 503
    taken: bool | None = False
    refund_message: str | None = None  # the message when a refund meets the trouble

    def __init__(self, message: str | None = None, *, subject: str = "payment"):
        member = "refund_made" if subject == "refund" else "payment_taken"
        if message is None and subject == "refund":
            message = self.refund_message
        super().__init__(message, extra={member: self.taken, "retryable": True})


class ProviderBusyError(ProviderTroubleError):
    """Too many provider calls are in flight in this process: nothing was opened or sent."""

    status_code = 503
    code = "payment_provider_busy"
    message = (
        "The payment provider is answering slowly and this server has as many payments in "
        "flight as it allows. Nothing was sent. Retry after the Retry-After delay."
    )
    refund_message = (
        "The payment provider is answering slowly and this server has as many provider "
        "calls in flight as it allows. Nothing was sent. Retry after the Retry-After delay."
    )

    def __init__(self, message: str | None = None, *, subject: str = "payment", retry_after=1):
        super().__init__(message, subject=subject)
        self.headers = {"Retry-After": str(retry_after)}


class ProviderUnavailableError(ProviderTroubleError):
    status_code = 503
    code = "payment_provider_unavailable"
    message = "The payment provider is unavailable. No payment was taken; retry later."
    refund_message = "The payment provider is unavailable. Nothing was refunded; retry later."


class ProviderBadAnswerError(ProviderTroubleError):
    status_code = 502
    code = "payment_provider_error"
    message = (
        "The payment provider's answer could not be used, and its ledger shows no charge. "
        "No payment was taken; retry."
    )
    refund_message = (
        "The payment provider's answer could not be used, and its ledger shows no refund. "
        "Nothing was refunded; retry."
    )


class PaymentOutcomeUnknownError(ProviderTroubleError):
    status_code = 504
    code = "payment_outcome_unknown"
    message = (
        "The payment provider has not confirmed whether it charged. The cart stays frozen "
        "until it is known: retry the request, it resumes the same attempt and cannot "
        "charge twice."
    )
    taken = None


class RefundOutcomeUnknownError(ProviderTroubleError):
    status_code = 504
    code = "refund_outcome_unknown"
    message = (
        "The payment provider has not confirmed whether it made the refund. Its amount stays "
        "held: retry with the same Idempotency-Key, it resumes the same refund and cannot "
        "refund twice."
    )
    taken = None

    def __init__(self, message: str | None = None):
        super().__init__(message, subject="refund")


class EarlierPaymentOutcomeUnknownError(ConflictError):
    """A pay with another payment method while an earlier attempt may have charged."""

    code = "earlier_payment_outcome_unknown"
    message = (
        "An earlier payment of this cart may have been charged and its outcome is not known "
        "yet. Nothing was sent for this request. Retry later, or repeat the earlier request."
    )

    def __init__(self, message: str | None = None):
        super().__init__(message, extra={"payment_taken": None, "retryable": True})


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
