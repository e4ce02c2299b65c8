"""What the API docs say about carts: each operation's text for its caller, request
examples that work as offered (in DEV, with the fake provider), response examples, and
the errors each operation can answer (see `common.schema.documented`).

    @extend_schema_view(create=api_docs.CREATE)
    class CartViewSet(…): …
"""

from decimal import Decimal

from drf_spectacular.utils import OpenApiExample, OpenApiParameter

from cart.errors import (
    CartDiscountAlreadyAppliedError,
    CartItemsNumberMismatchError,
    CartLineNotFoundError,
    CartNotItemizedError,
    CartPaidError,
    CartPaymentInProgressError,
    CartSubtotalTooLargeError,
    CartTooManyLinesError,
    CartTotalMismatchError,
    InvalidPaymentTransitionError,
)
from cart.serializers import (
    CartLineChangeSerializer,
    CartLineSerializer,
    CartPaymentSerializer,
    CartRefundSerializer,
    CartSerializer,
    PayCartSerializer,
    UpdateCartLineSerializer,
)
from common import money
from common.schema import ErrorDoc, documented, field_error
from discount.api_docs import CREATE_EXAMPLE as DISCOUNT_EXAMPLE
from discount.errors import (
    DiscountBudgetExhaustedError,
    DiscountCodeMalformedError,
    DiscountCodeUsedError,
    DiscountCurrencyMismatchError,
    DiscountCustomerLimitReachedError,
    DiscountCustomerRequiredError,
    DiscountExpiredError,
    DiscountFirstOrderOnlyError,
    DiscountInactiveError,
    DiscountInvalidError,
    DiscountMinimumNotMetError,
    DiscountNoEffectError,
    DiscountNoMatchingLinesError,
    DiscountNotBetterError,
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
    RefundExceedsLineError,
    RefundInProgressError,
    RefundOutcomeUnknownError,
    RefundProviderBadAnswerError,
    RefundProviderBusyError,
    RefundProviderUnavailableError,
)
from payments.models import REQUEST_KEY_MESSAGE, REQUEST_KEY_PATTERN
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
    "customer_ref": "",
    "itemized": False,
    "lines": [],
    "discount": None,
    "payments": [],
    "refunds": [],
    "created": CREATED,
    "updated": CREATED,
}

LINES_REQUEST = {
    "currency": "USD",
    "lines": [
        {"sku": "TEA-GREEN-100G", "name": "Green tea, 100 g", "quantity": 2, "unit_price": 4.5},
        {"sku": "MUG-WHITE", "name": "White mug", "quantity": 1, "unit_price": 11},
    ],
}


def _line(line_id, sku, name, quantity, unit_price, discounted):
    amount = quantity * unit_price
    return {
        "id": line_id,
        "sku": sku,
        "name": name,
        "quantity": quantity,
        "unit_price": unit_price,
        "amount": amount,
        "amount_discounted": discounted,
        "total": amount - discounted,
    }


TEA = _line(1, "TEA-GREEN-100G", "Green tea, 100 g", 2, Decimal("4.50"), Decimal("0.00"))
MUG = _line(2, "MUG-WHITE", "White mug", 1, Decimal("11.00"), Decimal("0.00"))
ITEMIZED_CART_EXAMPLE = {
    **CART_EXAMPLE,
    "items_number": 3,
    "itemized": True,
    "lines": [TEA, MUG],
}
# 5.00 off 20.00, allocated 9.00 : 11.00 -> 2.25 and 2.75.
DISCOUNTED_ITEMIZED_EXAMPLE = {
    **ITEMIZED_CART_EXAMPLE,
    "total": Decimal("15.00"),
    "amount_discounted": Decimal("5.00"),
    "total_discounted": Decimal("15.00"),
    "lines": [
        _line(1, "TEA-GREEN-100G", "Green tea, 100 g", 2, Decimal("4.50"), Decimal("2.25")),
        _line(2, "MUG-WHITE", "White mug", 1, Decimal("11.00"), Decimal("2.75")),
    ],
    "discount": {"id": 1, "code": "DIS20", "kind": "amount"},
    "updated": "2026-05-04T09:30:40.000000Z",
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
        "the returned `id`: it is the key to read, discount and pay the cart.\n\n"
        "Or send `lines` (`sku`, `name`, `quantity`, `unit_price`) instead of a total: "
        "the cart is then `itemized`, its `subtotal` is the exact sum of quantity × "
        "unit_price and `items_number` the sum of quantities. A `total` or "
        "`items_number` sent beside lines must match them (400 `total_mismatch`, "
        "`items_number_mismatch`). Lines then change with /lines/ while the cart is "
        "pending, and a discount is shown allocated to them."
    ),
    request_example={"total": Decimal("20.00"), "currency": "USD", "items_number": 5},
    examples=[
        OpenApiExample("With lines", value=LINES_REQUEST, request_only=True),
        OpenApiExample(
            "Itemized cart", value=ITEMIZED_CART_EXAMPLE, response_only=True, status_codes=[201]
        ),
    ],
    responses={201: (CartSerializer, CART_EXAMPLE)},
    errors=[
        *CART_ERRORS,
        field_error("items_number", "required", "This field is required."),
        field_error("lines.0.unit_price", "too_many_decimals", money.precision_message("USD")),
        CartTotalMismatchError,
        CartItemsNumberMismatchError,
        CartSubtotalTooLargeError,
    ],
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
        DiscountNoMatchingLinesError,
        DiscountNotBetterError,
        DiscountCodeUsedError,
        DiscountCustomerRequiredError,
        DiscountCustomerLimitReachedError,
        DiscountFirstOrderOnlyError,
        DiscountBudgetExhaustedError,
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
            "instead of a second charge (1 to 200 printable ASCII characters, no space at "
            "either end).",
            pattern=REQUEST_KEY_PATTERN,
        )
    ],
    responses={200: (CartPaymentSerializer, PAID_EXAMPLE)},
    errors=[
        field_error("Idempotency-Key", "invalid", REQUEST_KEY_MESSAGE),
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
        "was refunded. Needs a staff token in production.\n\n"
        'For a cart with lines, send `lines` (`[{"line_id", "quantity"}]`) instead of '
        "an amount: the refund is what those units were paid after their share of the "
        "discount (a line's units together give back exactly its `total`), and units are "
        "never given back twice (409 `refund_exceeds_line`)."
    ),
    request=RefundCartSerializer,
    request_example={"amount": Decimal("5.00")},
    examples=[
        OpenApiExample(
            "By line", value={"lines": [{"line_id": 1, "quantity": 1}]}, request_only=True
        )
    ],
    parameters=[
        OpenApiParameter(
            "Idempotency-Key",
            str,
            OpenApiParameter.HEADER,
            description="Repeat a request with the same key to get the same refund "
            "instead of a second one (1 to 200 printable ASCII characters, no space at "
            "either end).",
            pattern=REQUEST_KEY_PATTERN,
        )
    ],
    responses={200: (CartRefundSerializer, REFUNDED_EXAMPLE)},
    errors=[
        field_error("Idempotency-Key", "invalid", REQUEST_KEY_MESSAGE),
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
        field_error("lines", "amount_and_lines", "Send an amount or lines, not both."),
        field_error("lines", "cart_not_itemized", "This cart has no lines."),
        field_error("lines.0.line_id", "not_found", "No such line."),
        CartNotPaidError,
        RefundExceedsCapturedError,
        RefundExceedsLineError,
        RefundInProgressError,
        IdempotencyKeyReusedError,
        RefundProviderBadAnswerError,
        RefundProviderUnavailableError,
        RefundProviderBusyError,
        RefundOutcomeUnknownError,
    ],
)


LINE_CHANGE_ERRORS = [
    CartNotItemizedError,
    CartPaidError,
    CartPaymentInProgressError,
    CartSubtotalTooLargeError,
]
_REEVALUATED = (
    "The cart's discount is re-evaluated in the same transaction: it then takes off what "
    "it gives the new lines (and is allocated to them again), or, when the code no longer "
    "fits the cart (below its minimum, no line it applies to, nothing left to take off), "
    "it leaves the cart, its reserved use released, and `discount_removed` says which code "
    "and why. A paid cart, or one being paid, answers 409."
)

ADD_LINE = documented(
    summary="Add a line to an itemized cart",
    description=(
        "Adds `quantity` × `sku` at `unit_price` (in the cart's currency) to a cart "
        "created with `lines`; `subtotal`, `items_number` and `total` follow. " + _REEVALUATED
    ),
    request=CartLineSerializer,
    request_example={
        "sku": "TEA-BLACK-100G",
        "name": "Black tea, 100 g",
        "quantity": 1,
        "unit_price": Decimal("5.00"),
    },
    responses={
        201: (
            CartLineChangeSerializer,
            {
                "cart": {
                    **ITEMIZED_CART_EXAMPLE,
                    "total": Decimal("25.00"),
                    "subtotal": Decimal("25.00"),
                    "total_discounted": Decimal("25.00"),
                    "items_number": 4,
                    "lines": [
                        TEA,
                        MUG,
                        _line(
                            3,
                            "TEA-BLACK-100G",
                            "Black tea, 100 g",
                            1,
                            Decimal("5.00"),
                            Decimal("0.00"),
                        ),
                    ],
                },
                "line": _line(
                    3, "TEA-BLACK-100G", "Black tea, 100 g", 1, Decimal("5.00"), Decimal("0.00")
                ),
                "discount_removed": None,
            },
        )
    },
    errors=[
        field_error("unit_price", "too_many_decimals", money.precision_message("USD")),
        CartTooManyLinesError,
        *LINE_CHANGE_ERRORS,
    ],
)

UPDATE_LINE = documented(
    summary="Change a line of a cart",
    description=(
        "Changes any of `quantity`, `unit_price` and `name` of one line (its `sku` stays: "
        "remove the line and add another). " + _REEVALUATED
    ),
    request=UpdateCartLineSerializer,
    request_example={"quantity": 3},
    responses={
        200: (
            CartLineChangeSerializer,
            {
                "cart": {
                    **DISCOUNTED_ITEMIZED_EXAMPLE,
                    "total": Decimal("19.50"),
                    "subtotal": Decimal("24.50"),
                    "total_discounted": Decimal("19.50"),
                    "items_number": 4,
                    "lines": [
                        _line(
                            1,
                            "TEA-GREEN-100G",
                            "Green tea, 100 g",
                            3,
                            Decimal("4.50"),
                            Decimal("2.76"),
                        ),
                        _line(2, "MUG-WHITE", "White mug", 1, Decimal("11.00"), Decimal("2.24")),
                    ],
                },
                "line": _line(
                    1, "TEA-GREEN-100G", "Green tea, 100 g", 3, Decimal("4.50"), Decimal("2.76")
                ),
                "discount_removed": None,
            },
        )
    },
    errors=[
        field_error("quantity", "min_value", "Ensure this value is greater than or equal to 1."),
        field_error("unit_price", "too_many_decimals", money.precision_message("USD")),
        CartLineNotFoundError,
        *LINE_CHANGE_ERRORS,
    ],
)

REMOVE_LINE = documented(
    summary="Remove a line from a cart",
    description="Removes one line; `line` in the answer is the line removed. " + _REEVALUATED,
    responses={
        200: (
            CartLineChangeSerializer,
            {
                "cart": {
                    **ITEMIZED_CART_EXAMPLE,
                    "total": Decimal("9.00"),
                    "subtotal": Decimal("9.00"),
                    "total_discounted": Decimal("9.00"),
                    "items_number": 2,
                    "lines": [TEA],
                },
                "line": MUG,
                "discount_removed": {
                    "code": "SPEND20",
                    "error": {
                        "code": DiscountMinimumNotMetError.code,
                        "message": DiscountMinimumNotMetError.message,
                    },
                },
            },
        )
    },
    errors=[CartLineNotFoundError, *LINE_CHANGE_ERRORS],
)
