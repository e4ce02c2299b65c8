"""The first page of GET /api/cart/ is served by a statement compiled once
(`cart.selectors.carts_newest`, through `NewestFirstCursorPagination`): it must answer
byte for byte what DRF's own cursor pagination answers, `next` cursor included, and the
pages after it must follow on from it."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from cart.models import Cart, Payment
from cart.tests.factories import CartFactory
from cart.viewsets import CartViewSet
from discount.tests.factories import DiscountFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def carts():
    start = timezone.now() - timedelta(hours=1)
    made = []
    for n in range(25):
        cart = CartFactory(total=Decimal(n) + Decimal("0.50"))
        Cart.objects.filter(pk=cart.pk).update(created=start + timedelta(seconds=n))
        made.append(cart)
    made[-1].apply_discount(DiscountFactory(value=Decimal("1")))
    Payment.objects.create(
        cart=made[-2], amount=Decimal("1"), currency="USD", status="failed", idempotency_key="k"
    )
    return made


def _both(client, monkeypatch, params=None):
    compiled = client.get("/api/cart/", params or {})
    with monkeypatch.context() as patch:
        patch.setattr(CartViewSet, "first_page", lambda self, limit: None)
        generic = client.get("/api/cart/", params or {})
    return compiled, generic


@pytest.mark.parametrize("params", [None, {"page_size": 5}, {"page_size": 100}])
def test_the_first_page_is_drfs_own(staff_client, carts, monkeypatch, params):
    compiled, generic = _both(staff_client, monkeypatch, params)
    assert compiled.status_code == generic.status_code == 200
    assert compiled.content == generic.content
    body = compiled.json()
    size = (params or {}).get("page_size", 20)
    assert [c["id"] for c in body["results"]] == [str(c.pk) for c in reversed(carts)][:size]
    assert (body["next"] is None) == (size >= len(carts))
    assert body["previous"] is None


def test_the_next_page_follows_on_from_the_first(staff_client, carts):
    first = staff_client.get("/api/cart/", {"page_size": 10}).json()
    second = staff_client.get(first["next"]).json()
    shown = [c["id"] for c in first["results"] + second["results"]]
    assert shown == [str(c.pk) for c in reversed(carts)][:20]
    back = staff_client.get(second["previous"]).json()
    assert back["results"] == first["results"]


def test_a_filtered_list_is_not_the_first_page_of_everything(staff_client, carts):
    carts[0].payment_status = "success"
    Cart.objects.filter(pk=carts[0].pk).update(payment_status="success")
    body = staff_client.get("/api/cart/", {"payment_status": "success"}).json()
    assert [c["id"] for c in body["results"]] == [str(carts[0].pk)]


def test_the_first_page_is_one_statement(staff_client, carts):
    staff_client.get("/api/cart/")  # compiled on the first request
    with CaptureQueriesContext(connection) as queries:
        staff_client.get("/api/cart/")
    assert [q["sql"].split()[0] for q in queries.captured_queries] == ["SELECT"]
