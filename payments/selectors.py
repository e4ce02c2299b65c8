"""Reading a cart's payment attempts and the requests bound to them, as paying does under
the cart's lock.

    attempt = payment_open_attempt(cart=locked)                   # processing/unknown, or None
    request = payment_request_for_key(cart=locked, key="order-42")  # or None

Both run on every pay: compiled once per process (`common.compiled`), as building and
compiling them through the ORM on each request cost more CPU than their round trips. A
test holds each to what the ORM's queryset answers.
"""

from __future__ import annotations

import uuid

from cart.models import Cart, PaymentStatus
from common.compiled import CompiledQuery
from payments.models import OPEN_ATTEMPT_STATUSES, Payment, PaymentRequest

OPEN_ATTEMPT = CompiledQuery(
    lambda cart_id: Payment.objects.filter(cart_id=cart_id, status__in=OPEN_ATTEMPT_STATUSES)[:1],
    cart_id=uuid.UUID,
)
REQUEST_FOR_KEY = CompiledQuery(
    lambda cart_id, key: PaymentRequest.objects.filter(cart_id=cart_id, key=key)[:1],
    cart_id=uuid.UUID,
    key=str,
)


def payment_open_attempt(*, cart: Cart) -> Payment | None:
    """The cart's attempt in flight (`processing` or `unknown`): one at most (a database
    constraint). Call it with the cart's row locked.

    Only a `processing` cart (or one paid meanwhile, by a late charge) can have one: an
    attempt is opened only in the transaction that moves its cart to `processing`
    (`transitions.attempt_started`), and the cart leaves `processing` only in a
    transaction that settles its one open attempt (charged, declined, not charged) or
    makes it paid. A `pending` or `failed` cart is answered without a query; were an
    attempt ever open on one, the constraint would refuse opening a second (nothing is
    charged: the attempt must exist before the provider is called)."""
    if cart.payment_status == PaymentStatus.PENDING or cart.payment_status == PaymentStatus.FAILED:
        return None
    found = OPEN_ATTEMPT.run(cart_id=cart.pk)
    for attempt in found:
        attempt.cart = cart
    return found[0] if found else None


def payment_request_for_key(*, cart: Cart, key: str) -> PaymentRequest | None:
    """The request made with this `Idempotency-Key` for the cart (one at most), or None.
    Its `payment` is read when asked for: only a repeated request needs it."""
    found = REQUEST_FOR_KEY.run(cart_id=cart.pk, key=key)
    for request in found:
        request.cart = cart
    return found[0] if found else None
