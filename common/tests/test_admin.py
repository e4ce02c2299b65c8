"""The Django admin: the service's site, its lists and filters, and help texts in plain text."""

import pytest

from cart.tests.factories import CartFactory
from discount.tests.factories import DiscountFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_session(admin_client):
    DiscountFactory(code="SPRING", description="Spring sale")
    DiscountFactory(code="WINTER", active=False)
    return admin_client


def test_the_site_is_named_after_the_service_and_view_site_opens_the_api_docs(admin_client):
    html = admin_client.get("/admin/").content.decode()

    assert "Cart, discount and payment service" in html
    assert "Django administration" not in html
    assert '<a href="/api/docs/">View site</a>' in html


def test_every_page_names_its_favicon(admin_client, client):
    for page in (admin_client.get("/admin/"), client.get("/admin/login/")):
        assert 'rel="icon"' in page.content.decode()


def test_discount_changelist_searches_codes(admin_session):
    response = admin_session.get("/admin/discount/discount/", {"q": "spring"})

    assert response.status_code == 200
    assert [d.code for d in response.context["cl"].result_list] == ["SPRING"]


def test_discount_changelist_filters_by_active(admin_session):
    response = admin_session.get("/admin/discount/discount/", {"active__exact": "0"})

    assert [d.code for d in response.context["cl"].result_list] == ["WINTER"]


def test_discount_values_read_as_amounts_or_percentages(admin_client):
    DiscountFactory(code="FIVE", currency="USD")
    DiscountFactory(code="TEN", kind="percent", value=10, usage_limit=100)
    DiscountFactory(code="ANY")

    html = admin_client.get("/admin/discount/discount/").content.decode()

    assert "5.00 USD" in html
    assert "10 %" in html
    assert "5 (cart&#x27;s currency)" in html
    assert "0 of 100" in html
    assert "5.0000" not in html


def test_help_texts_have_no_markdown_backticks(admin_client):
    discount = DiscountFactory()

    html = admin_client.get(f"/admin/discount/discount/{discount.pk}/change/").content.decode()

    assert "Smallest cart subtotal the code applies to, in currency (required then)." in html
    assert "`" not in html.split('id="content-main"', 1)[1]


def test_the_discount_form_shows_amounts_without_padding(admin_client):
    discount = DiscountFactory(value="12.5")

    html = admin_client.get(f"/admin/discount/discount/{discount.pk}/change/").content.decode()

    assert 'name="value" value="12.5"' in html


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
