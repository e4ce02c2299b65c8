"""Paying a cart that holds a discount: the attempt keeps the cart's use of the code
(`discount.services.discount_hold_for_payment`), or refuses the payment with the discount
taken off and nothing charged.

The provider is the scripted stand-in of `payments/tests/test_pay_service.py`. Expiries
are set minutes away from `timezone.now()`, so no test depends on how fast it runs.
"""

from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from cart.models import Cart, PaymentStatus
from cart.services import cart_apply_discount, cart_pay
from cart.tests.factories import CartFactory
from discount.errors import DiscountReservationExpiredError
from discount.models import Discount, DiscountReservation
from discount.services import RESERVATION_GRACE_AT_PAYMENT
from discount.tests.factories import DiscountFactory
from payments.tests.test_pay_service import CHARGED, ScriptedProvider, declined

pytestmark = pytest.mark.django_db

LIVE = timedelta(minutes=30)


def reservation_of(cart, discount) -> DiscountReservation:
    return DiscountReservation.objects.get(cart=cart, discount=discount, status="reserved")


def set_expiry(cart, *, delta: timedelta) -> None:
    DiscountReservation.objects.filter(cart=cart, status="reserved").update(
        expires=timezone.now() + delta
    )


def shown(cart) -> tuple:
    cart = Cart.objects.get(pk=cart.pk)
    return cart.discount_id, cart.amount_discounted, cart.total


def held_by(cart, discount) -> int:
    return DiscountReservation.objects.filter(
        cart=cart, discount=discount, status="reserved"
    ).count()


@contextmanager
def grace_window():
    """The expiry a payment opened inside the block gives: now + grace, for some now
    read within the block."""
    window = {"from": timezone.now() + RESERVATION_GRACE_AT_PAYMENT}
    yield window
    window["to"] = timezone.now() + RESERVATION_GRACE_AT_PAYMENT


def pay_declined(cart):
    """An attempt that charges nothing: the cart keeps its reservation to pay again."""
    payment = cart_pay(cart=cart, api=ScriptedProvider(pay=[declined()]))
    assert payment.status == "failed"
    return payment


def assert_refused_and_nothing_charged(cart, discount):
    provider = ScriptedProvider(pay=[CHARGED])

    with pytest.raises(DiscountReservationExpiredError):
        cart_pay(cart=cart, api=provider)

    assert provider.requests == []
    assert shown(cart) == (None, Decimal("0"), Decimal("20.00"))
    assert (cart.discount_id, cart.total) == (None, Decimal("20.00"))
    assert held_by(cart, discount) == 0
    assert Cart.objects.get(pk=cart.pk).payment_status == PaymentStatus.PENDING
    assert Discount.objects.get(pk=discount.pk).times_used == 0


class TestALiveReservation:
    def test_is_extended_to_the_payment_grace_when_it_would_end_sooner(self):
        discount = DiscountFactory(code="SOON", usage_limit=1)
        cart = CartFactory()
        cart_apply_discount(cart=cart, discount=discount)
        set_expiry(cart, delta=timedelta(seconds=5))
        before = reservation_of(cart, discount)

        with grace_window() as window:
            pay_declined(cart)

        kept = reservation_of(cart, discount)
        assert kept.pk == before.pk
        assert window["from"] <= kept.expires <= window["to"]
        assert kept.updated > before.updated

    def test_already_further_out_than_the_grace_is_not_shortened(self):
        discount = DiscountFactory(code="LATER", usage_limit=1)
        cart = CartFactory()
        cart_apply_discount(cart=cart, discount=discount)
        set_expiry(cart, delta=LIVE)
        before = reservation_of(cart, discount)

        pay_declined(cart)

        assert reservation_of(cart, discount).expires == before.expires

    def test_is_charged_at_the_discounted_total_and_consumed(self):
        discount = DiscountFactory(code="KEPT", usage_limit=1)
        cart = CartFactory()
        cart_apply_discount(cart=cart, discount=discount)
        provider = ScriptedProvider(pay=[CHARGED])

        payment = cart_pay(cart=cart, api=provider)

        assert provider.requests[0]["amount"] == payment.amount == Decimal("15.00")
        assert Discount.objects.get(pk=discount.pk).times_used == 1

    def test_keeps_its_use_after_the_code_ended(self):
        """What the cart was given when it applied the code holds until it expires."""
        discount = DiscountFactory(code="ENDING", usage_limit=1)
        cart = CartFactory()
        cart_apply_discount(cart=cart, discount=discount)
        Discount.objects.filter(pk=discount.pk).update(ended=timezone.now() - timedelta(minutes=5))
        provider = ScriptedProvider(pay=[CHARGED])

        cart_pay(cart=cart, api=provider)

        assert provider.requests[0]["amount"] == Decimal("15.00")

    def test_of_a_first_order_code_is_paid_for_the_customers_first_order(self):
        discount = DiscountFactory(code="HELLO", first_order_only=True)
        cart = CartFactory(customer_ref="cus_1")
        cart_apply_discount(cart=cart, discount=discount)
        provider = ScriptedProvider(pay=[CHARGED])

        cart_pay(cart=cart, api=provider)

        assert provider.requests[0]["amount"] == Decimal("15.00")
        assert Discount.objects.get(pk=discount.pk).times_used == 1

    def test_of_a_first_order_code_with_a_budget_is_paid_from_what_it_reserved(self):
        discount = DiscountFactory(
            code="FIRSTBUDGET", first_order_only=True, budget_amount=Decimal("5.00")
        )
        cart = CartFactory(customer_ref="cus_1")
        cart_apply_discount(cart=cart, discount=discount)
        provider = ScriptedProvider(pay=[CHARGED])

        cart_pay(cart=cart, api=provider)

        assert provider.requests[0]["amount"] == Decimal("15.00")

    def test_of_a_first_order_code_is_refused_once_another_order_of_the_customer_was_paid(
        self,
    ):
        discount = DiscountFactory(code="WELCOME", first_order_only=True)
        cart = CartFactory(customer_ref="cus_1")
        cart_apply_discount(cart=cart, discount=discount)
        set_expiry(cart, delta=LIVE)
        other = CartFactory(customer_ref="cus_1")
        Cart.objects.filter(pk=other.pk).update(payment_status=PaymentStatus.SUCCESS)

        assert_refused_and_nothing_charged(cart, discount)
        assert DiscountReservation.objects.get(cart=cart).status == "released"


class TestAnExpiredReservation:
    def test_is_taken_again_when_the_code_is_still_usable(self):
        discount = DiscountFactory(code="RENEW", usage_limit=2)
        cart = CartFactory()
        cart_apply_discount(cart=cart, discount=discount)
        set_expiry(cart, delta=-timedelta(minutes=5))
        provider = ScriptedProvider(pay=[CHARGED])

        payment = cart_pay(cart=cart, api=provider)

        assert provider.requests[0]["amount"] == payment.amount == Decimal("15.00")
        assert DiscountReservation.objects.get(cart=cart).status == "consumed"
        assert Discount.objects.get(pk=discount.pk).times_used == 1

    def test_taken_again_is_held_for_the_payment_grace(self):
        discount = DiscountFactory(code="REHELD", usage_limit=2)
        cart = CartFactory()
        cart_apply_discount(cart=cart, discount=discount)
        set_expiry(cart, delta=-timedelta(minutes=5))

        with grace_window() as window:
            pay_declined(cart)

        assert window["from"] <= reservation_of(cart, discount).expires <= window["to"]

    def test_whose_last_use_another_cart_took_is_refused_released_and_logged(self, caplog):
        discount = DiscountFactory(code="GONE", usage_limit=1)
        slow, quick = CartFactory(), CartFactory()
        cart_apply_discount(cart=slow, discount=discount)
        set_expiry(slow, delta=-timedelta(minutes=5))
        cart_apply_discount(cart=quick, discount=discount)

        with caplog.at_level("INFO", logger="discount.services"):
            assert_refused_and_nothing_charged(slow, discount)
        assert DiscountReservation.objects.get(cart=slow).status == "released"
        assert f"Cart {slow.pk}: its discount's use cannot be kept: " in caplog.text
        assert held_by(quick, discount) == 1

    def test_of_a_code_that_ended_since_is_refused(self):
        discount = DiscountFactory(code="OVER", usage_limit=2)
        cart = CartFactory()
        cart_apply_discount(cart=cart, discount=discount)
        set_expiry(cart, delta=-timedelta(minutes=5))
        Discount.objects.filter(pk=discount.pk).update(ended=timezone.now() - timedelta(minutes=1))

        assert_refused_and_nothing_charged(cart, discount)

    def test_of_a_per_customer_code_is_taken_again_for_its_customer(self):
        discount = DiscountFactory(code="MINE", limit_per_customer=1)
        cart = CartFactory(customer_ref="cus_1")
        cart_apply_discount(cart=cart, discount=discount)
        set_expiry(cart, delta=-timedelta(minutes=5))
        provider = ScriptedProvider(pay=[CHARGED])

        cart_pay(cart=cart, api=provider)

        assert provider.requests[0]["amount"] == Decimal("15.00")

    def test_of_a_per_customer_code_the_customer_used_up_meanwhile_is_refused(self):
        discount = DiscountFactory(code="ONCE", limit_per_customer=1)
        cart = CartFactory(customer_ref="cus_1")
        cart_apply_discount(cart=cart, discount=discount)
        set_expiry(cart, delta=-timedelta(minutes=5))
        cart_apply_discount(cart=CartFactory(customer_ref="cus_1"), discount=discount)

        assert_refused_and_nothing_charged(cart, discount)

    def test_within_the_budget_is_taken_again(self):
        discount = DiscountFactory(code="BUDGET", budget_amount=Decimal("5.00"))
        cart = CartFactory()
        cart_apply_discount(cart=cart, discount=discount)
        set_expiry(cart, delta=-timedelta(minutes=5))
        provider = ScriptedProvider(pay=[CHARGED])

        cart_pay(cart=cart, api=provider)

        assert provider.requests[0]["amount"] == Decimal("15.00")

    def test_past_a_budget_another_cart_spent_meanwhile_is_refused(self):
        discount = DiscountFactory(code="SPENT", budget_amount=Decimal("8.00"))
        cart = CartFactory()
        cart_apply_discount(cart=cart, discount=discount)
        set_expiry(cart, delta=-timedelta(minutes=5))
        cart_apply_discount(cart=CartFactory(), discount=discount)

        assert_refused_and_nothing_charged(cart, discount)


class TestACartWithoutAReservation:
    """Carts that applied their code before uses were reserved have no reservation row."""

    def applied_unreserved(self, discount, **cart_fields):
        cart = CartFactory(**cart_fields)
        cart_apply_discount(cart=cart, discount=discount)
        DiscountReservation.objects.filter(cart=cart).delete()
        return cart

    def test_is_given_a_reservation_of_its_discount_at_payment(self):
        discount = DiscountFactory(code="LEGACY", usage_limit=1)
        cart = self.applied_unreserved(discount, currency="EUR")

        with grace_window() as window:
            pay_declined(cart)

        made = reservation_of(cart, discount)
        assert (made.amount, made.currency) == (Decimal("5.00"), "EUR")
        assert window["from"] <= made.expires <= window["to"]
        assert Discount.objects.get(pk=discount.pk).uses_held(at=timezone.now()) == 1

    def test_is_charged_the_discounted_total_and_the_use_counted(self):
        discount = DiscountFactory(code="LEGACYPAID", usage_limit=1)
        cart = self.applied_unreserved(discount)
        provider = ScriptedProvider(pay=[CHARGED])

        cart_pay(cart=cart, api=provider)

        assert provider.requests[0]["amount"] == Decimal("15.00")
        assert Discount.objects.get(pk=discount.pk).times_used == 1

    def test_whose_code_is_used_up_is_refused_with_the_discount_removed(self):
        discount = DiscountFactory(code="LEGACYGONE", usage_limit=1)
        cart = self.applied_unreserved(discount)
        cart_apply_discount(cart=CartFactory(), discount=discount)

        assert_refused_and_nothing_charged(cart, discount)
        assert not DiscountReservation.objects.filter(cart=cart).exists()

    def test_does_not_take_its_released_reservation_for_a_held_one(self):
        discount = DiscountFactory(code="RELEASED", usage_limit=2)
        cart = CartFactory()
        cart_apply_discount(cart=cart, discount=discount)
        DiscountReservation.objects.filter(cart=cart).update(
            status="released", expires=timezone.now() + LIVE
        )

        pay_declined(cart)

        assert held_by(cart, discount) == 1
