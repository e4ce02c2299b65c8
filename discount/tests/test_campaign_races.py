"""Carts racing for campaign codes, each on its own connection, on SQLite and PostgreSQL."""

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from cart.tests.factories import CartFactory
from cart.tests.test_concurrency import THREADS, race
from common.testing import error_of
from discount.models import DiscountReservation
from discount.tests.factories import DiscountFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.concurrency]


def apply_call(cart, code):
    return lambda: APIClient().post(f"/api/cart/{cart.pk}/apply_discount/", {"code": code})


def test_carts_of_one_customer_racing_for_a_once_per_customer_code_one_wins():
    DiscountFactory(code="ONCE", limit_per_customer=1)
    carts = [CartFactory(customer_ref="cus_1") for _ in range(THREADS)]

    responses = race([apply_call(cart, "ONCE") for cart in carts])

    assert sorted(r.status_code for r in responses) == [200] + [400] * (THREADS - 1)
    assert {error_of(r)["code"] for r in responses if r.status_code == 400} == {
        "discount_customer_limit_reached"
    }
    assert DiscountReservation.objects.filter(status="reserved").count() == 1


def test_carts_of_one_customer_racing_for_a_first_order_code_one_wins():
    DiscountFactory(code="WELCOME", first_order_only=True)
    carts = [CartFactory(customer_ref="cus_1") for _ in range(THREADS)]

    responses = race([apply_call(cart, "WELCOME") for cart in carts])

    assert sorted(r.status_code for r in responses) == [200] + [400] * (THREADS - 1)


def test_carts_racing_for_the_last_of_a_budget_never_pass_it():
    discount = DiscountFactory(
        code="BUDGET", value=Decimal("5"), currency="USD", budget_amount=Decimal("12")
    )
    carts = [CartFactory() for _ in range(THREADS)]

    responses = race([apply_call(cart, "BUDGET") for cart in carts])

    assert sorted(r.status_code for r in responses) == [200] * 2 + [400] * (THREADS - 2)
    assert {error_of(r)["code"] for r in responses if r.status_code == 400} == {
        "discount_budget_exhausted"
    }
    assert sum(r.amount for r in discount.reservations.all()) == Decimal("10")


def test_carts_racing_for_one_generated_code_one_wins():
    from discount.services import discount_generate_codes

    [code] = discount_generate_codes(discount=DiscountFactory(code="XMAS"), count=1)
    carts = [CartFactory() for _ in range(THREADS)]

    responses = race([apply_call(cart, code.code) for cart in carts])

    assert sorted(r.status_code for r in responses) == [200] + [400] * (THREADS - 1)
    assert {error_of(r)["code"] for r in responses if r.status_code == 400} == {
        "discount_code_used"
    }
    assert DiscountReservation.objects.filter(code=code).count() == 1
