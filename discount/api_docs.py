"""What the API docs say about discount codes: each operation's text for its caller,
request examples that work as offered (in DEV, on a fresh database), response examples,
and the errors each operation can answer (see `common.schema.documented`).

    @extend_schema_view(create=api_docs.CREATE)
    class DiscountViewSet(…): …
"""

from decimal import Decimal

from django.utils import timezone
from drf_spectacular.utils import OpenApiExample

from common import money
from common.schema import documented, field_error
from discount.errors import DiscountCodeTakenError
from discount.serializers import (
    DiscountSerializer,
    GenerateCodesSerializer,
    GeneratedCodesSerializer,
)

# Two years ahead, so the example never offers a code that is already expired.
ENDS = f"{timezone.now().year + 2}-01-01T00:00:00Z"

CREATE_EXAMPLE = {
    "code": "SPRING5",
    "kind": "amount",
    "value": Decimal("5.00"),
    "currency": "USD",
    "description": "Five off any USD cart",
    "ended": ENDS,
    "usage_limit": 100,
}

DISCOUNT_EXAMPLE = {
    "id": 1,
    **CREATE_EXAMPLE,
    "created": "2026-05-04T09:00:00.000000Z",
    "started": None,
    "active": True,
    "min_cart_total": None,
    "times_used": 0,
    "reserved_uses": 0,
    "skus": [],
    "sku_prefixes": [],
    "limit_per_customer": None,
    "first_order_only": False,
    "budget_amount": None,
    "amount_consumed": Decimal("0.00"),
    "automatic": False,
}

# A campaign: 20 % off the tea lines, once per customer, 500.00 to give away in all.
CAMPAIGN_EXAMPLE = {
    "code": "TEA20",
    "kind": "percent",
    "value": Decimal("20"),
    "currency": "USD",
    "description": "20 % off tea, once per customer",
    "ended": ENDS,
    "sku_prefixes": ["TEA-"],
    "limit_per_customer": 1,
    "budget_amount": Decimal("500.00"),
}

REPLACE_EXAMPLE = {
    "code": "SUMMER10",
    "kind": "percent",
    "value": Decimal("10"),
    "currency": "EUR",
    "description": "Ten percent off EUR carts of 50.00 or more",
    "started": None,
    "ended": ENDS,
    "active": True,
    "min_cart_total": Decimal("50.00"),
    "usage_limit": 500,
}

# The rules of `Discount.clean()` (any write) with the message of each.
RULE_ERRORS = [
    DiscountCodeTakenError,
    field_error("currency", "unknown_currency", "'XYZ' is not an ISO 4217 currency code."),
    field_error("value", "value_not_positive", "The value must be greater than zero."),
    field_error("value", "percent_above_100", "A percentage cannot exceed 100."),
    field_error("value", "amount_too_large", f"The value cannot exceed {money.MAX_AMOUNT}."),
    field_error("value", "too_many_decimals", money.precision_message("USD")),
    field_error(
        "min_cart_total",
        "out_of_range",
        f"The minimum must be between 0 and {money.MAX_AMOUNT}.",
    ),
    field_error(
        "min_cart_total",
        "currency_required",
        "A minimum cart total needs a currency: set currency too.",
    ),
    field_error("ended", "ends_before_start", "The end must come after the start."),
    field_error(
        "skus",
        "invalid_sku",
        "Not a SKU: 'a b' (letters, digits, '.', '_', '/' and '-', at most 64).",
    ),
    field_error("skus", "too_many_entries", "At most 200 entries."),
    field_error(
        "budget_amount",
        "currency_required",
        "A budget needs a currency: set currency too.",
    ),
    field_error(
        "budget_amount",
        "out_of_range",
        f"The budget must be above 0 and at most {money.MAX_AMOUNT}.",
    ),
]
CREATE_ERRORS = [
    *RULE_ERRORS,
    field_error(
        "ended",
        "already_expired",
        "This end is in the past: the discount would be expired already.",
    ),
]
EDIT_ERRORS = [
    *RULE_ERRORS,
    field_error("usage_limit", "below_times_used", "The code has been used 3 times already."),
    field_error("kind", "kind_in_use", "A code already used cannot change kind."),
    field_error(
        "budget_amount", "below_amount_held", "The code has given or reserved 120.00 already."
    ),
]

LIST = documented(
    summary="List discount codes, newest first",
    description=(
        "Every discount code, newest first, in pages of `page_size` (at most 100; 20 by "
        "default); follow `next`. Filter with `active` (true or false), `code` (any case) "
        "and `kind`. Needs a staff token in production."
    ),
    responses={200: (DiscountSerializer, DISCOUNT_EXAMPLE)},
)

CREATE = documented(
    summary="Create a discount code",
    description=(
        "A code takes a fixed `amount` (in `currency`, or in the cart's currency when none "
        "is set) or a `percent` off a cart. Optional: a validity window (`started`, "
        "`ended`), a minimum cart subtotal (`min_cart_total`, with `currency`) and a "
        "`usage_limit`. Codes are unique in any case: `spring5` finds `SPRING5`. Needs a "
        "staff token in production.\n\n"
        "Campaigns: `skus` / `sku_prefixes` make the code apply to those cart lines only "
        "(a percentage of their amounts, a flat amount capped at them); "
        "`limit_per_customer` and `first_order_only` count uses per cart `customer_ref` "
        "(a first-order code is once per customer, and not for a customer with a paid "
        "cart); `budget_amount` caps what the code gives away across all carts (reserved "
        "and consumed amounts count). Uses, customers and budget are counted under a lock "
        "on the code, so racing carts never pass them. `automatic`: a promotion that "
        "applies by itself to every cart it fits (created or changed), the one taking "
        "the most off winning; a code the customer types replaces it when it takes off "
        "more (else `discount_not_better`)."
    ),
    request_example=CREATE_EXAMPLE,
    examples=[OpenApiExample("Campaign", value=CAMPAIGN_EXAMPLE, request_only=True)],
    responses={201: (DiscountSerializer, DISCOUNT_EXAMPLE)},
    errors=CREATE_ERRORS,
)

RETRIEVE = documented(
    summary="Get one discount code",
    description="The code's settings and `times_used`: how many carts it was applied to.",
    responses={200: (DiscountSerializer, {**DISCOUNT_EXAMPLE, "times_used": 12})},
)

UPDATE = documented(
    summary="Replace a discount code's settings",
    description=(
        "Sets every setting at once; omitted optional ones go back to their defaults. A "
        "code already used keeps its kind, and its `usage_limit` cannot go below "
        "`times_used`. Needs a staff token in production."
    ),
    request_example=REPLACE_EXAMPLE,
    responses={200: (DiscountSerializer, {**DISCOUNT_EXAMPLE, **REPLACE_EXAMPLE, "id": 2})},
    errors=EDIT_ERRORS,
)

PARTIAL_UPDATE = documented(
    summary="Change some of a discount code's settings",
    description=(
        'Changes only the settings sent, e.g. `{"active": false}` stops a code at once '
        "(codes are never deleted: carts refer to them). Needs a staff token in production."
    ),
    request_example={"active": False},
    responses={200: (DiscountSerializer, {**DISCOUNT_EXAMPLE, "active": False})},
    errors=EDIT_ERRORS,
)

GENERATE_CODES = documented(
    summary="Generate single-use codes for a discount",
    description=(
        "Makes `count` codes (1 to 100,000, all or none), each `prefix` (upper-cased) and "
        "13 random symbols from a cryptographic source, in an alphabet with no look-alikes "
        "(no 0/O, 1/I/L): about 2**64 possibilities each, so guessing one is hopeless "
        "under the rate limits. Each code applies the discount's rules and is usable by "
        "one cart: held while that cart's use is reserved, spent once it is paid "
        "(`discount_code_used` otherwise). A discount that has generated codes is used "
        "through them only, not by its own code. The admin lists them and exports them "
        "as CSV. Needs a staff token in production."
    ),
    request=GenerateCodesSerializer,
    request_example={"count": 3, "prefix": "XMAS-"},
    responses={
        201: (
            GeneratedCodesSerializer,
            {
                "discount": 1,
                "count": 3,
                "codes": [
                    "XMAS-7KQ4M-XW2P9-HD3",
                    "XMAS-N8B3Z-2TRFE-Q6K",
                    "XMAS-GJ5VA-M9C4W-7PX",
                ],
            },
        )
    },
    errors=[
        field_error("count", "out_of_range", "Generate 1 to 100000 codes at a time."),
        field_error(
            "prefix",
            "invalid_prefix",
            "At most 32 letters, digits, '-' and '_', starting with a letter or digit.",
        ),
    ],
)
