"""How applying a code locks its row: shared for a code whose rules count no other cart's
uses, exclusive for one whose rules do (usage limit, per customer, budget).

On PostgreSQL another connection holds the lock an apply in flight holds (`FOR SHARE`);
an apply that needs the row exclusively then waits, one that shares it does not.
"""

from decimal import Decimal

import psycopg
import pytest
from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from cart.services import cart_apply_discount
from cart.tests.factories import CartFactory
from cart.tests.test_concurrency import THREADS, race
from common.testing import error_of, statements_sent
from discount.errors import DiscountUsageLimitReachedError
from discount.models import Discount, DiscountReservation
from discount.services import discount_reserve
from discount.tests.factories import DiscountFactory

pytestmark = pytest.mark.django_db(transaction=True)

on_postgres = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="row locks: PostgreSQL (SQLite has no FOR SHARE)"
)


class HeldElsewhere:
    """The code's row locked `FOR SHARE` on a connection of its own until the block ends,
    as an apply of it in flight holds it."""

    def __init__(self, discount: Discount):
        self.discount = discount

    def __enter__(self):
        db = settings.DATABASES["default"]
        self.conn = psycopg.connect(
            dbname=db["NAME"],
            user=db["USER"],
            host=db["HOST"],
            port=db["PORT"] or 5432,
            password=db["PASSWORD"] or None,
        )
        self.conn.execute(
            "SELECT id FROM discount_discount WHERE id = %s FOR SHARE", [self.discount.pk]
        )
        return self

    def __exit__(self, *exc):
        self.conn.rollback()
        self.conn.close()


def apply_within(cart, discount, *, ms: int):
    """Apply `discount` to `cart`, giving up on any lock after `ms` milliseconds."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{int(ms)}ms'")
        cart_apply_discount(cart=cart, discount=discount)


@on_postgres
def test_a_code_counting_no_other_carts_is_applied_while_another_apply_holds_it():
    discount = DiscountFactory(code="OPEN")
    cart = CartFactory(total=Decimal("20.00"))

    with HeldElsewhere(discount):
        apply_within(cart, discount, ms=2000)  # an exclusive lock would wait out the timeout

    cart.refresh_from_db()
    assert (cart.discount_id, cart.total) == (discount.pk, Decimal("15.00"))


@on_postgres
@pytest.mark.parametrize(
    "rule",
    [
        {"usage_limit": 100},
        {"limit_per_customer": 5},
        {"first_order_only": True},
        {"budget_amount": Decimal("500"), "currency": "USD"},
    ],
    ids=["usage_limit", "per_customer", "first_order", "budget"],
)
def test_a_code_counting_other_carts_waits_for_the_apply_holding_it(rule):
    discount = DiscountFactory(code="COUNTED", **rule)
    cart = CartFactory(total=Decimal("20.00"), currency="USD", customer_ref="cus_1")

    with HeldElsewhere(discount), pytest.raises(OperationalError, match="lock timeout"):
        apply_within(cart, discount, ms=300)

    assert not DiscountReservation.objects.exists()
    apply_within(cart, discount, ms=2000)  # once it is free
    assert DiscountReservation.objects.get().cart_id == cart.pk


def test_a_code_whose_rules_changed_since_it_was_read_is_locked_again_exclusively():
    read = DiscountFactory(code="CHANGED")  # as the request's validation read it: no limit
    Discount.objects.filter(pk=read.pk).update(usage_limit=1)
    with transaction.atomic():  # another cart holds the one use
        discount_reserve(
            discount=Discount.objects.get(pk=read.pk),
            cart=CartFactory(),
            amount=Decimal("5"),
            at=timezone.now(),
        )
    cart = CartFactory(total=Decimal("20.00"))

    with statements_sent(connection) as sent, pytest.raises(DiscountUsageLimitReachedError):
        cart_apply_discount(cart=cart, discount=read)

    locks = [
        sql.rpartition(" FOR ")[2] if " FOR " in sql else "unlocked"
        for sql, _ in sent
        if sql.startswith('SELECT "discount_discount"."id"')
    ]
    # Read shared, found counting other carts, then again in a new transaction: the rule
    # is judged under the exclusive lock.
    expected = ["SHARE", "UPDATE"] if connection.vendor == "postgresql" else ["unlocked"] * 2
    assert locks == expected
    cart.refresh_from_db()
    assert cart.discount_id is None
    assert DiscountReservation.objects.filter(discount_id=read.pk).count() == 1


def test_carts_racing_for_a_code_counting_no_other_carts_all_get_it():
    DiscountFactory(code="EVERYONE", value=Decimal("5"))
    carts = [CartFactory(total=Decimal("20.00")) for _ in range(THREADS)]

    responses = race(
        [
            lambda cart=cart: APIClient().post(
                f"/api/cart/{cart.pk}/apply_discount/", {"code": "EVERYONE"}
            )
            for cart in carts
        ]
    )

    assert [r.status_code for r in responses] == [200] * THREADS, [
        error_of(r) for r in responses if r.status_code != 200
    ]
    assert DiscountReservation.objects.filter(status="reserved").count() == THREADS
