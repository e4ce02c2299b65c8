"""Paying a cart with a reserved use of a code: what is charged is always what the cart
shows at that moment, and consumed uses plus live reservations never pass `usage_limit`.

The provider is the scripted stand-in of `payments/tests/test_pay_service.py`, so each
ordering of a reservation's expiry, the sweep and a charge is played deterministically.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from cart.models import Cart, PaymentStatus
from cart.services import cart_apply_discount, cart_pay
from cart.tests.factories import CartFactory
from discount.errors import DiscountReservationExpiredError
from discount.models import Discount, DiscountReservation
from discount.services import discount_release_expired_reservations
from discount.tests.factories import DiscountFactory
from payments.errors import ProviderUnavailableError
from payments.models import Payment, PaymentAttemptStatus
from payments.services import payment_record_result
from payments.tests.test_pay_service import (
    CHARGED,
    Answer,
    ScriptedProvider,
    leave_unknown,
    unavailable,
)

pytestmark = pytest.mark.django_db(transaction=True)


def expire(cart) -> None:
    DiscountReservation.objects.filter(cart=cart, status="reserved").update(
        expires=timezone.now() - timedelta(seconds=1)
    )


def held(discount) -> int:
    return Discount.objects.get(pk=discount.pk).uses_held(at=timezone.now())


def shown(cart) -> tuple:
    cart = Cart.objects.get(pk=cart.pk)
    return cart.discount_id, cart.amount_discounted, cart.total


def test_an_expired_reservation_freed_while_an_earlier_attempt_was_settled_is_not_charged():
    """The reservation is checked in the transaction that opens the attempt: a use that
    another cart took while the earlier attempt was being looked up is not charged for."""
    discount = DiscountFactory(code="WINDOW", usage_limit=1)
    slow = CartFactory()
    cart_apply_discount(cart=slow, discount=discount)
    attempt = leave_unknown(slow)
    Payment.objects.filter(pk=attempt.pk).update(in_flight_until=timezone.now())
    other = CartFactory()

    def slow_lookup(request):
        # The lookup took longer than the reservation had left; once the earlier attempt
        # is closed, the expired use no longer counts, and another cart reserves it.
        expire(slow)
        DiscountReservation.objects.create(
            discount=discount,
            cart=other,
            amount=Decimal("5"),
            currency="USD",
            expires=timezone.now() + timedelta(minutes=30),
        )
        return None

    provider = ScriptedProvider(ledger={attempt.idempotency_key: slow_lookup}, pay=[CHARGED])

    with pytest.raises(DiscountReservationExpiredError):
        cart_pay(cart=slow, payment_method="pm_card_visa", api=provider)

    assert provider.requests == []
    assert shown(slow) == (None, Decimal("0"), Decimal("20.00"))
    assert (slow.discount_id, slow.total) == (None, Decimal("20.00"))
    assert held(discount) == 1


def test_a_renewal_never_keeps_a_use_another_cart_reserved_meanwhile(monkeypatch):
    """A reservation that another cart's apply saw expired is not brought back by paying:
    the pay re-checks the limit under the code's row lock, whatever its own clock says."""
    discount = DiscountFactory(code="RACE", usage_limit=1)
    slow, quick = CartFactory(), CartFactory()
    cart_apply_discount(cart=slow, discount=discount)
    ends = DiscountReservation.objects.get(cart=slow).expires
    with monkeypatch.context() as clock:
        # The other apply ran just after the reservation ended ...
        clock.setattr(timezone, "now", lambda: ends + timedelta(milliseconds=1))
        cart_apply_discount(cart=quick, discount=discount)
    # ... while the pay had read the time just before.
    provider = ScriptedProvider(pay=[CHARGED])

    with pytest.raises(DiscountReservationExpiredError):
        cart_pay(cart=slow, api=provider)

    assert provider.requests == []
    assert held(discount) == 1
    assert shown(slow) == (None, Decimal("0"), Decimal("20.00"))


def test_paying_after_the_sweep_charges_the_restored_total_the_cart_shows():
    discount = DiscountFactory(code="SWEPT", usage_limit=3)
    cart = CartFactory()
    cart_apply_discount(cart=cart, discount=discount)
    expire(cart)
    assert discount_release_expired_reservations() == 1
    provider = ScriptedProvider(pay=[CHARGED])

    payment = cart_pay(cart=cart, api=provider)

    assert provider.requests[0]["amount"] == Decimal("20.00")
    assert payment.amount == cart.total == Cart.objects.get(pk=cart.pk).total
    assert (cart.discount_id, cart.amount_discounted) == (None, Decimal("0"))
    assert Discount.objects.get(pk=discount.pk).times_used == 0


def test_a_charge_landing_after_the_release_brings_the_discount_back_and_counts_it():
    """The attempt was closed as not charged, the sweep then released the reservation and
    restored the total, and the charge (of the discounted total) landed after all: the
    cart shows what was charged, with the use it consumed."""
    discount = DiscountFactory(code="LATE", usage_limit=2)
    cart = CartFactory()
    cart_apply_discount(cart=cart, discount=discount)
    with pytest.raises(ProviderUnavailableError):
        cart_pay(cart=cart, api=ScriptedProvider(pay=[unavailable()]))
    attempt = Payment.objects.get(cart=cart)
    assert (attempt.status, attempt.amount) == (PaymentAttemptStatus.ERROR, Decimal("15.00"))
    expire(cart)
    discount_release_expired_reservations()
    assert shown(cart)[2] == Decimal("20.00")

    late = ScriptedProvider()._result(Answer(), _request_of(attempt))
    payment_record_result(cart=cart, payment=attempt, result=late)

    cart = Cart.objects.get(pk=cart.pk)
    assert cart.payment_status == PaymentStatus.SUCCESS
    assert (cart.discount_id, cart.amount_discounted, cart.total) == (
        discount.pk,
        Decimal("5.00"),
        Decimal("15.00"),
    )
    assert DiscountReservation.objects.get(cart=cart).status == "consumed"
    assert Discount.objects.get(pk=discount.pk).times_used == 1


def test_a_late_undiscounted_charge_takes_off_a_discount_applied_since(caplog):
    """Closed as not charged, then a code applied, then the earlier (undiscounted) charge
    lands: the cart shows the total charged and the code's use is given back."""
    discount = DiscountFactory(code="AFTER", usage_limit=1)
    cart = CartFactory()
    with pytest.raises(ProviderUnavailableError):
        cart_pay(cart=cart, api=ScriptedProvider(pay=[unavailable()]))
    attempt = Payment.objects.get(cart=cart)
    cart_apply_discount(cart=Cart.objects.get(pk=cart.pk), discount=discount)

    late = ScriptedProvider()._result(Answer(), _request_of(attempt))
    payment_record_result(cart=cart, payment=attempt, result=late)

    assert shown(cart) == (None, Decimal("0"), Decimal("20.00"))
    assert DiscountReservation.objects.get(cart=cart).status == "released"
    assert held(discount) == 0


def _request_of(attempt: Payment) -> dict:
    return {
        "cart_id": str(attempt.cart_id),
        "amount": attempt.amount,
        "currency": attempt.currency,
        "idempotency_key": attempt.idempotency_key,
        "payment_method": attempt.payment_method or None,
    }
