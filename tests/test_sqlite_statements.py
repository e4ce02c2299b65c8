"""SQLite prepares each statement of the hot paths once per connection.

SQLite keeps a prepared statement and runs it again with new values, unless a bound value
could decide whether a partial index applies (`status = ?` where an index says
`WHERE status = 'success'`): then it compiles the statement again on every run. The
lookup of a typed code on every apply discount was such a statement until 2026-12-02:
0.22 ms of SQLite's CPU per apply against 0.02 ms once the constants it holds were
written into its SQL (`common.compiled`), found by `common.testing.sqlite_reprepared`.
"""

from decimal import Decimal

import pytest
from django.db import connection

from cart.tests.factories import CartFactory
from common.testing import sqlite_reprepared, statements_sent
from discount.services import discount_generate_codes
from discount.tests.factories import DiscountFactory
from tests.test_query_budgets import new_cart, seed

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's statement cache"),
]


def statements_of(call) -> list[tuple[str, list]]:
    with statements_sent(connection) as sent:
        response = call()
    assert response.status_code < 400, response.content
    return sent


def test_the_detector_sees_a_statement_sqlite_prepares_on_every_run():
    # The ORM sends the constant as a value: the partial index
    # `reservation_one_per_generated_code` (WHERE NOT status = 'released') may or may not
    # apply, so SQLite prepares it again each time. If this stops failing, the detector
    # (or SQLite) changed and the tests below prove nothing.
    from discount.models import DiscountReservation

    with statements_sent(connection) as sent:
        list(DiscountReservation.objects.filter(code_id=1).exclude(status="released"))
    assert sqlite_reprepared(connection, sent) == [sent[0][0]]


def test_apply_discount_statements_are_prepared_once(api_client):
    seed(3)
    own = DiscountFactory(code="PREPARED").code
    generated = discount_generate_codes(discount=DiscountFactory(code="CAMPAIGN"), count=2)

    sent = []
    for code in (own, generated[0].code, "NO-SUCH-CODE"):
        cart = CartFactory(total=Decimal("30.00"))
        with statements_sent(connection) as statements:
            api_client.post(f"/api/cart/{cart.pk}/apply_discount/", {"code": code})
        sent += statements

    assert len(sent) > 10
    assert sqlite_reprepared(connection, sent) == []


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(lambda c, cart: c.get(f"/api/cart/{cart.pk}/"), id="get cart"),
        pytest.param(lambda c, cart: c.get("/api/cart/"), id="list carts"),
        pytest.param(lambda c, cart: new_cart(c), id="create cart"),
        pytest.param(
            lambda c, cart: c.post("/api/discount/", {"code": "FRESH1", "value": 5}),
            id="create discount",
        ),
    ],
)
def test_read_and_create_statements_are_prepared_once(api_client, request_):
    seed(3)
    cart = CartFactory()

    sent = statements_of(lambda: request_(api_client, cart))

    assert sqlite_reprepared(connection, sent) == []


@pytest.mark.integration
def test_pay_statements_are_prepared_once(api_client, fake_provider):
    seed(3)
    code = DiscountFactory(code="PAYPREPARED").code
    discounted = CartFactory(total=Decimal("20.00"))
    api_client.post(f"/api/cart/{discounted.pk}/apply_discount/", {"code": code})
    plain = CartFactory(total=Decimal("1.00"))

    sent = statements_of(
        lambda: api_client.post(f"/api/cart/{plain.pk}/pay/", {"payment_method": "pm_card_visa"})
    ) + statements_of(
        lambda: api_client.post(
            f"/api/cart/{discounted.pk}/pay/",
            {"payment_method": "pm_card_visa"},
            HTTP_IDEMPOTENCY_KEY="prepared-once",
        )
    )

    assert sqlite_reprepared(connection, sent) == []
