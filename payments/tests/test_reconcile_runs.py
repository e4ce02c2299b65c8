"""One reconcile run that meets several rows of one kind counts each of them, and gives
back each charge taken twice."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from cart.tests.factories import CartFactory
from payments.models import Payment, Refund
from payments.reconcile import payments_reconcile
from payments.tests.test_pay_service import CHARGED, REFUNDED, ScriptedProvider
from payments.tests.test_reconcile import (
    OLDER_THAN,
    charge_result,
    closed_uncharged,
    counts,
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
