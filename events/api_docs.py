"""What the API docs say about events: the text for callers and examples (see
`common.schema.documented`). `EVENT_EXAMPLE` is also the README's `cart.paid` example."""

from decimal import Decimal

from common.schema import documented
from events.serializers import EventSerializer

CART_ID = "3f2c8a4e-6b1d-4e7a-9c5f-2d8b0e1a7c64"
EVENT_ID = "5b0e9d2c-7a4f-4c1e-8d3b-6f2a1c9e0b57"

EVENT_EXAMPLE = {
    "id": EVENT_ID,
    "type": "cart.paid",
    "created": "2026-05-04T09:31:01.000000Z",
    "cart": CART_ID,
    "data": {
        "cart": {
            "id": CART_ID,
            "currency": "USD",
            "subtotal": Decimal("20.00"),
            "amount_discounted": Decimal("5.00"),
            "total": Decimal("15.00"),
            "amount_refunded": Decimal("0.00"),
            "payment_status": "success",
        },
        "payment": {
            "id": "9a7d5c1e-2f3b-4a6d-8e0c-4b1f7a2d9c35",
            "status": "success",
            "amount": Decimal("15.00"),
            "currency": "USD",
            "payment_method": "pm_card_visa",
            "provider_payment_id": "pay_5e0c2b7a9d1f4c3e8b6a0d2f",
            "decline_code": "",
            "error_code": "",
            "completed": "2026-05-04T09:31:01Z",
        },
    },
    "status": "delivered",
    "attempts": 1,
    "delivered_at": "2026-05-04T09:31:02.000000Z",
}

LIST = documented(
    summary="List events, newest first",
    description=(
        "Every event the service recorded for the shop (`cart.paid`, `cart.payment_failed`, "
        "`cart.refunded`), newest first, with the `data` its webhook carries and where its "
        "delivery stands. For a shop that missed some: filter with `created_after` (ISO "
        "8601), `type`, `cart` and `status`, and follow `next`. Needs a staff token in "
        "production."
    ),
    responses={200: (EventSerializer, EVENT_EXAMPLE)},
)

RETRIEVE = documented(
    summary="Get one event",
    description="One event by its id, which is also its webhook's `webhook-id`.",
    responses={200: (EventSerializer, EVENT_EXAMPLE)},
)
