"""Whole numbers are read in ASCII digits only, as amounts are (common.fields).

Python's int() also reads Arabic-Indic "١٢" or full-width "１２" as 12: no client means
them so, and a body carrying them is a bug or a probe, answered 400 naming the field,
with nothing changed."""

import pytest

from cart.models import Cart, CartLine
from cart.tests.factories import CartFactory, itemized_cart
from common.testing import error_of
from discount.models import Discount
from discount.tests.factories import DiscountFactory

pytestmark = pytest.mark.django_db

NOT_ASCII = ["١٢", "１２", "1٢", "1_000"]  # int() reads all four


@pytest.mark.parametrize("number", NOT_ASCII)
def test_a_cart_is_not_created_with_them(api_client, number):
    plain = {"total": "10.00", "currency": "USD", "items_number": number}
    lines = {
        "currency": "USD",
        "lines": [{"sku": "TEA", "name": "Tea", "quantity": number, "unit_price": "1.00"}],
    }

    for body, field in ((plain, "items_number"), (lines, "lines.0.quantity")):
        response = api_client.post("/api/cart/", body, format="json")
        assert response.status_code == 400, response.content
        assert (error_of(response)["field"], error_of(response)["code"]) == (field, "invalid")
    assert not Cart.objects.exists()


@pytest.mark.parametrize("number", NOT_ASCII)
def test_a_line_is_not_added_or_changed_with_them(api_client, number):
    cart = itemized_cart(("TEA", 1, "3.00"))
    line = cart.lines.get()
    added = api_client.post(
        f"/api/cart/{cart.pk}/lines/",
        {"sku": "MUG", "name": "Mug", "quantity": number, "unit_price": "9.00"},
        format="json",
    )
    changed = api_client.patch(
        f"/api/cart/{cart.pk}/lines/{line.pk}/", {"quantity": number}, format="json"
    )

    for response in (added, changed):
        assert response.status_code == 400, response.content
        assert error_of(response)["field"] == "quantity"
    assert list(CartLine.objects.values_list("sku", "quantity")) == [("TEA", 1)]


@pytest.mark.parametrize("number", NOT_ASCII)
def test_a_discount_is_not_created_or_given_codes_with_them(api_client, number):
    body = {"code": "SPRING", "kind": "amount", "value": "5", "usage_limit": number}
    created = api_client.post("/api/discount/", body, format="json")
    discount = DiscountFactory(code="GIFT")
    codes = api_client.post(
        f"/api/discount/{discount.pk}/codes/", {"count": number}, format="json"
    )

    assert created.status_code == codes.status_code == 400
    assert error_of(created)["field"] == "usage_limit"
    assert error_of(codes)["field"] == "count"
    assert list(Discount.objects.values_list("code", flat=True)) == ["GIFT"]
    assert not discount.codes.exists()


def test_ascii_digits_in_a_string_are_still_read(api_client):
    response = api_client.post(
        "/api/cart/", {"total": "10.00", "currency": "USD", "items_number": "12"}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["items_number"] == 12


def test_a_discount_is_not_found_by_an_id_in_other_digits(api_client):
    discount = DiscountFactory(code="GIFT")
    assert api_client.get(f"/api/discount/{discount.pk}/").status_code == 200
    assert (
        api_client.get("/api/discount/" + str(discount.pk).translate(_ARABIC) + "/").status_code
        == 404
    )


_ARABIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")


@pytest.mark.parametrize("number", NOT_ASCII)
def test_a_refund_of_lines_is_not_made_with_them(api_client, number):
    cart = CartFactory()
    response = api_client.post(
        f"/api/cart/{cart.pk}/refund/",
        {"lines": [{"line_id": number, "quantity": 1}]},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert error_of(response)["field"] == "lines.0.line_id"
