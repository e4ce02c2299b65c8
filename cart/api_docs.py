"""What the API docs say about carts: each operation's text for its caller, request
examples that work as offered (in DEV, with the fake provider), response examples, and
the errors each operation can answer (see `common.schema.documented`).

    @extend_schema_view(create=api_docs.CREATE)
    class CartViewSet(…): …
"""

from decimal import Decimal

from drf_spectacular.utils import OpenApiParameter

from cart.errors import (
    CartDiscountAlreadyAppliedError,
    CartPaidError,
    CartPaymentInProgressError,
    InvalidPaymentTransitionError,
)
from cart.serializers import (
    CartPaymentSerializer,
    CartRefundSerializer,
    CartSerializer,
    PayCartSerializer,
)
from common import money
from common.schema import ErrorDoc, documented, field_error
from discount.api_docs import CREATE_EXAMPLE as DISCOUNT_EXAMPLE
from discount.errors import (
    DiscountCodeMalformedError,
    DiscountCurrencyMismatchError,
    DiscountExpiredError,
    DiscountInactiveError,
    DiscountInvalidError,
    DiscountMinimumNotMetError,
    DiscountNoEffectError,
    DiscountNotFoundError,
    DiscountNotStartedError,
    DiscountReservationExpiredError,
    DiscountUsageLimitReachedError,
)
from discount.serializers import ApplyDiscountSerializer
from payments.errors import (
    CardDeclinedError,
    CartNotPaidError,
    EarlierPaymentOutcomeUnknownError,
    IdempotencyKeyReusedError,
    PaymentMethodRefusedError,
    PaymentOutcomeUnknownError,
    ProviderBadAnswerError,
    ProviderBusyError,
    ProviderUnavailableError,
    RefundDeclinedError,
    RefundExceedsCapturedError,
    RefundInProgressError,
    RefundOutcomeUnknownError,
    RefundProviderBadAnswerError,
    RefundProviderBusyError,
    RefundProviderUnavailableError,
)
from payments.serializers import RefundCartSerializer

CART_ID = "3f2c7a9e-1b4d-4e8a-9c61-5d0b7e2f8a13"
CREATED = "2026-05-04T09:30:00.000000Z"
COMPLETED = "2026-05-04T09:31:02.000000Z"

CART_EXAMPLE = {
    "id": CART_ID,
    "total": Decimal("20.00"),
    "subtotal": Decimal("20.00"),
    "amount_discounted": Decimal("0.00"),
    "total_discounted": Decimal("20.00"),
    "amount_refunded": Decimal("0.00"),
    "items_number": 5,
    "currency": "USD",
    "payment_status": "pending",
    "discount": None,
    "payments": [],
    "refunds": [],
    "created": CREATED,
    "updated": CREATED,
}

DISCOUNTED_CART_EXAMPLE = {
    **CART_EXAMPLE,
    "total": Decimal("15.00"),
    "amount_discounted": Decimal("5.00"),
    "total_discounted": Decimal("15.00"),
    "discount": {"id": 1, "code": DISCOUNT_EXAMPLE["code"], "kind": "amount"},
    "updated": "2026-05-04T09:30:40.000000Z",
}

PAYMENT_EXAMPLE = {
    "id": "9a7d5c1e-2f3b-4a6d-8e0c-4b1f7a2d9c35",
    "amount": Decimal("15.00"),
    "currency": "USD",
    "status": "success",
    "payment_method": "pm_card_visa",
    "provider_payment_id": "pay_5e0c2b7a9d1f4c3e8b6a0d2f",
    "decline_code": "",
    "error_code": "",
    "error": "",
    "idempotency_key": f"cart-{CART_ID}-order-1042",
    "created": "2026-05-04T09:31:01.000000Z",
    "completed": COMPLETED,
}

PAID_EXAMPLE = {
    "cart": {
        **DISCOUNTED_CART_EXAMPLE,
        "payment_status": "success",
        "payments": [PAYMENT_EXAMPLE],
        "updated": COMPLETED,
    },
    "payment": PAYMENT_EXAMPLE,
}

DECLINED_PAYMENT_EXAMPLE = {
    **PAYMENT_EXAMPLE,
    "status": "failed",
    "payment_method": "pm_card_chargeDeclinedInsufficientFunds",
    "decline_code": "insufficient_funds",
}

CART_ERRORS = [
    field_error("currency", "unknown_currency", "'XYZ' is not an ISO 4217 currency code."),
    field_error("total", "too_many_decimals", money.precision_message("USD")),
]

LIST = documented(
    summary="List carts, newest first",
    description=(
        "Every cart, newest first, in pages of `page_size` (at most 100; 20 by default). "
        "Follow `next` for the next page: the cursor stays correct while carts are created. "
        "Filter with `payment_status` and `currency` (any case). Needs a staff token in "
        "production."
    ),
    responses={200: (CartSerializer, CART_EXAMPLE)},
)

CREATE = documented(
    summary="Create a cart",
    description=(
        "Creates a pending cart for `total` in `currency` (ISO 4217, any case; the total "
        "may have no more decimals than the currency allows: 2 for USD, 0 for JPY). Keep "
        "the returned `id`: it is the key to read, discount and pay the cart."
    ),
    request_example={"total": Decimal("20.00"), "currency": "USD", "items_number": 5},
    responses={201: (CartSerializer, CART_EXAMPLE)},
    errors=CART_ERRORS,
)

RETRIEVE = documented(
    summary="Get one cart",
    description=(
        "The cart with its amounts (`subtotal` before discount, `total` to pay), its "
        "discount and every payment attempt, oldest first."
    ),
    responses={200: (CartSerializer, PAID_EXAMPLE["cart"])},
)

APPLY_DISCOUNT = documented(
    summary="Apply a discount code to the cart",
    description=(
        "Takes the code's amount or percentage off the cart's subtotal (never below zero) "
        "and reserves one use of the code until the cart is paid (for "
        "DISCOUNT_RESERVATION_TTL, 30 minutes by default). A cart takes one code; a paid "
        "cart, or one being paid, takes none (409). The code is matched in any case. In "
        "production an anonymous caller gets `discount_invalid` for a code that does not "
        "exist or cannot be used now."
    ),
    request=ApplyDiscountSerializer,
    request_example={"code": DISCOUNT_EXAMPLE["code"].lower()},
    responses={200: (CartSerializer, DISCOUNTED_CART_EXAMPLE)},
    errors=[
        DiscountCodeMalformedError,
        DiscountInvalidError,
        DiscountNotFoundError,
        DiscountInactiveError,
        DiscountNotStartedError,
        DiscountExpiredError,
        DiscountUsageLimitReachedError,
        DiscountCurrencyMismatchError,
        DiscountMinimumNotMetError,
        DiscountNoEffectError,
        CartDiscountAlreadyAppliedError,
        CartPaidError,
        CartPaymentInProgressError,
    ],
)

PAY = documented(
    summary="Pay the cart through the payment provider",
    description=(
        "Charges the cart's `total` once. 200: paid. 402: declined; the cart is `failed` "
        "and may be paid again, with another payment method. Send an `Idempotency-Key` to "
        "make retries safe: the same key returns the same outcome and never charges twice. "
        "On 502, 503 or 504, `payment_taken` says what is known of the money: `false` only "
        "when it is proven that nothing was charged; `null` while the provider has not "
        "said (504 `payment_outcome_unknown`: retry, it resumes the same attempt; another "
        "payment method is refused with 409 `earlier_payment_outcome_unknown` until the "
        "outcome is known). 503 `payment_provider_busy`: this server already waits on a "
        "slow provider for as many payments as it allows; nothing was sent, retry after "
        "`Retry-After` seconds. In development, the fake provider's test methods decide the "
        "outcome: `pm_card_visa` always succeeds, `pm_card_chargeDeclined` is declined."
    ),
    request=PayCartSerializer,
    request_example={"payment_method": "pm_card_visa"},
    parameters=[
        OpenApiParameter(
            "Idempotency-Key",
            str,
            OpenApiParameter.HEADER,
            description="Repeat a request with the same key to get the same outcome "
            "instead of a second charge (1 to 200 printable ASCII characters).",
            pattern=r"^[ -~]{1,200}$",
        )
    ],
    responses={200: (CartPaymentSerializer, PAID_EXAMPLE)},
    errors=[
        field_error("Idempotency-Key", "invalid", "Use 1 to 200 printable ASCII characters."),
        PaymentMethodRefusedError,
        ErrorDoc.of(
            CardDeclinedError,
            error={"decline_code": "insufficient_funds"},
            cart={
                **DISCOUNTED_CART_EXAMPLE,
                "payment_status": "failed",
                "payments": [DECLINED_PAYMENT_EXAMPLE],
                "updated": COMPLETED,
            },
            payment=DECLINED_PAYMENT_EXAMPLE,
        ),
        CartPaidError,
        CartPaymentInProgressError,
        ErrorDoc.of(DiscountReservationExpiredError, cart=CART_EXAMPLE),
        IdempotencyKeyReusedError,
        InvalidPaymentTransitionError,
        EarlierPaymentOutcomeUnknownError,
        ProviderBadAnswerError,
        ProviderUnavailableError,
        ProviderBusyError,
        PaymentOutcomeUnknownError,
    ],
)

REFUND_EXAMPLE = {
    "id": "c41e9b2a-7d35-4f8e-a6b0-2e9d4c7f1a58",
    "payment": PAYMENT_EXAMPLE["id"],
    "amount": Decimal("5.00"),
    "currency": "USD",
    "status": "success",
    "reason": "requested_by_customer",
    "provider_refund_id": "re_7b2d9e4a1c6f3b8e0d5a2c7f",
    "idempotency_key": "refund-c41e9b2a-7d35-4f8e-a6b0-2e9d4c7f1a58",
    "error_code": "",
    "error": "",
    "created": "2026-05-04T10:02:11.000000Z",
    "completed": "2026-05-04T10:02:12.000000Z",
}

REFUNDED_EXAMPLE = {
    "cart": {
        **PAID_EXAMPLE["cart"],
        "payment_status": "partially_refunded",
        "amount_refunded": Decimal("5.00"),
        "refunds": [REFUND_EXAMPLE],
        "updated": REFUND_EXAMPLE["completed"],
    },
    "refund": REFUND_EXAMPLE,
}

REFUND = documented(
    summary="Give money back: all or part of what the cart was charged",
    description=(
        "Refunds `amount` (in the cart's currency) of what the cart was charged, or, "
        "without an amount, everything not yet refunded. The cart becomes "
        "`partially_refunded`, then `refunded` once everything was given back; refunds "
        "never add up to more than was charged, however many are sent at once (409 "
        "`refund_exceeds_captured`, and the message says what is left). Send an "
        "`Idempotency-Key` to make retries safe: the same key returns the same refund (or "
        "resumes it while its outcome is unknown) and never refunds twice. On 502, 503 or "
        "504, `refund_made` says what is known: `false` only when it is proven that nothing "
        "was refunded. Needs a staff token in production."
    ),
    request=RefundCartSerializer,
    request_example={"amount": Decimal("5.00")},
    parameters=[
        OpenApiParameter(
            "Idempotency-Key",
            str,
            OpenApiParameter.HEADER,
            description="Repeat a request with the same key to get the same refund "
            "instead of a second one (1 to 200 printable ASCII characters).",
            pattern=r"^[ -~]{1,200}$",
        )
    ],
    responses={200: (CartRefundSerializer, REFUNDED_EXAMPLE)},
    errors=[
        field_error("Idempotency-Key", "invalid", "Use 1 to 200 printable ASCII characters."),
        field_error("amount", "min_value", "Ensure this value is greater than 0."),
        field_error("amount", "too_many_decimals", money.precision_message("USD")),
        ErrorDoc.of(
            RefundDeclinedError,
            cart=PAID_EXAMPLE["cart"],
            refund={
                **REFUND_EXAMPLE,
                "status": "failed",
                "provider_refund_id": "",
                "error_code": "refund_declined",
                "error": RefundDeclinedError.message,
            },
        ),
        CartNotPaidError,
        RefundExceedsCapturedError,
        RefundInProgressError,
        IdempotencyKeyReusedError,
        RefundProviderBadAnswerError,
        RefundProviderUnavailableError,
        RefundProviderBusyError,
        RefundOutcomeUnknownError,
    ],
)
