"""Many requests racing on one cart or one limited code, each on its own DB connection.

These run on both databases CI uses: PostgreSQL (row locks) and SQLite (a file, with
IMMEDIATE transactions), through the real API view stack.
"""

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from cart.tests.factories import CartFactory
from common.testing import error_of
from discount.models import Discount, DiscountReservation
from discount.tests.factories import DiscountFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.concurrency]

THREADS = 8


def race(calls):
    """Run every call at the same moment, each in its own thread and connection."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        try:
            barrier.wait()
            return call()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


def apply_call(cart, code):
    return lambda: APIClient().post(f"/api/cart/{cart.pk}/apply_discount/", {"code": code})


def test_concurrent_codes_on_one_cart_apply_exactly_one():
    cart = CartFactory(total=Decimal("100.00"))
    codes = [DiscountFactory(code=f"C{n}", value=Decimal(n + 1)).code for n in range(THREADS)]

    responses = race([apply_call(cart, code) for code in codes])

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [400] * (THREADS - 1), [r.content for r in responses]
    assert {error_of(r)["code"] for r in responses if r.status_code == 400} == {
        "discount_already_applied"
    }
    cart.refresh_from_db()
    [reservation] = DiscountReservation.objects.all()
    winner = reservation.discount
    assert (reservation.cart, reservation.status) == (cart, "reserved")
    assert cart.discount == winner
    assert cart.amount_discounted == winner.value == reservation.amount
    assert cart.total == Decimal("100.00") - winner.value


def test_the_same_code_sent_twice_at_once_discounts_once():
    cart = CartFactory(total=Decimal("20.00"))
    DiscountFactory(code="TWICE", value=Decimal("5"))

    responses = race([apply_call(cart, "TWICE") for _ in range(THREADS)])

    assert sorted(r.status_code for r in responses) == [200] + [400] * (THREADS - 1)
    cart.refresh_from_db()
    assert (cart.total, cart.amount_discounted) == (Decimal("15"), Decimal("5"))
    assert Discount.objects.get(code="TWICE").reservations.count() == 1


def test_a_limited_code_is_never_used_more_than_its_limit():
    discount = DiscountFactory(code="LIMITED", usage_limit=3)
    carts = [CartFactory() for _ in range(THREADS)]

    responses = race([apply_call(cart, "LIMITED") for cart in carts])

    assert sorted(r.status_code for r in responses) == [200] * 3 + [400] * (THREADS - 3)
    assert {error_of(r)["code"] for r in responses if r.status_code == 400} == {
        "discount_usage_limit_reached"
    }
    assert discount.reservations.filter(status="reserved").count() == 3
    assert discount.carts.count() == 3


def test_racing_carts_reserve_no_more_than_the_limit_beside_expired_reservations():
    from datetime import timedelta

    from django.utils import timezone

    discount = DiscountFactory(code="RACE", usage_limit=3)
    idle = [CartFactory() for _ in range(3)]
    for cart in idle:
        cart.apply_discount(discount)
    DiscountReservation.objects.update(expires=timezone.now() - timedelta(seconds=1))
    carts = [CartFactory() for _ in range(THREADS)]

    responses = race([apply_call(cart, "RACE") for cart in carts])

    assert sorted(r.status_code for r in responses) == [200] * 3 + [400] * (THREADS - 3)
    discount.refresh_from_db()
    assert discount.uses_held(at=timezone.now()) == 3
    assert discount.reservations.filter(cart__in=carts).count() == 3


def test_line_changes_racing_on_one_cart_are_all_counted_and_the_discount_follows():
    from cart.tests.factories import itemized_cart
    from discount.tests.factories import PercentDiscountFactory

    cart = itemized_cart(("TEA", 1, "1.00"))
    cart.apply_discount(PercentDiscountFactory(code="TEN", value=Decimal("10")))
    line = {"sku": "MUG", "name": "Mug", "quantity": 1, "unit_price": "10.00"}

    responses = race(
        [
            lambda: APIClient().post(f"/api/cart/{cart.pk}/lines/", line, format="json")
            for _ in range(THREADS)
        ]
    )

    assert [r.status_code for r in responses] == [201] * THREADS, [r.content for r in responses]
    cart.refresh_from_db()
    assert (cart.subtotal, cart.items_number) == (Decimal("81.00"), 1 + THREADS)
    assert (cart.amount_discounted, cart.total) == (Decimal("8.10"), Decimal("72.90"))
    assert sum(cart.lines.values_list("amount_discounted", flat=True)) == Decimal("8.10")
    assert DiscountReservation.objects.get(cart=cart).amount == Decimal("8.10")


@pytest.mark.parametrize("read", ["retrieve", "list"])
def test_a_cart_read_while_a_line_is_added_shows_one_moment_of_it(read, staff_client):
    """The cart row and its lines are separate queries: a line change committed between
    them must not show lines that do not add up to the cart's subtotal."""
    body = {
        "currency": "USD",
        "lines": [{"sku": "TEA", "name": "Tea", "quantity": 2, "unit_price": "4.50"}],
    }
    cart_id = staff_client.post("/api/cart/", body, format="json").json()["id"]
    added = []

    def add_line():
        try:
            added.append(
                APIClient().post(
                    f"/api/cart/{cart_id}/lines/",
                    {"sku": "MUG", "name": "Mug", "quantity": 1, "unit_price": "11.00"},
                    format="json",
                )
            )
        finally:
            connection.close()

    writer = threading.Thread(target=add_line)

    def change_lines_between_the_queries(execute, sql, params, many, context):
        if not writer.is_alive() and not added and 'FROM "cart_cartline"' in sql:
            writer.start()
            writer.join(timeout=2)  # a read that locks the writer out times it out here
        return execute(sql, params, many, context)

    with connection.execute_wrapper(change_lines_between_the_queries):
        if read == "retrieve":
            response = staff_client.get(f"/api/cart/{cart_id}/")
        else:
            response = staff_client.get("/api/cart/")
    writer.join(timeout=30)

    assert [r.status_code for r in added] == [201]
    assert response.status_code == 200
    [cart] = [response.json()] if read == "retrieve" else response.json()["results"]
    lines = cart["lines"]
    assert sum(Decimal(line["amount"]) for line in lines) == Decimal(cart["subtotal"]), cart
    assert sum(line["quantity"] for line in lines) == cart["items_number"], cart


@pytest.mark.parametrize("read", ["retrieve", "list"])
def test_a_cart_read_answers_while_a_writer_holds_the_cart(read, staff_client):
    """A read takes no write lock: while another request's transaction holds the cart
    (its row lock on PostgreSQL, the database's write lock on SQLite) a GET answers at
    once instead of queueing behind every write."""
    from django.db import transaction

    from cart.models import Cart

    cart = CartFactory()
    holding, release = threading.Event(), threading.Event()

    def hold_the_cart():
        try:
            with transaction.atomic():
                Cart.objects.select_for_update().get(pk=cart.pk)
                holding.set()
                release.wait(timeout=60)
        finally:
            connection.close()

    writer = threading.Thread(target=hold_the_cart)
    writer.start()
    try:
        assert holding.wait(timeout=10)
        path = f"/api/cart/{cart.pk}/" if read == "retrieve" else "/api/cart/"
        response = staff_client.get(path)
        still_held = not release.is_set() and writer.is_alive()
    finally:
        release.set()
        writer.join(timeout=30)

    assert response.status_code == 200, response.content
    assert still_held


@pytest.mark.parametrize("read", ["retrieve", "list"])
def test_a_cart_read_is_one_statement_without_a_transaction(read, api_client):
    """The cart, its discount, lines, payments and refunds are read by one SELECT, which
    sees one moment on its own: no BEGIN/COMMIT around it (on SQLite, no write lock)."""
    cart = CartFactory()
    url = f"/api/cart/{cart.pk}/" if read == "retrieve" else "/api/cart/"

    with CaptureQueriesContext(connection) as context:
        assert api_client.get(url).status_code == 200

    assert [query["sql"].split()[0] for query in context.captured_queries] == ["SELECT"]
