"""The payment ledger's fast representations are exactly what the declared fields give."""

from decimal import Decimal

import pytest

from cart.serializers import CartSerializer
from cart.tests.factories import CartFactory
from payments.models import Payment, Refund
from payments.serializers import RefundSerializer

pytestmark = pytest.mark.django_db


def test_refund_and_refunded_cart_representations_match_the_declared_fields():
    cart = CartFactory(
        total=Decimal("1500"),
        currency="JPY",
        payment_status="partially_refunded",
        amount_refunded=Decimal("500"),
    )
    payment = Payment.objects.create(
        cart=cart,
        amount=cart.total,
        currency="JPY",
        status="success",
        idempotency_key="k",
        amount_refunded=Decimal("500"),
        error_code="",
    )
    Refund.objects.create(
        payment=payment,
        cart=cart,
        amount=Decimal("500"),
        currency="JPY",
        status="unknown",
        error_code="outcome_unknown",
        error="The payment provider has not confirmed whether it refunded.",
        idempotency_key="refund-k",
    )

    for refund in Refund.objects.all():
        serializer = RefundSerializer(refund)
        assert serializer.data == serializer.declared_representation(refund)
        assert list(serializer.data) == list(serializer.fields)
    serializer = CartSerializer(cart)
    assert serializer.data == serializer.declared_representation(cart)
    assert serializer.data["amount_refunded"] == Decimal("500")
    assert [r["amount"] for r in serializer.data["refunds"]] == [Decimal("500")]
