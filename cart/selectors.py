"""Reading carts and payments: a page of carts as the API shows it, and the admin's
dashboard.

    with_history(page)   # each cart's payments, refunds and lines, one query per kind

    summary = payments_summary(since=start_of_today)
    summary.paid         # [PaidInCurrency("USD", carts=2, total=Decimal("35.00")), …]
    summary.declined, summary.not_charged, summary.processing, summary.unknown

Two aggregate queries, whatever the table size: settled attempts are found through the
(status, updated) index (an attempt completed since `since` was updated since then too).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from decimal import Decimal

from django.db.models import Count, Sum, prefetch_related_objects

from cart.models import OPEN_ATTEMPT_STATUSES, Cart, Payment, PaymentAttemptStatus
from common import money


def with_history(carts: list[Cart]) -> list[Cart]:
    """Fetch what `CartSerializer` shows of each cart of a page, in one query per kind:
    the payment attempts of every cart, the refunds of the paid ones, the lines of the
    itemized ones. A kind no cart of the page can have costs no query (and no prefetch
    work for each cart): only a paid cart has refunds, only an itemized one has lines."""
    prefetch_related_objects(carts, "payments")
    prefetch_related_objects([cart for cart in carts if cart.is_paid], "refunds")
    prefetch_related_objects([cart for cart in carts if cart.itemized], "lines")
    return carts


@dataclasses.dataclass(frozen=True)
class PaidInCurrency:
    currency: str
    carts: int
    total: Decimal


@dataclasses.dataclass(frozen=True)
class PaymentsSummary:
    since: datetime
    paid: list[PaidInCurrency]  # one per currency, by currency code
    declined: int  # attempts the provider declined since `since`
    not_charged: int  # attempts closed as "provider could not be used" since `since`
    processing: int  # being sent now (any age)
    unknown: int  # sent, outcome not known yet (any age): reconcile settles them


def payments_summary(*, since: datetime) -> PaymentsSummary:
    """How payments went since `since`, and the attempts still open now."""
    settled = (
        Payment.objects.filter(
            status__in=(
                PaymentAttemptStatus.SUCCESS,
                PaymentAttemptStatus.FAILED,
                PaymentAttemptStatus.ERROR,
            ),
            updated__gte=since,
            completed__gte=since,
        )
        .values("status", "currency")
        .annotate(count=Count("id"), total=Sum("amount"))
        .order_by("currency")
    )
    paid, by_status = [], {}
    for row in settled:
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["count"]
        if row["status"] == PaymentAttemptStatus.SUCCESS:
            total = money.quantize(row["total"], row["currency"])
            paid.append(PaidInCurrency(row["currency"], row["count"], total))
    still_open = dict(
        Payment.objects.filter(status__in=OPEN_ATTEMPT_STATUSES)
        .values_list("status")
        .annotate(count=Count("id"))
        .order_by()
    )
    return PaymentsSummary(
        since=since,
        paid=paid,
        declined=by_status.get(PaymentAttemptStatus.FAILED, 0),
        not_charged=by_status.get(PaymentAttemptStatus.ERROR, 0),
        processing=still_open.get(PaymentAttemptStatus.PROCESSING, 0),
        unknown=still_open.get(PaymentAttemptStatus.UNKNOWN, 0),
    )
