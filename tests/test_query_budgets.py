"""Query budgets: every endpoint runs a fixed number of SQL queries, whatever the table size.

Counts include the SAVEPOINT / RELEASE pairs of each transaction (tests run inside one).

Each endpoint is measured twice, with a few rows and with many (carts with discounts and
payment attempts), and must stay within its budget both times with the same count. A new
N+1 query fails here before it shows in a benchmark.
"""

import itertools
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from cart.tests.factories import CartFactory
from discount.services import discount_generate_codes
from discount.tests.factories import DiscountFactory
from payments.models import Payment, PaymentAttemptStatus, Refund

pytestmark = pytest.mark.django_db


def seed(rows: int) -> None:
    discount = DiscountFactory(code=f"SEED{rows}")
    for n in range(rows):
        cart = CartFactory(discount=discount, amount_discounted=Decimal("5"), total=Decimal("15"))
        Payment.objects.create(
            cart=cart,
            amount=cart.total,
            currency="USD",
            status=PaymentAttemptStatus.FAILED,
            idempotency_key=f"seed-{rows}-{n}",
        )
        DiscountFactory(code=f"D{rows}X{n}")


def count_queries(call) -> int:
    with CaptureQueriesContext(connection) as context:
        response = call()
    assert response.status_code < 400, response.content
    return len(context.captured_queries)


def measure(api_client, request) -> tuple[int, int]:
    """Queries of `request(client)` with 3 seeded rows, then with 60 more."""
    seed(3)
    small = count_queries(lambda: request(api_client))
    seed(60)
    large = count_queries(lambda: request(api_client))
    return small, large


def new_cart(client):
    return client.post("/api/cart/", {"total": 20, "currency": "USD", "items_number": 1})


def new_itemized_cart(client):
    lines = [
        {"sku": f"SKU-{n}", "name": "Thing", "quantity": 2, "unit_price": 3} for n in range(50)
    ]
    return client.post("/api/cart/", {"currency": "USD", "lines": lines}, format="json")


def one_cart(client):
    cart = CartFactory()
    Payment.objects.create(
        cart=cart, amount=cart.total, currency="USD", status="failed", idempotency_key=cart.pk
    )
    return lambda: client.get(f"/api/cart/{cart.pk}/")


CODES = (f"NEW{n}" for n in itertools.count())

BUDGETS = {
    # name: (budget, request)
    # A page of carts with their discounts, lines, payments and refunds: one statement
    # (`cart.selectors.with_related_in_one_statement`).
    "list carts": (1, lambda c: c.get("/api/cart/", {"page_size": 100})),
    "list carts filtered": (1, lambda c: c.get("/api/cart/?payment_status=failed&currency=USD")),
    # The cart, the automatic promotions that might apply (a new cart has no payments:
    # the answer does not ask).
    "create cart": (2, new_cart),
    # The cart and all its lines in one insert each, in one transaction (4), the
    # automatic promotions that might apply (1), then the answer reads its lines (1).
    "create itemized cart": (6, new_itemized_cart),
    "list discounts": (1, lambda c: c.get("/api/discount/", {"page_size": 100})),
    "list discounts by code": (1, lambda c: c.get("/api/discount/", {"code": "seed3"})),
    # The code is checked against the codes and the generated codes (one query each).
    "create discount": (5, lambda c: c.post("/api/discount/", {"code": next(CODES), "value": 5})),
    "health": (0, lambda c: c.get("/health/")),
    "readiness": (1, lambda c: c.get("/health/ready/")),
}


@pytest.mark.parametrize("name", BUDGETS)
def test_endpoint_stays_within_its_query_budget(api_client, name):
    budget, request = BUDGETS[name]

    small, large = measure(api_client, request)

    assert small == large, f"{name}: {small} queries with few rows, {large} with many"
    assert large <= budget, f"{name}: {large} queries, budget {budget}"


def test_list_of_every_kind_of_cart_stays_within_budget(api_client):
    """A page with paid (refunded) and itemized carts reads their refunds and their lines
    in the page's one statement too, whatever the page holds."""

    def mixed_page(n: int):
        for k in range(n):
            cart = CartFactory(payment_status="partially_refunded")
            payment = Payment.objects.create(
                cart=cart,
                amount=cart.total,
                currency="USD",
                status="success",
                idempotency_key=f"mixed-{n}-{k}",
                amount_refunded=Decimal(1),
            )
            Refund.objects.create(
                payment=payment,
                cart=cart,
                amount=Decimal(1),
                currency="USD",
                status="success",
                idempotency_key=f"mixed-refund-{n}-{k}",
            )
            assert new_itemized_cart(api_client).status_code == 201
        return lambda: api_client.get("/api/cart/", {"page_size": 100})

    few = count_queries(mixed_page(1))
    many = count_queries(mixed_page(20))
    assert few == many == 1


def test_get_cart_stays_within_budget(api_client):
    seed(3)
    small = count_queries(one_cart(api_client))
    seed(60)
    large = count_queries(one_cart(api_client))
    assert small == large == 1


def test_get_paid_cart_with_refunds_stays_within_budget(api_client):
    """A paid cart's refunds are read by the cart's one statement, whatever their number."""

    def paid_cart(refunds: int):
        cart = CartFactory(payment_status="partially_refunded")
        payment = Payment.objects.create(
            cart=cart,
            amount=cart.total,
            currency="USD",
            status="success",
            idempotency_key=f"paid-{cart.pk}",
            amount_refunded=Decimal(refunds),
        )
        for n in range(refunds):
            Refund.objects.create(
                payment=payment,
                cart=cart,
                amount=Decimal("1"),
                currency="USD",
                status="success",
                idempotency_key=f"refund-{cart.pk}-{n}",
            )
        return lambda: api_client.get(f"/api/cart/{cart.pk}/")

    few = count_queries(paid_cart(1))
    many = count_queries(paid_cart(15))
    assert few == many == 1


def test_get_and_patch_discount_stay_within_budget(api_client):
    def calls():
        discount = DiscountFactory(code=f"ONE{Payment.objects.count()}")
        get = count_queries(lambda: api_client.get(f"/api/discount/{discount.pk}/"))
        patch = count_queries(
            lambda: api_client.patch(f"/api/discount/{discount.pk}/", {"active": False})
        )
        return get, patch

    seed(3)
    small = calls()
    seed(60)
    large = calls()
    assert small == large
    get, patch = large
    assert get <= 1
    # 7, +2: Discount.clean() checks the code is still free (among codes and generated
    # codes), whatever the door; +1: whether carts hold it (a held code keeps its kind);
    # +1: its `reserved_uses`.
    assert patch <= 11


def test_apply_discount_stays_within_budget(api_client):
    def apply():
        cart = CartFactory()
        code = DiscountFactory(code=f"APPLY{Payment.objects.count()}{cart.pk.hex[:6]}").code
        return count_queries(
            lambda: api_client.post(f"/api/cart/{cart.pk}/apply_discount/", {"code": code})
        )

    seed(3)
    small = apply()
    seed(60)
    large = apply()
    # 8, and one more: the use is reserved (the code's row locked, then a row inserted)
    # where it used to be counted by one UPDATE. The code is looked up among codes and
    # generated codes in one statement (the same path whether a code exists or not); the
    # locked cart says whether it has payments, so a cart without any reads none.
    assert small == large <= 8


@pytest.mark.integration
def test_pay_stays_within_budget(api_client, fake_provider):
    def pay():
        cart = CartFactory(total=Decimal("1.00"))
        return count_queries(
            lambda: api_client.post(
                f"/api/cart/{cart.pk}/pay/", {"payment_method": "pm_card_visa"}
            )
        )

    seed(3)
    small = pay()
    seed(60)
    large = pay()
    # The cart.paid event is written with the change it reports, numbered after the
    # cart's last event (one indexed read); the answer's attempts and refunds are those
    # the transaction recording the charge read under the lock. A payable cart is not
    # searched for an attempt in flight (it has none).
    assert small == large <= 14


@pytest.mark.integration
def test_refund_stays_within_budget(api_client, fake_provider):
    def refund():
        cart = CartFactory(total=Decimal("2.00"))
        api_client.post(f"/api/cart/{cart.pk}/pay/", {"payment_method": "pm_card_visa"})
        return count_queries(
            lambda: api_client.post(f"/api/cart/{cart.pk}/refund/", {"amount": "1.00"})
        )

    seed(3)
    small = refund()
    seed(60)
    large = refund()
    # 16, and two more: the cart.refunded event is written with the change it reports,
    # numbered after the cart's last event.
    assert small == large <= 18


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_write_paths_send_these_statements_outside_a_test_transaction(api_client, fake_provider):
    """The statements each write path sends as in production, BEGIN and COMMIT included
    (the other budgets run inside the test's transaction, where a transaction is a
    savepoint). docs/benchmarks.md, "Write paths, statement by statement", lists them."""
    cart, paid = CartFactory(), CartFactory(total=Decimal("1.00"))
    code = DiscountFactory(code="WRITEPATHS").code
    discounted = CartFactory(total=Decimal("20.00"))
    api_client.post(f"/api/cart/{discounted.pk}/apply_discount/", {"code": code})
    paths = {
        # INSERT the cart; the automatic promotions.
        "create cart": (2, lambda: new_cart(api_client)),
        # Is the code taken (codes and generated codes, one statement); INSERT, in
        # autocommit.
        "create discount": (
            2,
            lambda: api_client.post("/api/discount/", {"code": "NEWW", "value": 5}),
        ),
        "apply discount": (
            8,
            lambda: api_client.post(f"/api/cart/{cart.pk}/apply_discount/", {"code": code}),
        ),
        # ... and the cart.paid event, numbered after the cart's last (docs/benchmarks.md).
        "pay": (
            14,
            lambda: api_client.post(
                f"/api/cart/{paid.pk}/pay/", {"payment_method": "pm_card_visa"}
            ),
        ),
        # With an Idempotency-Key (bound to the attempt) and a discount (its use
        # consumed, and the discount read for the answer): 8 more (docs/benchmarks.md).
        "pay a discounted cart with a key": (
            22,
            lambda: api_client.post(
                f"/api/cart/{discounted.pk}/pay/",
                {"payment_method": "pm_card_visa"},
                HTTP_IDEMPOTENCY_KEY="write-paths-1",
            ),
        ),
    }
    counts = {name: count_queries(call) for name, (_, call) in paths.items()}
    over = {name: count for name, count in counts.items() if count > paths[name][0]}
    assert not over, f"over budget: {over}"


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("generated", [False, True], ids=["code", "generated code"])
def test_apply_locks_the_codes_row_last(api_client, generated):
    """The applies of one code queue for its row's lock (PostgreSQL), so it is taken after
    the cart's UPDATE: held for the reservation's INSERT and the COMMIT only, as the
    limit row of docs/benchmarks.md holds its counter's."""
    discount = DiscountFactory(code="LOCKLAST")
    code = discount.code
    if generated:
        code = discount_generate_codes(discount=discount, count=1)[0].code
    cart = CartFactory(total=Decimal("20.00"))
    with CaptureQueriesContext(connection) as context:
        response = api_client.post(f"/api/cart/{cart.pk}/apply_discount/", {"code": code})
    assert response.status_code == 200, response.content
    statements = [q["sql"].lstrip().upper() for q in context.captured_queries]
    begin = next(i for i, sql in enumerate(statements) if sql.startswith("BEGIN"))
    in_transaction = statements[begin + 1 :]
    code_read = next(
        i for i, sql in enumerate(in_transaction) if 'FROM "DISCOUNT_DISCOUNT"' in sql
    )
    before, after = in_transaction[:code_read], in_transaction[code_read + 1 :]
    assert any(sql.startswith('UPDATE "CART_CART"') for sql in before), before
    if connection.vendor == "postgresql":
        assert "FOR UPDATE" in in_transaction[code_read]
    # After the lock: is a generated code held (a read, for it only, whose INSERT a
    # savepoint wraps to answer a race with `discount_code_used`), the INSERT, COMMIT.
    if generated:
        assert "DISCOUNT_DISCOUNTRESERVATION" in after[0], after
        assert after[1].startswith("SAVEPOINT"), after
        assert after[3].startswith("RELEASE"), after
        after = [after[2], *after[4:]]
    assert [sql.split()[0:3] for sql in after] == [
        ["INSERT", "INTO", '"DISCOUNT_DISCOUNTRESERVATION"'],
        ["COMMIT"],
    ], after


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's constraints")
def test_a_carts_keys_to_its_code_are_checked_at_the_commit():
    # The apply's cart UPDATE comes before the code's row is locked
    # (`cart_apply_discount`): a key checked at once would hold that row shared first.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT confrelid::regclass::text, condeferrable, condeferred FROM pg_constraint"
            " WHERE conrelid = 'cart_cart'::regclass AND contype = 'f'"
            " AND confrelid::regclass::text LIKE 'discount_%%'"
        )
        keys = sorted(cursor.fetchall())
    assert keys == [("discount_discount", True, True), ("discount_discountcode", True, True)]
