"""While every provider slot of the process is taken, a repeated refund request is still
answered from what is recorded, but only with the refund its own cart and key made."""

from __future__ import annotations

import pytest

from payments.errors import IdempotencyKeyReusedError, ProviderBusyError
from payments.models import Refund
from payments.provider import provider_slot
from payments.tests.test_pay_service import REFUNDED
from payments.tests.test_refund_service import charge_of, paid_cart, refund

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def one_provider_slot(settings):
    settings.PAYMENT_MAX_IN_FLIGHT = 1


def test_the_same_key_for_another_amount_is_refused_while_busy():
    cart = paid_cart()
    refund(cart, "3.00", REFUNDED, key="r1")

    with provider_slot(), pytest.raises(IdempotencyKeyReusedError):
        refund(cart, "5.00", key="r1")

    assert Refund.objects.count() == 1
    assert charge_of(cart).amount_refunded == 3


def test_another_key_of_the_same_cart_is_not_answered_with_the_earlier_refund():
    cart = paid_cart()
    refund(cart, "3.00", REFUNDED, key="r1")

    with provider_slot(), pytest.raises(ProviderBusyError):
        refund(cart, "3.00", key="r2")

    assert Refund.objects.count() == 1


def test_the_same_key_on_another_cart_is_not_answered_with_that_carts_refund():
    first, second = paid_cart(), paid_cart()
    refund(first, "3.00", REFUNDED, key="r1")

    with provider_slot(), pytest.raises(ProviderBusyError):
        refund(second, "3.00", key="r1")

    assert charge_of(second).amount_refunded == 0
    assert Refund.objects.filter(cart=second).count() == 0
