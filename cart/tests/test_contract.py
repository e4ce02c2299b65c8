"""The tutorial's contract for carts, called exactly as the tutorial's tests call it."""

import json

import pytest
from django.utils.timezone import now, timedelta

from cart.models import Cart
from cart.serializers import CartSerializer
from discount.models import Discount

pytestmark = pytest.mark.django_db


def test_cart_saves_as_pending():
    cart = Cart(total=10, currency="USD", items_number=5)
    cart.save()

    assert cart.total == 10
    assert cart.currency == "USD"
    assert cart.items_number == 5
    assert cart.payment_status == "pending"


def test_cart_serializer_validated_data_equals_input():
    data = {"total": 10, "currency": "USD", "items_number": 5}
    serializer = CartSerializer(data=data)

    assert serializer.is_valid(raise_exception=True)
    assert serializer.validated_data == data


def test_apply_discount_model_method():
    cart = Cart(total=20, currency="USD", items_number=5)
    cart.save()
    discount = Discount(
        code="DIS20", value=5, description="Some discount", ended=now() + timedelta(days=2)
    )
    discount.save()

    cart.apply_discount(discount)

    assert cart.amount_discounted == 5
    assert cart.total == 15
    assert cart.total_discounted == 15
    assert cart.payment_status == "pending"
    cart.refresh_from_db()
    assert (cart.total, cart.amount_discounted, cart.total_discounted) == (15, 5, 15)


def test_post_get_and_list_carts(client):
    response = client.post(
        "/api/cart/",
        {"total": 10, "currency": "USD", "items_number": 5},
        content_type="application/json",
    )
    assert response.status_code == 201
    assert "id" in response.data
    assert Cart.objects.count() == 1

    assert client.get("/api/cart/").status_code == 200
    assert client.get(f"/api/cart/{response.data['id']}/").status_code == 200


def test_apply_discount_endpoint(client):
    Discount(code="DIS20", value=5, description="x", ended=now() + timedelta(days=2)).save()
    cart = client.post(
        "/api/cart/",
        {"total": 20, "currency": "USD", "items_number": 5},
        content_type="application/json",
    ).data

    response = client.post(
        f"/api/cart/{cart['id']}/apply_discount/",
        {"code": "DIS20"},
        content_type="application/json",
    )

    assert response.status_code == 200
    assert response.data["total"] == 15
    assert response.data["total_discounted"] == 15
    assert response.data["amount_discounted"] == 5
    assert response.data["payment_status"] == "pending"


def test_amounts_are_json_numbers_not_strings(client):
    response = client.post(
        "/api/cart/",
        {"total": "20.5", "currency": "USD", "items_number": 1},
        content_type="application/json",
    )

    text = response.content.decode()
    assert '"total":20.50' in text
    parsed = json.loads(text)
    for name in ("total", "subtotal", "amount_discounted", "total_discounted"):
        assert isinstance(parsed[name], (int, float)), name


def test_currency_is_stored_upper_case():
    cart = Cart(total=10, currency="usd", items_number=1)
    cart.save()
    assert Cart.objects.get().currency == "USD"


def test_a_request_is_read_with_the_writable_fields_only():
    # Every field a client may write is built for reading a request; none is missed.
    shown = CartSerializer().fields
    writable = [name for name, field in shown.items() if not field.read_only]
    assert writable == list(CartSerializer.WRITABLE_FIELDS)
    plain = CartSerializer(data={"total": "1", "currency": "USD", "items_number": 1})
    assert list(plain.fields) == [n for n in writable if n != "lines"]
    itemized = CartSerializer(data={"currency": "USD", "lines": []})
    assert list(itemized.fields) == writable
    assert not itemized.fields["total"].required
    missing = CartSerializer(data={"currency": "USD"})
    assert not missing.is_valid()
    assert set(missing.errors) == {"total", "items_number"}
    # Each request's fields are its own (built once per class, copied per request).
    assert plain.fields["total"] is not missing.fields["total"]
    assert plain.fields["total"].parent is plain


def test_fast_representation_matches_the_declared_fields():
    from decimal import Decimal

    from cart.models import Payment
    from cart.serializers import PaymentSerializer
    from discount.tests.factories import DiscountFactory

    cart = Cart(total=20, currency="JPY", items_number=2)
    cart.save()
    cart.apply_discount(DiscountFactory(value=Decimal("5")))
    Payment.objects.create(
        cart=cart, amount=cart.total, currency="JPY", status="failed", idempotency_key="k"
    )
    for cart in (
        Cart.objects.select_related("discount").get(),
        Cart.objects.create(total=Decimal("1.50"), currency="USD", items_number=1),
    ):
        serializer = CartSerializer(cart)
        assert serializer.data == serializer.declared_representation(cart)
        assert list(serializer.data) == list(serializer.fields)
    Payment.objects.update(status="success", completed=cart.created)
    for payment in Payment.objects.all():
        serializer = PaymentSerializer(payment)
        assert serializer.data == serializer.declared_representation(payment)
        assert list(serializer.data) == list(serializer.fields)
