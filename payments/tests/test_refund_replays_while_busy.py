"""While every provider slot of the process is taken, a repeated refund request is still
answered from what is recorded, but only with the refund its own cart and key made."""

from __future__ import annotations

from decimal import Decimal

import pytest

from payments.errors import IdempotencyKeyReusedError, ProviderBusyError
from payments.models import Refund
from payments.provider import provider_slot
from payments.services import refund_create
from payments.tests.test_pay_service import REFUNDED, ScriptedProvider
from payments.tests.test_refund_service import charge_of, paid_cart, paid_lines, refund

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


def by_lines(cart, *lines, key, steps=()):
    return refund_create(
        cart=cart,
        lines=[{"line_id": line.pk, "quantity": quantity} for line, quantity in lines],
        idempotency_key=key,
        api=ScriptedProvider(refund=steps),
    )


@pytest.mark.parametrize(
    "repeat",
    [
        pytest.param({"lines": [("tea", 2)]}, id="other_units"),
        pytest.param({"lines": [("mug", 1)]}, id="other_line"),
        pytest.param({"lines": [("tea", 1), ("mug", 1)]}, id="more_lines"),
        pytest.param({"amount": Decimal("2.84")}, id="an_amount_instead"),
        pytest.param({}, id="everything_instead"),
    ],
)
def test_the_same_key_for_other_lines_is_refused_while_busy(repeat):
    # It was answered with the earlier refund (1 tea unit) as if it were its own: the
    # busy path compared the amount only.
    cart, tea, mug = paid_lines()
    first = by_lines(cart, (tea, 1), key="r1", steps=[REFUNDED])
    named = {"tea": tea, "mug": mug}
    lines = [{"line_id": named[name].pk, "quantity": qty} for name, qty in repeat.get("lines", [])]

    with provider_slot(), pytest.raises(IdempotencyKeyReusedError):
        refund_create(
            cart=cart, amount=repeat.get("amount"), lines=lines or None, idempotency_key="r1"
        )

    assert list(Refund.objects.values_list("pk", flat=True)) == [first.pk]
    assert charge_of(cart).amount_refunded == Decimal("2.84")


def test_the_same_key_for_the_same_lines_is_replayed_while_busy():
    cart, tea, mug = paid_lines()
    first = by_lines(cart, (tea, 1), (mug, 1), key="r1", steps=[REFUNDED])

    with provider_slot():
        again = by_lines(cart, (mug, 1), (tea, 1), key="r1")

    assert again.pk == first.pk
    assert Refund.objects.count() == 1
