"""Write paths read their cart by id through queries compiled once (`cart.selectors`):
the same cart the ORM reads, None (or DoesNotExist) when there is none."""

import uuid

import pytest
from django.db import transaction

from cart.models import Cart, Payment
from cart.selectors import cart_get, cart_get_locked, cart_known_history, cart_related
from cart.tests.factories import CartFactory
from discount.selectors import discount_get_locked
from discount.tests.factories import DiscountFactory

pytestmark = pytest.mark.django_db


def _values(instance) -> list:
    return [getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields]


def test_a_cart_by_id_is_the_orms_cart_or_none():
    cart = CartFactory()
    assert _values(cart_get(cart.pk)) == _values(Cart.objects.get(pk=cart.pk))
    assert _values(cart_get(str(cart.pk))) == _values(cart)
    assert cart_get(uuid.uuid4()) is None
    assert cart_get("not-a-uuid") is None


def test_locked_reads_are_the_orms_rows_or_does_not_exist():
    cart, discount = CartFactory(), DiscountFactory()
    with transaction.atomic():
        assert _values(cart_get_locked(cart.pk)) == _values(Cart.objects.get(pk=cart.pk))
        assert _values(discount_get_locked(discount.pk)) == _values(discount)
        with pytest.raises(Cart.DoesNotExist):
            cart_get_locked(uuid.uuid4())
        with pytest.raises(type(discount).DoesNotExist):
            discount_get_locked(discount.pk + 1000)


def test_a_carts_payments_are_read_in_order_unless_already_known():
    cart = CartFactory()
    first = Payment.objects.create(
        cart=cart, amount=cart.total, currency="USD", status="failed", idempotency_key="a"
    )
    second = Payment.objects.create(
        cart=cart, amount=cart.total, currency="USD", status="error", idempotency_key="b"
    )
    read = cart_get(cart.pk)
    assert [p.pk for p in cart_related(read).payments] == [first.pk, second.pk]
    cart_known_history(read, payments=[])
    assert cart_related(read).payments == []
    assert list(read.payments.all()) == []


def test_a_locked_cart_can_say_whether_it_has_payments_in_the_same_statement():
    untried, tried = CartFactory(), CartFactory(payment_status="failed")
    Payment.objects.create(
        cart=tried, amount=tried.total, currency="USD", status="failed", idempotency_key="t"
    )
    with transaction.atomic():
        for cart, has_payments in ((untried, False), (tried, True)):
            locked = cart_get_locked(cart.pk, with_has_payments=True)
            assert locked.has_payments is has_payments
            assert _values(locked) == _values(Cart.objects.get(pk=cart.pk))


def test_an_applied_discount_answers_with_the_carts_payments_whether_it_has_any(api_client):
    untried, tried = CartFactory(), CartFactory(payment_status="failed")
    attempt = Payment.objects.create(
        cart=tried, amount=tried.total, currency="USD", status="failed", idempotency_key="t"
    )
    for cart, shown in ((untried, []), (tried, [str(attempt.pk)])):
        code = DiscountFactory().code
        response = api_client.post(f"/api/cart/{cart.pk}/apply_discount/", {"code": code})
        assert response.status_code == 200, response.content
        assert [p["id"] for p in response.json()["payments"]] == shown
