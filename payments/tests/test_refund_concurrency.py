"""Refunds racing on one paid cart, each in its own thread and database connection,
through the API view stack and the real fake provider: the refunds never add up to more
than was charged. Runs on both databases CI uses (PostgreSQL row locks; SQLite, a file
with IMMEDIATE transactions). tests/test_e2e.py races them over HTTP through gunicorn."""

from decimal import Decimal

import pytest
from rest_framework.test import APIClient

from cart.models import Cart
from cart.tests.factories import CartFactory
from cart.tests.test_concurrency import race
from common.testing import error_of
from payments.models import Payment, Refund

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.concurrency,
    pytest.mark.integration,
]

RACERS = 20


def test_refund_never_exceeds_captured_amount_under_races(fake_provider, settings):
    settings.PAYMENT_MAX_IN_FLIGHT = 0  # let every racer reach the provider
    cart = CartFactory(total=Decimal("10.00"))
    assert APIClient().post(f"/api/cart/{cart.pk}/pay/", {}).status_code == 200

    def refund_one_fifty():
        return APIClient().post(f"/api/cart/{cart.pk}/refund/", {"amount": "1.50"})

    responses = race([refund_one_fifty] * RACERS)

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 6 + [409] * (RACERS - 6), [r.content for r in responses]
    assert {error_of(r)["code"] for r in responses if r.status_code == 409} == {
        "refund_exceeds_captured"
    }
    charge = Payment.objects.get(cart=cart, status="success")
    made = Refund.objects.filter(cart=cart, status="success")
    assert sum(r.amount for r in made) == charge.amount_refunded == Decimal("9.00")
    held = Cart.objects.get(pk=cart.pk)
    assert (held.amount_refunded, held.payment_status) == (Decimal("9.00"), "partially_refunded")
    assert Refund.objects.exclude(status="success").count() == 0
    at_provider = fake_provider.refunds(charge.provider_payment_id)
    assert sum(r["amount"] for r in at_provider) == 900
    assert len(at_provider) == 6


def test_full_and_partial_refunds_racing_give_back_exactly_the_charge(fake_provider, settings):
    settings.PAYMENT_MAX_IN_FLIGHT = 0
    cart = CartFactory(total=Decimal("10.00"))
    assert APIClient().post(f"/api/cart/{cart.pk}/pay/", {}).status_code == 200

    def full():
        return APIClient().post(f"/api/cart/{cart.pk}/refund/", {})

    def partial():
        return APIClient().post(f"/api/cart/{cart.pk}/refund/", {"amount": "3.00"})

    responses = race([full, partial] * (RACERS // 2))

    assert {r.status_code for r in responses} <= {200, 409}
    held = Cart.objects.get(pk=cart.pk)
    assert (held.amount_refunded, held.payment_status) == (Decimal("10.00"), "refunded")
    charge = Payment.objects.get(cart=cart, status="success")
    assert sum(r["amount"] for r in fake_provider.refunds(charge.provider_payment_id)) == 1000


def test_racing_refunds_of_a_tenth_give_back_exactly_the_charge(fake_provider, settings):
    # 0.10 has no exact binary form: the holds must add up in Decimal, not in the
    # database's floating point, for the fifteenth refund to fit and the sixteenth not to.
    settings.PAYMENT_MAX_IN_FLIGHT = 0
    cart = CartFactory(total=Decimal("1.50"))
    assert APIClient().post(f"/api/cart/{cart.pk}/pay/", {}).status_code == 200

    def refund_a_tenth():
        return APIClient().post(f"/api/cart/{cart.pk}/refund/", {"amount": "0.10"})

    responses = race([refund_a_tenth] * RACERS)

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * 15 + [409] * (RACERS - 15), [r.content for r in responses]
    held = Cart.objects.get(pk=cart.pk)
    assert (held.amount_refunded, held.payment_status) == (Decimal("1.50"), "refunded")
    charge = Payment.objects.get(cart=cart, status="success")
    assert charge.amount_refunded == Decimal("1.50")
    assert sum(r["amount"] for r in fake_provider.refunds(charge.provider_payment_id)) == 150
