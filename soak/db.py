"""Database chores of the soak run, done in the project's own environment.

`soak/run.py` uses only the standard library and requests; whatever needs psycopg or
Django runs here, in a child process started from the repository root:

    python -m soak.db create postgres://postgres@127.0.0.1:5432/ soak_123
    python -m soak.db drop   postgres://postgres@127.0.0.1:5432/ soak_123
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/soak_123 python -m soak.db dump

`create` and `drop` connect to the server's maintenance database (the URL's path, else
`postgres`); `drop` forces other sessions off (PostgreSQL 13+). `dump` prints, as JSON,
every cart, payment attempt, refund and discount code (with its reservations) as the
database holds them
(amounts as decimal strings), read with the service's own models.
"""

from __future__ import annotations

import json
import os
import sys
from collections import defaultdict
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit


def maintenance_url(server_url: str) -> str:
    parts = urlsplit(server_url)
    path = parts.path if parts.path.strip("/") else "/postgres"
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def create(server_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(maintenance_url(server_url), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def drop(server_url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(maintenance_url(server_url), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def dump() -> dict:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "CoreRoot.settings")
    import django

    django.setup()
    from django.db.models import Count, Q

    from cart.models import Cart
    from discount.models import Discount, DiscountReservation
    from payments.models import Payment, Refund, RefundLine

    carts = [
        {
            "id": str(cart.id),
            "subtotal": str(cart.subtotal),
            "total": str(cart.total),
            "amount_discounted": str(cart.amount_discounted),
            "amount_refunded": str(cart.amount_refunded),
            "currency": cart.currency,
            "payment_status": cart.payment_status,
            "discount": cart.discount.code if cart.discount_id else None,
            "customer_ref": cart.customer_ref,
            "itemized": cart.itemized,
            "items_number": cart.items_number,
            "lines": [
                {
                    "id": line.id,
                    "quantity": line.quantity,
                    "unit_price": str(line.unit_price),
                    "amount_discounted": str(line.amount_discounted),
                }
                for line in cart.lines.all()
            ],
        }
        for cart in Cart.objects.select_related("discount")
        .prefetch_related("lines")
        .order_by("created")
    ]
    # Units of each line given back by refunds made (or possibly being made), and the
    # amounts those refunds record for them.
    refund_lines = defaultdict(lambda: {"quantity": 0, "amount": "0", "statuses": []})
    for part in RefundLine.objects.select_related("refund"):
        item = refund_lines[str(part.line_id)]
        item["quantity"] += part.quantity if part.refund.status == "success" else 0
        item["amount"] = str(
            Decimal(item["amount"]) + (part.amount if part.refund.status == "success" else 0)
        )
        item["statuses"].append(part.refund.status)
    # Live (reserved or consumed) reservations: per generated code, per customer.
    reservations = [
        {
            "discount": r.discount.code,
            "status": r.status,
            "amount": str(r.amount),
            "code": r.code.code if r.code_id else None,
            "customer_ref": r.cart.customer_ref,
            "cart": str(r.cart_id),
        }
        for r in DiscountReservation.objects.select_related("discount", "code", "cart")
    ]
    payments = [
        {
            "id": str(payment.id),
            "cart": str(payment.cart_id),
            "amount": str(payment.amount),
            "currency": payment.currency,
            "status": payment.status,
            "payment_method": payment.payment_method,
            "provider_payment_id": payment.provider_payment_id,
            "idempotency_key": payment.idempotency_key,
            "decline_code": payment.decline_code,
            "error_code": payment.error_code,
            "error": payment.error,
            "amount_refunded": str(payment.amount_refunded),
            "created": payment.created.isoformat(),
            "updated": payment.updated.isoformat(),
        }
        for payment in Payment.objects.order_by("created")
    ]
    refunds = [
        {
            "id": str(refund.id),
            "cart": str(refund.cart_id),
            "payment": str(refund.payment_id),
            "amount": str(refund.amount),
            "currency": refund.currency,
            "status": refund.status,
            "reason": refund.reason,
            "provider_refund_id": refund.provider_refund_id,
            "idempotency_key": refund.idempotency_key,
            "error_code": refund.error_code,
        }
        for refund in Refund.objects.order_by("created")
    ]
    paid = ("success", "partially_refunded", "refunded")
    discounts = [
        {
            "code": discount.code,
            "times_used": discount.times_used,
            "usage_limit": discount.usage_limit,
            "carts": discount.cart_count,
            "paid_carts": discount.paid_count,
            "reserved": discount.reserved_count,
            "consumed": discount.consumed_count,
            "budget_amount": (
                None if discount.budget_amount is None else str(discount.budget_amount)
            ),
            "amount_consumed": str(discount.amount_consumed),
            "limit_per_customer": discount.limit_per_customer,
            "generated_codes": discount.codes.count(),
        }
        for discount in Discount.objects.annotate(
            cart_count=Count("carts", distinct=True),
            paid_count=Count("carts", filter=Q(carts__payment_status__in=paid), distinct=True),
            reserved_count=Count(
                "reservations", filter=Q(reservations__status="reserved"), distinct=True
            ),
            consumed_count=Count(
                "reservations", filter=Q(reservations__status="consumed"), distinct=True
            ),
        ).order_by("code")
    ]
    return {
        "carts": carts,
        "payments": payments,
        "refunds": refunds,
        "discounts": discounts,
        "reservations": reservations,
        "refund_lines": refund_lines,
    }


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "create":
        create(argv[1], argv[2])
    elif len(argv) == 3 and argv[0] == "drop":
        drop(argv[1], argv[2])
    elif argv == ["dump"]:
        json.dump(dump(), sys.stdout)
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
