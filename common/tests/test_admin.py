"""The Django admin lists, searches and filters discounts and carts."""

import pytest

from cart.tests.factories import CartFactory
from discount.tests.factories import DiscountFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_session(admin_client):
    DiscountFactory(code="SPRING", description="Spring sale")
    DiscountFactory(code="WINTER", active=False)
    return admin_client


def test_discount_changelist_searches_codes(admin_session):
    response = admin_session.get("/admin/discount/discount/", {"q": "spring"})

    assert response.status_code == 200
    assert [d.code for d in response.context["cl"].result_list] == ["SPRING"]


def test_discount_changelist_filters_by_active(admin_session):
    response = admin_session.get("/admin/discount/discount/", {"active__exact": "0"})

    assert [d.code for d in response.context["cl"].result_list] == ["WINTER"]


def test_cart_changelist_searches_by_discount_code_and_filters_by_status(admin_client):
    discount = DiscountFactory(code="SPRING")
    paid = CartFactory(discount=discount, amount_discounted=5, payment_status="success")
    CartFactory(payment_status="failed")

    by_code = admin_client.get("/admin/cart/cart/", {"q": "SPRING"})
    by_status = admin_client.get("/admin/cart/cart/", {"payment_status__exact": "success"})

    assert list(by_code.context["cl"].result_list) == [paid]
    assert list(by_status.context["cl"].result_list) == [paid]


def test_cart_detail_is_read_only_and_carts_are_not_added_by_hand(admin_client):
    cart = CartFactory()

    assert admin_client.get(f"/admin/cart/cart/{cart.pk}/change/").status_code == 200
    assert admin_client.get("/admin/cart/cart/add/").status_code == 403


def test_discount_can_be_added_in_the_admin_with_the_same_rules(admin_client):
    response = admin_client.post(
        "/admin/discount/discount/add/",
        {"code": "ADMIN", "kind": "percent", "value": "150", "currency": "", "active": "on"},
    )

    assert response.status_code == 200  # the form again, with the error
    assert "A percentage cannot exceed 100." in response.content.decode()
