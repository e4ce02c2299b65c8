"""One reconcile run that meets several rows of one kind counts each of them, and gives
back each charge taken twice."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from cart.services import cart_pay
from cart.tests.factories import CartFactory
from payments.models import Payment, Refund
from payments.reconcile import payments_reconcile
from payments.tests.test_pay_service import CHARGED, REFUNDED, ScriptedProvider, unavailable
from payments.tests.test_reconcile import (
    OLDER_THAN,
    charge_result,
    closed_uncharged,
    counts,
    open_attempt,
    paid_after_a_closed_attempt,
    state,
)

pytestmark = pytest.mark.django_db


def test_two_late_charges_settled_in_one_run_are_both_counted():
    first, second = CartFactory(), CartFactory()
    one = closed_uncharged(first, timedelta(minutes=5))
    two = closed_uncharged(second, timedelta(minutes=10))
    provider = ScriptedProvider(
        ledger={one.idempotency_key: CHARGED, two.idempotency_key: CHARGED}
    )

    result = payments_reconcile(older_than=OLDER_THAN, api=provider)

    assert result == counts(late_charges=2)
    assert state(first, one) == ("success", "success")
    assert state(second, two) == ("success", "success")


def test_two_charges_taken_twice_found_in_one_run_are_both_counted_and_given_back():
    carts = [paid_after_a_closed_attempt(total) for total in ("10.00", "12.00")]
    ledger = {
        closed.idempotency_key: charge_result(cart, closed.idempotency_key, f"pay_late_{n}")
        for n, (cart, closed, _) in enumerate(carts)
    }
    provider = ScriptedProvider(ledger=ledger, refund=[REFUNDED, REFUNDED])

    result = payments_reconcile(older_than=OLDER_THAN, api=provider)

    assert result == counts(duplicate_charges=2, duplicates_refunded=2)
    assert sorted(sent["amount"] for sent in provider.requests) == [
        Decimal("10.00"),
        Decimal("12.00"),
    ]
    for cart, closed, paid in carts:
        duplicate = Payment.objects.get(pk=closed.pk)
        assert (duplicate.status, duplicate.amount_refunded) == ("duplicate", cart.total)
        assert Payment.objects.get(pk=paid.pk).status == "success"
    assert Refund.objects.filter(status="success").count() == 2


def test_attempts_settled_alike_in_one_run_are_each_counted():
    unreadable = [open_attempt()[1] for _ in range(2)]
    charged = [open_attempt()[1] for _ in range(2)]
    provider = ScriptedProvider(
        ledger={
            **{payment.idempotency_key: unavailable() for payment in unreadable},
            **{payment.idempotency_key: CHARGED for payment in charged},
        }
    )

    result = payments_reconcile(older_than=OLDER_THAN, api=provider)

    assert result == counts(success=2, still_unknown=2)


def test_an_unreadable_re_check_of_one_closed_attempt_does_not_stop_the_next():
    unreadable_cart, charged_cart = CartFactory(), CartFactory()
    unreadable = closed_uncharged(unreadable_cart, timedelta(minutes=5))  # looked up first
    charged = closed_uncharged(charged_cart, timedelta(minutes=5))
    provider = ScriptedProvider(
        ledger={unreadable.idempotency_key: unavailable(), charged.idempotency_key: CHARGED}
    )

    result = payments_reconcile(older_than=OLDER_THAN, api=provider)

    assert result == counts(late_charges=1)
    assert state(unreadable_cart, unreadable) == ("error", "pending")
    assert state(charged_cart, charged) == ("success", "success")


def test_an_unreadable_charge_list_of_one_paid_cart_does_not_stop_the_next():
    unreadable_cart, other_cart = CartFactory(), CartFactory()
    cart_pay(cart=unreadable_cart, api=ScriptedProvider(pay=[CHARGED]))  # listed first
    paid = cart_pay(cart=other_cart, api=ScriptedProvider(pay=[CHARGED]))
    stray = charge_result(other_cart, "someone-elses-key", "pay_stray")
    provider = ScriptedProvider(
        charges_of={
            str(unreadable_cart.pk): unavailable(),
            str(other_cart.pk): [
                charge_result(other_cart, paid.idempotency_key, paid.provider_payment_id),
                stray,
            ],
        },
        refund=[REFUNDED],
    )

    result = payments_reconcile(older_than=OLDER_THAN, api=provider)

    assert result == counts(duplicate_charges=1, duplicates_refunded=1)


def test_a_charge_of_an_attempt_closed_long_ago_on_a_cart_paid_since_is_a_duplicate_of_it():
    # Charged twice: the first attempt's charge landed after it was closed (too long ago
    # for the re-check), and a second attempt paid the cart. The listing of the cart's
    # charges finds it: recorded on that first attempt, not as a new row, and given back.
    cart = CartFactory(total=Decimal("10.00"))
    first = closed_uncharged(cart, timedelta(hours=2))
    second = cart_pay(cart=cart, api=ScriptedProvider(pay=[CHARGED]))
    late = charge_result(cart, first.idempotency_key, "pay_late")
    provider = ScriptedProvider(
        charges_of={
            str(cart.pk): [
                charge_result(cart, second.idempotency_key, second.provider_payment_id),
                late,
            ]
        },
        refund=[REFUNDED],
    )

    result = payments_reconcile(older_than=OLDER_THAN, api=provider)

    assert result == counts(duplicate_charges=1, duplicates_refunded=1)
    assert Payment.objects.filter(cart=cart).count() == 2
    duplicate = Payment.objects.get(pk=first.pk)
    assert (duplicate.status, duplicate.provider_payment_id, duplicate.amount_refunded) == (
        "duplicate",
        "pay_late",
        Decimal("10.00"),
    )
    assert provider.requests[0]["payment_id"] == "pay_late"
    assert state(cart, second) == ("success", "success")
